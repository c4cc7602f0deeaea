//! Standard Webhooks signing (<https://www.standardwebhooks.com>) and
//! `Retry-After` parsing. The HMAC itself is the `standardwebhooks` crate's (the
//! reference implementation's Rust port); this module only chooses secrets,
//! joins signatures during a rotation, and reads `Retry-After`.

use std::time::Duration;

use base64::Engine as _;

/// Prefix of every signing secret, as Standard Webhooks recommends.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` + base64 of 24 random bytes.
pub fn generate_secret() -> String {
    let bytes = crate::crypto::random_bytes(24);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The `webhook-signature` header value: `v1,<sig>` for each secret, space
/// separated (the current secret first, then the previous one during a
/// rotation's overlap). Receivers accept the message when any one matches.
pub fn signature_header(
    secrets: &[&str],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignError> {
    let mut out = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let hook = standardwebhooks::Webhook::new(secret).map_err(|_| SignError)?;
        out.push(hook.sign(msg_id, timestamp, body).map_err(|_| SignError)?);
    }
    Ok(out.join(" "))
}

/// A secret that is not `whsec_` + base64, or a body that is not UTF-8.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("cannot sign: malformed secret or non-UTF-8 body")]
pub struct SignError;

/// The longest `Retry-After` honoured (a receiver cannot park a delivery forever).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Reads `Retry-After`: delay-seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    let d = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default()
    };
    Some(d.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_base64_of_24_bytes() {
        let s = generate_secret();
        let raw = s.strip_prefix(SECRET_PREFIX).expect("prefix");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .expect("base64");
        assert_eq!(bytes.len(), 24);
        assert_ne!(s, generate_secret());
    }

    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        // The vector from the Standard Webhooks spec's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = signature_header(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
            .expect("sign");
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_sends_both_signatures() {
        let a = generate_secret();
        let b = generate_secret();
        let both = signature_header(&[&a, &b], "msg_1", 1, b"{}").expect("sign");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[1],
            signature_header(&[&b], "msg_1", 1, b"{}").expect("sign")
        );
        assert!(signature_header(&["whsec_***"], "m", 1, b"{}").is_err());
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("now")
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
