//! The Socket.IO side of the hub (default namespace): the handshake checks
//! the token (`auth: {token}`, or the `apikey`/`Authorization` headers), then
//! each event handler parses its input, calls the core ([`super::store`],
//! [`super::publish`]) and answers with an ack and/or `realtime:error`.
//! Bad input never drops the socket.

use std::fmt;
use std::sync::Arc;

use serde_json::{Value, json};
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;

use super::channel::Channel;
use super::store::{self, Sender};
use super::{HubRef, Inner, ProjectHub, PublishInput, Session, limits, lock};
use crate::error::{ApiError, ApiResult};
use crate::tenant::{Caller, Tenant, verify_token};

/// Why a handshake was refused (sent to the client as `connect_error`).
#[derive(Debug)]
pub struct ConnectError(String);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

fn handshake_token(s: &SocketRef, auth: &Value) -> Option<String> {
    if let Some(t) = auth["token"].as_str().or_else(|| auth["apikey"].as_str()) {
        return Some(t.trim().to_owned());
    }
    let headers = &s.req_parts().headers;
    if let Some(v) = headers.get("apikey").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    crate::crypto::bearer_token(headers)
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// Connect middleware: verifies the token against the project in the URL.
pub async fn authenticate(
    s: SocketRef,
    State(hub): State<HubRef>,
    TryData(auth): TryData<Value>,
) -> Result<(), ConnectError> {
    let inner = hub
        .get()
        .ok_or_else(|| ConnectError("The server is shutting down.".into()))?;
    let tenant = s
        .req_parts()
        .extensions
        .get::<Arc<Tenant>>()
        .cloned()
        .ok_or_else(|| ConnectError("Unknown project.".into()))?;
    let auth = auth.unwrap_or(Value::Null);
    let token = handshake_token(&s, &auth).ok_or_else(|| {
        ConnectError(
            "missing_token: connect with auth: {token: <anon key, service-role key or access token>}."
                .into(),
        )
    })?;
    let claims = verify_token(&tenant, &token, "token")
        .map_err(|e| ConnectError(format!("{}: {}", e.code, e.message)))?;
    let role = claims["role"].as_str().unwrap_or("anon").to_owned();
    let project = inner
        .project(&tenant)
        .await
        .map_err(|e| ConnectError(format!("{}: {}", e.code, e.message)))?;
    let session = Arc::new(Session::new(
        s.clone(),
        tenant,
        Caller { role, claims },
        &inner.config,
    ));
    // Registered here, before the client is told it is connected, so no
    // event can arrive before the socket is in a live hub.
    let project = inner
        .add_session(project, session.clone())
        .await
        .map_err(|e| ConnectError(format!("{}: {}", e.code, e.message)))?;
    s.join(project.socket_room(s.id));
    s.extensions.insert(session);
    s.extensions.insert(project);
    Ok(())
}

/// Connect handler: registers the socket and its event handlers.
pub async fn on_connect(s: SocketRef, State(hub): State<HubRef>) {
    if hub.get().is_none()
        || s.extensions.get::<Arc<Session>>().is_none()
        || s.extensions.get::<Arc<ProjectHub>>().is_none()
    {
        let _ = s.disconnect();
        return;
    }
    s.on("realtime:subscribe", subscribe);
    s.on("realtime:unsubscribe", unsubscribe);
    s.on("realtime:publish", publish);
    s.on("realtime:history", history);
    s.on("realtime:auth", reauth);
    s.on("presence:update", presence_update);
    s.on_fallback(unknown_event);
    s.on_disconnect(on_disconnect);
}

struct Ctx {
    inner: Arc<Inner>,
    project: Arc<ProjectHub>,
    session: Arc<Session>,
}

fn ctx(s: &SocketRef, hub: &HubRef) -> Option<Ctx> {
    Some(Ctx {
        inner: hub.get()?,
        project: s.extensions.get::<Arc<ProjectHub>>()?,
        session: s.extensions.get::<Arc<Session>>()?,
    })
}

/// Emits `realtime:error` and acks the error when the client asked for an ack.
fn fail(s: &SocketRef, ack: AckSender, channel: Option<&str>, e: &ApiError) {
    refuse(s, ack, channel, e, None);
}

/// [`fail`], with `retryAfterMs` when waiting that long will help.
fn refuse(
    s: &SocketRef,
    ack: AckSender,
    channel: Option<&str>,
    e: &ApiError,
    retry_after_ms: Option<u64>,
) {
    let mut error = json!({"code": e.code, "message": e.message});
    if let Some(ms) = retry_after_ms {
        error["retryAfterMs"] = json!(ms);
    }
    let mut event = error.clone();
    event["channel"] = json!(channel);
    let _ = s.emit("realtime:error", &event);
    let _ = ack.send(&json!({"ok": false, "channel": channel, "error": error}));
}

/// Spends one of the socket's events, and one of its project's (every
/// event that reaches the database does); over either rate, refuses it with
/// `rate_limited` and gives no ack back (it was answered: the handler
/// returns).
fn spend_event(c: &Ctx, s: &SocketRef, ack: AckSender, channel: Option<&str>) -> Option<AckSender> {
    let refusal = match c.session.take_event() {
        Err(wait) => {
            limits::count_refusal("rate_limited");
            let e = limits::rate_limited(wait, c.inner.config.realtime_max_events_per_sec);
            Some((e, wait))
        }
        Ok(()) => c.inner.take_project_event(c.project.id).err().map(|wait| {
            let per_sec = c.inner.config.realtime_max_project_events_per_sec;
            (limits::project_rate_limited(wait, per_sec), wait)
        }),
    };
    match refusal {
        None => Some(ack),
        Some((e, wait)) => {
            refuse(s, ack, channel, &e, Some(limits::retry_ms(wait)));
            None
        }
    }
}

fn bad_input(message: &str) -> ApiError {
    ApiError::bad_request("invalid_payload", message)
}

/// `{channel}` or a bare channel name.
fn channel_arg(d: &Value) -> Option<&str> {
    d.as_str().or_else(|| d["channel"].as_str())
}

fn shutting_down() -> ApiError {
    ApiError::unavailable("The server is shutting down.")
}

async fn with_client<T>(
    c: &Ctx,
    f: impl AsyncFnOnce(&mut tokio_postgres::Client) -> ApiResult<T>,
) -> ApiResult<T> {
    let app = c.inner.app().ok_or_else(shutting_down)?;
    let pool = app.project_pool(&c.session.tenant);
    let mut conn = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut conn;
    f(client).await
}

async fn subscribe(
    s: SocketRef,
    State(hub): State<HubRef>,
    TryData(d): TryData<Value>,
    ack: AckSender,
) {
    let Some(c) = ctx(&s, &hub) else { return };
    let d = d.unwrap_or(Value::Null);
    let Some(name) = channel_arg(&d).map(str::to_owned) else {
        return fail(&s, ack, None, &bad_input("Send {channel: \"name\"}."));
    };
    let Some(ack) = spend_event(&c, &s, ack, Some(&name)) else {
        return;
    };
    let joined = {
        let _gate = c.session.auth_gate.read().await;
        do_subscribe(&c, &s, &name, &d).await
    };
    match joined {
        Ok(v) => {
            let _ = ack.send(&v);
        }
        Err(e) => fail(&s, ack, Some(&name), &e),
    }
}

async fn do_subscribe(c: &Ctx, s: &SocketRef, name: &str, d: &Value) -> ApiResult<Value> {
    let ch = Channel::parse(name)
        .map_err(|e| ApiError::bad_request("invalid_channel", e.to_string()))?;
    // Held until the channel is in the session's map (or the join failed).
    let _slot = c
        .session
        .reserve_channel(name, c.inner.config.realtime_max_channels_per_socket)
        .inspect_err(|_| limits::count_refusal("too_many_channels"))?;
    let caller = c.session.caller();
    match &ch {
        Channel::Changes { schema, table, .. } => {
            let enabled = with_client(c, async |client| {
                store::change_table(client, schema, table).await
            })
            .await?;
            if enabled.is_none() {
                return Err(ApiError::not_found(
                    "changes_not_enabled",
                    format!("Change events are not enabled for {schema}.{table}."),
                )
                .with_hint(
                    "An admin enables them with PUT /admin/v1/realtime/changes/{schema}/{table}.",
                ));
            }
            if !lock(&c.session.channels).contains_key(name) {
                c.project.watch_changes(s.id, &ch);
                lock(&c.session.channels).insert(name.to_owned(), ch.clone());
            }
            Ok(json!({"ok": true, "channel": name, "presence": {"members": []}}))
        }
        Channel::Broadcast(_) => {
            // `presence: false` subscribes without joining presence (observers).
            let join_presence = d["presence"].as_bool() != Some(false);
            let state = match &d["state"] {
                Value::Object(_) => d["state"].clone(),
                _ => json!({}),
            };
            let sid = s.id.to_string();
            let node = c.inner.node_id.clone();
            let members = with_client(c, async |client| {
                let def = store::usable_channel(client, name).await?;
                store::authorize_receive(client, &caller, &def, name).await?;
                s.join(c.project.room(name));
                lock(&c.session.channels).insert(name.to_owned(), ch.clone());
                if join_presence {
                    lock(&c.session.presence).insert(name.to_owned());
                    store::presence_join(client, name, &sid, &node, &Sender::of(&caller), &state)
                        .await
                } else {
                    store::presence_members(client, name).await
                }
            })
            .await?;
            Ok(json!({"ok": true, "channel": name, "presence": {"members": members}}))
        }
    }
}

async fn unsubscribe(
    s: SocketRef,
    State(hub): State<HubRef>,
    TryData(d): TryData<Value>,
    ack: AckSender,
) {
    let Some(c) = ctx(&s, &hub) else { return };
    let d = d.unwrap_or(Value::Null);
    let Some(name) = channel_arg(&d).map(str::to_owned) else {
        return fail(&s, ack, None, &bad_input("Send {channel: \"name\"}."));
    };
    let left = {
        let _gate = c.session.auth_gate.read().await;
        leave_channel(&c, &s, &name).await
    };
    if let Err(e) = left {
        return fail(&s, ack, Some(&name), &e);
    }
    let _ = ack.send(&json!({"ok": true, "channel": name}));
}

/// Takes the socket out of channel `name`: out of its room (or its change
/// feed) and, when it was a presence member there, out of the presence list
/// with a `presence:leave`. Only that last step can fail.
async fn leave_channel(c: &Ctx, s: &SocketRef, name: &str) -> ApiResult<()> {
    let removed = lock(&c.session.channels).remove(name);
    if let Some(ch) = &removed {
        match ch {
            Channel::Changes { .. } => c.project.unwatch_changes(s.id, name, &ch.topic()),
            Channel::Broadcast(_) => s.leave(c.project.room(name)),
        }
    }
    if lock(&c.session.presence).remove(name) {
        let sid = s.id.to_string();
        with_client(c, async |client| {
            store::presence_leave(client, &sid, Some(name)).await
        })
        .await?;
    }
    Ok(())
}

async fn publish(
    s: SocketRef,
    State(hub): State<HubRef>,
    TryData(d): TryData<Value>,
    ack: AckSender,
) {
    let Some(c) = ctx(&s, &hub) else { return };
    let d = d.unwrap_or(Value::Null);
    let channel = d["channel"].as_str().map(str::to_owned);
    let Some(ack) = spend_event(&c, &s, ack, channel.as_deref()) else {
        return;
    };
    let input: PublishInput = match serde_json::from_value(d) {
        Ok(i) => i,
        Err(_) => {
            return fail(
                &s,
                ack,
                channel.as_deref(),
                &bad_input("Send {channel, event, payload}."),
            );
        }
    };
    let Some(app) = c.inner.app() else { return };
    let caller = c.session.caller();
    let max = c.inner.config.realtime_max_message_bytes;
    match super::publish(&app, &c.session.tenant, &caller, &input, max).await {
        Ok(m) => {
            let _ = ack.send(&json!({"ok": true, "messageId": m.id.to_string()}));
        }
        Err(e) => fail(&s, ack, Some(&input.channel), &e),
    }
}

async fn history(
    s: SocketRef,
    State(hub): State<HubRef>,
    TryData(d): TryData<Value>,
    ack: AckSender,
) {
    let Some(c) = ctx(&s, &hub) else { return };
    let d = d.unwrap_or(Value::Null);
    let Some(name) = channel_arg(&d).map(str::to_owned) else {
        return fail(&s, ack, None, &bad_input("Send {channel, since?, limit?}."));
    };
    let Some(ack) = spend_event(&c, &s, ack, Some(&name)) else {
        return;
    };
    let since = match &d["since"] {
        Value::Null => Some(0),
        Value::Number(n) => n.as_i64(),
        Value::String(t) => t.parse::<i64>().ok(),
        _ => None,
    };
    let limit = match &d["limit"] {
        Value::Null => Some(100),
        Value::Number(n) => n.as_i64().filter(|l| (1..=1000).contains(l)),
        _ => None,
    };
    let (Some(since), Some(limit)) = (since, limit) else {
        return fail(
            &s,
            ack,
            Some(&name),
            &bad_input("since is a message id; limit is 1-1000."),
        );
    };
    let caller = c.session.caller();
    let result = with_client(&c, async |client| {
        if !matches!(Channel::parse(&name), Ok(Channel::Broadcast(_))) {
            return Err(ApiError::bad_request(
                "invalid_channel",
                "History is kept for broadcast channels.",
            ));
        }
        let def = store::usable_channel(client, &name).await?;
        store::authorize_receive(client, &caller, &def, &name).await?;
        store::history(client, &caller, &def, &name, since, limit).await
    })
    .await;
    match result {
        Ok(rows) => {
            let messages: Vec<Value> = rows
                .iter()
                .map(|m| json!({"event": m.event, "payload": m.to_client(&name)}))
                .collect();
            let _ = ack.send(&json!({"ok": true, "channel": name, "messages": messages}));
        }
        Err(e) => fail(&s, ack, Some(&name), &e),
    }
}

async fn reauth(
    s: SocketRef,
    State(hub): State<HubRef>,
    TryData(d): TryData<Value>,
    ack: AckSender,
) {
    let Some(c) = ctx(&s, &hub) else { return };
    let d = d.unwrap_or(Value::Null);
    let Some(token) = d.as_str().or_else(|| d["token"].as_str()) else {
        return fail(&s, ack, None, &bad_input("Send {token}."));
    };
    let Some(ack) = spend_event(&c, &s, ack, None) else {
        return;
    };
    let claims = match verify_token(&c.session.tenant, token.trim(), "token") {
        Ok(claims) => claims,
        Err(e) => return fail(&s, ack, None, &e),
    };
    let role = claims["role"].as_str().unwrap_or("anon").to_owned();
    let caller = Caller { role, claims };
    // No join or leave meanwhile, and no room message reaches the socket
    // until its channels have been re-checked against the new token.
    let _gate = c.session.auth_gate.write().await;
    c.project.hold(s.id).await;
    let changed = change_token(&c, &s, caller).await;
    c.project.release(&c.session).await;
    match changed {
        Ok(()) => {
            let _ = ack.send(&json!({"ok": true}));
        }
        Err(e) => fail(&s, ack, None, &e),
    }
}

/// Makes `caller` the socket's identity: leaves the channels it may not
/// read, and re-announces the socket's presence under the new identity.
async fn change_token(c: &Ctx, s: &SocketRef, caller: Caller) -> ApiResult<()> {
    let before = Sender::of(&c.session.caller());
    c.session.set_auth(caller.clone());
    leave_refused_channels(c, s, &caller).await;
    let after = Sender::of(&caller);
    if before != after && !lock(&c.session.presence).is_empty() {
        // Presence shows who holds the socket now, not who did.
        let sid = s.id.to_string();
        let node = c.inner.node_id.clone();
        with_client(c, async |client| {
            store::presence_reidentify(client, &sid, &node, &after).await
        })
        .await?;
    }
    Ok(())
}

/// After a token change (a refresh, a sign-out back to the anon key, another
/// user signing in on the same socket), asks again whether the caller may
/// receive on each private broadcast channel the socket joined with its
/// earlier token, and leaves those it may not (with a `realtime:error`
/// naming the channel): what the old token was allowed does not carry over.
/// Change channels need no such step: each event is checked against the
/// token current at delivery.
async fn leave_refused_channels(c: &Ctx, s: &SocketRef, caller: &Caller) {
    let joined: Vec<String> = lock(&c.session.channels)
        .iter()
        .filter(|(_, ch)| matches!(ch, Channel::Broadcast(_)))
        .map(|(name, _)| name.clone())
        .collect();
    for name in joined {
        let allowed = with_client(c, async |client| {
            let def = store::usable_channel(client, &name).await?;
            store::authorize_receive(client, caller, &def, &name).await
        })
        .await;
        let Err(e) = allowed else { continue };
        if e.status.is_server_error() {
            // Not a refusal: the database could not answer. Fail closed
            // all the same (the client may subscribe again).
            tracing::debug!(error = %e.message, "realtime: re-authorizing a channel failed");
        }
        if let Err(e) = leave_channel(c, s, &name).await {
            // The heartbeat sweep removes it after the presence timeout.
            tracing::debug!(error = %e.message, "realtime: presence leave failed");
        }
        let _ = s.emit(
            "realtime:error",
            &json!({"channel": name, "code": e.code, "message": e.message}),
        );
    }
}

async fn presence_update(
    s: SocketRef,
    State(hub): State<HubRef>,
    TryData(d): TryData<Value>,
    ack: AckSender,
) {
    let Some(c) = ctx(&s, &hub) else { return };
    let d = d.unwrap_or(Value::Null);
    let Some(name) = channel_arg(&d).map(str::to_owned) else {
        return fail(&s, ack, None, &bad_input("Send {channel, state}."));
    };
    let Some(ack) = spend_event(&c, &s, ack, Some(&name)) else {
        return;
    };
    let state = d["state"].clone();
    if !state.is_object() {
        return fail(
            &s,
            ack,
            Some(&name),
            &bad_input("state must be a JSON object."),
        );
    }
    let size = state.to_string().len();
    if size > c.inner.config.realtime_max_message_bytes {
        let e = ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "The state is {size} bytes; the limit is {}.",
                c.inner.config.realtime_max_message_bytes
            ),
        );
        return fail(&s, ack, Some(&name), &e);
    }
    if !lock(&c.session.presence).contains(&name) {
        let e = ApiError::bad_request(
            "not_subscribed",
            format!("Subscribe to {name:?} (with presence) before updating presence."),
        );
        return fail(&s, ack, Some(&name), &e);
    }
    let sid = s.id.to_string();
    match with_client(&c, async |client| {
        store::presence_update(client, &name, &sid, &state).await
    })
    .await
    {
        Ok(_) => {
            let _ = ack.send(&json!({"ok": true, "channel": name}));
        }
        Err(e) => fail(&s, ack, Some(&name), &e),
    }
}

async fn unknown_event(s: SocketRef, Event(event): Event, ack: AckSender) {
    let e = ApiError::bad_request(
        "unknown_event",
        format!(
            "Unknown event {event:?}: use realtime:subscribe, realtime:unsubscribe, realtime:publish, realtime:history, realtime:auth or presence:update."
        ),
    );
    fail(&s, ack, None, &e);
}

async fn on_disconnect(s: SocketRef, State(hub): State<HubRef>, _reason: DisconnectReason) {
    let Some(c) = ctx(&s, &hub) else { return };
    let was_present = !lock(&c.session.presence).is_empty();
    if was_present {
        let sid = s.id.to_string();
        if let Err(e) = with_client(&c, async |client| {
            store::presence_leave(client, &sid, None).await
        })
        .await
        {
            // The heartbeat sweep removes it after the presence timeout.
            tracing::debug!(error = %e, "realtime: presence leave failed");
        }
    }
    c.inner.remove_session(c.project.id, s.id);
}
