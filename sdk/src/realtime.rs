//! The realtime client: a small Socket.IO v5 / Engine.IO v4 client over a
//! WebSocket (tokio-tungstenite), speaking Ferrobase's realtime contract.
//!
//! Why not `rust_socketio`: it pins a second HTTP stack (reqwest 0.12 with
//! native-tls/OpenSSL) and an older tungstenite. The subset a realtime
//! client needs (text packets on the default namespace, acks, ping/pong) is
//! a few hundred lines, and tokio-tungstenite is already in the tree.
//!
//! - [`Realtime::connect`] (or [`Client::realtime`]) opens the socket with
//!   the client's access token (or key) in the handshake `auth`.
//! - [`Realtime::subscribe`] returns a [`Subscription`]: presence members at
//!   subscribe time and a stream of typed [`RealtimeEvent`]s for the channel
//!   (messages, presence, database changes).
//! - [`Realtime::publish`], [`Realtime::history`],
//!   [`Realtime::update_presence`], [`Realtime::set_token`].
//! - When the connection drops, the client reconnects with backoff,
//!   subscribes again and fetches the messages it missed
//!   (`realtime:history` since the last message id it saw).
//! - [`RealtimeAdmin`] ([`Client::realtime_admin`]) manages channels and
//!   change capture; [`Client::publish`] publishes over HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::Client;
use crate::error::{Error, Result};

/// Connection settings of [`Realtime`].
#[derive(Debug, Clone)]
pub struct RealtimeOptions {
    /// Reconnect (and resubscribe) when the connection drops. Default true.
    pub reconnect: bool,
    /// Longest wait between reconnection attempts. Default 5 s.
    pub max_reconnect_delay: Duration,
    /// How long a request (subscribe, publish, ...) waits for its ack. Default 10 s.
    pub request_timeout: Duration,
}

impl Default for RealtimeOptions {
    fn default() -> Self {
        Self {
            reconnect: true,
            max_reconnect_delay: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// `meta` of a message: where and from whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Channel (as subscribed).
    pub channel: String,
    /// Outbox id (use as `since` for [`Realtime::history`]).
    pub message_id: String,
    /// `user`, `anon`, `service` or `system`.
    pub sender_type: String,
    /// User id of a `user` sender.
    pub sender_id: Option<String>,
    /// RFC 3339 time the message was stored.
    pub timestamp: String,
}

/// A channel message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Event name.
    pub event: String,
    /// The published payload (without `meta`).
    pub payload: Value,
    /// Where and from whom.
    pub meta: Meta,
}

impl Message {
    /// The payload as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.payload.clone()).map_err(|e| Error::Decode(e.to_string()))
    }
}

/// A database change (`db:{schema}:{table}` channels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// `INSERT`, `UPDATE` or `DELETE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The new row (`None` for deletes).
    pub record: Option<Value>,
    /// The old row (`None` for inserts).
    pub old_record: Option<Value>,
    /// When the change was made.
    pub commit_timestamp: String,
    /// Channel and outbox id.
    pub meta: Meta,
}

impl Change {
    /// The new row as `T`.
    pub fn decode_record<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.record
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::Decode(e.to_string()))
    }
}

/// A presence member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Unique per connection.
    pub presence_id: String,
    /// `user`, `anon` or `service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// User id, for users.
    #[serde(default)]
    pub user_id: Option<String>,
    /// State set by the member.
    #[serde(default)]
    pub state: Value,
    /// When it joined.
    pub joined_at: String,
}

/// Something that happened on a subscribed channel.
#[derive(Debug, Clone, PartialEq)]
pub enum RealtimeEvent {
    /// A published message.
    Message(Message),
    /// A database change.
    Change(Change),
    /// A member joined.
    PresenceJoin(Member),
    /// A member left (or its connection died).
    PresenceLeave(Member),
    /// A member changed its state.
    PresenceUpdate(Member),
}

/// An error the server reported with `realtime:error`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerError {
    /// Channel concerned, if any.
    #[serde(default)]
    pub channel: Option<String>,
    /// Stable code, e.g. `forbidden`, `token_expired`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

enum Command {
    Emit {
        event: String,
        data: Value,
        ack: Option<oneshot::Sender<Value>>,
    },
    Close,
}

struct SubState {
    tx: mpsc::UnboundedSender<RealtimeEvent>,
    /// The subscribe request, re-sent after a reconnection.
    request: Value,
    /// Last message id delivered (for history catch-up).
    last_id: Option<i64>,
    changes: bool,
}

#[derive(Default)]
struct Shared {
    subs: HashMap<String, SubState>,
    token: String,
    errors: Vec<mpsc::UnboundedSender<ServerError>>,
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection to a project's realtime hub. Cheap to clone; the connection
/// closes when [`Realtime::close`] is called or every clone is dropped.
#[derive(Clone)]
pub struct Realtime {
    cmd: mpsc::UnboundedSender<Command>,
    shared: Arc<Mutex<Shared>>,
    options: RealtimeOptions,
    _guard: Arc<TaskGuard>,
}

struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Realtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realtime").finish_non_exhaustive()
    }
}

/// The channel's events, with the presence members at subscribe time.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    members: Vec<Member>,
    rx: mpsc::UnboundedReceiver<RealtimeEvent>,
}

impl Subscription {
    /// Channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Presence members when the subscription was made.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The next event (`None` once unsubscribed or closed).
    pub async fn next(&mut self) -> Option<RealtimeEvent> {
        self.rx.recv().await
    }

    /// The next event within `timeout`.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Option<RealtimeEvent> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

/// The Socket.IO endpoint of a project URL, as a WebSocket URL.
fn socket_url(project: &url::Url) -> Result<String> {
    let mut u = project.clone();
    let scheme = match u.scheme() {
        "https" => "wss",
        _ => "ws",
    };
    u.set_scheme(scheme)
        .map_err(|()| Error::InvalidUrl(project.to_string()))?;
    let path = format!("{}/realtime/v1/socket.io/", u.path().trim_end_matches('/'));
    u.set_path(&path);
    u.set_query(Some("EIO=4&transport=websocket"));
    Ok(u.to_string())
}

fn ack_error(v: &Value) -> Option<Error> {
    if v["ok"] == json!(false) {
        return Some(Error::Realtime {
            code: v["error"]["code"].as_str().unwrap_or("error").to_owned(),
            message: v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    None
}

fn closed() -> Error {
    Error::Realtime {
        code: "connection_closed".into(),
        message: "The realtime connection is closed.".into(),
    }
}

impl Realtime {
    /// Connects to the project at `project_url` with `token` (anon key,
    /// service-role key or a user's access token).
    pub async fn connect(
        project_url: &url::Url,
        token: &str,
        options: RealtimeOptions,
    ) -> Result<Realtime> {
        let url = socket_url(project_url)?;
        let shared = Arc::new(Mutex::new(Shared {
            token: token.to_owned(),
            ..Shared::default()
        }));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(drive(
            url,
            shared.clone(),
            cmd_tx.clone(),
            cmd_rx,
            options.clone(),
            ready_tx,
        ));
        let guard = Arc::new(TaskGuard(task));
        match tokio::time::timeout(options.request_timeout, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(Realtime {
                cmd: cmd_tx,
                shared,
                options,
                _guard: guard,
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(Error::Realtime {
                code: "timeout".into(),
                message: "Timed out connecting to the realtime hub.".into(),
            }),
        }
    }

    async fn request(&self, event: &str, data: Value) -> Result<Value> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Emit {
                event: event.to_owned(),
                data,
                ack: Some(tx),
            })
            .map_err(|_| closed())?;
        let v = tokio::time::timeout(self.options.request_timeout, rx)
            .await
            .map_err(|_| Error::Realtime {
                code: "timeout".into(),
                message: format!("No answer to {event}."),
            })?
            .map_err(|_| closed())?;
        match ack_error(&v) {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }

    /// Subscribes to `channel` (joining its presence with an empty state).
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        self.subscribe_with(channel, json!({})).await
    }

    /// Subscribes without joining presence (an observer).
    pub async fn observe(&self, channel: &str) -> Result<Subscription> {
        self.subscribe_request(channel, json!({"channel": channel, "presence": false}))
            .await
    }

    /// Subscribes to `channel` with an initial presence `state`.
    pub async fn subscribe_with(&self, channel: &str, state: Value) -> Result<Subscription> {
        self.subscribe_request(channel, json!({"channel": channel, "state": state}))
            .await
    }

    async fn subscribe_request(&self, channel: &str, request: Value) -> Result<Subscription> {
        let (tx, rx) = mpsc::unbounded_channel();
        // Registered first, so nothing sent right after the ack is missed.
        lock(&self.shared).subs.insert(
            channel.to_owned(),
            SubState {
                tx,
                request: request.clone(),
                last_id: None,
                changes: channel.starts_with("db:"),
            },
        );
        match self.request("realtime:subscribe", request).await {
            Ok(v) => {
                let members =
                    serde_json::from_value(v["presence"]["members"].clone()).unwrap_or_default();
                Ok(Subscription {
                    channel: channel.to_owned(),
                    members,
                    rx,
                })
            }
            Err(e) => {
                lock(&self.shared).subs.remove(channel);
                Err(e)
            }
        }
    }

    /// Leaves a channel (and its presence).
    pub async fn unsubscribe(&self, channel: &str) -> Result<()> {
        lock(&self.shared).subs.remove(channel);
        self.request("realtime:unsubscribe", json!({"channel": channel}))
            .await
            .map(|_| ())
    }

    /// Publishes `payload` (a JSON object) as `event`; returns the message id.
    pub async fn publish(
        &self,
        channel: &str,
        event: &str,
        payload: impl Serialize,
    ) -> Result<String> {
        let payload = serde_json::to_value(payload).map_err(|e| Error::Encode(e.to_string()))?;
        let v = self
            .request(
                "realtime:publish",
                json!({"channel": channel, "event": event, "payload": payload}),
            )
            .await?;
        Ok(v["messageId"].as_str().unwrap_or_default().to_owned())
    }

    /// Retained messages of `channel` after message id `since` (oldest first).
    pub async fn history(
        &self,
        channel: &str,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let mut req = json!({"channel": channel, "limit": limit});
        if let Some(s) = since {
            req["since"] = json!(s);
        }
        let v = self.request("realtime:history", req).await?;
        Ok(v["messages"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|m| {
                        parse_message(m["event"].as_str().unwrap_or_default(), &m["payload"])
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Sets this connection's presence state on `channel`.
    pub async fn update_presence(&self, channel: &str, state: Value) -> Result<()> {
        self.request(
            "presence:update",
            json!({"channel": channel, "state": state}),
        )
        .await
        .map(|_| ())
    }

    /// Replaces the token (before the current one expires); also used when
    /// reconnecting.
    pub async fn set_token(&self, token: &str) -> Result<()> {
        self.request("realtime:auth", json!({"token": token}))
            .await?;
        lock(&self.shared).token = token.to_owned();
        Ok(())
    }

    /// A stream of the errors the server reports with `realtime:error`.
    pub fn errors(&self) -> mpsc::UnboundedReceiver<ServerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared).errors.push(tx);
        rx
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.cmd.send(Command::Close);
    }
}

fn parse_message(event: &str, data: &Value) -> Option<Message> {
    let meta: Meta = serde_json::from_value(data.get("meta")?.clone()).ok()?;
    let mut payload = data.clone();
    if let Some(o) = payload.as_object_mut() {
        o.remove("meta");
    }
    Some(Message {
        event: event.to_owned(),
        payload,
        meta,
    })
}

/// Routes an incoming event to its subscription.
fn dispatch(shared: &Mutex<Shared>, event: &str, data: Value) {
    let mut s = lock(shared);
    if event == "realtime:error" {
        if let Ok(e) = serde_json::from_value::<ServerError>(data) {
            s.errors.retain(|tx| tx.send(e.clone()).is_ok());
        }
        return;
    }
    let (channel, ev) = match event {
        "presence:join" | "presence:leave" | "presence:update" => {
            let Some(channel) = data["channel"].as_str().map(str::to_owned) else {
                return;
            };
            let Ok(m) = serde_json::from_value::<Member>(data) else {
                return;
            };
            let ev = match event {
                "presence:join" => RealtimeEvent::PresenceJoin(m),
                "presence:leave" => RealtimeEvent::PresenceLeave(m),
                _ => RealtimeEvent::PresenceUpdate(m),
            };
            (channel, ev)
        }
        _ => {
            let Some(channel) = data["meta"]["channel"].as_str().map(str::to_owned) else {
                return;
            };
            let is_change = s.subs.get(&channel).is_some_and(|c| c.changes);
            let ev = if is_change {
                match serde_json::from_value::<Change>(data) {
                    Ok(c) => RealtimeEvent::Change(c),
                    Err(_) => return,
                }
            } else {
                match parse_message(event, &data) {
                    Some(m) => RealtimeEvent::Message(m),
                    None => return,
                }
            };
            (channel, ev)
        }
    };
    if let Some(sub) = s.subs.get_mut(&channel) {
        if let RealtimeEvent::Message(m) = &ev {
            let id = m.meta.message_id.parse::<i64>().ok();
            if id.is_some() && id <= sub.last_id {
                return; // already delivered (history catch-up overlap)
            }
            sub.last_id = id.or(sub.last_id);
        }
        let _ = sub.tx.send(ev);
    }
}

enum Ended {
    /// Closed on purpose (or every handle dropped).
    Closed,
    /// The connection was lost.
    Lost,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn drive(
    url: String,
    shared: Arc<Mutex<Shared>>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    mut cmd_rx: mpsc::UnboundedReceiver<Command>,
    options: RealtimeOptions,
    ready: oneshot::Sender<Result<()>>,
) {
    let mut ready = Some(ready);
    let mut delay = Duration::from_millis(100);
    loop {
        let token = lock(&shared).token.clone();
        match open(&url, &token).await {
            Ok(ws) => {
                delay = Duration::from_millis(100);
                let reconnected = ready.is_none();
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
                if reconnected {
                    // A reconnection: subscribe again and catch up.
                    tokio::spawn(resubscribe(shared.clone(), cmd_tx.clone(), options.clone()));
                }
                match session(ws, &shared, &mut cmd_rx).await {
                    Ended::Closed => return,
                    Ended::Lost if !options.reconnect => return,
                    Ended::Lost => {}
                }
            }
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                if matches!(&e, Error::Realtime { code, .. } if code == "connect_error") {
                    return; // the token was refused: retrying cannot help
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(options.max_reconnect_delay);
    }
}

/// Times a request made while resubscribing is retried after `rate_limited`.
const RESUBSCRIBE_RETRIES: usize = 10;

/// How long to wait before retrying, when an ack refused the event for
/// going over the socket's rate (`rate_limited`, `retryAfterMs`).
fn rate_limited_for(ack: &Value) -> Option<Duration> {
    if ack["ok"] != json!(false) || ack["error"]["code"] != json!("rate_limited") {
        return None;
    }
    let ms = ack["error"]["retryAfterMs"].as_u64().unwrap_or(100);
    Some(Duration::from_millis(ms.clamp(1, 5_000)))
}

async fn resubscribe(
    shared: Arc<Mutex<Shared>>,
    cmd: mpsc::UnboundedSender<Command>,
    options: RealtimeOptions,
) {
    let subs: Vec<(String, Value, Option<i64>, bool)> = lock(&shared)
        .subs
        .iter()
        .map(|(k, v)| (k.clone(), v.request.clone(), v.last_id, v.changes))
        .collect();
    // The server limits a socket's events per second: joining many channels
    // again may meet `rate_limited`, which says when to retry.
    let ask = async |event: &str, data: Value| -> Option<Value> {
        for _ in 0..RESUBSCRIBE_RETRIES {
            let (tx, rx) = oneshot::channel();
            let _ = cmd.send(Command::Emit {
                event: event.to_owned(),
                data: data.clone(),
                ack: Some(tx),
            });
            let v = tokio::time::timeout(options.request_timeout, rx)
                .await
                .ok()?
                .ok()?;
            match rate_limited_for(&v) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Some(v),
            }
        }
        None
    };
    for (channel, request, last, changes) in subs {
        let _ = ask("realtime:subscribe", request).await;
        if changes {
            continue;
        }
        let mut req = json!({"channel": channel, "limit": 1000});
        if let Some(l) = last {
            req["since"] = json!(l.to_string());
        }
        if let Some(v) = ask("realtime:history", req).await
            && let Some(list) = v["messages"].as_array()
        {
            for m in list {
                dispatch(
                    &shared,
                    m["event"].as_str().unwrap_or_default(),
                    m["payload"].clone(),
                );
            }
        }
    }
}

/// WebSocket + Engine.IO open + Socket.IO connect with `auth: {token}`.
async fn open(url: &str, token: &str) -> Result<Ws> {
    let io_err = |e: &dyn std::fmt::Display| Error::Realtime {
        code: "connection_failed".into(),
        message: e.to_string(),
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| io_err(&e))?;
    // Engine.IO open packet: 0{"sid":..., "pingInterval":...}
    loop {
        let text = next_text(&mut ws).await?;
        if text.starts_with('0') {
            break;
        }
    }
    let connect = format!("40{}", json!({"token": token}));
    ws.send(WsMessage::text(connect))
        .await
        .map_err(|e| io_err(&e))?;
    loop {
        let text = next_text(&mut ws).await?;
        if text == "2" {
            ws.send(WsMessage::text("3"))
                .await
                .map_err(|e| io_err(&e))?;
        } else if text.starts_with("40") {
            return Ok(ws);
        } else if let Some(body) = text.strip_prefix("44") {
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            return Err(Error::Realtime {
                code: "connect_error".into(),
                message: v["message"].as_str().unwrap_or(body).to_owned(),
            });
        }
    }
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(WsMessage::Close(_))) | None => return Err(closed()),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return Err(Error::Realtime {
                    code: "connection_failed".into(),
                    message: e.to_string(),
                });
            }
        }
    }
}

/// Splits a Socket.IO packet body after its type: optional ack id, then JSON.
fn split_ack(body: &str) -> (Option<u64>, &str) {
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    let (id, rest) = body.split_at(digits);
    (id.parse().ok(), rest)
}

async fn session(
    mut ws: Ws,
    shared: &Mutex<Shared>,
    cmd_rx: &mut mpsc::UnboundedReceiver<Command>,
) -> Ended {
    let mut pending: HashMap<u64, oneshot::Sender<Value>> = HashMap::new();
    let mut next_id: u64 = 0;
    loop {
        tokio::select! {
            cmd = cmd_rx.recv() => match cmd {
                None | Some(Command::Close) => {
                    let _ = ws.send(WsMessage::text("41")).await;
                    let _ = ws.close(None).await;
                    return Ended::Closed;
                }
                Some(Command::Emit { event, data, ack }) => {
                    let body = json!([event, data]).to_string();
                    let packet = match ack {
                        Some(tx) => {
                            next_id += 1;
                            pending.insert(next_id, tx);
                            format!("42{next_id}{body}")
                        }
                        None => format!("42{body}"),
                    };
                    if ws.send(WsMessage::text(packet)).await.is_err() {
                        return Ended::Lost;
                    }
                }
            },
            msg = next_text(&mut ws) => {
                let Ok(text) = msg else { return Ended::Lost };
                if text == "2" {
                    if ws.send(WsMessage::text("3")).await.is_err() {
                        return Ended::Lost;
                    }
                } else if text == "1" || text == "41" {
                    return Ended::Lost;
                } else if let Some(body) = text.strip_prefix("42") {
                    let (_, json_part) = split_ack(body);
                    if let Ok(Value::Array(mut parts)) = serde_json::from_str::<Value>(json_part)
                        && !parts.is_empty()
                    {
                        let data = if parts.len() > 1 { parts.remove(1) } else { Value::Null };
                        if let Some(event) = parts.first().and_then(Value::as_str) {
                            dispatch(shared, event, data);
                        }
                    }
                } else if let Some(body) = text.strip_prefix("43") {
                    let (id, json_part) = split_ack(body);
                    if let (Some(id), Ok(Value::Array(mut parts))) = (id, serde_json::from_str::<Value>(json_part))
                        && let Some(tx) = pending.remove(&id)
                    {
                        let v = if parts.is_empty() { Value::Null } else { parts.remove(0) };
                        let _ = tx.send(v);
                    }
                }
            }
        }
    }
}

impl Client {
    /// Connects to this project's realtime hub as this client's user (or key).
    pub async fn realtime(&self) -> Result<Realtime> {
        self.realtime_with(RealtimeOptions::default()).await
    }

    /// [`Client::realtime`] with options.
    pub async fn realtime_with(&self, options: RealtimeOptions) -> Result<Realtime> {
        let token = self
            .access_token()
            .unwrap_or_else(|| self.api_key())
            .to_owned();
        Realtime::connect(self.project_url(), &token, options).await
    }

    /// Publishes a message over HTTP (`POST {project}/realtime/v1/messages`);
    /// returns its id.
    pub async fn publish(
        &self,
        channel: &str,
        event: &str,
        payload: impl Serialize,
    ) -> Result<String> {
        let payload = serde_json::to_value(payload).map_err(|e| Error::Encode(e.to_string()))?;
        let v: Value = self
            .json_call(
                Method::POST,
                &["realtime", "v1", "messages"],
                Some(&json!({"channel": channel, "event": event, "payload": payload})),
            )
            .await?;
        Ok(v["messageId"].as_str().unwrap_or_default().to_owned())
    }

    /// Channel and change-capture administration (needs the service-role key).
    pub fn realtime_admin(&self) -> RealtimeAdmin {
        RealtimeAdmin {
            client: self.clone(),
        }
    }

    async fn json_call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<T> {
        let url = self.endpoint(segments.iter().copied());
        let mut builder = self
            .http_client()
            .request(method, url)
            .headers(self.auth_headers()?);
        if let Some(b) = body {
            builder = builder.json(b);
        }
        let response = self.execute(builder.build()?).await?.error_for_status()?;
        crate::http::decode_json(&response.body)
    }
}

/// A channel definition (see the server's `/admin/v1/realtime/channels`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelDef {
    /// Id.
    pub id: String,
    /// LIKE pattern, e.g. `room:%`.
    pub pattern: String,
    /// Free text.
    pub description: Option<String>,
    /// Public (any valid key) or private (RLS on `realtime.messages`).
    pub public: bool,
    /// Disabled channels refuse subscriptions and messages.
    pub enabled: bool,
    /// Hours messages are kept for history.
    pub retention_hours: i32,
}

/// Realtime administration of a project.
#[derive(Debug, Clone)]
pub struct RealtimeAdmin {
    client: Client,
}

impl RealtimeAdmin {
    /// Every channel definition.
    pub async fn list_channels(&self) -> Result<Vec<ChannelDef>> {
        self.client
            .json_call(Method::GET, &["admin", "v1", "realtime", "channels"], None)
            .await
    }

    /// Defines a channel: `{pattern, public?, enabled?, retention_hours?, description?}`.
    pub async fn create_channel(&self, definition: Value) -> Result<ChannelDef> {
        self.client
            .json_call(
                Method::POST,
                &["admin", "v1", "realtime", "channels"],
                Some(&definition),
            )
            .await
    }

    /// Changes a channel definition.
    pub async fn update_channel(&self, id: &str, changes: Value) -> Result<ChannelDef> {
        self.client
            .json_call(
                Method::PATCH,
                &["admin", "v1", "realtime", "channels", id],
                Some(&changes),
            )
            .await
    }

    /// Deletes a channel definition.
    pub async fn delete_channel(&self, id: &str) -> Result<()> {
        let _: Value = self
            .client
            .json_call(
                Method::DELETE,
                &["admin", "v1", "realtime", "channels", id],
                None,
            )
            .await?;
        Ok(())
    }

    /// Captures inserts/updates/deletes of `schema.table` as change events.
    pub async fn enable_changes(
        &self,
        schema: &str,
        table: &str,
        insert: bool,
        update: bool,
        delete: bool,
    ) -> Result<()> {
        let _: Value = self
            .client
            .json_call(
                Method::PUT,
                &["admin", "v1", "realtime", "changes", schema, table],
                Some(&json!({"insert": insert, "update": update, "delete": delete})),
            )
            .await?;
        Ok(())
    }

    /// Stops capturing a table's changes.
    pub async fn disable_changes(&self, schema: &str, table: &str) -> Result<()> {
        let _: Value = self
            .client
            .json_call(
                Method::DELETE,
                &["admin", "v1", "realtime", "changes", schema, table],
                None,
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls() {
        let u = url::Url::parse("http://127.0.0.1:8080/p/acme/").expect("url");
        assert_eq!(
            socket_url(&u).expect("ws"),
            "ws://127.0.0.1:8080/p/acme/realtime/v1/socket.io/?EIO=4&transport=websocket"
        );
        let h = url::Url::parse("https://acme.example.com/").expect("url");
        assert_eq!(
            socket_url(&h).expect("wss"),
            "wss://acme.example.com/realtime/v1/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn a_rate_limited_ack_says_how_long_to_wait() {
        let refused = json!({"ok": false, "error": {"code": "rate_limited", "retryAfterMs": 40}});
        assert_eq!(rate_limited_for(&refused), Some(Duration::from_millis(40)));
        let other = json!({"ok": false, "error": {"code": "forbidden", "message": "no"}});
        assert_eq!(rate_limited_for(&other), None);
        assert_eq!(rate_limited_for(&json!({"ok": true})), None);
        let huge =
            json!({"ok": false, "error": {"code": "rate_limited", "retryAfterMs": u64::MAX}});
        assert_eq!(rate_limited_for(&huge), Some(Duration::from_secs(5)));
    }

    #[test]
    fn ack_ids() {
        assert_eq!(split_ack("12[1]"), (Some(12), "[1]"));
        assert_eq!(split_ack("[1]"), (None, "[1]"));
    }

    #[test]
    fn messages_split_meta() {
        let m = parse_message(
            "chat",
            &json!({"text": "hi", "meta": {"channel": "c", "messageId": "7", "senderType": "anon", "senderId": null, "timestamp": "t"}}),
        )
        .expect("message");
        assert_eq!(m.payload, json!({"text": "hi"}));
        assert_eq!(m.meta.message_id, "7");
    }
}
