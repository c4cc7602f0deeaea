//! Auth mail: one-time tokens (links and codes), templates and delivery.
//!
//! - One-time tokens: a link token (24 random bytes) and a 6-digit code are
//!   issued together; only their SHA-256 hashes are stored. Issuing a new
//!   token of a type for an address replaces the previous one.
//! - Templates are MiniJinja (HTML auto-escaped), with GoTrue's variable names:
//!   `ConfirmationURL`, `Token`, `TokenHash`, `SiteURL`, `RedirectTo`, `Email`,
//!   `NewEmail`, `Data`. Projects override them in `auth.mail_templates`.
//! - Delivery: every mail is recorded in `auth.mail`. Without SMTP it is only
//!   recorded (`captured`: the embedded default, read through the admin API);
//!   with SMTP (`FERROBASE_SMTP_URL`) it is sent and recorded as `sent`. A
//!   send failure is returned to the caller as an error (500), which also
//!   rolls back the caller's transaction: no user is left half signed up.

use minijinja::Environment;
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{AuthError, AuthResult};
use super::session::hash_token;
use super::settings::AuthSettings;

/// The kinds of mail (also the template names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Confirm a sign-up.
    Confirmation,
    /// Reset a password.
    Recovery,
    /// Sign in by link or code.
    MagicLink,
    /// Accept an invitation.
    Invite,
    /// Confirm an email change (sent to both addresses).
    EmailChange,
}

impl Kind {
    /// Template name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Confirmation => "confirmation",
            Kind::Recovery => "recovery",
            Kind::MagicLink => "magic_link",
            Kind::Invite => "invite",
            Kind::EmailChange => "email_change",
        }
    }

    /// Parses a template name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "confirmation" => Kind::Confirmation,
            "recovery" => Kind::Recovery,
            "magic_link" => Kind::MagicLink,
            "invite" => Kind::Invite,
            "email_change" => Kind::EmailChange,
            _ => return None,
        })
    }

    fn defaults(self) -> (&'static str, &'static str) {
        match self {
            Kind::Confirmation => (
                "Confirm Your Signup",
                "<h2>Confirm your signup</h2>\n<p>Follow this link to confirm your user:</p>\n\
                 <p><a href=\"{{ ConfirmationURL }}\">Confirm your mail</a></p>\n<p>Or enter the code: {{ Token }}</p>",
            ),
            Kind::Recovery => (
                "Reset Your Password",
                "<h2>Reset Password</h2>\n<p>Follow this link to reset the password for your user:</p>\n\
                 <p><a href=\"{{ ConfirmationURL }}\">Reset Password</a></p>\n<p>Or enter the code: {{ Token }}</p>",
            ),
            Kind::MagicLink => (
                "Your Magic Link",
                "<h2>Magic Link</h2>\n<p>Follow this link to login:</p>\n\
                 <p><a href=\"{{ ConfirmationURL }}\">Log In</a></p>\n<p>Or enter the code: {{ Token }}</p>",
            ),
            Kind::Invite => (
                "You have been invited",
                "<h2>You have been invited</h2>\n<p>You have been invited to create a user on {{ SiteURL }}. \
                 Follow this link to accept the invite:</p>\n<p><a href=\"{{ ConfirmationURL }}\">Accept the invite</a></p>\n\
                 <p>Or enter the code: {{ Token }}</p>",
            ),
            Kind::EmailChange => (
                "Confirm Email Change",
                "<h2>Confirm Change of Email</h2>\n<p>Follow this link to confirm the update of your email \
                 from {{ Email }} to {{ NewEmail }}:</p>\n<p><a href=\"{{ ConfirmationURL }}\">Change Email</a></p>\n\
                 <p>Or enter the code: {{ Token }}</p>",
            ),
        }
    }
}

/// A link token and a code, as issued.
pub struct Issued {
    /// The link token (goes into `…/verify?token=…`).
    pub token: String,
    /// The 6-digit code.
    pub otp: String,
}

fn otp_hash(relates_to: &str, otp: &str) -> String {
    hash_token(&format!("{relates_to}:{otp}"))
}

/// Issues a one-time token of `token_type` for address `relates_to`,
/// replacing any previous one.
pub async fn issue(
    c: &impl GenericClient,
    settings: &AuthSettings,
    user_id: Option<Uuid>,
    token_type: &str,
    relates_to: &str,
    redirect_to: &str,
    flow: Option<Uuid>,
) -> AuthResult<Issued> {
    let token = crate::crypto::random_token(24);
    let b = crate::crypto::random_bytes(4);
    let otp = format!(
        "{:06}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % 1_000_000
    );
    c.execute(
        "delete from auth.one_time_tokens where relates_to = $1 and token_type = $2",
        &[&relates_to, &token_type],
    )
    .await?;
    let ttl = settings.mailer_otp_exp as f64;
    c.execute(
        "insert into auth.one_time_tokens (user_id, token_type, token_hash, otp_hash, relates_to, redirect_to, \
         expires_at, flow_state_id) values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8)",
        &[
            &user_id,
            &token_type,
            &hash_token(&token),
            &otp_hash(relates_to, &otp),
            &relates_to,
            &redirect_to,
            &ttl,
            &flow,
        ],
    )
    .await?;
    Ok(Issued { token, otp })
}

/// A one-time token that was found and consumed.
#[derive(Debug)]
pub struct Consumed {
    /// Its user.
    pub user_id: Option<Uuid>,
    /// Its type.
    pub token_type: String,
    /// The address it was sent to.
    pub relates_to: String,
    /// Where to send the browser afterwards.
    pub redirect_to: Option<String>,
    /// The PKCE flow it belongs to.
    pub flow_state_id: Option<Uuid>,
}

fn expired() -> AuthError {
    AuthError::forbidden("otp_expired", "Token has expired or is invalid")
}

/// Finds and deletes the token with link token `token` among `types`.
pub async fn consume_link(
    c: &impl GenericClient,
    token: &str,
    types: &[&str],
) -> AuthResult<Consumed> {
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    let row = c
        .query_opt(
            "delete from auth.one_time_tokens where token_hash = $1 and token_type = any($2) \
             returning user_id, token_type, relates_to, redirect_to, expires_at > now(), flow_state_id",
            &[&hash_token(token), &types],
        )
        .await?
        .ok_or_else(expired)?;
    consumed(&row)
}

/// Finds and deletes the token with code `otp` sent to `relates_to` among `types`.
pub async fn consume_otp(
    c: &impl GenericClient,
    relates_to: &str,
    otp: &str,
    types: &[&str],
) -> AuthResult<Consumed> {
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    let row = c
        .query_opt(
            "delete from auth.one_time_tokens where relates_to = $1 and otp_hash = $2 \
             and token_type = any($3) \
             returning user_id, token_type, relates_to, redirect_to, expires_at > now(), flow_state_id",
            &[&relates_to, &otp_hash(relates_to, otp.trim()), &types],
        )
        .await?
        .ok_or_else(expired)?;
    consumed(&row)
}

fn consumed(row: &tokio_postgres::Row) -> AuthResult<Consumed> {
    let live: bool = row.get(4);
    if !live {
        return Err(expired());
    }
    Ok(Consumed {
        user_id: row.get(0),
        token_type: row.get(1),
        relates_to: row.get(2),
        redirect_to: row.get(3),
        flow_state_id: row.get(5),
    })
}

/// A rendered mail.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// HTML body.
    pub html: String,
    /// Plain-text body.
    pub text: String,
}

/// Renders `kind` with `vars`, using the project's override when there is one.
pub async fn render(c: &impl GenericClient, kind: Kind, vars: &Value) -> AuthResult<Rendered> {
    let row = c
        .query_opt(
            "select subject, body_html, body_text from auth.mail_templates where kind = $1",
            &[&kind.name()],
        )
        .await?;
    let (default_subject, default_html) = kind.defaults();
    let (subject, html, text) = match &row {
        Some(r) => (
            r.get::<_, Option<String>>(0)
                .unwrap_or_else(|| default_subject.to_owned()),
            r.get::<_, Option<String>>(1)
                .unwrap_or_else(|| default_html.to_owned()),
            r.get::<_, Option<String>>(2),
        ),
        None => (default_subject.to_owned(), default_html.to_owned(), None),
    };
    let render_one = |name: &str, source: &str| -> AuthResult<String> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        env.add_template(name, source)
            .and_then(|()| env.get_template(name)?.render(vars))
            .map_err(|e| {
                AuthError::internal(&format!("mail template {name} failed to render: {e}"))
            })
    };
    let subject = render_one("subject.txt", &subject)?;
    let html = render_one("body.html", &html)?;
    let text = match text {
        Some(t) => render_one("body.txt", &t)?,
        None => html_to_text(&html),
    };
    Ok(Rendered {
        subject,
        html,
        text,
    })
}

/// Checks that a template compiles (for the admin API).
pub fn validate_template(source: &str) -> Result<(), String> {
    let mut env = Environment::new();
    env.add_template("t", source).map_err(|e| e.to_string())
}

/// A crude plain-text version of an HTML body: tags dropped, links kept.
fn html_to_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        let tag = &rest[start + 1..start + end];
        if let Some(href) = tag
            .strip_prefix("a href=\"")
            .and_then(|h| h.split('"').next())
        {
            out.push_str(&unescape(href));
            out.push(' ');
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    let out = unescape(&out);
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Decodes the HTML entities MiniJinja's escaping produces.
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Renders and delivers a mail (see the module docs); records it in `auth.mail`.
pub async fn deliver(
    c: &impl GenericClient,
    config: &crate::Config,
    settings: &AuthSettings,
    kind: Kind,
    to: &str,
    vars: Value,
) -> AuthResult<()> {
    let mail = render(c, kind, &vars).await?;
    // The project's own SMTP server first, then the server's.
    // A project's own server goes through the SSRF guard; the platform's is
    // the operator's.
    let guard = crate::outbound::OutboundPolicy::from_config(config);
    let smtp = match &settings.smtp {
        Some(s) => Some((
            s.url.as_str(),
            Some(&guard),
            s.from.as_deref().unwrap_or(&config.smtp_from),
        )),
        None => config
            .smtp_url
            .as_deref()
            .map(|u| (u, None, config.smtp_from.as_str())),
    };
    let (status, error) = match smtp {
        None => ("captured", None),
        Some((url, guard, from)) => match super::smtp::send(url, guard, from, to, &mail).await {
            Ok(()) => ("sent", None),
            Err(e) => ("failed", Some(e)),
        },
    };
    c.execute(
        "insert into auth.mail (kind, to_address, subject, body_html, body_text, status, error) \
         values ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &kind.name(),
            &to,
            &mail.subject,
            &mail.html,
            &mail.text,
            &status,
            &error,
        ],
    )
    .await?;
    if let Some(e) = error {
        tracing::warn!(error = %e, kind = kind.name(), "auth: sending mail failed");
        return Err(AuthError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_failure",
            format!("Error sending {} email", kind.name().replace('_', " ")),
        ));
    }
    Ok(())
}

/// The verification link of a token.
pub fn verify_url(project_url: &str, token: &str, kind: &str, redirect_to: &str) -> String {
    let mut url = format!("{project_url}/auth/v1/verify?token={token}&type={kind}");
    if !redirect_to.is_empty() {
        url.push_str("&redirect_to=");
        url.push_str(
            &url::form_urlencoded::byte_serialize(redirect_to.as_bytes()).collect::<String>(),
        );
    }
    url
}

/// Template variables of a mail.
pub fn vars(
    settings: &AuthSettings,
    confirmation_url: &str,
    issued: &Issued,
    email: &str,
    new_email: Option<&str>,
    redirect_to: &str,
    data: &Value,
) -> Value {
    json!({
        "ConfirmationURL": confirmation_url,
        "Token": issued.otp,
        "TokenHash": issued.token,
        "SiteURL": settings.site_url,
        "RedirectTo": redirect_to,
        "Email": email,
        "NewEmail": new_email.unwrap_or(""),
        "Data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_html() {
        let t = html_to_text(
            "<h2>Hi &lt;b&gt;</h2>\n<p><a href=\"http:&#x2f;&#x2f;x/v?a=1&amp;b=2\">Go</a></p>",
        );
        assert_eq!(t, "Hi <b>\nhttp://x/v?a=1&b=2 Go");
    }

    #[test]
    fn verify_urls() {
        assert_eq!(
            verify_url("http://h/p/x", "tok", "signup", "http://a/b?c=d"),
            "http://h/p/x/auth/v1/verify?token=tok&type=signup&redirect_to=http%3A%2F%2Fa%2Fb%3Fc%3Dd"
        );
    }
}
