//! Redirect URLs: where links in mail and OAuth flows may send a browser.
//!
//! A `redirect_to` is used only when it is on the project's `site_url` host or
//! matches an entry of `uri_allow_list`; otherwise `site_url` is used (as
//! GoTrue does). Patterns are globs where `*` matches within one host label or
//! path segment (it stops at `.` and `/`) and `**` matches anything, e.g.
//! `https://*.example.com/**` or `http://localhost:3000/*`.

use super::settings::AuthSettings;

/// Whether `pattern` matches `text`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p {
            [] => t.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=t.len()).any(|i| go(rest, &t[i..])),
            [b'*', rest @ ..] => {
                let mut i = 0;
                loop {
                    if go(rest, &t[i..]) {
                        return true;
                    }
                    if i >= t.len() || t[i] == b'.' || t[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            [c, rest @ ..] => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// Whether `url` is an allowed redirect target for the project.
pub fn is_allowed(settings: &AuthSettings, url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    if !matches!(parsed.scheme(), "http" | "https") && parsed.cannot_be_a_base() {
        return false;
    }
    if let Ok(site) = url::Url::parse(&settings.site_url)
        && site.origin() == parsed.origin()
        && parsed.scheme() != "null"
    {
        return true;
    }
    let trimmed = url.trim_end_matches('/');
    settings
        .uri_allow_list
        .iter()
        .any(|p| glob_match(p, url) || glob_match(p.trim_end_matches('/'), trimmed))
}

/// The redirect target to use: `requested` when allowed, else `site_url`.
pub fn resolve(settings: &AuthSettings, requested: Option<&str>) -> String {
    match requested.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) if is_allowed(settings, r) => r.to_owned(),
        _ => settings.site_url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "https://*.example.com/**",
            "https://app.example.com/a/b?x=1"
        ));
        assert!(!glob_match(
            "https://*.example.com/**",
            "https://evil.com/.example.com/"
        ));
        assert!(!glob_match(
            "https://*.example.com",
            "https://a.b.example.com"
        ));
        assert!(glob_match(
            "http://localhost:3000/*",
            "http://localhost:3000/cb"
        ));
        assert!(!glob_match(
            "http://localhost:3000/*",
            "http://localhost:3000/a/b"
        ));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn resolution() {
        let mut s = AuthSettings::defaults(&crate::Config::for_tests(
            "host=/x".into(),
            std::env::temp_dir(),
        ));
        s.site_url = "https://app.test".into();
        s.uri_allow_list = vec!["myapp://**".into(), "https://*.preview.test/**".into()];
        assert_eq!(
            resolve(&s, Some("https://app.test/welcome")),
            "https://app.test/welcome"
        );
        assert_eq!(
            resolve(&s, Some("https://pr-1.preview.test/x")),
            "https://pr-1.preview.test/x"
        );
        assert_eq!(resolve(&s, Some("myapp://callback")), "myapp://callback");
        assert_eq!(resolve(&s, Some("https://evil.test/")), "https://app.test");
        assert_eq!(resolve(&s, Some("javascript:alert(1)")), "https://app.test");
        assert_eq!(resolve(&s, None), "https://app.test");
    }
}
