//! The SSRF guard: every HTTP request the platform makes on behalf of a
//! project (webhooks, OAuth/OIDC discovery, AI upstreams, …) goes through a
//! client built here, so a project cannot point the server at its own
//! network (Postgres, cloud metadata, an admin port on loopback).
//!
//! What is refused (unless allowed, see [`OutboundPolicy`]): loopback,
//! private (RFC 1918, IPv6 ULA), link-local, CGNAT, unspecified, multicast,
//! broadcast, documentation/benchmark/reserved ranges, IPv4 embedded in IPv6
//! (mapped, compatible, NAT64, 6to4) when the embedded address is refused,
//! and cloud metadata addresses. Metadata addresses, unspecified, multicast
//! and broadcast stay refused even with `allow_private`: no legitimate
//! receiver lives there.
//!
//! How the client enforces it, in three layers (a request must pass all):
//! 1. a DNS resolver ([`reqwest::dns::Resolve`]) that refuses a name when
//!    any of its addresses is refused (no "first public, then private"
//!    rebinding games);
//! 2. a connector layer that checks the peer address of every new
//!    connection before a byte of HTTP is written: this covers IP-literal
//!    hosts (`http://127.0.0.1/`), for which reqwest never calls the
//!    resolver, and any path not foreseen here;
//! 3. a redirect policy that checks the scheme and IP-literal host of every
//!    hop before following it (names are checked again by 1. and 2.), or no
//!    redirects at all ([`Redirects::None`]: a 3xx is then the answer).
//!
//! Proxies from the environment are ignored (a proxy would resolve the
//! target itself, out of the guard's sight).
//!
//! Use:
//! ```no_run
//! # async fn f(config: &ferrobase_server::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use ferrobase_server::outbound::{OutboundPolicy, Redirects};
//! let policy = OutboundPolicy::from_config(config);
//! let url = policy.check_url("https://hooks.example.com/in")?; // early, friendly 400s
//! let client = policy
//!     .client_builder(Redirects::None)
//!     .timeout(std::time::Duration::from_secs(15))
//!     .build()?;
//! let _answer = client.post(url).body("{}").send().await; // refused targets fail here
//! # Ok(()) }
//! ```
//! A refused request fails with a [`reqwest::Error`] whose source chain holds
//! an [`OutboundError`]; [`is_refusal`] tells such errors apart.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use ipnet::IpNet;
use url::Url;

/// Why an outgoing request was refused (or its URL rejected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The URL does not parse, or has no host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// Only `http` and `https` are allowed.
    #[error("scheme {0:?} is not allowed (http or https only)")]
    Scheme(String),
    /// The target address is in a refused range.
    #[error("address {0} is not allowed (private, loopback, link-local or reserved)")]
    Forbidden(IpAddr),
    /// The name did not resolve.
    #[error("could not resolve {0}")]
    Unresolved(String),
}

/// Which addresses outgoing requests may reach.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    /// Allow loopback, private, link-local, CGNAT and ULA targets (development
    /// and tests). Metadata, unspecified, multicast, broadcast stay refused.
    pub allow_private: bool,
    /// Networks allowed in any case (e.g. one internal SMTP relay), checked
    /// before the refused ranges; metadata addresses stay refused.
    pub allow_nets: Vec<IpNet>,
}

/// What the client does with a 3xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// Do not follow: the 3xx is the answer (webhooks treat it as a failure).
    None,
    /// Follow up to this many hops, each one checked.
    Follow(usize),
}

impl OutboundPolicy {
    /// The platform-wide policy: `FERROBASE_OUTBOUND_ALLOW_PRIVATE` and
    /// `FERROBASE_OUTBOUND_ALLOW_NETS`.
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            allow_private: config.outbound_allow_private,
            allow_nets: config.outbound_allow_nets.clone(),
        }
    }

    /// The policy for webhook deliveries: the platform one, plus
    /// `FERROBASE_WEBHOOK_ALLOW_PRIVATE`.
    pub fn for_webhooks(config: &crate::Config) -> Self {
        let mut p = Self::from_config(config);
        p.allow_private |= config.webhooks.webhook_allow_private;
        p
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if always_refused(ip) {
            return false;
        }
        if self.allow_nets.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        match classify(ip) {
            Class::Public => true,
            Class::Private => self.allow_private,
            Class::Reserved => false,
        }
    }

    /// Checks `ip`, as an error.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), OutboundError> {
        if self.allows(ip) {
            Ok(())
        } else {
            Err(OutboundError::Forbidden(ip))
        }
    }

    /// Parses and checks a URL without any network access: scheme `http` or
    /// `https`, a host, and an IP-literal host must be allowed. Names are
    /// checked when the client resolves them; use [`Self::check_url_resolved`]
    /// to know now.
    pub fn check_url(&self, url: &str) -> Result<Url, OutboundError> {
        let url = Url::parse(url).map_err(|e| OutboundError::InvalidUrl(e.to_string()))?;
        self.check_parsed(&url)?;
        Ok(url)
    }

    fn check_parsed(&self, url: &Url) -> Result<(), OutboundError> {
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(OutboundError::Scheme(other.to_owned())),
        }
        match url.host() {
            None => Err(OutboundError::InvalidUrl("no host".into())),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }

    /// [`Self::check_url`], then resolves the host and checks every address.
    pub async fn check_url_resolved(&self, url: &str) -> Result<Url, OutboundError> {
        let parsed = self.check_url(url)?;
        if let Some(url::Host::Domain(host)) = parsed.host() {
            let port = parsed.port_or_known_default().unwrap_or(443);
            self.resolve(host, port).await?;
        }
        Ok(parsed)
    }

    /// The check for a URL an admin saves (a webhook endpoint, an AI
    /// provider): [`Self::check_url_resolved`] within `wait`, but a name that
    /// does not resolve (yet), or not in time, is judged by
    /// [`Self::check_url`] alone. It may resolve later; requests check again.
    pub async fn check_url_when_saved(
        &self,
        url: &str,
        wait: std::time::Duration,
    ) -> Result<Url, OutboundError> {
        match tokio::time::timeout(wait, self.check_url_resolved(url)).await {
            Err(_) | Ok(Err(OutboundError::Unresolved(_))) => self.check_url(url),
            Ok(checked) => checked,
        }
    }

    /// Resolves `host` and returns its addresses when every one is allowed:
    /// for clients that connect themselves (SMTP), which then connect to one
    /// of the returned addresses, not to the name.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            self.check_ip(ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| OutboundError::Unresolved(host.to_owned()))?
            .collect();
        if addrs.is_empty() {
            return Err(OutboundError::Unresolved(host.to_owned()));
        }
        for a in &addrs {
            self.check_ip(a.ip())?;
        }
        Ok(addrs)
    }

    /// A `reqwest` client builder with the guard installed (resolver,
    /// connector check, redirect policy, no proxy). Add timeouts and headers,
    /// then `build()`.
    pub fn client_builder(&self, redirects: Redirects) -> reqwest::ClientBuilder {
        let policy = Arc::new(self.clone());
        let redirect = match redirects {
            Redirects::None => reqwest::redirect::Policy::none(),
            Redirects::Follow(max) => {
                let policy = policy.clone();
                reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() > max {
                        return attempt.error("too many redirects");
                    }
                    match policy.check_parsed(attempt.url()) {
                        Ok(()) => attempt.follow(),
                        Err(e) => attempt.error(e),
                    }
                })
            }
        };
        reqwest::Client::builder()
            .no_proxy()
            .redirect(redirect)
            .dns_resolver(GuardedResolver {
                policy: policy.clone(),
            })
            .connector_layer(GuardLayer { policy })
    }
}

/// Whether `err` (or an error in its source chain) is a refusal by the guard.
pub fn is_refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a OutboundError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(o) = e.downcast_ref::<OutboundError>() {
            return Some(o);
        }
        cur = e.source();
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Public,
    /// Refused unless `allow_private` (or an allowed net).
    Private,
    /// Refused unless an allowed net names it.
    Reserved,
}

/// IPv4 addresses embedded in IPv6 (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) are judged
/// as the IPv4 address they reach.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let s = v6.segments();
    let embedded = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return IpAddr::V4(embedded()); // IPv4-compatible (deprecated)
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(embedded()); // NAT64 well-known prefix
    }
    if s[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    ip
}

/// Refused whatever the policy: cloud metadata, unspecified, multicast, broadcast.
fn always_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            const METADATA: [Ipv4Addr; 4] = [
                Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack…
                Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata
                Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
                Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
            ];
            METADATA.contains(&v4)
                || v4.is_unspecified()
                || v4.octets()[0] == 0
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            // AWS's IPv6 metadata endpoint.
            v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6.is_unspecified()
                || v6.is_multicast()
        }
    }
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
            {
                Class::Private // 127/8, RFC 1918, 169.254/16, CGNAT 100.64/10
            } else if (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || v4.is_documentation()
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
                || o[0] >= 240
            // reserved 240/4
            {
                Class::Reserved
            } else {
                Class::Public
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00 // ULA fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0
            // site-local (deprecated) fec0::/10
            {
                Class::Private
            } else if (s[0] == 0x2001 && (s[1] == 0x0db8 || s[1] == 0)) // documentation, Teredo (hides an IPv4 address)
                || s[..4] == [0x100, 0, 0, 0] // discard-only 100::/64
                || s[..3] == [0x64, 0xff9b, 1] // local-use NAT64
                || s[..6] == [0, 0, 0, 0, 0, 0]
            // what remains of ::/96 after `canonical`
            {
                Class::Reserved
            } else {
                Class::Public
            }
        }
    }
}

/// Layer 1: names resolve through the system resolver, then every address is checked.
struct GuardedResolver {
    policy: Arc<OutboundPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = policy.resolve(&host, 0).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Layer 2: the peer address of every new connection is checked before
/// hyper writes the request on it.
#[derive(Clone)]
struct GuardLayer {
    policy: Arc<OutboundPolicy>,
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
struct GuardService<S> {
    inner: S,
    policy: Arc<OutboundPolicy>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, R> tower::Service<R> for GuardService<S>
where
    S: tower::Service<R, Error = BoxError>,
    S::Response: Connection + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let fut = self.inner.call(req);
        let policy = self.policy.clone();
        Box::pin(async move {
            let conn = fut.await?;
            let mut ext = http::Extensions::new();
            conn.connected().get_extras(&mut ext);
            match ext.get::<HttpInfo>() {
                Some(info) => policy.check_ip(info.remote_addr().ip())?,
                // No TCP peer address: not a connection this guard can vouch for.
                None => {
                    return Err(Box::new(OutboundError::InvalidUrl(
                        "connection without a peer address".into(),
                    )) as BoxError);
                }
            }
            Ok(conn)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn refuses_internal_ranges_by_default() {
        let p = OutboundPolicy::default();
        for bad in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.10",
            "198.18.0.1",
            "192.0.0.192",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "fd00:ec2::254",
        ] {
            assert!(!p.allows(ip(bad)), "{bad} must be refused");
        }
    }

    #[test]
    fn allows_public_addresses() {
        let p = OutboundPolicy::default();
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(p.allows(ip(good)), "{good} must be allowed");
        }
    }

    #[test]
    fn allow_private_keeps_metadata_multicast_unspecified_refused() {
        let p = OutboundPolicy {
            allow_private: true,
            allow_nets: vec![],
        };
        for ok in ["127.0.0.1", "10.0.0.1", "192.168.0.1", "fd12::1", "::1"] {
            assert!(p.allows(ip(ok)), "{ok} allowed with allow_private");
        }
        for bad in [
            "169.254.169.254",
            "169.254.170.2",
            "100.100.100.200",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!p.allows(ip(bad)), "{bad} stays refused");
        }
    }

    #[test]
    fn allow_nets_open_exactly_those() {
        let p = OutboundPolicy {
            allow_private: false,
            allow_nets: vec!["10.9.0.0/16".parse().expect("net")],
        };
        assert!(p.allows(ip("10.9.3.4")));
        assert!(!p.allows(ip("10.8.3.4")));
        assert!(!p.allows(ip("127.0.0.1")));
    }

    #[test]
    fn check_url_rejects_schemes_and_literals() {
        let p = OutboundPolicy::default();
        assert!(p.check_url("https://example.com/hook").is_ok());
        assert_eq!(
            p.check_url("ftp://example.com/").err(),
            Some(OutboundError::Scheme("ftp".into()))
        );
        assert!(matches!(
            p.check_url("file:///etc/passwd"),
            Err(OutboundError::Scheme(_))
        ));
        assert!(matches!(
            p.check_url("not a url"),
            Err(OutboundError::InvalidUrl(_))
        ));
        for bad in [
            "http://127.0.0.1/",
            "http://[::1]:8080/",
            "http://2130706433/", // 127.0.0.1 as one number
            "http://0x7f.0.0.1/", // hex octet
            "http://0177.0.0.1/", // octal octet
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:7f00:1]/",
        ] {
            assert!(
                matches!(p.check_url(bad), Err(OutboundError::Forbidden(_))),
                "{bad} must be refused"
            );
        }
    }

    #[tokio::test]
    async fn localhost_name_is_refused_after_resolution() {
        let p = OutboundPolicy::default();
        assert!(matches!(
            p.check_url_resolved("http://localhost:9/").await,
            Err(OutboundError::Forbidden(_))
        ));
    }
}
