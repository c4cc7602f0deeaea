//! SMTP delivery of auth mail.

use super::mail::Rendered;

/// Sends `mail` to `to` through the SMTP server at `url`.
pub async fn send(url: &str, from: &str, to: &str, mail: &Rendered) -> Result<(), String> {
    let _ = (url, from, to, mail);
    Err("SMTP delivery is not available in this build".into())
}
