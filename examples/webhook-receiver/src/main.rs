//! A webhook receiver that verifies Standard Webhooks signatures.
//!
//! ```sh
//! FERROBASE_URL=http://127.0.0.1:8080/p/default FERROBASE_SERVICE_ROLE_KEY=… \
//!   cargo run --manifest-path examples/Cargo.toml -p webhook-receiver
//! ```
//!
//! Set-up (the service-role key): a table with change capture and a webhook
//! endpoint pointing at this program. Then one insert through the data API
//! arrives here as a signed `db.insert` delivery.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use ferrobase::Client;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The table whose inserts become webhook events.
const SCHEMA: &str = "
create table if not exists public.orders (
    id bigint generated always as identity primary key,
    item text not null,
    quantity integer not null check (quantity > 0)
);
";

/// How long to wait for the delivery.
const WAIT: Duration = Duration::from_secs(30);

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn setting(name: &str) -> AnyResult<String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/README.md)").into())
}

fn check(ok: bool, what: &str) -> AnyResult<()> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

/// What the receiver shares with its handler.
#[derive(Clone)]
struct Receiver {
    /// The endpoint's signing secret (`whsec_…`).
    secret: String,
    /// Verified events, to the main task.
    verified: mpsc::UnboundedSender<(String, Value)>,
}

/// `POST /hooks`: verify first (over the raw bytes), then parse. 401 for a
/// bad signature, 400 for a body that is not JSON, 204 otherwise (a 2xx
/// tells Ferrobase not to retry).
async fn hook(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if let Err(e) = ferrobase::webhooks::verify(&rx.secret, &headers, &body) {
        println!("receiver: refused a delivery ({e})");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let _ = rx.verified.send((id, event));
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let url = setting("FERROBASE_URL")?;
    let service = Client::new(&url, setting("FERROBASE_SERVICE_ROLE_KEY")?)?;

    service.admin_sql(SCHEMA, &[]).await?;
    service
        .realtime_admin()
        .enable_changes("public", "orders", true, false, false)
        .await?;
    println!("table public.orders ready (inserts captured)");

    // The receiver; its URL is registered below, and the secret comes back
    // from the registration, so the handler reads it through a channel.
    let listen = std::env::var("WEBHOOK_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    let public_url =
        std::env::var("WEBHOOK_PUBLIC_URL").unwrap_or_else(|_| format!("http://{addr}/hooks"));

    let hooks = service.webhooks();
    let endpoint = hooks.create(&public_url, &["db:public:orders"]).await?;
    let endpoint_id = endpoint["id"]
        .as_str()
        .ok_or("the endpoint has no id")?
        .to_owned();
    let secret = endpoint["secret"]
        .as_str()
        .ok_or("the secret is shown on creation")?
        .to_owned();
    println!("registered webhook endpoint {endpoint_id} -> {public_url}");

    let (tx, mut verified) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/hooks", post(hook))
        .with_state(Receiver {
            secret,
            verified: tx,
        });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("receiver listening on {addr}");

    let result = run(&service, &endpoint_id, addr, &mut verified).await;
    // Clean up whatever happened: no endpoint left pointing at a dead port.
    hooks.delete(&endpoint_id).await?;
    server.abort();
    result?;
    println!("webhook-receiver example finished");
    Ok(())
}

/// The checks, once the receiver runs.
async fn run(
    service: &Client,
    endpoint_id: &str,
    addr: std::net::SocketAddr,
    verified: &mut mpsc::UnboundedReceiver<(String, Value)>,
) -> AnyResult<()> {
    let inserted: Vec<Value> = service
        .from("orders")
        .insert(json!({"item": "coffee beans", "quantity": 2}))
        .fetch()
        .await?;
    let order_id = inserted
        .first()
        .and_then(|r| r["id"].as_i64())
        .ok_or("the insert returned no id")?;
    println!("inserted order #{order_id}");

    let (webhook_id, event) = tokio::time::timeout(WAIT, verified.recv())
        .await
        .map_err(|_| format!("FAILED: no verified delivery within {WAIT:?}"))?
        .ok_or("the receiver stopped")?;
    println!(
        "received {} ({webhook_id}): order #{} {}",
        event["type"], event["data"]["record"]["id"], event["data"]["record"]["item"]
    );
    check(
        event["type"] == "db.insert" && event["data"]["record"]["id"] == order_id,
        "the signed db.insert delivery verified",
    )?;

    // A forged delivery: real headers shape, wrong signature.
    let forged = reqwest_post(addr).await?;
    check(forged == 401, "a forged delivery is refused (401)")?;

    // The delivery log agrees (the log entry is written after the answer).
    let mut succeeded = false;
    for _ in 0..50 {
        let log = service
            .webhooks()
            .deliveries(endpoint_id, Some("succeeded"), Some(10))
            .await?;
        if log.as_array().is_some_and(|l| !l.is_empty()) {
            succeeded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(succeeded, "the delivery log shows the delivery succeeded")
}

/// Posts a delivery signed with a made-up secret to the receiver; its status.
async fn reqwest_post(addr: std::net::SocketAddr) -> AnyResult<u16> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let resp = ferrobase::reqwest::Client::new()
        .post(format!("http://{addr}/hooks"))
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            "v1,Zm9yZ2VkIHNpZ25hdHVyZSwgbm90IG1hZGUgd2l0aCB0aGUgc2VjcmV0MDA=",
        )
        .header("content-type", "application/json")
        .body(r#"{"type":"db.insert","data":{"record":{"id":1}}}"#)
        .send()
        .await?;
    Ok(resp.status().as_u16())
}
