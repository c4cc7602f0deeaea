//! The unmodified Socket.IO clients: `socket.io-client` over WebSocket and
//! over long-polling, `python-socketio` over both, the RLS matrix, and two
//! server processes sharing one database.

use serde_json::json;

use super::{env_path, fixture, run_script, spec};
use crate::support::TestApp;

#[tokio::test]
async fn socket_io_client_websocket() {
    let fx = fixture("rt-js-ws").await;
    let mut s = spec(&fx, "basic").await;
    s["transports"] = json!(["websocket"]);
    run_script(env_path("FERROBASE_PEERS_NODE"), "realtime_js.mjs", &s).await;
}

#[tokio::test]
async fn socket_io_client_polling() {
    let fx = fixture("rt-js-poll").await;
    let mut s = spec(&fx, "basic").await;
    s["transports"] = json!(["polling"]);
    run_script(env_path("FERROBASE_PEERS_NODE"), "realtime_js.mjs", &s).await;
}

#[tokio::test]
async fn python_socketio_both_transports() {
    let fx = fixture("rt-py").await;
    let s = spec(&fx, "basic").await;
    run_script(env_path("FERROBASE_PEERS_PYTHON"), "realtime_py.py", &s).await;
}

#[tokio::test]
async fn rls_matrix_subscribe_publish_history() {
    let fx = fixture("rt-rls").await;
    let s = spec(&fx, "rls").await;
    run_script(env_path("FERROBASE_PEERS_NODE"), "realtime_js.mjs", &s).await;
}

#[tokio::test]
async fn change_events_filtered_by_rls() {
    let fx = fixture("rt-changes").await;
    let s = spec(&fx, "changes").await;
    run_script(env_path("FERROBASE_PEERS_NODE"), "realtime_js.mjs", &s).await;
}

#[tokio::test]
async fn token_expiry_and_refresh() {
    let fx = fixture("rt-expiry").await;
    let mut s = spec(&fx, "expiry").await;
    let soon = super::now() + 2;
    s["shortLived"] = json!(
        super::token_exp(
            &fx,
            json!({"role": "authenticated", "sub": crate::rest::USER_1}),
            soon
        )
        .await
    );
    run_script(env_path("FERROBASE_PEERS_NODE"), "realtime_js.mjs", &s).await;
}

/// Two servers on one control plane (as two nodes behind a load balancer):
/// publish on B reaches A, presence is the same on both, and a change made
/// through B's REST API reaches A's subscriber.
#[tokio::test]
async fn two_nodes_share_messages_presence_and_changes() {
    let fx = fixture("rt-nodes").await;
    let node_b = TestApp::start(fx.t.config.clone()).await;
    let mut s = spec(&fx, "cross").await;
    s["urlB"] = json!(format!("{}/p/{}", node_b.url, fx.project_ref));
    run_script(env_path("FERROBASE_PEERS_NODE"), "realtime_js.mjs", &s).await;
}
