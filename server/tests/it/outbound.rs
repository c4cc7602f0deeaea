//! The SSRF guard (`ferrobase_server::outbound`) over real sockets: a
//! redirect into loopback, a name resolving to loopback and an IP-literal
//! loopback URL are all refused before any HTTP request reaches the target,
//! while the same requests go through when the policy allows them (so the
//! refusals are the guard's doing, not a broken setup).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ferrobase_server::outbound::{OutboundError, OutboundPolicy, Redirects, is_refusal};

/// An HTTP server on `ip:0` counting the requests it receives.
async fn target(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "reached"
        }
    });
    let listener = tokio::net::TcpListener::bind((ip, 0))
        .await
        .expect("bind target");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, hits)
}

/// A server on 127.0.0.2 answering `302 Location: {to}`.
async fn redirector(to: String) -> SocketAddr {
    let app = Router::new().route(
        "/",
        get(move || {
            let to = to.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, to)]).into_response() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2 (Linux routes 127/8 to loopback)");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn only_127_0_0_2() -> OutboundPolicy {
    OutboundPolicy {
        allow_private: false,
        allow_nets: vec!["127.0.0.2/32".parse().expect("net")],
    }
}

fn refusal(err: &reqwest::Error) -> Option<OutboundError> {
    is_refusal(err).cloned()
}

#[tokio::test]
async fn redirect_to_loopback_is_refused() {
    let (secret, hits) = target("127.0.0.1").await;
    let hop = redirector(format!("http://127.0.0.1:{}/admin", secret.port())).await;

    let client = only_127_0_0_2()
        .client_builder(Redirects::Follow(5))
        .build()
        .expect("client");
    let err = client
        .get(format!("http://{hop}/"))
        .send()
        .await
        .expect_err("the redirect into loopback must fail");
    assert!(
        matches!(refusal(&err), Some(OutboundError::Forbidden(ip)) if ip.to_string() == "127.0.0.1"),
        "refused by the guard: {err:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "target never reached");

    // Without following, the 3xx itself is the answer.
    let resp = only_127_0_0_2()
        .client_builder(Redirects::None)
        .build()
        .expect("client")
        .get(format!("http://{hop}/"))
        .send()
        .await
        .expect("3xx answer");
    assert_eq!(resp.status(), 302);

    // Control: a policy allowing private targets follows the same redirect.
    let open = OutboundPolicy {
        allow_private: true,
        allow_nets: vec![],
    };
    let body = open
        .client_builder(Redirects::Follow(5))
        .build()
        .expect("client")
        .get(format!("http://{hop}/"))
        .send()
        .await
        .expect("allowed")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "reached");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn name_resolving_to_loopback_is_refused() {
    let (addr, hits) = target("127.0.0.1").await;
    let client = OutboundPolicy::default()
        .client_builder(Redirects::None)
        .build()
        .expect("client");
    let err = client
        .get(format!("http://localhost:{}/", addr.port()))
        .send()
        .await
        .expect_err("localhost resolves to loopback");
    assert!(
        matches!(refusal(&err), Some(OutboundError::Forbidden(_))),
        "refused by the guard: {err:?}"
    );
    assert!(matches!(
        OutboundPolicy::default()
            .check_url_resolved(&format!("http://localhost:{}/", addr.port()))
            .await,
        Err(OutboundError::Forbidden(_))
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn ip_literal_loopback_is_refused_at_connect() {
    let (addr, hits) = target("127.0.0.1").await;
    // The resolver is never asked for IP literals: the connector check catches it.
    for url in [
        format!("http://{addr}/"),
        format!("http://2130706433:{}/", addr.port()),
    ] {
        let err = OutboundPolicy::default()
            .client_builder(Redirects::Follow(5))
            .build()
            .expect("client")
            .get(&url)
            .send()
            .await
            .expect_err("loopback literal");
        assert!(
            matches!(refusal(&err), Some(OutboundError::Forbidden(_))),
            "{url}: refused by the guard: {err:?}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Control: allowed explicitly, the same request lands.
    let ok = OutboundPolicy {
        allow_private: false,
        allow_nets: vec!["127.0.0.1/32".parse().expect("net")],
    }
    .client_builder(Redirects::None)
    .build()
    .expect("client")
    .get(format!("http://{addr}/"))
    .send()
    .await
    .expect("allowed net");
    assert_eq!(ok.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
