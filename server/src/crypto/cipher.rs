//! AES-256-GCM encryption of secrets stored in the control plane.
//!
//! Format: `v1.` + base64url(nonce ‖ ciphertext ‖ tag). The caller passes a
//! *context* string (for example `project:<id>:db_conn`) that is bound as
//! associated data, so a ciphertext copied into another row or column fails
//! to decrypt instead of silently yielding the wrong secret.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Why a key or a ciphertext was refused.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The configured key is not 32 bytes of base64 or hex.
    #[error("the encryption key must be 32 bytes, given as base64 or 64 hex characters")]
    BadKey,
    /// The ciphertext is malformed, was made with another key, or belongs to another context.
    #[error("a stored secret could not be decrypted (wrong FERROBASE_ENCRYPTION_KEY?)")]
    Decrypt,
}

/// Encrypts and decrypts secrets under the platform encryption key.
pub struct SecretBox {
    key: LessSafeKey,
    /// HMAC key for [`SecretBox::fingerprint`], derived from the encryption
    /// key (never the same key used for two purposes).
    mac: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Parses a 32-byte key given as base64 (standard or URL-safe) or 64 hex characters.
    pub fn from_key_text(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| CryptoError::BadKey)?
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|_| CryptoError::BadKey)?
        };
        Self::from_bytes(&bytes)
    }

    /// Builds a box from 32 raw key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::BadKey)?;
        let root = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes);
        let derived = aws_lc_rs::hmac::sign(&root, b"ferrobase/fingerprint/v1");
        Ok(Self {
            key: LessSafeKey::new(unbound),
            mac: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, derived.as_ref()),
        })
    }

    /// A fresh random key, as base64 text suitable for `FERROBASE_ENCRYPTION_KEY`.
    pub fn generate_key_text() -> String {
        STANDARD.encode(super::random_bytes(32))
    }

    /// A keyed fingerprint (hex HMAC-SHA256) of `data` in `context`: equal
    /// secrets have equal fingerprints, which can be stored and compared in
    /// the clear without revealing or allowing offline guessing of the secret.
    pub fn fingerprint(&self, context: &str, data: &[u8]) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.mac);
        ctx.update(context.as_bytes());
        ctx.update(&[0]);
        ctx.update(data);
        ctx.sign()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Encrypts `plaintext`, binding it to `context`.
    pub fn encrypt(&self, context: &str, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = super::random_bytes(NONCE_LEN)
            .try_into()
            .unwrap_or([0; NONCE_LEN]);
        let mut buf = plaintext.to_vec();
        // Sealing only fails when the input exceeds AES-GCM's ~64 GiB limit.
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .expect("secret too large to encrypt");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        format!("v1.{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Encrypts a UTF-8 string.
    pub fn encrypt_str(&self, context: &str, plaintext: &str) -> String {
        self.encrypt(context, plaintext.as_bytes())
    }

    /// Decrypts what [`SecretBox::encrypt`] produced for the same `context`.
    pub fn decrypt(&self, context: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let body = sealed.strip_prefix("v1.").ok_or(CryptoError::Decrypt)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Decrypt)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(plain.to_vec())
    }

    /// Decrypts a UTF-8 string.
    pub fn decrypt_str(&self, context: &str, sealed: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.decrypt(context, sealed)?).map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed() -> SecretBox {
        SecretBox::from_key_text(&SecretBox::generate_key_text()).unwrap()
    }

    #[test]
    fn round_trips_and_binds_context() {
        let b = boxed();
        let sealed = b.encrypt_str("project:1:key", "s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(b.decrypt_str("project:1:key", &sealed).unwrap(), "s3cret");
        assert!(b.decrypt_str("project:2:key", &sealed).is_err());
        // Two encryptions of the same secret differ (random nonce).
        assert_ne!(sealed, b.encrypt_str("project:1:key", "s3cret"));
    }

    #[test]
    fn other_key_and_tampering_fail() {
        let (a, b) = (boxed(), boxed());
        let sealed = a.encrypt_str("c", "x");
        assert!(b.decrypt_str("c", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(a.decrypt_str("c", &tampered).is_err());
        assert!(a.decrypt_str("c", "garbage").is_err());
        assert!(a.decrypt_str("c", "v1.").is_err());
    }

    #[test]
    fn key_formats() {
        assert!(SecretBox::from_key_text(&"ab".repeat(32)).is_ok());
        assert!(SecretBox::from_key_text("c2hvcnQ=").is_err());
        assert!(SecretBox::from_key_text("not a key at all!").is_err());
    }
}
