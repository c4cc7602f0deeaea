//! The hub's limits over real sockets (the SDK's Socket.IO client), with
//! small limits set in the server's config: channels per socket, events per
//! second per socket, sockets per project on a node. Each refusal carries a
//! stable code, writes nothing, and leaves the socket (or the project's
//! other sockets) working.

use std::time::Duration;

use ferrobase::{Client, Error, Realtime};
use futures_util::future::join_all;
use serde_json::json;

use super::{admin_req, env_path, fixture_with, run_script, spec};
use crate::rest::Fx;

/// Rows of `table` (`messages` or `presence`) of the project's `realtime`
/// schema whose channel column is `channel`.
async fn rows_of(fx: &Fx, table: &str, channel: &str) -> i64 {
    let cfg: tokio_postgres::Config = fx.p.db_url.parse().expect("db_url");
    let client = ferrobase_server::db::connect(&cfg)
        .await
        .expect("connect as owner");
    let column = if table == "presence" {
        "channel"
    } else {
        "topic"
    };
    let sql = format!("select count(*) from realtime.{table} where {column} = $1");
    client
        .query_one(&sql, &[&channel])
        .await
        .expect("count rows")
        .get(0)
}

/// The error of a request that must be refused.
fn refused<T>(r: Result<T, Error>, what: &str) -> Error {
    match r {
        Ok(_) => panic!("{what}: it was accepted"),
        Err(e) => e,
    }
}

fn code(e: &Error) -> &str {
    e.code().unwrap_or("(no code)")
}

async fn connect(fx: &Fx, key: &str) -> Realtime {
    Client::new(&fx.p.url, key)
        .expect("client")
        .realtime()
        .await
        .expect("connect")
}

/// The N+1th channel of a socket is refused (`too_many_channels`) before
/// anything is written; broadcast and change channels count together;
/// joining a channel again takes no slot; unsubscribing frees one.
#[tokio::test]
async fn a_socket_joins_at_most_the_channel_limit() {
    let fx = fixture_with("rt-lim-chan", |c| {
        c.realtime_max_channels_per_socket = 2;
    })
    .await;
    let rt = connect(&fx, &fx.p.service).await;
    let _a = rt.subscribe("public:a").await.expect("first channel");
    let _changes = rt
        .subscribe("db:public:todos")
        .await
        .expect("a change channel is the second");
    rt.subscribe("public:a")
        .await
        .expect("joining a channel again takes no slot");

    let e = refused(rt.subscribe("public:c").await, "the third channel");
    assert_eq!(code(&e), "too_many_channels", "{e}");
    assert!(e.to_string().contains("unsubscribe"), "actionable: {e}");
    assert_eq!(rows_of(&fx, "presence", "public:c").await, 0);
    assert_eq!(rows_of(&fx, "messages", "public:c").await, 0);
    let e = refused(
        rt.observe("public:d").await,
        "an observer joins a channel too",
    );
    assert_eq!(code(&e), "too_many_channels", "{e}");

    // The socket still works, and leaving a channel frees its slot.
    rt.publish("public:a", "chat", json!({"text": "still here"}))
        .await
        .expect("the refused socket still publishes");
    rt.unsubscribe("db:public:todos")
        .await
        .expect("unsubscribe");
    let _c = rt
        .subscribe("public:c")
        .await
        .expect("a freed slot can be used");
    assert_eq!(rows_of(&fx, "presence", "public:c").await, 1);

    // Another socket of the project has its own slots.
    let other = connect(&fx, &fx.p.service).await;
    other.subscribe("public:x").await.expect("other socket, 1");
    other.subscribe("public:y").await.expect("other socket, 2");
    rt.close();
    other.close();
}

/// A burst of publishes beyond the socket's rate is refused with
/// `rate_limited` (saying when to retry) and writes nothing; a second socket
/// of the same project is unaffected; the first works again once its bucket
/// has refilled.
#[tokio::test]
async fn a_socket_over_its_event_rate_is_refused_until_it_slows_down() {
    const PER_SEC: u32 = 5;
    const BURST: u32 = 2;
    let fx = fixture_with("rt-lim-rate", |c| {
        c.realtime_max_events_per_sec = PER_SEC;
        c.realtime_event_burst = BURST;
    })
    .await;
    let a = connect(&fx, &fx.p.service).await;
    let b = connect(&fx, &fx.p.service).await;
    let mut a_errors = a.errors();

    let started = std::time::Instant::now();
    let results =
        join_all((0..8).map(|i| a.publish("public:flood", "chat", json!({ "n": i })))).await;
    let elapsed = started.elapsed();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!refused.is_empty(), "8 publishes at once all passed");
    for e in &refused {
        assert_eq!(code(e), "rate_limited", "{e}");
        assert!(e.to_string().contains("Retry in"), "says when: {e}");
    }
    // The burst, plus what refilled while the publishes were answered.
    let refilled = (elapsed.as_secs_f64() * f64::from(PER_SEC)).ceil() as usize;
    assert!(
        ok >= 1 && ok <= BURST as usize + refilled,
        "{ok} passed in {elapsed:?}"
    );
    assert_eq!(
        rows_of(&fx, "messages", "public:flood").await,
        ok as i64,
        "a refused publish writes nothing"
    );
    let event = tokio::time::timeout(Duration::from_secs(5), a_errors.recv())
        .await
        .expect("a realtime:error too")
        .expect("error stream open");
    assert_eq!(event.code, "rate_limited");
    assert_eq!(event.channel.as_deref(), Some("public:flood"));

    // The project's other socket has its own budget.
    b.publish("public:flood", "chat", json!({"from": "b"}))
        .await
        .expect("another socket of the project is not limited");

    // Other writes share the socket's budget: empty it, then presence:update.
    let _sub = b.subscribe("public:p").await.expect("subscribe");
    let mut limited = None;
    for _ in 0..20 {
        if let Err(e) = b.update_presence("public:p", json!({"s": 1})).await {
            limited = Some(e);
            break;
        }
    }
    let e = limited.expect("presence updates are limited too");
    assert_eq!(code(&e), "rate_limited", "{e}");

    // After the refill (1 / PER_SEC s a token), the first socket works again.
    tokio::time::sleep(Duration::from_millis(1000 / u64::from(PER_SEC) + 50)).await;
    a.publish("public:flood", "chat", json!({"again": true}))
        .await
        .expect("works again under the rate");
    a.close();
    b.close();
}

/// The project's sockets and HTTP publishes share one event budget on a
/// node: each socket under its own rate cannot add up to any write rate.
/// Over it, a socket event is refused with `rate_limited` (saying the
/// project is over its rate) and an HTTP publish with 429 and
/// `Retry-After`; nothing refused is written.
#[tokio::test]
async fn a_project_shares_one_event_budget_across_sockets_and_http() {
    const BURST: u32 = 4;
    let fx = fixture_with("rt-lim-project", |c| {
        c.realtime_max_project_events_per_sec = 1;
        c.realtime_project_event_burst = BURST;
    })
    .await;
    let a = connect(&fx, &fx.p.service).await;
    let b = connect(&fx, &fx.p.service).await;
    let started = std::time::Instant::now();
    let mut accepted = 0;
    let mut socket_refusals = Vec::new();
    for (who, rt) in [
        ("a", &a),
        ("b", &b),
        ("a", &a),
        ("b", &b),
        ("a", &a),
        ("b", &b),
    ] {
        match rt
            .publish("public:busy", "chat", json!({ "from": who }))
            .await
        {
            Ok(_) => accepted += 1,
            Err(e) => socket_refusals.push(e),
        }
    }
    let http = admin_req(&fx, reqwest::Method::POST, "/realtime/v1/messages")
        .json(&json!({"channel": "public:busy", "event": "chat", "payload": {"from": "http"}}))
        .send()
        .await
        .expect("http publish");
    let elapsed = started.elapsed();
    let refilled = elapsed.as_secs() as i64 + 1;

    // Six events from two sockets whose own budget (burst 100) is far off.
    assert!(
        !socket_refusals.is_empty(),
        "two sockets sent {accepted} events over a project burst of {BURST} in {elapsed:?}"
    );
    for e in &socket_refusals {
        assert_eq!(code(e), "rate_limited", "{e}");
        assert!(e.to_string().contains("project"), "says whose rate: {e}");
    }
    if http.status() == 201 {
        accepted += 1;
    } else {
        assert_eq!(http.status(), 429, "the HTTP publish is refused too");
        let retry: u64 = http
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=2).contains(&retry), "Retry-After: {retry}");
        let body: serde_json::Value = http.json().await.expect("JSON error");
        assert_eq!(body["code"], "rate_limited", "{body}");
    }
    assert!(
        accepted <= i64::from(BURST) + refilled,
        "{accepted} accepted in {elapsed:?}"
    );
    assert_eq!(
        rows_of(&fx, "messages", "public:busy").await,
        accepted,
        "a refused event writes nothing"
    );
    a.close();
    b.close();
}

/// Beyond the project's socket cap on a node a connection is refused at
/// the handshake (`connect_error`, `too_many_sockets`) and the client does
/// not retry; another project still connects; a closed socket frees its
/// place.
#[tokio::test]
async fn a_project_has_at_most_its_socket_cap_on_a_node() {
    let fx = fixture_with("rt-lim-sock", |c| {
        c.realtime_max_sockets_per_project = 2;
    })
    .await;
    let first = connect(&fx, &fx.p.anon).await;
    let _second = connect(&fx, &fx.p.service).await;
    let third = Client::new(&fx.p.url, &fx.p.anon)
        .expect("client")
        .realtime()
        .await;
    let e = refused(third, "the third socket");
    assert_eq!(code(&e), "connect_error", "{e}");
    assert!(
        e.to_string().contains("too_many_sockets"),
        "the reason is given: {e}"
    );

    let other = fx.t.create_project("rt-lim-sock-other").await;
    let elsewhere = Client::new(&other.url, &other.anon)
        .expect("client")
        .realtime()
        .await
        .expect("another project still connects");
    elsewhere.close();

    // A closed socket frees its place (once the server saw it go).
    first.close();
    let mut reconnected = None;
    for _ in 0..50 {
        match Client::new(&fx.p.url, &fx.p.anon)
            .expect("client")
            .realtime()
            .await
        {
            Ok(rt) => {
                reconnected = Some(rt);
                break;
            }
            Err(e) => {
                assert!(e.to_string().contains("too_many_sockets"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(reconnected.is_some(), "the closed socket's place was freed");
}

/// What the unmodified `socket.io-client` sees: a refused handshake is a
/// `connect_error` whose message starts with `too_many_sockets:` and the
/// client does not retry it; the channel and rate refusals are the usual
/// error acks (`retryAfterMs` on `rate_limited`, honest: waiting that long
/// is enough).
#[tokio::test]
async fn socket_io_client_sees_the_limits() {
    let fx = fixture_with("rt-lim-js", |c| {
        c.realtime_max_sockets_per_project = 2;
        c.realtime_max_channels_per_socket = 1;
        c.realtime_max_events_per_sec = 5;
        c.realtime_event_burst = 2;
    })
    .await;
    let s = spec(&fx, "limits").await;
    run_script(env_path("FERROBASE_PEERS_NODE"), "realtime_js.mjs", &s).await;
}

/// After a reconnection the SDK joins its channels again and catches up on
/// each (a subscribe and a history request per channel, more events than the
/// socket's burst): refused with `rate_limited`, it waits as told and
/// retries, so no channel is lost.
#[tokio::test]
async fn the_sdk_rejoins_every_channel_after_a_reconnect_within_the_rate() {
    let fx = fixture_with("rt-lim-resub", |c| {
        c.realtime_max_events_per_sec = 5;
        c.realtime_event_burst = 3;
    })
    .await;
    let service = Client::new(&fx.p.url, &fx.p.service).expect("client");
    let rt = service.realtime().await.expect("connect");
    let channels = ["public:r1", "public:r2", "public:r3"];
    let mut subs = Vec::new();
    for ch in channels {
        subs.push(rt.subscribe(ch).await.expect("subscribe within the burst"));
    }

    fx.t.app.realtime.disconnect_all().await;
    let mut ids = Vec::new();
    for ch in channels {
        ids.push(
            service
                .publish(ch, "chat", json!({"text": "while away"}))
                .await
                .expect("http publish"),
        );
    }
    for ((sub, id), ch) in subs.iter_mut().zip(&ids).zip(channels) {
        let mut got = false;
        while let Some(ev) = sub.next_timeout(Duration::from_secs(5)).await {
            if matches!(&ev, ferrobase::RealtimeEvent::Message(m) if &m.meta.message_id == id) {
                got = true;
                break;
            }
        }
        assert!(got, "{ch} was not rejoined after the reconnection");
    }
    rt.close();
}
