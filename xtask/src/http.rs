//! A minimal blocking HTTP/1.1 client over `std::net`, enough for the bench
//! harness talking to a local server: plain `http://` only, one connection
//! per request (`Connection: close`), `Content-Length` or chunked bodies.
//! It keeps xtask free of an HTTP/TLS stack.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response is not JSON: {}", truncate(&self.text(), 300)))
    }

    /// Fails unless the status is `expected`, quoting the body.
    pub fn expect(self, expected: u16, what: &str) -> Result<Self> {
        if self.status != expected {
            bail!(
                "{what}: expected HTTP {expected}, got {}: {}",
                self.status,
                truncate(&self.text(), 500)
            );
        }
        Ok(self)
    }
}

pub fn get(url: &str, bearer: Option<&str>) -> Result<Response> {
    request("GET", url, bearer, None)
}

pub fn post(url: &str, bearer: Option<&str>, body: &Value) -> Result<Response> {
    request("POST", url, bearer, Some(body))
}

pub fn request(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported: {url}"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let host_port = if authority
        .rsplit(':')
        .next()
        .is_some_and(|p| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };

    let mut stream = connect(&host_port).with_context(|| format!("{method} {url}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;

    let payload = body.map(serde_json::to_vec).transpose()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Accept: application/json\r\nUser-Agent: ferrobase-xtask\r\n"
    );
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    match &payload {
        Some(p) => head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            p.len()
        )),
        None if method != "GET" => head.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(payload.as_deref().unwrap_or_default());
    stream
        .write_all(&request)
        .with_context(|| format!("{method} {url}: sending"))?;

    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("{method} {url}: reading the response"))?;
    parse_response(&raw).with_context(|| format!("{method} {url}"))
}

fn connect(host_port: &str) -> Result<TcpStream> {
    let mut last = None;
    for addr in host_port.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow!("{host_port} resolves to nothing"), Into::into))
}

/// The parts of a response head the harness needs.
pub struct Head {
    /// The status code.
    pub status: u16,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Content-Length`, when given.
    pub length: Option<u64>,
}

/// Parses a response head (status line and headers, without the blank line):
/// the one head parser of xtask (the JSON client here and the streaming
/// storage bench).
pub fn parse_head(head: &str) -> Result<Head> {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("malformed status line"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<u64>().ok();
        }
    }
    Ok(Head {
        status,
        chunked,
        length,
    })
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed response (no header end, {} bytes)", raw.len()))?;
    let head = parse_head(&String::from_utf8_lossy(&raw[..split]))?;
    let body = &raw[split + 4..];
    let body = if head.chunked {
        dechunk(body)?
    } else if let Some(n) = head.length {
        usize::try_from(n)
            .ok()
            .and_then(|n| body.get(..n))
            .ok_or_else(|| anyhow!("body shorter than Content-Length"))?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok(Response {
        status: head.status,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or_else(|| anyhow!("truncated chunk"))?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}xx").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn round_trip_against_a_local_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.ends_with(b"{\"a\":1}") {
                let n = conn.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let r = post(
            &format!("http://127.0.0.1:{port}/x"),
            Some("t0k"),
            &serde_json::json!({"a": 1}),
        )
        .unwrap();
        assert_eq!(r.json().unwrap()["ok"], true);
        let sent = server.join().unwrap();
        assert!(sent.starts_with("POST /x HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("Authorization: Bearer t0k\r\n"), "{sent}");
    }
}
