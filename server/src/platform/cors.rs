//! Which browser origins may call a project's APIs (CORS).
//!
//! A project stores its own list (`projects.cors_origins`, set through
//! `PATCH /platform/v1/projects/{ref}`); without one, the server-wide
//! `FERROBASE_CORS_ORIGINS` applies. An entry is `*` (any origin, alone),
//! an exact origin (`https://app.example.com`, `http://localhost:5173`) or a
//! one-label wildcard (`https://*.example.com` matches
//! `https://pr-12.example.com`, not `https://a.b.example.com` nor
//! `https://example.com`). Entries are normalised the way browsers send the
//! `Origin` header (lowercase, punycode, no default port, no path), so a
//! stored entry matches by plain comparison.
//!
//! The enforcement is in `app::middleware::cors`, which reads the list of the
//! project a request is routed to through the project registry (the same
//! cached lookup the data plane uses, invalidated across nodes via Postgres).

/// Most entries a project's list may have.
pub const MAX_ORIGINS: usize = 100;
/// Longest accepted entry, in bytes.
const MAX_ENTRY_LEN: usize = 255;

/// A parsed list of allowed origins, ready to match `Origin` headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins {
    any: bool,
    exact: Vec<String>,
    /// `(scheme "://", "." + rest of host[:port])` of wildcard entries.
    subdomains: Vec<(String, String)>,
}

impl CorsOrigins {
    /// The matcher of a list of entries already normalised by [`validate`]
    /// (as stored); an entry that is not is ignored.
    pub fn from_normalized(entries: &[String]) -> Self {
        let mut out = Self::default();
        for e in entries {
            out.add(e);
        }
        out
    }

    /// The server-wide list from `FERROBASE_CORS_ORIGINS` (`*` or comma
    /// separated origins). Entries that are not origins are skipped with a
    /// warning, so a typo never opens more than was listed.
    pub fn from_env(value: &str) -> Self {
        let mut out = Self::default();
        for raw in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match normalize(raw) {
                Ok(e) => out.add(&e),
                Err(reason) => {
                    tracing::warn!(entry = raw, %reason, "FERROBASE_CORS_ORIGINS: entry ignored");
                }
            }
        }
        out
    }

    fn add(&mut self, entry: &str) {
        if entry == "*" {
            self.any = true;
        } else if let Some((scheme, rest)) = entry.split_once("://*.") {
            self.subdomains
                .push((format!("{scheme}://"), format!(".{rest}")));
        } else if entry.contains("://") {
            self.exact.push(entry.to_owned());
        }
    }

    /// Whether a request with this `Origin` header may read the answer.
    pub fn allows(&self, origin: &[u8]) -> bool {
        if self.any {
            return true;
        }
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        let origin = origin.to_ascii_lowercase();
        if self.exact.contains(&origin) {
            return true;
        }
        self.subdomains.iter().any(|(scheme, suffix)| {
            origin
                .strip_prefix(scheme.as_str())
                .and_then(|host| host.strip_suffix(suffix.as_str()))
                .is_some_and(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        })
    }
}

/// Checks and normalises a project's list: at most [`MAX_ORIGINS`] entries,
/// each `*` (then alone), an `http(s)` origin or a one-label wildcard origin.
/// Duplicates are dropped. The error says which entry is wrong and why.
pub fn validate(entries: &[String]) -> Result<Vec<String>, String> {
    if entries.len() > MAX_ORIGINS {
        return Err(format!(
            "cors_origins lists {} entries; at most {MAX_ORIGINS} are allowed.",
            entries.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(entries.len());
    for raw in entries {
        let e = normalize(raw.trim()).map_err(|reason| format!("CORS origin {raw:?}: {reason}"))?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    if out.len() > 1 && out.iter().any(|e| e == "*") {
        return Err("CORS origin \"*\" allows every origin: list it alone.".into());
    }
    Ok(out)
}

/// One entry in the form browsers send `Origin` in (see the module docs).
fn normalize(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("empty".into());
    }
    if raw.len() > MAX_ENTRY_LEN {
        return Err(format!("longer than {MAX_ENTRY_LEN} characters"));
    }
    if raw == "*" {
        return Ok("*".into());
    }
    if raw.eq_ignore_ascii_case("null") {
        return Err("the \"null\" origin (sandboxed frames, files) cannot be allowed".into());
    }
    // A wildcard is checked as the origin with a placeholder label.
    const PLACEHOLDER: &str = "wildcard-placeholder";
    let (text, wildcard) = match raw.split_once("://*.") {
        Some((scheme, rest)) => (format!("{scheme}://{PLACEHOLDER}.{rest}"), true),
        None => (raw.to_owned(), false),
    };
    if text.contains('*') {
        return Err("a wildcard may only be the first label, as in https://*.example.com".into());
    }
    let url = url::Url::parse(&text).map_err(|e| format!("not an origin ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".into());
    }
    let Some(host) = url.host_str() else {
        return Err("no host".into());
    };
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(
            "an origin is scheme://host[:port], without user, path, query or fragment".into(),
        );
    }
    let origin = url.origin().ascii_serialization();
    if !wildcard {
        return Ok(origin);
    }
    // At least two labels under the wildcard: `*.com` would be any site.
    let under = host
        .strip_prefix(PLACEHOLDER)
        .and_then(|h| h.strip_prefix('.'))
        .unwrap_or_default();
    if !under.contains('.')
        || url
            .host()
            .is_some_and(|h| !matches!(h, url::Host::Domain(_)))
    {
        return Err("a wildcard needs a domain under it, as in https://*.example.com".into());
    }
    Ok(origin.replacen(PLACEHOLDER, "*", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn normalises_entries() {
        let got = validate(&list(&[
            "https://App.Example.com/",
            "http://localhost:5173",
            "https://app.example.com:443",
            "https://*.Preview.example.com",
            "https://bücher.example",
        ]))
        .expect("valid");
        assert_eq!(
            got,
            list(&[
                "https://app.example.com",
                "http://localhost:5173",
                "https://*.preview.example.com",
                "https://xn--bcher-kva.example",
            ])
        );
        assert_eq!(validate(&list(&["*"])).expect("any"), list(&["*"]));
        assert_eq!(validate(&[]).expect("none"), Vec::<String>::new());
    }

    #[test]
    fn refuses_what_is_not_an_origin() {
        for bad in [
            "",
            "null",
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://example.com?q=1",
            "https://user:pw@example.com",
            "https://*.com",
            "https://a.*.example.com",
            "https://*example.com",
            "https://*.127.0.0.1",
            "javascript:alert(1)",
            "https://exa mple.com",
            "'; drop table projects; --",
        ] {
            assert!(validate(&list(&[bad])).is_err(), "{bad:?} was accepted");
        }
        assert!(validate(&list(&["*", "https://a.example"])).is_err());
        let long = format!("https://{}.example", "a".repeat(300));
        assert!(validate(&[long]).is_err());
        let many: Vec<String> = (0..=MAX_ORIGINS)
            .map(|i| format!("https://a{i}.example"))
            .collect();
        assert!(validate(&many).is_err());
    }

    #[test]
    fn matches_origins() {
        let o = CorsOrigins::from_normalized(&list(&[
            "https://app.example.com",
            "https://*.preview.example.com",
        ]));
        assert!(o.allows(b"https://app.example.com"));
        assert!(o.allows(b"https://APP.example.com"));
        assert!(o.allows(b"https://pr-7.preview.example.com"));
        for refused in [
            "http://app.example.com",
            "https://app.example.com.evil.test",
            "https://evil.test",
            "https://preview.example.com",
            "https://a.b.preview.example.com",
            "https://x.preview.example.com:8443",
            "null",
        ] {
            assert!(!o.allows(refused.as_bytes()), "{refused}");
        }
        assert!(!CorsOrigins::default().allows(b"https://a.example"));
        assert!(CorsOrigins::from_env("*").allows(b"https://any.example"));
        let env = CorsOrigins::from_env(" https://a.example , not an origin,");
        assert!(env.allows(b"https://a.example"));
        assert!(!env.allows(b"https://b.example"));
    }
}
