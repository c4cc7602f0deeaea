//! Password hashing with argon2id (PHC string format, default cost).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Hashes a password with argon2id and a random salt.
pub fn hash(password: &str) -> String {
    let salt_bytes = super::random_bytes(16);
    // 16 random bytes always encode to a valid salt.
    let salt = SaltString::encode_b64(&salt_bytes).expect("valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// Checks a password against a stored PHC hash. A malformed hash never verifies.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Hash of a fixed password, used to spend the same time when an account does
/// not exist, so response timing does not reveal which emails are registered.
pub fn dummy_verify(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("ferrobase-dummy-password"));
    let _ = verify(password, phc);
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_and_verify() {
        let h = super::hash("hunter2!");
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("hunter2!", &h));
        assert!(!super::verify("hunter3!", &h));
        assert!(!super::verify("hunter2!", "not-a-hash"));
    }
}
