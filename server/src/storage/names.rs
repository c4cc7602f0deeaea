//! Bucket ids and object names, parsed at the edge (parse, don't validate).
//!
//! Object names are keys in a metadata table, never file-system paths (bytes
//! are stored under generated keys, see [`super::backend`]), but they are
//! still refused when they look like traversal or could confuse clients and
//! tools: `..`/`.` or empty segments, absolute paths, backslashes, control
//! characters, and any of those hidden behind percent-encoding.

use super::StorageError;

/// Longest object name, in bytes (as in Supabase Storage and S3).
pub const MAX_NAME_BYTES: usize = 1024;

/// Longest bucket id, in characters.
pub const MAX_BUCKET_CHARS: usize = 100;

/// Bucket ids that would be shadowed by routes (`/object/list/…`, `/object/sign/…`).
const RESERVED_BUCKETS: &[&str] = &[
    "list",
    "move",
    "copy",
    "sign",
    "upload",
    "public",
    "authenticated",
    "info",
    "render",
];

/// A valid bucket id: 1–100 of ASCII letters, digits, `_`, `-` and `.`, not
/// starting with `.`, not a reserved route word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketId(String);

impl BucketId {
    /// Parses a bucket id.
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        let ok = !s.is_empty()
            && s.chars().count() <= MAX_BUCKET_CHARS
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !s.starts_with('.')
            && !RESERVED_BUCKETS.contains(&s);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(StorageError::InvalidBucketName(
                s.chars().take(120).collect(),
            ))
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid object name: `/`-separated non-empty segments, at most
/// [`MAX_NAME_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName(String);

impl ObjectName {
    /// Parses an object name (already percent-decoded once by the router).
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        check_name(s)?;
        // A second decoding must not reveal anything the first would refuse
        // (`%2e%2e`, `%2F`, `%00`, `%5C` …): tools that decode again must
        // never see a traversal.
        if s.contains('%') {
            let decoded = percent_encoding::percent_decode_str(s).decode_utf8_lossy();
            if decoded != s {
                check_name(&decoded)?;
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// The name text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_name(s: &str) -> Result<(), StorageError> {
    let bad = |why: &str| {
        Err(StorageError::InvalidKey(format!(
            "Invalid object name: {why}."
        )))
    };
    if s.is_empty() {
        return bad("it is empty");
    }
    if s.len() > MAX_NAME_BYTES {
        return bad("it is longer than 1024 bytes");
    }
    if s.starts_with('/') {
        return bad("it must not start with '/'");
    }
    if s.contains('\\') {
        return bad("it must not contain backslashes");
    }
    if s.chars().any(char::is_control) {
        return bad("it must not contain control characters");
    }
    for segment in s.split('/') {
        match segment {
            "" => return bad("it must not contain empty segments ('//' or a trailing '/')"),
            "." | ".." => return bad("'.' and '..' segments are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `mime` is allowed by `allowed` (`None` or empty: everything).
/// Patterns are exact types or `type/*`; parameters (`; charset=…`) and
/// case are ignored.
pub fn mime_allowed(allowed: Option<&[String]>, mime: &str) -> bool {
    let Some(allowed) = allowed.filter(|a| !a.is_empty()) else {
        return true;
    };
    let mime = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim().to_ascii_lowercase();
        if pattern == "*/*" || pattern == "*" {
            return true;
        }
        match pattern.strip_suffix("/*") {
            Some(kind) => mime.split('/').next() == Some(kind) && mime.contains('/'),
            None => pattern == mime,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names() {
        for ok in [
            "a",
            "folder/file.txt",
            "with space/ünïcode 🎉.png",
            "a..b/c",
            "%41",
            "...",
        ] {
            assert!(ObjectName::parse(ok).is_ok(), "{ok:?} should be accepted");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "..\\x",
            "a\0b",
            "a\nb",
            "%2e%2e/x",
            "a/%2E%2E",
            "a%2F..%2Fb",
            "%00",
            "%5c",
            "%2fabs",
        ] {
            assert!(ObjectName::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(ObjectName::parse(&"x".repeat(1024)).is_ok());
        assert!(ObjectName::parse(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn bucket_ids() {
        for ok in ["avatars", "my-bucket_1", "Photos.v2"] {
            assert!(BucketId::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "list", "public", "x\0", "é"] {
            assert!(BucketId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(BucketId::parse(&"b".repeat(101)).is_err());
    }

    #[test]
    fn mime_patterns() {
        let allowed = vec!["image/*".to_owned(), "text/plain".to_owned()];
        assert!(mime_allowed(Some(&allowed), "image/png"));
        assert!(mime_allowed(Some(&allowed), "IMAGE/JPEG"));
        assert!(mime_allowed(Some(&allowed), "text/plain; charset=utf-8"));
        assert!(!mime_allowed(Some(&allowed), "text/html"));
        assert!(!mime_allowed(Some(&allowed), "image"));
        assert!(!mime_allowed(Some(&allowed), "application/x-image/png"));
        assert!(mime_allowed(None, "anything/else"));
        assert!(mime_allowed(Some(&[]), "anything/else"));
    }
}
