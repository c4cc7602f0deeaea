//! Everything the hub reads and writes in a project database, as plain
//! functions over a connection: channel lookup, RLS authorization, publishing
//! into the outbox, history, presence, change-capture settings, and the
//! catch-up read of the outbox by id.
//!
//! Authorization follows Supabase: policies on `realtime.messages` read the
//! channel with `realtime.topic()`. Sending is an `INSERT` under the caller's
//! role (so `WITH CHECK` decides); receiving is decided by inserting a probe
//! row as the owner, switching to the caller's role and asking whether the
//! row is visible, then rolling back. Probe rows get a random negative id so
//! they never consume the identity sequence (catch-up reads ids > 0 only).

use serde_json::{Value, json};
use tokio_postgres::types::Type;

use crate::error::{ApiError, ApiResult};
use crate::tenant::Caller;

/// A channel definition (a row of `realtime.channels`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ChannelDef {
    /// Id.
    pub id: uuid::Uuid,
    /// LIKE pattern matched against channel names, e.g. `room:%`.
    pub pattern: String,
    /// Free text.
    pub description: Option<String>,
    /// Public channels need only a valid key; private ones are decided by RLS.
    pub public: bool,
    /// A disabled channel refuses subscriptions and messages.
    pub enabled: bool,
    /// Hours messages stay available to `realtime:history`.
    pub retention_hours: i32,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const CHANNEL_COLUMNS: &str =
    "id, pattern, description, public, enabled, retention_hours, created_at, updated_at";

fn channel_row(r: &tokio_postgres::Row) -> ApiResult<ChannelDef> {
    Ok(ChannelDef {
        id: r.try_get(0)?,
        pattern: r.try_get(1)?,
        description: r.try_get(2)?,
        public: r.try_get(3)?,
        enabled: r.try_get(4)?,
        retention_hours: r.try_get(5)?,
        created_at: r.try_get(6)?,
        updated_at: r.try_get(7)?,
    })
}

/// Who sent a message, as recorded in the outbox and shown in `meta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// `user`, `anon`, `service` or `system`.
    pub kind: &'static str,
    /// The user id for `user`.
    pub id: Option<String>,
}

impl Sender {
    /// The sender a caller publishes as.
    pub fn of(caller: &Caller) -> Sender {
        match caller.role.as_str() {
            "service_role" => Sender {
                kind: "service",
                id: None,
            },
            "authenticated" => Sender {
                kind: "user",
                id: caller.claims["sub"].as_str().map(str::to_owned),
            },
            _ => Sender {
                kind: "anon",
                id: None,
            },
        }
    }
}

/// The channel definition governing `name` (longest matching pattern).
pub async fn find_channel(
    client: &tokio_postgres::Client,
    name: &str,
) -> ApiResult<Option<ChannelDef>> {
    let sql = format!(
        "select {CHANNEL_COLUMNS} from realtime.channels where $1 like pattern \
         order by length(pattern) desc, pattern limit 1"
    );
    let row = client
        .query_typed(&sql, &[(&name, Type::TEXT)])
        .await?
        .into_iter()
        .next();
    row.as_ref().map(channel_row).transpose()
}

/// A channel usable for `name`, or the error to answer.
pub async fn usable_channel(client: &tokio_postgres::Client, name: &str) -> ApiResult<ChannelDef> {
    let Some(def) = find_channel(client, name).await? else {
        return Err(ApiError::not_found(
            "channel_not_found",
            format!("No channel matches {name:?}."),
        )
        .with_hint("An admin defines channels with POST /admin/v1/realtime/channels."));
    };
    if !def.enabled {
        return Err(ApiError::forbidden(
            "channel_disabled",
            format!("The channel {name:?} is disabled."),
        ));
    }
    Ok(def)
}

fn forbidden_receive(name: &str) -> ApiError {
    ApiError::forbidden(
        "forbidden",
        format!("You are not allowed to receive messages on {name:?}."),
    )
    .with_hint("Receiving on a private channel needs a SELECT policy on realtime.messages.")
}

/// Whether the caller may receive on private channel `topic` (SELECT policy).
pub async fn may_receive(
    client: &mut tokio_postgres::Client,
    caller: &Caller,
    topic: &str,
) -> ApiResult<bool> {
    if caller.role == "service_role" {
        return Ok(true);
    }
    let probe: i64 = -(i64::from(rand_u32()) + 1) * 1_000_003 - i64::from(rand_u32());
    let tx = client.transaction().await?;
    tx.execute(
        "insert into realtime.messages (id, topic, event, kind, sender_type) \
         overriding system value values ($1, $2, 'realtime:authorize', 'broadcast', 'system')",
        &[&probe, &topic],
    )
    .await?;
    let claims = caller.claims.to_string();
    tx.query_typed(
        "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), \
         set_config('realtime.topic', $3, true)",
        &[
            (&caller.role, Type::TEXT),
            (&claims, Type::TEXT),
            (&topic, Type::TEXT),
        ],
    )
    .await?;
    let visible = match tx
        .query_one(
            "select exists(select 1 from realtime.messages where id = $1)",
            &[&probe],
        )
        .await
    {
        Ok(row) => row.try_get::<_, bool>(0)?,
        // No privilege on the table for this role: not allowed.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            false
        }
        Err(e) => return Err(e.into()),
    };
    tx.rollback().await?;
    Ok(visible)
}

/// Checks that `caller` may receive on `def`'s channel `name`.
pub async fn authorize_receive(
    client: &mut tokio_postgres::Client,
    caller: &Caller,
    def: &ChannelDef,
    name: &str,
) -> ApiResult<()> {
    if def.public || may_receive(client, caller, name).await? {
        Ok(())
    } else {
        Err(forbidden_receive(name))
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    // aws-lc's RNG; failure is practically impossible and only weakens probe uniqueness.
    let _ = aws_lc_rs::rand::fill(&mut b);
    u32::from_le_bytes(b)
}

/// A message as stored in the outbox.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Outbox id.
    pub id: i64,
    /// Channel (topic).
    pub topic: String,
    /// Event name.
    pub event: String,
    /// Payload.
    pub payload: Value,
    /// `broadcast`, `db` or `presence`.
    pub kind: String,
    /// Sender type.
    pub sender_type: String,
    /// Sender id.
    pub sender_id: Option<String>,
    /// Insert time.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Stored {
    fn from_row(r: &tokio_postgres::Row) -> ApiResult<Stored> {
        Ok(Stored {
            id: r.try_get(0)?,
            topic: r.try_get(1)?,
            event: r.try_get(2)?,
            payload: r.try_get(3)?,
            kind: r.try_get(4)?,
            sender_type: r.try_get(5)?,
            sender_id: r.try_get(6)?,
            created_at: r.try_get(7)?,
        })
    }

    /// What subscribers receive: the payload's fields plus `meta`.
    pub fn to_client(&self, channel: &str) -> Value {
        let meta = json!({
            "channel": channel,
            "messageId": self.id.to_string(),
            "senderType": self.sender_type,
            "senderId": self.sender_id,
            "timestamp": self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        let mut body = match &self.payload {
            Value::Object(m) => Value::Object(m.clone()),
            other => json!({ "data": other }),
        };
        body["meta"] = meta;
        body
    }
}

const STORED_COLUMNS: &str = "id, topic, event, payload, kind, sender_type, sender_id, created_at";

/// Inserts a broadcast message as `caller` (RLS `INSERT` decides on private
/// channels) and returns it.
pub async fn publish(
    client: &mut tokio_postgres::Client,
    caller: &Caller,
    def: &ChannelDef,
    channel: &str,
    event: &str,
    payload: &Value,
) -> ApiResult<Stored> {
    let sender = Sender::of(caller);
    let tx = client.transaction().await?;
    if !def.public {
        let claims = caller.claims.to_string();
        tx.query_typed(
            "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), \
             set_config('realtime.topic', $3, true)",
            &[
                (&caller.role, Type::TEXT),
                (&claims, Type::TEXT),
                (&channel, Type::TEXT),
            ],
        )
        .await?;
    }
    let sql = format!(
        "insert into realtime.messages (topic, event, payload, kind, sender_type, sender_id) \
         values ($1, $2, $3, 'broadcast', $4, $5) returning {STORED_COLUMNS}"
    );
    let row = match tx
        .query_one(&sql, &[&channel, &event, payload, &sender.kind, &sender.id])
        .await
    {
        Ok(row) => row,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            return Err(ApiError::forbidden(
                "forbidden",
                format!("You are not allowed to send messages on {channel:?}."),
            )
            .with_hint(
                "Sending on a private channel needs an INSERT policy on realtime.messages.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let stored = Stored::from_row(&row)?;
    tx.commit().await?;
    Ok(stored)
}

/// Messages of `channel` after `since` still retained, oldest first, read
/// as the caller on private channels (so RLS filters them too).
pub async fn history(
    client: &mut tokio_postgres::Client,
    caller: &Caller,
    def: &ChannelDef,
    channel: &str,
    since: i64,
    limit: i64,
) -> ApiResult<Vec<Stored>> {
    let tx = client.transaction().await?;
    if !def.public {
        let claims = caller.claims.to_string();
        tx.query_typed(
            "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), \
             set_config('realtime.topic', $3, true)",
            &[
                (&caller.role, Type::TEXT),
                (&claims, Type::TEXT),
                (&channel, Type::TEXT),
            ],
        )
        .await?;
    }
    let sql = format!(
        "select {STORED_COLUMNS} from (select {STORED_COLUMNS} from realtime.messages \
         where topic = $1 and id > $2 and kind = 'broadcast' \
         and created_at > now() - make_interval(hours => $3) order by id desc limit $4) m order by id"
    );
    let rows = tx
        .query(&sql, &[&channel, &since, &def.retention_hours, &limit])
        .await?;
    tx.rollback().await?;
    rows.iter().map(Stored::from_row).collect()
}

/// The outbox rows after `last` (and the listed earlier ids not seen yet),
/// oldest first.
pub async fn read_since(
    client: &tokio_postgres::Client,
    last: i64,
    gaps: &[i64],
    limit: i64,
) -> ApiResult<Vec<Stored>> {
    let sql = format!(
        "select {STORED_COLUMNS} from realtime.messages where id > $1 or id = any($2) \
         order by id limit $3"
    );
    let rows = client.query(&sql, &[&last, &gaps, &limit]).await?;
    rows.iter().map(Stored::from_row).collect()
}

/// The newest outbox id (0 when empty).
pub async fn last_id(client: &tokio_postgres::Client) -> ApiResult<i64> {
    let row = client
        .query_one(
            "select coalesce(max(id), 0)::int8 from realtime.messages",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

// ---- presence -------------------------------------------------------------

/// One member of a channel's presence.
pub fn member_json(r: &tokio_postgres::Row) -> ApiResult<Value> {
    let joined: chrono::DateTime<chrono::Utc> = r.try_get("joined_at")?;
    Ok(json!({
        "presenceId": r.try_get::<_, String>("presence_id")?,
        "type": r.try_get::<_, String>("type")?,
        "userId": r.try_get::<_, Option<String>>("user_id")?,
        "state": r.try_get::<_, Value>("state")?,
        "joinedAt": joined.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
}

/// Records a member (`$1` channel, `$2` presence id, `$3` node, `$4` type,
/// `$5` user id, `$6` state) and publishes `presence:join`.
const JOIN_SQL: &str = "with m as (insert into realtime.presence (channel, presence_id, node_id, type, user_id, state) \
       values ($1, $2, $3, $4, $5, $6) \
       on conflict (channel, presence_id) do update set state = excluded.state, seen_at = now() \
       returning *) \
     insert into realtime.messages (topic, event, payload, kind, sender_type, sender_id) \
     select m.channel, 'presence:join', jsonb_build_object('presenceId', m.presence_id, \
       'type', m.type, 'userId', m.user_id, 'state', m.state, 'joinedAt', m.joined_at), \
       'presence', m.type, m.user_id from m";

/// Runs [`JOIN_SQL`] in `tx`.
async fn insert_join(
    tx: &tokio_postgres::Transaction<'_>,
    channel: &str,
    presence_id: &str,
    node_id: &str,
    sender: &Sender,
    state: &Value,
) -> ApiResult<()> {
    tx.execute(
        JOIN_SQL,
        &[
            &channel,
            &presence_id,
            &node_id,
            &sender.kind,
            &sender.id,
            state,
        ],
    )
    .await?;
    Ok(())
}

/// Records a member and publishes `presence:join`; returns every current member.
pub async fn presence_join(
    client: &mut tokio_postgres::Client,
    channel: &str,
    presence_id: &str,
    node_id: &str,
    sender: &Sender,
    state: &Value,
) -> ApiResult<Vec<Value>> {
    let tx = client.transaction().await?;
    insert_join(&tx, channel, presence_id, node_id, sender, state).await?;
    let rows = tx
        .query(
            "select * from realtime.presence where channel = $1 order by joined_at, presence_id",
            &[&channel],
        )
        .await?;
    tx.commit().await?;
    rows.iter().map(member_json).collect()
}

/// Current members of a channel.
pub async fn presence_members(
    client: &tokio_postgres::Client,
    channel: &str,
) -> ApiResult<Vec<Value>> {
    let rows = client
        .query(
            "select * from realtime.presence where channel = $1 order by joined_at, presence_id",
            &[&channel],
        )
        .await?;
    rows.iter().map(member_json).collect()
}

/// Sets a member's state and publishes `presence:update`; false when not a member.
pub async fn presence_update(
    client: &tokio_postgres::Client,
    channel: &str,
    presence_id: &str,
    state: &Value,
) -> ApiResult<bool> {
    let n = client
        .execute(
            "with m as (update realtime.presence set state = $3, seen_at = now() \
               where channel = $1 and presence_id = $2 returning *) \
             insert into realtime.messages (topic, event, payload, kind, sender_type, sender_id) \
             select m.channel, 'presence:update', jsonb_build_object('presenceId', m.presence_id, \
               'type', m.type, 'userId', m.user_id, 'state', m.state, 'joinedAt', m.joined_at), \
               'presence', m.type, m.user_id from m",
            &[&channel, &presence_id, state],
        )
        .await?;
    Ok(n > 0)
}

const LEAVE_INSERT: &str = "insert into realtime.messages (topic, event, payload, kind, sender_type, sender_id) \
     select g.channel, 'presence:leave', jsonb_build_object('presenceId', g.presence_id, \
       'type', g.type, 'userId', g.user_id, 'state', g.state, 'joinedAt', g.joined_at), \
       'presence', g.type, g.user_id from g";

/// Removes a member from one channel (or every channel when `channel` is
/// `None`) and publishes `presence:leave` for each.
pub async fn presence_leave(
    client: &tokio_postgres::Client,
    presence_id: &str,
    channel: Option<&str>,
) -> ApiResult<()> {
    let sql = format!(
        "with g as (delete from realtime.presence where presence_id = $1 \
           and ($2::text is null or channel = $2) returning *) {LEAVE_INSERT}"
    );
    client.execute(&sql, &[&presence_id, &channel]).await?;
    Ok(())
}

/// Shows a member under a new identity (its socket changed token to
/// another user, or to anon): in every channel where `presence_id` is a
/// member, a `presence:leave` of the old member and a `presence:join` of the
/// new one, with the state kept.
pub async fn presence_reidentify(
    client: &mut tokio_postgres::Client,
    presence_id: &str,
    node_id: &str,
    sender: &Sender,
) -> ApiResult<()> {
    let tx = client.transaction().await?;
    let sql = format!(
        "with g as (delete from realtime.presence where presence_id = $1 returning *), \
         l as ({LEAVE_INSERT}) select g.channel, g.state from g order by g.joined_at"
    );
    let members = tx.query(&sql, &[&presence_id]).await?;
    for m in &members {
        let channel: String = m.try_get(0)?;
        let state: Value = m.try_get(1)?;
        insert_join(&tx, &channel, presence_id, node_id, sender, &state).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Refreshes this node's members, then removes members nobody refreshed for
/// `timeout_secs` (their socket or node died) with a `presence:leave` each.
pub async fn presence_heartbeat(
    client: &tokio_postgres::Client,
    node_id: &str,
    live: &[String],
    timeout_secs: f64,
) -> ApiResult<()> {
    client
        .execute(
            "update realtime.presence set seen_at = now() where node_id = $1 and presence_id = any($2)",
            &[&node_id, &live],
        )
        .await?;
    let sql = format!(
        "with g as (delete from realtime.presence \
           where seen_at < now() - make_interval(secs => $1) returning *) {LEAVE_INSERT}"
    );
    client.execute(&sql, &[&timeout_secs]).await?;
    Ok(())
}

/// Deletes messages past their channel's retention (24 h for change and
/// presence events and channels without a definition).
pub async fn purge_expired(client: &tokio_postgres::Client) -> ApiResult<u64> {
    Ok(client
        .execute(
            "delete from realtime.messages m where m.id in (select id from realtime.messages x \
               where x.created_at < now() - make_interval(hours => coalesce((select c.retention_hours \
                 from realtime.channels c where x.kind = 'broadcast' and x.topic like c.pattern \
                 order by length(c.pattern) desc limit 1), 24)) limit 5000)",
            &[],
        )
        .await?)
}

// ---- change events --------------------------------------------------------

/// Which operations of a table are captured, if any.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ChangeTable {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Capture inserts.
    pub insert: bool,
    /// Capture updates.
    pub update: bool,
    /// Capture deletes.
    pub delete: bool,
}

/// Whether changes of `schema.table` are captured.
pub async fn change_table(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> ApiResult<Option<ChangeTable>> {
    let row = client
        .query_opt(
            "select schema_name, table_name, on_insert, on_update, on_delete \
             from realtime.change_tables where schema_name = $1 and table_name = $2",
            &[&schema, &table],
        )
        .await?;
    row.map(|r| change_row(&r)).transpose()
}

fn change_row(r: &tokio_postgres::Row) -> ApiResult<ChangeTable> {
    Ok(ChangeTable {
        schema: r.try_get(0)?,
        table: r.try_get(1)?,
        insert: r.try_get(2)?,
        update: r.try_get(3)?,
        delete: r.try_get(4)?,
    })
}

/// Every captured table.
pub async fn change_tables(client: &tokio_postgres::Client) -> ApiResult<Vec<ChangeTable>> {
    let rows = client
        .query(
            "select schema_name, table_name, on_insert, on_update, on_delete \
             from realtime.change_tables order by 1, 2",
            &[],
        )
        .await?;
    rows.iter().map(change_row).collect()
}

/// Primary-key columns of a table, in key order (empty: no primary key).
pub async fn primary_key(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> ApiResult<Vec<String>> {
    let rows = client
        .query(
            "select a.attname::text from pg_index i \
             join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace \
             join lateral unnest(i.indkey) with ordinality k(attnum, ord) on true \
             join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum \
             where i.indisprimary and n.nspname = $1 and c.relname = $2 order by k.ord",
            &[&schema, &table],
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map_err(ApiError::from))
        .collect()
}

/// Enables (or changes) capture of a table's changes: installs the trigger
/// for the chosen operations. The table must exist and have a primary key
/// (per-subscriber RLS checks find the row by it).
pub async fn set_change_table(
    client: &mut tokio_postgres::Client,
    t: &ChangeTable,
) -> ApiResult<()> {
    let exists = client
        .query_opt(
            "select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')",
            &[&t.schema, &t.table],
        )
        .await?
        .is_some();
    if !exists {
        return Err(ApiError::not_found(
            "table_not_found",
            format!("No table {}.{}.", t.schema, t.table),
        ));
    }
    if primary_key(client, &t.schema, &t.table).await?.is_empty() {
        return Err(ApiError::bad_request(
            "primary_key_required",
            format!(
                "{}.{} has no primary key; change events need one to check each subscriber's access.",
                t.schema, t.table
            ),
        ));
    }
    let ops: Vec<&str> = [
        (t.insert, "insert"),
        (t.update, "update"),
        (t.delete, "delete"),
    ]
    .into_iter()
    .filter_map(|(on, op)| on.then_some(op))
    .collect();
    if ops.is_empty() {
        return Err(ApiError::bad_request(
            "no_operations",
            "Choose at least one of insert, update, delete (or DELETE the setting).",
        ));
    }
    let target = format!(
        "{}.{}",
        crate::db::quote_ident(&t.schema),
        crate::db::quote_ident(&t.table)
    );
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "drop trigger if exists ferrobase_realtime on {target}; \
         create trigger ferrobase_realtime after {} on {target} \
           for each row execute function realtime.capture_change();",
        ops.join(" or ")
    ))
    .await?;
    tx.execute(
        "insert into realtime.change_tables (schema_name, table_name, on_insert, on_update, on_delete) \
         values ($1, $2, $3, $4, $5) on conflict (schema_name, table_name) do update \
         set on_insert = excluded.on_insert, on_update = excluded.on_update, on_delete = excluded.on_delete",
        &[&t.schema, &t.table, &t.insert, &t.update, &t.delete],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Stops capturing a table's changes; false when it was not captured.
pub async fn remove_change_table(
    client: &mut tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> ApiResult<bool> {
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "delete from realtime.change_tables where schema_name = $1 and table_name = $2",
            &[&schema, &table],
        )
        .await?;
    let exists = tx
        .query_opt(
            "select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2",
            &[&schema, &table],
        )
        .await?
        .is_some();
    if exists {
        tx.batch_execute(&format!(
            "drop trigger if exists ferrobase_realtime on {}.{}",
            crate::db::quote_ident(schema),
            crate::db::quote_ident(table)
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(n > 0)
}

/// The rules that decide who may SELECT rows of a table: whether row level
/// security is on, and its SELECT (and ALL) policies.
#[derive(Debug, Clone)]
pub struct ReadPolicies {
    rls: bool,
    policies: Vec<ReadPolicy>,
    /// Primary-key columns: all an UPDATE event shows of an old row its
    /// subscriber could not read.
    pub key: Vec<String>,
}

#[derive(Debug, Clone)]
struct ReadPolicy {
    permissive: bool,
    roles: Vec<String>,
    /// The policy's USING expression, as Postgres deparses it.
    qual: String,
}

/// Reads a table's SELECT rules.
pub async fn read_policies(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> ApiResult<ReadPolicies> {
    let rls = client
        .query_opt(
            "select c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2",
            &[&schema, &table],
        )
        .await?
        .map(|r| r.try_get::<_, bool>(0))
        .transpose()?
        .unwrap_or(true);
    // Policies without a USING expression add nothing for SELECT, as in Postgres.
    let rows = client
        .query(
            "select p.permissive = 'PERMISSIVE', p.roles::text[], p.qual from pg_policies p \
             where p.schemaname = $1 and p.tablename = $2 and p.cmd in ('SELECT', 'ALL') \
             and p.qual is not null",
            &[&schema, &table],
        )
        .await?;
    let policies = rows
        .iter()
        .map(|r| {
            Ok(ReadPolicy {
                permissive: r.try_get(0)?,
                roles: r.try_get(1)?,
                qual: r.try_get(2)?,
            })
        })
        .collect::<ApiResult<_>>()?;
    let key = primary_key(client, schema, table).await?;
    Ok(ReadPolicies { rls, policies, key })
}

impl ReadPolicies {
    /// The SQL condition under which `role` sees a row: the permissive
    /// policies that apply to it OR-ed, the restrictive ones AND-ed, exactly
    /// as Postgres combines them (no permissive policy: no row).
    pub fn condition(&self, role: &str) -> String {
        if !self.rls {
            return "true".to_owned();
        }
        let applies = |p: &&ReadPolicy| p.roles.iter().any(|r| r == role || r == "public");
        let permissive: Vec<String> = self
            .policies
            .iter()
            .filter(applies)
            .filter(|p| p.permissive)
            .map(|p| format!("({})", p.qual))
            .collect();
        if permissive.is_empty() {
            return "false".to_owned();
        }
        let mut cond = format!("({})", permissive.join(" or "));
        for p in self
            .policies
            .iter()
            .filter(applies)
            .filter(|p| !p.permissive)
        {
            cond.push_str(&format!(" and ({})", p.qual));
        }
        cond
    }
}

/// Whether `role` with `claims` may SELECT each of `records` (rows of
/// `schema.table` as captured by the change trigger): the table's SELECT
/// policies ([`ReadPolicies::condition`]) are evaluated on the captured rows
/// themselves, as that role, so the answer does not depend on what happened
/// to the row since (a deleted row is judged like any other). One query for
/// every subscriber sharing these claims; an UPDATE asks about its new and
/// its old row at once.
pub async fn rows_visible(
    client: &mut tokio_postgres::Client,
    role: &str,
    claims: &str,
    (schema, table): (&str, &str),
    condition: &str,
    records: &[Value],
) -> ApiResult<Vec<bool>> {
    let target = format!(
        "{}.{}",
        crate::db::quote_ident(schema),
        crate::db::quote_ident(table)
    );
    let tx = client.transaction().await?;
    tx.query_typed(
        "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
        &[(&role, Type::TEXT), (&claims, Type::TEXT)],
    )
    .await?;
    // The alias is the table's name, so policies that qualify their columns
    // with it (`todos.owner`) read the captured row.
    let sql = format!(
        "select has_table_privilege($2::text, 'SELECT') and exists(select 1 from \
         jsonb_populate_record(null::{target}, u.r) as {} where {condition}) \
         from unnest($1::jsonb[]) with ordinality u(r, n) order by u.n",
        crate::db::quote_ident(table)
    );
    let visible = tx.query(&sql, &[&records, &target]).await;
    let _ = tx.rollback().await;
    visible?
        .iter()
        .map(|r| r.try_get(0).map_err(ApiError::from))
        .collect()
}

// ---- channel administration -----------------------------------------------

/// Every channel definition.
pub async fn list_channels(client: &tokio_postgres::Client) -> ApiResult<Vec<ChannelDef>> {
    let rows = client
        .query(
            &format!("select {CHANNEL_COLUMNS} from realtime.channels order by pattern"),
            &[],
        )
        .await?;
    rows.iter().map(channel_row).collect()
}

/// One channel definition.
pub async fn get_channel(
    client: &tokio_postgres::Client,
    id: uuid::Uuid,
) -> ApiResult<Option<ChannelDef>> {
    let row = client
        .query_opt(
            &format!("select {CHANNEL_COLUMNS} from realtime.channels where id = $1"),
            &[&id],
        )
        .await?;
    row.as_ref().map(channel_row).transpose()
}

/// Fields of a new or changed channel.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    /// LIKE pattern, e.g. `room:%` (required on create).
    pub pattern: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Default false (private: RLS decides).
    pub public: Option<bool>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Default 24.
    pub retention_hours: Option<i32>,
}

fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

fn check_input(input: &ChannelInput) -> ApiResult<()> {
    if let Some(p) = &input.pattern {
        super::channel::check_pattern(p)
            .map_err(|e| ApiError::bad_request("invalid_pattern", e.to_string()))?;
    }
    if let Some(h) = input.retention_hours
        && !(0..=8760).contains(&h)
    {
        return Err(ApiError::bad_request(
            "invalid_retention",
            "retention_hours must be between 0 and 8760.",
        ));
    }
    Ok(())
}

/// Creates a channel definition.
pub async fn create_channel(
    client: &tokio_postgres::Client,
    input: &ChannelInput,
) -> ApiResult<ChannelDef> {
    check_input(input)?;
    let Some(pattern) = &input.pattern else {
        return Err(ApiError::bad_request(
            "invalid_pattern",
            "pattern is required.",
        ));
    };
    let sql = format!(
        "insert into realtime.channels (pattern, description, public, enabled, retention_hours) \
         values ($1, $2, coalesce($3, false), coalesce($4, true), coalesce($5, 24)) returning {CHANNEL_COLUMNS}"
    );
    match client
        .query_one(
            &sql,
            &[
                pattern,
                &input.description,
                &input.public,
                &input.enabled,
                &input.retention_hours,
            ],
        )
        .await
    {
        Ok(row) => channel_row(&row),
        Err(e) if unique_violation(&e) => Err(ApiError::conflict(
            "channel_exists",
            format!("A channel with pattern {pattern:?} already exists."),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Changes a channel definition; `None` when it does not exist.
pub async fn update_channel(
    client: &tokio_postgres::Client,
    id: uuid::Uuid,
    input: &ChannelInput,
) -> ApiResult<Option<ChannelDef>> {
    check_input(input)?;
    let sql = format!(
        "update realtime.channels set pattern = coalesce($2, pattern), \
         description = coalesce($3, description), public = coalesce($4, public), \
         enabled = coalesce($5, enabled), retention_hours = coalesce($6, retention_hours), \
         updated_at = now() where id = $1 returning {CHANNEL_COLUMNS}"
    );
    match client
        .query_opt(
            &sql,
            &[
                &id,
                &input.pattern,
                &input.description,
                &input.public,
                &input.enabled,
                &input.retention_hours,
            ],
        )
        .await
    {
        Ok(row) => row.as_ref().map(channel_row).transpose(),
        Err(e) if unique_violation(&e) => Err(ApiError::conflict(
            "channel_exists",
            "Another channel already has this pattern.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a channel definition; false when it did not exist.
pub async fn delete_channel(client: &tokio_postgres::Client, id: uuid::Uuid) -> ApiResult<bool> {
    Ok(client
        .execute("delete from realtime.channels where id = $1", &[&id])
        .await?
        > 0)
}
