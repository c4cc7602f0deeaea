//! SMTP delivery of auth mail (lettre on tokio + rustls).
//!
//! The server URL follows lettre's format: `smtp://host:25` (plain),
//! `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`
//! (implicit TLS). Each mail opens its own connection: auth mail is rare
//! enough that a pool is not worth its idle connections.
//!
//! A project's own SMTP server (set by its admin) goes through the SSRF guard
//! ([`crate::outbound`]): its host is resolved, every address checked, and
//! the connection made to a checked address (never to the name again, so DNS
//! cannot rebind it), with TLS still verified against the name. The
//! platform's `FERROBASE_SMTP_URL` is the operator's and is used as given.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::mail::Rendered;
use crate::outbound::OutboundPolicy;

/// A transport builder for `url` that connects to a checked address of its
/// host, with TLS (if any) verified against the host name.
async fn pinned(
    policy: &OutboundPolicy,
    url: &str,
) -> Result<lettre::transport::smtp::AsyncSmtpTransportBuilder, String> {
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let invalid = || "the SMTP URL is not valid".to_owned();
    let parsed = url::Url::parse(url).map_err(|_| invalid())?;
    let host = parsed.host_str().ok_or_else(invalid)?.to_owned();
    let tls = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let port = parsed
        .port()
        .unwrap_or(match (parsed.scheme(), tls.as_deref()) {
            ("smtps", _) => 465,
            ("smtp", Some(_)) => 587,
            _ => 25,
        });
    let addrs = policy
        .resolve(host.trim_matches(['[', ']']), port)
        .await
        .map_err(|e| format!("the SMTP server is not allowed: {e}"))?;
    let ip = addrs
        .first()
        .map(std::net::SocketAddr::ip)
        .ok_or_else(invalid)?;
    let mut at_ip = parsed.clone();
    at_ip.set_ip_host(ip).map_err(|()| invalid())?;
    let builder =
        AsyncSmtpTransport::<Tokio1Executor>::from_url(at_ip.as_str()).map_err(|_| invalid())?;
    let params =
        || TlsParameters::new(host.trim_matches(['[', ']']).to_owned()).map_err(|e| e.to_string());
    Ok(match (parsed.scheme(), tls.as_deref()) {
        ("smtps", _) => builder.tls(Tls::Wrapper(params()?)),
        ("smtp", Some("required")) => builder.tls(Tls::Required(params()?)),
        ("smtp", Some("opportunistic")) => builder.tls(Tls::Opportunistic(params()?)),
        _ => builder,
    })
}

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Checks an SMTP URL and a sender address (for the admin API).
pub fn validate(url: &str, from: Option<&str>) -> Result<(), String> {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|_| "the SMTP URL is not valid (smtp://, smtps://, ?tls=required)".to_owned())?;
    if let Some(from) = from {
        from.parse::<Mailbox>()
            .map_err(|e| format!("invalid sender address: {e}"))?;
    }
    Ok(())
}

/// Sends `mail` to `to` through the SMTP server at `url`, through the SSRF
/// guard when `guard` is given. The error is a sentence for logs (it never
/// contains the URL's credentials).
pub async fn send(
    url: &str,
    guard: Option<&OutboundPolicy>,
    from: &str,
    to: &str,
    mail: &Rendered,
) -> Result<(), String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("invalid sender address: {e}"))?;
    let to: Mailbox = to
        .parse()
        .map_err(|e| format!("invalid recipient address: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|e| format!("could not build the message: {e}"))?;
    let builder = match guard {
        None => AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| "the SMTP URL is not valid".to_owned())?,
        Some(policy) => pinned(policy, url).await?,
    };
    let transport = builder.timeout(Some(TIMEOUT)).build();
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP delivery failed: {e}"))
}
