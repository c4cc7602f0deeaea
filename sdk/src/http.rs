//! Plumbing shared by [`Client`](crate::Client) and
//! [`AdminClient`](crate::AdminClient): base-URL normalisation, sending a
//! request, and turning the response into data or an [`Error`].

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Result, truncate};

/// `User-Agent` sent by clients the SDK builds itself.
const USER_AGENT: &str = concat!("ferrobase-rust/", env!("CARGO_PKG_VERSION"));

/// The reqwest client used when the caller does not supply one.
pub(crate) fn default_http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().user_agent(USER_AGENT).build()?)
}

/// Parses a server or project base URL and normalises it so that it always
/// ends with exactly one `/`, which makes joining relative paths predictable:
/// `http://h/p/ref`, `http://h/p/ref/` and `http://h/p/ref//` are the same.
pub(crate) fn parse_base_url(input: &str) -> Result<Url> {
    let input = input.trim();
    let mut url = Url::parse(input).map_err(|e| Error::InvalidUrl(format!("{input:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidUrl(format!(
            "{input:?}: scheme must be http or https"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidUrl(format!(
            "{input:?}: a base URL cannot have a query string or fragment"
        )));
    }
    let path = format!("{}/", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// Appends path segments to a normalised base URL. Each segment is
/// percent-encoded on its own, so a table called `a/b` stays one segment.
pub(crate) fn join_segments<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("base URLs are checked to be http(s) URLs, which always have a path")
        .pop_if_empty()
        .extend(segments);
    url
}

/// A fully read HTTP response.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    /// Returns the response if its status is 2xx, else the decoded error.
    pub(crate) fn error_for_status(self) -> Result<RawResponse> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(Error::from_response(self.status, &self.body))
        }
    }
}

/// Sends `request` and reads the whole body, whatever the status.
pub(crate) async fn send(http: &reqwest::Client, request: reqwest::Request) -> Result<RawResponse> {
    let response = http.execute(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = Vec::from(response.bytes().await?);
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Deserializes a success body. An empty body (204, `return=minimal`, HEAD)
/// is read as JSON `null`, so it decodes into `()`, `Option<T>` or
/// `serde_json::Value`.
pub(crate) fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let result = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_value(serde_json::Value::Null)
    } else {
        serde_json::from_slice(body)
    };
    result.map_err(|e| {
        Error::Decode(format!(
            "{e} (as {}; body: {})",
            std::any::type_name::<T>(),
            truncate(&String::from_utf8_lossy(body), 200)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_exactly_one_trailing_slash() {
        for input in [
            "http://127.0.0.1:8080/p/myref",
            "http://127.0.0.1:8080/p/myref/",
            "http://127.0.0.1:8080/p/myref//",
            "  http://127.0.0.1:8080/p/myref  ",
        ] {
            assert_eq!(
                parse_base_url(input).unwrap().as_str(),
                "http://127.0.0.1:8080/p/myref/",
                "{input}"
            );
        }
        assert_eq!(
            parse_base_url("https://abc.example.com").unwrap().as_str(),
            "https://abc.example.com/"
        );
        assert_eq!(
            parse_base_url("https://abc.example.com/").unwrap().as_str(),
            "https://abc.example.com/"
        );
    }

    #[test]
    fn bad_base_urls_are_rejected() {
        for input in [
            "",
            "not a url",
            "127.0.0.1:8080",
            "ftp://example.com",
            "mailto:a@b.c",
            "http://h/p/ref?x=1",
            "http://h/p/ref#frag",
        ] {
            assert!(
                matches!(parse_base_url(input), Err(Error::InvalidUrl(_))),
                "{input}"
            );
        }
    }

    #[test]
    fn segments_are_joined_and_encoded() {
        let base = parse_base_url("http://h/p/ref").unwrap();
        assert_eq!(
            join_segments(&base, ["rest", "v1", "todos"]).as_str(),
            "http://h/p/ref/rest/v1/todos"
        );
        assert_eq!(
            join_segments(&base, ["rest", "v1", "a/b c"]).as_str(),
            "http://h/p/ref/rest/v1/a%2Fb%20c"
        );
        let root = parse_base_url("http://h").unwrap();
        assert_eq!(
            join_segments(&root, ["health", "ready"]).as_str(),
            "http://h/health/ready"
        );
    }

    #[test]
    fn empty_bodies_decode_as_null() {
        decode_json::<()>(b"").unwrap();
        assert_eq!(decode_json::<Option<i32>>(b" \n").unwrap(), None);
        assert_eq!(decode_json::<Vec<i32>>(b"[1,2]").unwrap(), vec![1, 2]);
        let err = decode_json::<Vec<i32>>(b"{\"a\":1}").unwrap_err();
        assert!(
            matches!(err, Error::Decode(ref m) if m.contains("{\"a\":1}")),
            "{err}"
        );
    }
}
