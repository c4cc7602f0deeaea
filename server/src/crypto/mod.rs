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
