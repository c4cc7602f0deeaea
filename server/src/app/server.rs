//! The connection loop: accepts TCP connections and serves HTTP/1.1 on them
//! with hyper, the way `axum::serve` does, plus what it cannot configure: a
//! header read timeout (a client that trickles its request line and headers
//! is cut off instead of holding a task and a socket forever).
//!
//! Every request gets the peer address as [`ConnectInfo`] (auth's per-IP
//! limits), connections are upgradable (WebSockets), and shutdown is
//! graceful: on the signal, stop accepting, let every connection finish its
//! in-flight request, then return; connections still open after the grace
//! period are closed.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt as _;

/// Serves `service` on `listener` until `shutdown` resolves; then waits up to
/// `grace` for open connections to finish their current request, and closes
/// the ones still open.
pub async fn run<S>(
    listener: tokio::net::TcpListener,
    service: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
    header_read_timeout: Duration,
    grace: Duration,
) -> std::io::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    // `signal_tx` tells connections to finish; every connection task holds a
    // clone of `close_rx`, so `close_tx.closed()` resolves when all are done.
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(());
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    // Fired when the grace period is over: connections still open are dropped.
    let (kill_tx, kill_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let hyper_service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            service.clone().oneshot(req)
        });
        let mut signal_rx = signal_rx.clone();
        let mut kill_rx = kill_rx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), hyper_service)
                .with_upgrades();
            tokio::pin!(conn);
            let mut signalled = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, %peer, "connection ended with an error");
                        }
                        break;
                    }
                    _ = signal_rx.changed(), if !signalled => {
                        signalled = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = kill_rx.changed() => {
                        tracing::debug!(%peer, "connection closed at the end of the shutdown grace period");
                        break;
                    }
                }
            }
            drop(close_rx);
        });
    }
    drop(listener);
    let _ = signal_tx.send(());
    drop(close_rx);
    if tokio::time::timeout(grace, close_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = close_tx.receiver_count(),
            grace_secs = grace.as_secs_f64(),
            "requests still running at the end of the shutdown grace period: closing their connections"
        );
        let _ = kill_tx.send(());
        close_tx.closed().await;
    }
    Ok(())
}
