//! Redirect URLs: where links in mail and OAuth flows may send a browser.
//!
//! A `redirect_to` is used only when it is on the project's `site_url` host or
//! matches an entry of `uri_allow_list`; otherwise `site_url` is used (as
//! GoTrue does). Patterns are globs where `*` matches within one host label or
//! path segment (it stops at `.` and `/`) and `**` matches anything, e.g.
//! `https://*.example.com/**` or `http://localhost:3000/*`.
//!
//! Both sides are parsed before they are compared, never matched as raw
//! strings: the URL with the WHATWG parser (as a browser will read it), the
//! pattern into scheme, host, port and path. Scheme and port must be equal
//! (the scheme's default port when the pattern names none), the host matches
//! label by label (a wildcard never matches an IP address), and the glob on
//! the path sees only the path, query and fragment. So
//! `https://16909060?.example.com/` (host `1.2.3.4`) or
//! `https://evil.com\@x.example.com` never pass `https://*.example.com/**`.

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

/// An allow-list entry split into its parts.
#[derive(Debug, PartialEq, Eq)]
struct Pattern<'a> {
    scheme: String,
    host: String,
    /// `None`: the scheme's default port; `Some("*")`: any port.
    port: Option<&'a str>,
    /// Path glob (with query and fragment), `""` when the pattern has none.
    path: &'a str,
}

impl<'a> Pattern<'a> {
    fn parse(pattern: &'a str) -> Option<Pattern<'a>> {
        let (scheme, rest) = pattern.split_once("://")?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains(['@', '\\']) || scheme.is_empty() {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !authority.ends_with(']') => (h, Some(p)),
            _ => (authority, None),
        };
        if port.is_some_and(|p| p != "*" && p.parse::<u16>().is_err()) {
            return None;
        }
        Some(Pattern {
            scheme: scheme.to_ascii_lowercase(),
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
            path,
        })
    }

    fn matches(&self, url: &url::Url) -> bool {
        if url.scheme() != self.scheme {
            return false;
        }
        // Host: the parsed host (IPv4 in any notation is normalised), compared
        // as labels; wildcards match domain names only.
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => String::new(),
        };
        let is_ip = matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)));
        let host_ok = if self.host.contains('*') {
            !is_ip && !host.is_empty() && glob_match(&self.host, &host)
        } else {
            self.host == host
        };
        if !host_ok {
            return false;
        }
        let port_ok = match self.port {
            Some("*") => true,
            Some(p) => p.parse::<u16>().ok() == url.port_or_known_default(),
            None => url.port().is_none(),
        };
        if !port_ok {
            return false;
        }
        let rest = &url[url::Position::BeforePath..];
        let pattern_path = self.path.trim_end_matches('/');
        // `myapp://**`: a `**` host with no path allows any path, as before.
        (self.path.is_empty() && self.host.ends_with("**"))
            || glob_match(self.path, rest)
            || glob_match(pattern_path, rest.trim_end_matches('/'))
    }
}

/// Whether `url` is an allowed redirect target for the project.
pub fn is_allowed(settings: &AuthSettings, url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    if !matches!(parsed.scheme(), "http" | "https") && parsed.cannot_be_a_base() {
        return false;
    }
    // Credentials in a redirect URL are never needed and only ever confuse.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return false;
    }
    if let Ok(site) = url::Url::parse(&settings.site_url)
        && site.origin() == parsed.origin()
        && parsed.scheme() != "null"
    {
        return true;
    }
    settings
        .uri_allow_list
        .iter()
        .filter_map(|p| Pattern::parse(p))
        .any(|p| p.matches(&parsed))
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

    #[test]
    fn parsed_not_raw() {
        let mut s = AuthSettings::defaults(&crate::Config::for_tests(
            "host=/x".into(),
            std::env::temp_dir(),
        ));
        s.site_url = "https://app.test".into();
        s.uri_allow_list = vec![
            "https://*.example.com/**".into(),
            "http://localhost:3000/*".into(),
            "https://exact.test".into(),
            "myapp://**".into(),
        ];
        for bad in [
            "https://16909060?.example.com/",
            "https://16909060#.example.com/",
            "https://evil.com\\@x.example.com/",
            "https://evil.com/.example.com/",
            "https://x.example.com@evil.com/",
            "https://x.example.com:8443/",
            "http://x.example.com/",
            "https://a.b.example.com/",
            "http://localhost:3001/cb",
            "http://localhost:3000/a/b",
            "https://exact.test/more",
            "https://1.2.3.4/",
        ] {
            assert!(!is_allowed(&s, bad), "{bad} must be refused");
        }
        for good in [
            "https://pr-1.example.com/",
            "https://pr-1.example.com/a/b?x=1#y",
            "https://PR-1.Example.com:443/a",
            "http://localhost:3000/cb",
            "http://localhost:3000/cb?code=1",
            "https://exact.test",
            "https://exact.test/",
            "myapp://callback/deep/path",
        ] {
            assert!(is_allowed(&s, good), "{good} must be allowed");
        }
    }
}
