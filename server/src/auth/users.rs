//! Users and identities: rows of `auth.users` / `auth.identities`, their
//! GoTrue JSON representation, and the queries the handlers share.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::error::{AuthError, AuthResult};

/// Columns of `auth.users` in the order [`User::from_row`] reads them.
pub const USER_COLUMNS: &str = "id, aud, role, email, encrypted_password, email_confirmed_at, \
    invited_at, confirmation_sent_at, recovery_sent_at, email_change, email_change_sent_at, \
    phone, phone_confirmed_at, last_sign_in_at, raw_app_meta_data, raw_user_meta_data, \
    banned_until, is_anonymous, created_at, updated_at";

/// A user of a project.
#[derive(Debug, Clone)]
pub struct User {
    /// User id (the `sub` claim).
    pub id: Uuid,
    /// Audience.
    pub aud: String,
    /// Database role of the user's tokens.
    pub role: String,
    /// Normalised (lowercase) email.
    pub email: Option<String>,
    /// argon2id PHC string.
    pub encrypted_password: Option<String>,
    /// When the email was confirmed.
    pub email_confirmed_at: Option<DateTime<Utc>>,
    /// When the user was invited.
    pub invited_at: Option<DateTime<Utc>>,
    /// When the last confirmation mail was sent.
    pub confirmation_sent_at: Option<DateTime<Utc>>,
    /// When the last recovery mail was sent.
    pub recovery_sent_at: Option<DateTime<Utc>>,
    /// Pending new email.
    pub email_change: Option<String>,
    /// When the email change mails were sent.
    pub email_change_sent_at: Option<DateTime<Utc>>,
    /// Phone number.
    pub phone: Option<String>,
    /// When the phone was confirmed.
    pub phone_confirmed_at: Option<DateTime<Utc>>,
    /// Last sign-in.
    pub last_sign_in_at: Option<DateTime<Utc>>,
    /// `app_metadata` (provider, providers, roles …); only admins change it.
    pub app_metadata: Value,
    /// `user_metadata`; the user changes it.
    pub user_metadata: Value,
    /// Banned until (sign-in and refresh refused before then).
    pub banned_until: Option<DateTime<Utc>>,
    /// Anonymous user.
    pub is_anonymous: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
    /// Linked identities (loaded by [`load_identities`]).
    pub identities: Vec<Value>,
    /// MFA factors (loaded with the identities).
    pub factors: Vec<Value>,
}

impl User {
    /// Reads a row selected with [`USER_COLUMNS`].
    pub fn from_row(row: &Row) -> Self {
        Self {
            id: row.get(0),
            aud: row.get(1),
            role: row.get(2),
            email: row.get(3),
            encrypted_password: row.get(4),
            email_confirmed_at: row.get(5),
            invited_at: row.get(6),
            confirmation_sent_at: row.get(7),
            recovery_sent_at: row.get(8),
            email_change: row.get(9),
            email_change_sent_at: row.get(10),
            phone: row.get(11),
            phone_confirmed_at: row.get(12),
            last_sign_in_at: row.get(13),
            app_metadata: row.get(14),
            user_metadata: row.get(15),
            banned_until: row.get(16),
            is_anonymous: row.get(17),
            created_at: row.get(18),
            updated_at: row.get(19),
            identities: Vec::new(),
            factors: Vec::new(),
        }
    }

    /// Whether the user is banned now.
    pub fn is_banned(&self) -> bool {
        self.banned_until.is_some_and(|t| t > Utc::now())
    }

    /// The user in GoTrue's JSON shape.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("aud".into(), json!(self.aud));
        m.insert("role".into(), json!(self.role));
        m.insert("email".into(), json!(self.email.as_deref().unwrap_or("")));
        let mut opt = |k: &str, v: Option<DateTime<Utc>>| {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        };
        opt("email_confirmed_at", self.email_confirmed_at);
        opt("invited_at", self.invited_at);
        opt("phone_confirmed_at", self.phone_confirmed_at);
        opt("confirmation_sent_at", self.confirmation_sent_at);
        opt(
            "confirmed_at",
            self.email_confirmed_at.or(self.phone_confirmed_at),
        );
        opt("recovery_sent_at", self.recovery_sent_at);
        opt("email_change_sent_at", self.email_change_sent_at);
        opt("last_sign_in_at", self.last_sign_in_at);
        opt(
            "banned_until",
            self.banned_until.filter(|_| self.is_banned()),
        );
        m.insert("phone".into(), json!(self.phone.as_deref().unwrap_or("")));
        if let Some(new_email) = &self.email_change {
            m.insert("new_email".into(), json!(new_email));
        }
        m.insert("app_metadata".into(), self.app_metadata.clone());
        m.insert("user_metadata".into(), self.user_metadata.clone());
        m.insert("identities".into(), Value::Array(self.identities.clone()));
        if !self.factors.is_empty() {
            m.insert("factors".into(), Value::Array(self.factors.clone()));
        }
        m.insert("created_at".into(), json!(self.created_at));
        m.insert("updated_at".into(), json!(self.updated_at));
        m.insert("is_anonymous".into(), json!(self.is_anonymous));
        Value::Object(m)
    }
}

/// Normalises and checks an email address (lowercase, one `@`, no spaces,
/// a dot in the domain). Returns 400 `validation_failed` when it is not one.
pub fn parse_email(raw: &str) -> AuthResult<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 255
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        });
    if valid {
        Ok(email)
    } else {
        Err(AuthError::bad_request(
            "email_address_invalid",
            "Unable to validate email address: invalid format",
        ))
    }
}

/// Loads a user by id (with identities).
pub async fn by_id(c: &impl GenericClient, id: Uuid) -> AuthResult<Option<User>> {
    let row = c
        .query_opt(
            &format!("select {USER_COLUMNS} from auth.users where id = $1"),
            &[&id],
        )
        .await?;
    with_identities(c, row).await
}

/// Loads a user by id and locks the row for the transaction.
pub async fn by_id_for_update(c: &impl GenericClient, id: Uuid) -> AuthResult<Option<User>> {
    let row = c
        .query_opt(
            &format!("select {USER_COLUMNS} from auth.users where id = $1 for update"),
            &[&id],
        )
        .await?;
    with_identities(c, row).await
}

/// Loads a user by (normalised) email (with identities).
pub async fn by_email(c: &impl GenericClient, email: &str) -> AuthResult<Option<User>> {
    let row = c
        .query_opt(
            &format!("select {USER_COLUMNS} from auth.users where email = $1"),
            &[&email],
        )
        .await?;
    with_identities(c, row).await
}

async fn with_identities(c: &impl GenericClient, row: Option<Row>) -> AuthResult<Option<User>> {
    let Some(row) = row else { return Ok(None) };
    let mut user = User::from_row(&row);
    user.identities = load_identities(c, user.id).await?;
    user.factors = load_factors(c, user.id).await?;
    Ok(Some(user))
}

const IDENTITIES_SQL: &str = "select id, provider_id, user_id, identity_data, provider, \
     last_sign_in_at, created_at, updated_at, email from auth.identities where user_id = $1 \
     order by created_at";
const FACTORS_SQL: &str = "select id, friendly_name, factor_type, status, created_at, updated_at \
     from auth.mfa_factors where user_id = $1 order by created_at";
/// A live session of a user, by id.
pub(crate) const SESSION_SQL: &str = "select id, aal, amr, not_after from auth.sessions where id = $1 and user_id = $2 \
     and (not_after is null or not_after > now())";

/// The identities of a user, in GoTrue's JSON shape.
pub async fn load_identities(c: &impl GenericClient, user_id: Uuid) -> AuthResult<Vec<Value>> {
    let rows = c.query(IDENTITIES_SQL, &[&user_id]).await?;
    Ok(identities_json(&rows))
}

fn identities_json(rows: &[Row]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let id: Uuid = r.get(0);
            let provider_id: String = r.get(1);
            let user_id: Uuid = r.get(2);
            let data: Value = r.get(3);
            let provider: String = r.get(4);
            let last: Option<DateTime<Utc>> = r.get(5);
            let created: DateTime<Utc> = r.get(6);
            let updated: DateTime<Utc> = r.get(7);
            let email: Option<String> = r.get(8);
            json!({
                "identity_id": id,
                "id": provider_id,
                "user_id": user_id,
                "identity_data": data,
                "provider": provider,
                "last_sign_in_at": last,
                "created_at": created,
                "updated_at": updated,
                "email": email,
            })
        })
        .collect()
}

/// The MFA factors of a user, in GoTrue's JSON shape.
pub async fn load_factors(c: &impl GenericClient, user_id: Uuid) -> AuthResult<Vec<Value>> {
    let rows = c.query(FACTORS_SQL, &[&user_id]).await?;
    Ok(factors_json(&rows))
}

fn factors_json(rows: &[Row]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            json!({
                "id": r.get::<_, Uuid>(0),
                "friendly_name": r.get::<_, Option<String>>(1).unwrap_or_default(),
                "factor_type": r.get::<_, String>(2),
                "status": r.get::<_, String>(3),
                "created_at": r.get::<_, DateTime<Utc>>(4),
                "updated_at": r.get::<_, DateTime<Utc>>(5),
            })
        })
        .collect()
}

/// The signed-in user (with identities and factors) and their live session,
/// the hot path behind `GET /auth/v1/user`: four statements prepared once per
/// connection and sent together, so the lookup costs one round trip instead
/// of a prepare and an execute for each. As before, the four reads are not
/// one snapshot (a user's row and identities may straddle a concurrent
/// write), which the separate statements never were either.
pub async fn with_session(
    c: &deadpool_postgres::ClientWrapper,
    id: Uuid,
    session_id: Option<Uuid>,
) -> AuthResult<Found> {
    use futures_util::future::try_join4;
    use tokio_postgres::types::ToSql;
    static USER_SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("select {USER_COLUMNS} from auth.users where id = $1"));
    let (user_stmt, ident_stmt, factor_stmt, session_stmt) = try_join4(
        c.prepare_cached(&USER_SQL),
        c.prepare_cached(IDENTITIES_SQL),
        c.prepare_cached(FACTORS_SQL),
        c.prepare_cached(SESSION_SQL),
    )
    .await?;
    let no_session = Uuid::nil();
    let sid = session_id.unwrap_or(no_session);
    // All four under one Sync: one reply, one snapshot (an implicit read-only
    // transaction), instead of a reply and a transaction per lookup.
    let by_user: [&(dyn ToSql + Sync); 1] = [&id];
    let by_session: [&(dyn ToSql + Sync); 2] = [&sid, &id];
    let mut out = c
        .query_pipeline(&[
            (&user_stmt, &by_user),
            (&ident_stmt, &by_user),
            (&factor_stmt, &by_user),
            (&session_stmt, &by_session),
        ])
        .await?
        .into_iter()
        .map(|o| o.rows);
    let (Some(user), Some(identities), Some(factors), Some(session)) =
        (out.next(), out.next(), out.next(), out.next())
    else {
        unreachable!("query_pipeline returns one output per statement")
    };
    let Some(row) = user.first() else {
        return Ok(Found::default());
    };
    let mut user = User::from_row(row);
    user.identities = identities_json(&identities);
    user.factors = factors_json(&factors);
    let session = session.first().filter(|_| session_id.is_some());
    Ok(Found {
        user: Some(user),
        session_ends: session.and_then(|r| r.get(3)),
        session: session.map(|r| super::session::SessionInfo {
            id: r.get(0),
            aal: r.get(1),
            amr: r.get(2),
        }),
    })
}

/// What [`with_session`] found.
#[derive(Default)]
pub struct Found {
    /// The user, if it exists.
    pub user: Option<User>,
    /// Its session named by the token, if it is live.
    pub session: Option<super::session::SessionInfo>,
    /// When that session ends (`not_after`), if it has an end.
    pub session_ends: Option<DateTime<Utc>>,
}

/// What a new user starts with.
pub struct NewUser<'a> {
    /// Normalised email.
    pub email: Option<&'a str>,
    /// argon2id hash.
    pub password_hash: Option<String>,
    /// Confirm the email now.
    pub confirmed: bool,
    /// `user_metadata`.
    pub user_metadata: Value,
    /// `app_metadata` beyond provider/providers (e.g. roles).
    pub app_metadata: Value,
    /// The identity provider (`email`, `anonymous`, an OAuth provider …).
    pub provider: &'a str,
    /// Anonymous user.
    pub is_anonymous: bool,
    /// Invited (sets `invited_at`).
    pub invited: bool,
}

/// Inserts a user and its email identity. A duplicate email is 422 `email_exists`.
pub async fn insert(c: &impl GenericClient, new: NewUser<'_>) -> AuthResult<User> {
    let mut app_metadata = match new.app_metadata {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    app_metadata.insert("provider".into(), json!(new.provider));
    app_metadata.insert("providers".into(), json!([new.provider]));
    let user_metadata = match new.user_metadata {
        Value::Object(m) => Value::Object(m),
        _ => json!({}),
    };
    let row = c
        .query_one(
            &format!(
                "insert into auth.users (email, encrypted_password, email_confirmed_at, \
                 raw_app_meta_data, raw_user_meta_data, is_anonymous, invited_at) \
                 values ($1, $2, case when $3 then now() end, $4, $5, $6, case when $7 then now() end) \
                 on conflict do nothing returning {USER_COLUMNS}"
            ),
            &[
                &new.email,
                &new.password_hash,
                &new.confirmed,
                &Value::Object(app_metadata),
                &user_metadata,
                &new.is_anonymous,
                &new.invited,
            ],
        )
        .await
        .map_err(|e| {
            if e.as_db_error().is_none() && !crate::db::is_connection_error(&e) {
                // `query_one` found no row: the conflict clause skipped the insert.
                AuthError::unprocessable(
                    "email_exists",
                    "A user with this email address has already been registered",
                )
            } else {
                e.into()
            }
        })?;
    let mut user = User::from_row(&row);
    if new.provider == "email" || new.provider == "anonymous" {
        let data = if new.is_anonymous {
            json!({ "sub": user.id.to_string() })
        } else {
            json!({
                "sub": user.id.to_string(),
                "email": user.email,
                "email_verified": new.confirmed,
                "phone_verified": false,
            })
        };
        if !new.is_anonymous {
            c.execute(
                "insert into auth.identities (provider_id, user_id, identity_data, provider) \
                 values ($1, $2, $3, 'email')",
                &[&user.id.to_string(), &user.id, &data],
            )
            .await?;
        }
    }
    user.identities = load_identities(c, user.id).await?;
    Ok(user)
}

/// Merges `patch` into a metadata object the way GoTrue does: top-level keys
/// are replaced, a `null` value removes the key.
pub fn merge_metadata(current: &Value, patch: &Value) -> Value {
    let mut out = current.as_object().cloned().unwrap_or_default();
    if let Some(p) = patch.as_object() {
        for (k, v) in p {
            if v.is_null() {
                out.remove(k);
            } else {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Writes an audit log entry.
pub async fn audit(
    c: &impl GenericClient,
    action: &str,
    actor: Option<Uuid>,
    payload: Value,
    ip: Option<&str>,
) -> AuthResult<()> {
    c.execute(
        "insert into auth.audit_log_entries (action, actor_id, payload, ip_address) values ($1, $2, $3, $4)",
        &[&action, &actor, &payload, &ip],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(parse_email(" A@Example.COM ").unwrap(), "a@example.com");
        for bad in [
            "",
            "a",
            "@x.com",
            "a@",
            "a@b",
            "a b@c.com",
            "a@b@c.com",
            "a@.com",
            "a@b..com",
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_merge() {
        let m = merge_metadata(&json!({"a": 1, "b": 2}), &json!({"b": null, "c": 3}));
        assert_eq!(m, json!({"a": 1, "c": 3}));
    }
}
