//! ES256 signing keys and strict JWT verification.
//!
//! Verification is deliberately narrow: the header must say `ES256` (so
//! `alg: none`, HMAC and RSA tokens are refused before any signature work,
//! which rules out algorithm-confusion attacks), the `kid` must name one of
//! the keys given, and `exp` is required.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a token was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts with a JSON header.
    #[error("the token is malformed")]
    Malformed,
    /// The header names an algorithm other than ES256.
    #[error("tokens signed with {0} are not accepted; expected ES256")]
    UnsupportedAlgorithm(String),
    /// The `kid` matches none of the keys (for example a token of another project).
    #[error("the token was not signed by a key of this project")]
    UnknownKey,
    /// `exp` is in the past.
    #[error("the token has expired")]
    Expired,
    /// Signature check or claim validation failed.
    #[error("the token signature or claims are invalid")]
    Invalid,
    /// A key could not be generated or parsed.
    #[error("signing key error: {0}")]
    Key(String),
}

/// A P-256 key pair with its key id, usable to sign and verify ES256 JWTs.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key with a random key id.
    pub fn generate() -> Result<Self, JwtError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| JwtError::Key("could not generate a P-256 key".into()))?;
        Self::from_pkcs8(super::random_hex(8), doc.as_ref())
    }

    /// Loads a key from its PKCS#8 DER encoding.
    pub fn from_pkcs8(kid: String, der: &[u8]) -> Result<Self, JwtError> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| JwtError::Key("not a P-256 PKCS#8 key".into()))?;
        let encoding = EncodingKey::from_ec_der(der);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|e| JwtError::Key(e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(Self {
            kid,
            pkcs8: der.to_vec(),
            encoding,
            decoding,
            jwk,
        })
    }

    /// The key id, sent as `kid` in token headers and JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key (PKCS#8 DER). Store it only encrypted.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK (with `kid`, `use: sig`, `alg: ES256`).
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` as an ES256 JWT carrying this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, JwtError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| JwtError::Key(e.to_string()))
    }
}

/// Verifies `token` against `keys` and returns its claims.
fn verify<T: DeserializeOwned>(keys: &[SigningKey], token: &str) -> Result<T, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    if header.alg != Algorithm::ES256 {
        return Err(JwtError::UnsupportedAlgorithm(format!("{:?}", header.alg)));
    }
    let kid = header.kid.ok_or(JwtError::UnknownKey)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or(JwtError::UnknownKey)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.leeway = 30;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => JwtError::Expired,
            _ => JwtError::Invalid,
        })
}

/// Verifies an HS256 token against a shared secret (a project's optional
/// legacy secret). Only HS256 is accepted here, and `exp` is required.
pub fn verify_hs256<T: DeserializeOwned>(secret: &[u8], token: &str) -> Result<T, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    if header.alg != Algorithm::HS256 {
        return Err(JwtError::UnsupportedAlgorithm(format!("{:?}", header.alg)));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 30;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<T>(token, &DecodingKey::from_secret(secret), &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => JwtError::Expired,
            _ => JwtError::Invalid,
        })
}

/// The `alg` a token's header names, if the header parses.
pub fn token_algorithm(token: &str) -> Option<Algorithm> {
    jsonwebtoken::decode_header(token).ok().map(|h| h.alg)
}

impl SigningKey {
    /// Verifies `token` against any of `keys` (chosen by the token's `kid`).
    pub fn verify_any<T: DeserializeOwned>(
        keys: &[SigningKey],
        token: &str,
    ) -> Result<T, JwtError> {
        verify(keys, token)
    }

    /// Verifies `token` against this key only.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<T, JwtError> {
        verify(std::slice::from_ref(self), token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    #[test]
    fn sign_verify_and_reload() {
        let key = SigningKey::generate().unwrap();
        let token = key
            .sign(&json!({"role": "anon", "exp": crate::crypto::unix_now() + 60}))
            .unwrap();
        let claims: Value = key.verify(&token).unwrap();
        assert_eq!(claims["role"], "anon");
        let again = SigningKey::from_pkcs8(key.kid().into(), key.pkcs8()).unwrap();
        assert_eq!(again.verify::<Value>(&token).unwrap()["role"], "anon");
        assert_eq!(again.public_jwk().common.key_id.as_deref(), Some(key.kid()));
    }

    #[test]
    fn refuses_other_keys_expiry_and_tampering() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        let token = a
            .sign(&json!({"exp": crate::crypto::unix_now() + 60}))
            .unwrap();
        assert_eq!(b.verify::<Value>(&token), Err(JwtError::UnknownKey));
        // Same kid, different key material: signature check fails.
        let impostor = SigningKey::from_pkcs8(a.kid().into(), b.pkcs8()).unwrap();
        assert_eq!(impostor.verify::<Value>(&token), Err(JwtError::Invalid));
        let expired = a
            .sign(&json!({"exp": crate::crypto::unix_now() - 3600}))
            .unwrap();
        assert_eq!(a.verify::<Value>(&expired), Err(JwtError::Expired));
        let no_exp = a.sign(&json!({"role": "x"})).unwrap();
        assert_eq!(a.verify::<Value>(&no_exp), Err(JwtError::Invalid));
        assert_eq!(a.verify::<Value>("a.b.c"), Err(JwtError::Malformed));
    }

    #[test]
    fn refuses_alg_none_and_hmac_confusion() {
        let key = SigningKey::generate().unwrap();
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let payload = enc(json!({"role": "service_role", "exp": crate::crypto::unix_now() + 60}));
        let none = format!(
            "{}.{payload}.",
            enc(json!({"alg": "none", "kid": key.kid()}))
        );
        assert!(matches!(
            key.verify::<Value>(&none),
            Err(JwtError::Malformed | JwtError::UnsupportedAlgorithm(_))
        ));
        // HS256 signed with the public key as secret (classic confusion attack).
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid().into());
        let secret = serde_json::to_vec(key.public_jwk()).unwrap();
        let hs = jsonwebtoken::encode(
            &header,
            &json!({"role": "service_role", "exp": crate::crypto::unix_now() + 60}),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert!(matches!(
            key.verify::<Value>(&hs),
            Err(JwtError::UnsupportedAlgorithm(_))
        ));
    }
}
