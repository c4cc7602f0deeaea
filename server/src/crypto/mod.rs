//! Cryptography the platform relies on: secret encryption at rest
//! ([`SecretBox`], AES-256-GCM), signing keys and JWTs ([`SigningKey`],
//! ES256), password hashing ([`password`]) and random tokens.
//!
//! Everything is built on aws-lc-rs (already in the tree through
//! jsonwebtoken), argon2 and base64: no hand-rolled primitives.

mod cipher;
mod jwt;
pub mod password;

pub use cipher::{CryptoError, SecretBox};
pub use jwt::{JwtError, SigningKey, token_algorithm, verify_hs256};

use base64::Engine as _;

/// An `Authorization` header that is present but not `Bearer <token>`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Authorization header must be `Bearer <token>`")]
pub struct MalformedAuthorization;

/// The one parser of `Authorization: Bearer <token>` (scheme case-insensitive,
/// token trimmed). `Ok(None)` when the header is absent; an error when it is
/// present but not valid text, another scheme, or an empty token. Callers
/// that treat a malformed header as absent use `.ok().flatten()`.
pub fn bearer_token(headers: &http::HeaderMap) -> Result<Option<&str>, MalformedAuthorization> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| MalformedAuthorization)?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                Err(MalformedAuthorization)
            } else {
                Ok(Some(token))
            }
        }
        _ => Err(MalformedAuthorization),
    }
}

/// Seconds since the Unix epoch (token `iat`/`exp`); 0 if the clock is before 1970.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // Filling from the system RNG only fails if the OS has no entropy source,
    // which makes every other guarantee moot; abort loudly rather than go on.
    aws_lc_rs::rand::fill(&mut buf).expect("the system random number generator failed");
    buf
}

/// A random, URL-safe token carrying `n` bytes of entropy.
pub fn random_token(n: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// A random lowercase hex string carrying `n` bytes of entropy.
pub fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_token_parses_one_way() {
        let mut h = http::HeaderMap::new();
        assert!(matches!(bearer_token(&h), Ok(None)));
        for (value, want) in [
            ("Bearer abc", "abc"),
            ("bearer  abc ", "abc"),
            ("BEARER abc", "abc"),
        ] {
            h.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
            assert_eq!(bearer_token(&h).ok().flatten(), Some(want), "{value}");
        }
        for bad in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            h.insert(http::header::AUTHORIZATION, bad.parse().expect("header"));
            assert!(bearer_token(&h).is_err(), "{bad}");
        }
    }
}
