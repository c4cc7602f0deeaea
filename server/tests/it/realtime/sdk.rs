//! The Rust SDK's realtime client against the hub: typed messages, presence,
//! change events, history, errors, reconnection with resubscribe and
//! catch-up, and the admin calls.

use std::time::Duration;

use ferrobase::{Client, RealtimeEvent};
use serde::Deserialize;
use serde_json::json;

use super::fixture;
use crate::rest::{USER_1, USER_2};

const WAIT: Duration = Duration::from_secs(5);
/// Silence allowed while the client reconnects: its backoff reaches 5 s
/// (`max_reconnect_delay`), and on a loaded machine an attempt can fail
/// more than once, so `WAIT` alone would cut a slow but correct reconnect.
const RECONNECT_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize, PartialEq)]
struct Chat {
    text: String,
}

#[tokio::test]
async fn sdk_realtime_end_to_end() {
    let fx = fixture("rt-sdk").await;
    let anon = Client::new(&fx.p.url, &fx.p.anon).expect("client");
    let user_a = anon.clone().with_access_token(fx.user_token(USER_1).await);
    let user_b = anon.clone().with_access_token(fx.user_token(USER_2).await);
    let service = Client::new(&fx.p.url, &fx.p.service).expect("service client");

    // Admin calls.
    let admin = service.realtime_admin();
    let chans = admin.list_channels().await.expect("list channels");
    assert_eq!(chans.len(), 4);
    let made = admin
        .create_channel(json!({"pattern": "sdk:%", "public": true}))
        .await
        .expect("create channel");
    let updated = admin
        .update_channel(&made.id, json!({"retention_hours": 1}))
        .await
        .expect("update");
    assert_eq!(updated.retention_hours, 1);
    let err = anon
        .realtime_admin()
        .list_channels()
        .await
        .expect_err("anon is not admin");
    assert_eq!(err.status(), Some(403));

    // Messages and presence.
    let a = user_a.realtime().await.expect("connect a");
    let b = user_b.realtime().await.expect("connect b");
    let mut sub_a = a
        .subscribe_with("sdk:1", json!({"name": "a"}))
        .await
        .expect("subscribe a");
    assert_eq!(sub_a.members().len(), 1);
    let sub_b = b.subscribe("sdk:1").await.expect("subscribe b");
    assert_eq!(sub_b.members().len(), 2);
    // A's own join comes first, then B's.
    loop {
        match sub_a.next_timeout(WAIT).await {
            Some(RealtimeEvent::PresenceJoin(m)) if m.user_id.as_deref() == Some(USER_2) => break,
            Some(RealtimeEvent::PresenceJoin(_)) => continue,
            other => panic!("expected B's presence join, got {other:?}"),
        }
    }
    let id = b
        .publish("sdk:1", "chat", json!({"text": "hi"}))
        .await
        .expect("publish");
    match sub_a.next_timeout(WAIT).await {
        Some(RealtimeEvent::Message(m)) => {
            assert_eq!(
                m.decode::<Chat>().expect("typed"),
                Chat { text: "hi".into() }
            );
            assert_eq!(m.meta.message_id, id);
            assert_eq!(m.meta.sender_id.as_deref(), Some(USER_2));
        }
        other => panic!("expected message, got {other:?}"),
    }
    let history = a.history("sdk:1", None, 10).await.expect("history");
    assert_eq!(history.len(), 1);

    // Refusals are typed errors.
    let denied = b
        .subscribe(&format!("room:{USER_1}"))
        .await
        .expect_err("B may not read A's room");
    assert_eq!(denied.code(), Some("forbidden"));
    let bad = a
        .publish("sdk:1", "x", json!([1]))
        .await
        .expect_err("array payload");
    assert_eq!(bad.code(), Some("invalid_payload"));
    let refused = Client::new(&fx.p.url, "not-a-token")
        .expect("client")
        .realtime()
        .await
        .expect_err("bad token");
    assert_eq!(refused.code(), Some("connect_error"));

    // Change events through the SDK.
    let mut changes = a.subscribe("db:public:todos").await.expect("changes");
    user_a
        .from("todos")
        .insert(json!({"title": "via sdk"}))
        .execute::<serde_json::Value>()
        .await
        .expect("insert");
    match changes.next_timeout(WAIT).await {
        Some(RealtimeEvent::Change(c)) => {
            assert_eq!(c.kind, "INSERT");
            assert_eq!(
                c.record.as_ref().map(|r| r["title"].clone()),
                Some(json!("via sdk"))
            );
        }
        other => panic!("expected change, got {other:?}"),
    }

    // HTTP publish.
    let http_id = service
        .publish("sdk:1", "chat", json!({"text": "over http"}))
        .await
        .expect("http publish");
    loop {
        match sub_a.next_timeout(WAIT).await {
            Some(RealtimeEvent::Message(m)) if m.meta.message_id == http_id => break,
            Some(_) => continue,
            None => panic!("HTTP-published message not received"),
        }
    }

    // The server drops every socket: the client reconnects, subscribes again
    // and catches up on what was published meanwhile.
    fx.t.app.realtime.disconnect_all().await;
    let missed = service
        .publish("sdk:1", "chat", json!({"text": "while away"}))
        .await
        .expect("publish while away");
    let mut got = false;
    for _ in 0..20 {
        match sub_a.next_timeout(RECONNECT_WAIT).await {
            Some(RealtimeEvent::Message(m)) if m.meta.message_id == missed => {
                got = true;
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert!(
        got,
        "message published during the reconnection was not caught up"
    );
    // And live delivery works again.
    let after = service
        .publish("sdk:1", "chat", json!({"text": "after"}))
        .await
        .expect("publish after");
    let mut live = false;
    for _ in 0..20 {
        match sub_a.next_timeout(RECONNECT_WAIT).await {
            Some(RealtimeEvent::Message(m)) if m.meta.message_id == after => {
                live = true;
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert!(live, "no live delivery after reconnecting");
    admin
        .delete_channel(&made.id)
        .await
        .expect("delete channel");
    a.close();
    b.close();
}
