//! SMTP delivery of auth mail (lettre on tokio + rustls).
//!
//! The server URL follows lettre's format: `smtp://host:25` (plain),
//! `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`
//! (implicit TLS). Each mail opens its own connection: auth mail is rare
//! enough that a pool is not worth its idle connections.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::mail::Rendered;

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

/// Sends `mail` to `to` through the SMTP server at `url`. The error is a
/// sentence for logs (it never contains the URL's credentials).
pub async fn send(url: &str, from: &str, to: &str, mail: &Rendered) -> Result<(), String> {
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
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|_| "the SMTP URL is not valid".to_owned())?
        .timeout(Some(TIMEOUT))
        .build();
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP delivery failed: {e}"))
}
