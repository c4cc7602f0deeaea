//! The realtime hub: Socket.IO (socketioxide) channels with presence and
//! history, database change events filtered by each subscriber's RLS, and an
//! HTTP publish endpoint. Contract and event names follow InsForge's realtime.
//!
//! Layout:
//! - [`channel`]: channel/event names parsed at the edge;
//! - [`store`]: every SQL statement (channels, RLS checks, outbox, presence);
//! - [`socket`]: the Socket.IO handlers (thin: parse → call → answer);
//! - [`http`]: `POST /realtime/v1/messages` and the `/admin/v1/realtime` API;
//! - [`limits`]: what one socket and one project may cost (channels per
//!   socket, events per second, sockets per project);
//! - [`config`]: the `FERROBASE_REALTIME_*` settings.
//!
//! How a message travels (DESIGN §5): every message is a row of the project's
//! `realtime.messages` (the outbox), written in the publishing transaction.
//! An insert trigger sends an empty `NOTIFY ferrobase_realtime`. Each node
//! holds, per project that has sockets on it, one dedicated connection that
//! `LISTEN`s; on a wake-up (or every `FERROBASE_REALTIME_POLL_MS` when none
//! comes) it reads the rows after the last id it delivered and fans them out
//! to its own sockets. So a lost notification only delays a message, a large
//! row never meets NOTIFY's size limit, and no state is sticky to a node.
//! Identity values are taken at insert but become visible at commit, so a
//! row can appear after a higher id was read: ids skipped over are kept as
//! "gaps" and re-read for a while ([`GAP_TTL`]).

pub mod channel;
pub mod http;
pub mod limits;
pub mod socket;
pub mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SocketIo, layer::SocketIoLayer};
use uuid::Uuid;

pub use crate::config::RealtimeConfig;
use crate::error::ApiResult;
use crate::state::App;
use crate::tenant::{Caller, Tenant};

/// How long an id skipped by a catch-up read is re-checked (a transaction
/// that took the id may still commit).
pub const GAP_TTL: Duration = Duration::from_secs(10);
/// Upper bound on remembered gaps per project.
const MAX_GAPS: usize = 10_000;
/// Rows read per catch-up query.
const READ_BATCH: i64 = 500;
/// How long a table's SELECT policies are reused for change events.
const POLICY_TTL: Duration = Duration::from_secs(2);
/// How often expired messages are purged (by every node with sockets of the project).
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// Room messages kept at most for one socket while its token is re-checked;
/// beyond it they are dropped and the socket is told (`messages_dropped`).
const MAX_HELD: usize = 1000;

/// The node's realtime hub (one per server process).
pub struct Hub {
    inner: Arc<Inner>,
    layer: SocketIoLayer,
}

/// Shared state of the hub, reached from Socket.IO handlers (through a weak
/// reference: the Socket.IO instance is owned by it).
pub struct Inner {
    app: Weak<App>,
    io: SocketIo,
    /// This node's id (presence rows are tagged with it).
    node_id: String,
    config: RealtimeConfig,
    projects: Mutex<HashMap<Uuid, Arc<ProjectHub>>>,
    /// Each project's event budget on this node (sockets and HTTP together).
    project_events: limits::ProjectBudgets,
}

/// Handle given to Socket.IO handlers as state.
#[derive(Clone)]
pub struct HubRef(Arc<OnceLock<Weak<Inner>>>);

impl HubRef {
    /// The hub, unless the server is shutting down.
    pub fn get(&self) -> Option<Arc<Inner>> {
        self.0.get().and_then(Weak::upgrade)
    }
}

/// One project's sockets on this node, and the task delivering its outbox.
pub struct ProjectHub {
    id: Uuid,
    tenant: Arc<Tenant>,
    sessions: Mutex<HashMap<Sid, Arc<Session>>>,
    /// Change subscriptions: outbox topic (`db:s:t`) → socket → channel names.
    changes: Mutex<HashMap<String, HashMap<Sid, Vec<channel::Channel>>>>,
    /// SELECT rules of captured tables, re-read after [`POLICY_TTL`].
    policies: Mutex<HashMap<String, (Instant, Arc<store::ReadPolicies>)>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Taken by each room fan-out and by [`ProjectHub::hold`] and
    /// [`ProjectHub::release`], so a message is either sent before a socket
    /// is held or kept for it.
    fanout: tokio::sync::Mutex<()>,
    /// Room messages kept for sockets whose token is being re-checked.
    held: Mutex<HashMap<Sid, Held>>,
}

/// Room messages kept for one socket during a token re-check.
#[derive(Default)]
struct Held {
    /// (channel, event, body), in outbox order.
    messages: Vec<(String, String, Value)>,
    /// Messages dropped over [`MAX_HELD`].
    dropped: usize,
}

impl Drop for ProjectHub {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
    }
}

/// What the hub knows about one connected socket.
pub struct Session {
    /// The socket.
    pub socket: SocketRef,
    /// Its project.
    pub tenant: Arc<Tenant>,
    auth: Mutex<Auth>,
    /// Subscribed channels by name.
    channels: Mutex<HashMap<String, channel::Channel>>,
    /// Channels where this socket is a presence member.
    presence: Mutex<HashSet<String>>,
    /// Joins in flight (each holds a channel slot until it is in `channels`).
    joining: AtomicUsize,
    /// The socket's event budget ([`limits::TokenBucket`]).
    events: Mutex<limits::TokenBucket>,
    /// Serialises token changes with joins and leaves: a join authorized
    /// with the old token cannot land after the re-check of the new one.
    /// Joins and leaves share it (read), a token change takes it alone.
    pub(crate) auth_gate: tokio::sync::RwLock<()>,
}

/// A channel slot held by a join in flight; released on drop (by then the
/// channel is in the session's map, or the join failed).
pub struct JoinSlot<'a>(&'a AtomicUsize);

impl Drop for JoinSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Auth {
    caller: Caller,
    /// Expiry of the token (unix seconds), if any.
    exp: Option<u64>,
}

impl Session {
    /// The caller as currently authenticated.
    pub fn caller(&self) -> Caller {
        lock(&self.auth).caller.clone()
    }

    fn expired(&self, now: u64) -> bool {
        lock(&self.auth).exp.is_some_and(|e| e <= now)
    }

    /// A new session of `socket`, with a full event budget.
    fn new(
        socket: SocketRef,
        tenant: Arc<Tenant>,
        caller: Caller,
        config: &RealtimeConfig,
    ) -> Self {
        let exp = caller.claims["exp"].as_u64();
        Session {
            socket,
            tenant,
            auth: Mutex::new(Auth { caller, exp }),
            channels: Mutex::default(),
            presence: Mutex::default(),
            joining: AtomicUsize::new(0),
            events: Mutex::new(limits::TokenBucket::new(
                config.realtime_max_events_per_sec,
                config.realtime_event_burst,
                Instant::now(),
            )),
            auth_gate: tokio::sync::RwLock::new(()),
        }
    }

    /// Spends one event of the socket's budget, or says how long until one
    /// is available.
    fn take_event(&self) -> Result<(), Duration> {
        lock(&self.events).try_take(Instant::now())
    }

    /// Holds a channel slot for joining `name` (none is needed to join a
    /// channel again), or refuses when the socket has `max` already. The
    /// check and the reservation happen under the channels lock, so two
    /// joins racing cannot both take the last slot.
    fn reserve_channel(&self, name: &str, max: usize) -> ApiResult<Option<JoinSlot<'_>>> {
        let channels = lock(&self.channels);
        if channels.contains_key(name) {
            return Ok(None);
        }
        limits::check_channels(channels.len(), self.joining.load(Ordering::SeqCst), max)?;
        self.joining.fetch_add(1, Ordering::SeqCst);
        Ok(Some(JoinSlot(&self.joining)))
    }

    fn set_auth(&self, caller: Caller) {
        let exp = caller.claims["exp"].as_u64();
        *lock(&self.auth) = Auth { caller, exp };
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Socket.IO room of a broadcast channel of a project (rooms are global
/// to the instance, so they carry the project id).
fn room(project: Uuid, topic: &str) -> String {
    format!("{project}\u{1f}{topic}")
}

/// The Socket.IO room holding only one socket of a project (to leave it out
/// of a room's fan-out while it is held).
fn socket_room(project: Uuid, sid: Sid) -> String {
    format!("{project}\u{1e}{sid}")
}

impl Hub {
    /// Builds the hub; `app` is the (not yet complete) application it serves.
    pub fn new(app: Weak<App>, config: RealtimeConfig) -> Hub {
        let engine_limit = (config.realtime_max_message_bytes as u64)
            .saturating_mul(4)
            .max(1 << 20);
        let cell: Arc<OnceLock<Weak<Inner>>> = Arc::default();
        let (layer, io) = SocketIo::builder()
            .req_path("/realtime/v1/socket.io")
            .ping_interval(Duration::from_millis(config.realtime_ping_interval_ms))
            .ping_timeout(Duration::from_millis(
                config.realtime_ping_interval_ms.clamp(1000, 20_000),
            ))
            .max_payload(engine_limit)
            .ws_max_message_size(usize::try_from(engine_limit).unwrap_or(usize::MAX))
            .with_state(HubRef(cell.clone()))
            .build_layer();
        io.ns("/", socket::on_connect.with(socket::authenticate));
        let inner = Arc::new(Inner {
            app,
            io,
            node_id: Uuid::new_v4().to_string(),
            project_events: limits::ProjectBudgets::new(
                config.realtime_max_project_events_per_sec,
                config.realtime_project_event_burst,
            ),
            config,
            projects: Mutex::new(HashMap::new()),
        });
        let _ = cell.set(Arc::downgrade(&inner));
        Hub { inner, layer }
    }

    /// The Socket.IO layer, mounted at `/p/{ref}/realtime/v1/socket.io/`.
    pub fn layer(&self) -> SocketIoLayer {
        self.layer.clone()
    }

    /// The shared state.
    pub fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Disconnects every socket and stops the delivery tasks (at shutdown).
    pub async fn shutdown(&self) {
        let projects: Vec<Arc<ProjectHub>> =
            lock(&self.inner.projects).drain().map(|(_, p)| p).collect();
        for p in &projects {
            if let Some(t) = lock(&p.task).take() {
                t.abort();
            }
        }
        let _ = self.inner.io.disconnect().await;
    }

    /// Disconnects every socket of this node (clients reconnect); used by
    /// tests of reconnection, and by operators draining a node.
    pub async fn disconnect_all(&self) {
        let _ = self.inner.io.disconnect().await;
    }

    /// Number of sockets connected to this node (all projects).
    pub fn socket_count(&self) -> usize {
        lock(&self.inner.projects)
            .values()
            .map(|p| lock(&p.sessions).len())
            .sum()
    }
}

use socketioxide::handler::ConnectHandler as _;

impl Inner {
    /// The application, unless it is shutting down.
    pub fn app(&self) -> Option<Arc<App>> {
        self.app.upgrade()
    }

    /// Settings.
    pub fn config(&self) -> &RealtimeConfig {
        &self.config
    }

    /// Spends one event of `project`'s budget on this node (every socket
    /// event and HTTP publish that reaches the database does); over it, counts
    /// the refusal and says how long until one is available (the caller
    /// refuses with [`limits::project_rate_limited`]).
    pub fn take_project_event(&self, project: Uuid) -> Result<(), Duration> {
        self.project_events
            .try_take(project, Instant::now())
            .inspect_err(|_| limits::count_refusal("project_rate_limited"))
    }

    /// This project's hub on this node, created (with its delivery task) on
    /// first use. The last outbox id is read before it is returned, so a
    /// message published after a socket connected is always delivered.
    pub async fn project(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
    ) -> crate::error::ApiResult<Arc<ProjectHub>> {
        let id = tenant.project.id;
        if let Some(p) = lock(&self.projects).get(&id) {
            return Ok(p.clone());
        }
        let app = self
            .app()
            .ok_or_else(|| crate::error::ApiError::unavailable("The server is shutting down."))?;
        let pool = app.project_pool(tenant);
        let last = store::last_id(&**pool.get().await?).await?;
        let mut projects = lock(&self.projects);
        if let Some(p) = projects.get(&id) {
            return Ok(p.clone());
        }
        let hub = Arc::new(ProjectHub {
            id,
            tenant: tenant.clone(),
            sessions: Mutex::new(HashMap::new()),
            changes: Mutex::new(HashMap::new()),
            policies: Mutex::new(HashMap::new()),
            task: Mutex::new(None),
            fanout: tokio::sync::Mutex::new(()),
            held: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(deliver_loop(
            Arc::downgrade(self),
            Arc::downgrade(&hub),
            last,
        ));
        *lock(&hub.task) = Some(task);
        projects.insert(id, hub.clone());
        Ok(hub)
    }

    /// Registers a connected socket in its project's current hub and returns
    /// that hub. The hub found when the socket authenticated may have been
    /// retired since (the project's last other socket left in between, which
    /// stops the hub's delivery task): the socket then joins the live hub,
    /// started if need be, so it never sits in a hub nobody delivers to.
    /// Refused (`too_many_sockets`) when the project already has
    /// `FERROBASE_REALTIME_MAX_SOCKETS_PER_PROJECT` sockets on this node.
    pub async fn add_session(
        self: &Arc<Self>,
        mut hub: Arc<ProjectHub>,
        session: Arc<Session>,
    ) -> crate::error::ApiResult<Arc<ProjectHub>> {
        loop {
            {
                // Under the same lock `remove_session` retires hubs with.
                let mut projects = lock(&self.projects);
                if projects.get(&hub.id).is_some_and(|p| Arc::ptr_eq(p, &hub)) {
                    let mut sessions = lock(&hub.sessions);
                    let max = self.config.realtime_max_sockets_per_project;
                    if let Err(e) = limits::check_sockets(sessions.len(), max) {
                        limits::count_refusal("too_many_sockets");
                        if sessions.is_empty() {
                            // Only with a cap of 0: retire the hub just made.
                            drop(sessions);
                            projects.remove(&hub.id);
                            if let Some(t) = lock(&hub.task).take() {
                                t.abort();
                            }
                        }
                        return Err(e);
                    }
                    sessions.insert(session.socket.id, session);
                    drop(sessions);
                    return Ok(hub);
                }
            }
            hub = self.project(&session.tenant).await?;
        }
    }

    /// Forgets a socket; the project's delivery stops with its last socket.
    pub fn remove_session(&self, project: Uuid, sid: Sid) {
        let mut projects = lock(&self.projects);
        let Some(hub) = projects.get(&project).cloned() else {
            return;
        };
        lock(&hub.sessions).remove(&sid);
        lock(&hub.held).remove(&sid);
        for subs in lock(&hub.changes).values_mut() {
            subs.remove(&sid);
        }
        if lock(&hub.sessions).is_empty() {
            projects.remove(&project);
            if let Some(t) = lock(&hub.task).take() {
                t.abort();
            }
        }
    }
}

impl ProjectHub {
    /// Adds a change subscription.
    pub fn watch_changes(&self, sid: Sid, ch: &channel::Channel) {
        lock(&self.changes)
            .entry(ch.topic())
            .or_default()
            .entry(sid)
            .or_default()
            .push(ch.clone());
    }

    /// Removes a change subscription.
    pub fn unwatch_changes(&self, sid: Sid, name: &str, topic: &str) {
        let mut changes = lock(&self.changes);
        if let Some(subs) = changes.get_mut(topic) {
            if let Some(list) = subs.get_mut(&sid) {
                list.retain(|c| c.name() != name);
                if list.is_empty() {
                    subs.remove(&sid);
                }
            }
            if subs.is_empty() {
                changes.remove(topic);
            }
        }
    }

    /// The Socket.IO room of a broadcast channel.
    pub fn room(&self, topic: &str) -> String {
        room(self.id, topic)
    }

    /// The room holding only socket `sid`.
    pub fn socket_room(&self, sid: Sid) -> String {
        socket_room(self.id, sid)
    }

    /// Sends `event` to the room of channel `topic`; sockets being held get
    /// it later, from [`ProjectHub::release`].
    async fn fan_out(&self, io: &SocketIo, topic: &str, event: &str, body: &Value) {
        let _turn = self.fanout.lock().await;
        let held: Vec<String> = {
            let mut held = lock(&self.held);
            let sessions = lock(&self.sessions);
            for (sid, h) in held.iter_mut() {
                let joined = sessions
                    .get(sid)
                    .is_some_and(|s| lock(&s.channels).contains_key(topic));
                if !joined {
                    continue;
                }
                if h.messages.len() < MAX_HELD {
                    h.messages
                        .push((topic.to_owned(), event.to_owned(), body.clone()));
                } else {
                    h.dropped += 1;
                }
            }
            held.keys().map(|sid| self.socket_room(*sid)).collect()
        };
        let _ = io.to(self.room(topic)).except(held).emit(event, body).await;
    }

    /// Stops room messages from reaching socket `sid` (they are kept) until
    /// [`ProjectHub::release`]: while a token change is re-checked, nothing
    /// reaches the socket under a token that is no longer its own.
    pub async fn hold(&self, sid: Sid) {
        let _turn = self.fanout.lock().await;
        lock(&self.held).insert(sid, Held::default());
    }

    /// Ends [`ProjectHub::hold`]: sends the kept messages of the channels
    /// `session` is still in (those it was refused were left meanwhile).
    pub async fn release(&self, session: &Session) {
        let _turn = self.fanout.lock().await;
        let Some(held) = lock(&self.held).remove(&session.socket.id) else {
            return;
        };
        for (topic, event, body) in held.messages {
            if lock(&session.channels).contains_key(&topic) {
                let _ = session.socket.emit(&event, &body);
            }
        }
        if held.dropped > 0 {
            let _ = session.socket.emit(
                "realtime:error",
                &json!({"code": "messages_dropped", "message": format!(
                    "{} messages arrived while the token was re-checked and were dropped; read them with realtime:history.",
                    held.dropped
                )}),
            );
        }
    }
}

/// The per-project delivery task: LISTEN, catch up by id, fan out; also
/// presence heartbeats, token expiry, and the retention purge.
async fn deliver_loop(inner: Weak<Inner>, hub: Weak<ProjectHub>, mut last: i64) {
    let mut gaps: BTreeMap<i64, Instant> = BTreeMap::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let (Some(inner_s), Some(hub_s)) = (inner.upgrade(), hub.upgrade()) else {
            return;
        };
        let db = hub_s.tenant.project.db_config.clone();
        drop((inner_s, hub_s));
        match listen(&db).await {
            Ok((client, mut wake)) => {
                backoff = Duration::from_millis(100);
                let r =
                    serve_listener(&inner, &hub, &client, &mut wake, &mut last, &mut gaps).await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "realtime listener failed; reconnecting");
                }
            }
            Err(e) => tracing::warn!(error = %e, "realtime listener could not connect"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Opens the dedicated LISTEN connection; wake-ups arrive on the channel
/// (which closes when the connection does).
async fn listen(
    db: &tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, tokio::sync::mpsc::Receiver<()>), tokio_postgres::Error> {
    use futures_util::StreamExt as _;
    let (client, mut connection) = db.connect(tokio_postgres::NoTls).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    // A full channel already holds a pending wake-up.
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "realtime listener connection closed");
                    break;
                }
            }
        }
    });
    client.batch_execute("LISTEN ferrobase_realtime").await?;
    Ok((client, rx))
}

async fn serve_listener(
    inner: &Weak<Inner>,
    hub: &Weak<ProjectHub>,
    client: &tokio_postgres::Client,
    wake: &mut tokio::sync::mpsc::Receiver<()>,
    last: &mut i64,
    gaps: &mut BTreeMap<i64, Instant>,
) -> crate::error::ApiResult<()> {
    let mut last_heartbeat = Instant::now();
    let mut last_purge = Instant::now()
        .checked_sub(PURGE_EVERY)
        .unwrap_or_else(Instant::now);
    loop {
        let (Some(inner), Some(hub)) = (inner.upgrade(), hub.upgrade()) else {
            return Ok(());
        };
        catch_up(&inner, &hub, client, last, gaps).await?;
        let timeout = inner.config.realtime_presence_timeout_secs.max(1);
        if last_heartbeat.elapsed() >= Duration::from_secs(timeout) / 3 {
            last_heartbeat = Instant::now();
            let live: Vec<String> = lock(&hub.sessions)
                .values()
                .filter(|s| !lock(&s.presence).is_empty())
                .map(|s| s.socket.id.to_string())
                .collect();
            store::presence_heartbeat(client, &inner.node_id, &live, timeout as f64).await?;
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            let n = store::purge_expired(client).await?;
            if n > 0 {
                tracing::debug!(purged = n, "purged expired realtime messages");
            }
        }
        expire_tokens(&hub);
        let poll = Duration::from_millis(inner.config.realtime_poll_ms.max(10));
        drop((inner, hub));
        tokio::select! {
            w = wake.recv() => if w.is_none() {
                return Err(crate::error::ApiError::unavailable("listener connection closed"));
            },
            () = tokio::time::sleep(poll) => {}
        }
    }
}

fn expire_tokens(hub: &ProjectHub) {
    let now = crate::crypto::unix_now();
    let expired: Vec<Arc<Session>> = lock(&hub.sessions)
        .values()
        .filter(|s| s.expired(now))
        .cloned()
        .collect();
    for s in expired {
        let _ = s.socket.emit(
            "realtime:error",
            &json!({"code": "token_expired", "message": "The token expired; send realtime:auth with a fresh one before it does."}),
        );
        let _ = s.socket.clone().disconnect();
    }
}

/// Reads and delivers every row after `last` (and the gaps that appeared).
async fn catch_up(
    inner: &Arc<Inner>,
    hub: &Arc<ProjectHub>,
    client: &tokio_postgres::Client,
    last: &mut i64,
    gaps: &mut BTreeMap<i64, Instant>,
) -> crate::error::ApiResult<()> {
    loop {
        let now = Instant::now();
        gaps.retain(|_, t| now.duration_since(*t) < GAP_TTL);
        let gap_ids: Vec<i64> = gaps.keys().copied().collect();
        let rows = store::read_since(client, *last, &gap_ids, READ_BATCH).await?;
        let full = rows.len() as i64 >= READ_BATCH;
        for row in &rows {
            if gaps.remove(&row.id).is_none() && row.id > *last {
                let mut missing = *last + 1;
                while missing < row.id && gaps.len() < MAX_GAPS {
                    gaps.insert(missing, now);
                    missing += 1;
                }
                *last = row.id;
            }
            deliver(inner, hub, row).await;
        }
        if !full {
            return Ok(());
        }
    }
}

/// Fans one outbox row out to this node's sockets.
async fn deliver(inner: &Arc<Inner>, hub: &Arc<ProjectHub>, msg: &store::Stored) {
    match msg.kind.as_str() {
        "db" => deliver_change(inner, hub, msg).await,
        "presence" => {
            let mut body = msg.payload.clone();
            body["channel"] = json!(msg.topic);
            hub.fan_out(&inner.io, &msg.topic, &msg.event, &body).await;
        }
        _ => {
            let body = msg.to_client(&msg.topic);
            hub.fan_out(&inner.io, &msg.topic, &msg.event, &body).await;
        }
    }
}

/// Subscribers of a change grouped by (role, claims): the sessions and the
/// channel name each subscribed with.
type ClaimGroups = HashMap<(String, String), Vec<(Arc<Session>, String)>>;

/// Delivers a captured change to the sockets watching its table whose RLS
/// lets them see the row: subscribers are grouped by (role, claims) and each
/// group costs one query; a failing check skips only its group.
async fn deliver_change(inner: &Arc<Inner>, hub: &Arc<ProjectHub>, msg: &store::Stored) {
    let subs: Vec<(Sid, Vec<channel::Channel>)> = match lock(&hub.changes).get(&msg.topic) {
        Some(s) => s.iter().map(|(k, v)| (*k, v.clone())).collect(),
        None => return,
    };
    let is_delete = msg.event == "DELETE";
    let row = if is_delete {
        &msg.payload["old_record"]
    } else {
        &msg.payload["record"]
    };
    // (role, claims) → [(session, channel name)]
    let mut groups: ClaimGroups = HashMap::new();
    {
        let sessions = lock(&hub.sessions);
        for (sid, channels) in subs {
            let Some(session) = sessions.get(&sid) else {
                continue;
            };
            let caller = session.caller();
            for ch in channels {
                let channel::Channel::Changes { filter, name, .. } = &ch else {
                    continue;
                };
                if filter.as_ref().is_some_and(|f| !f.matches(row)) {
                    continue;
                }
                groups
                    .entry((caller.role.clone(), caller.claims.to_string()))
                    .or_default()
                    .push((session.clone(), name.clone()));
            }
        }
    }
    if groups.is_empty() {
        return;
    }
    let schema = msg.payload["schema"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let table = msg.payload["table"].as_str().unwrap_or_default().to_owned();
    let Some(app) = inner.app() else { return };
    let pool = app.project_pool(&hub.tenant);
    let policies = match read_policies(hub, &pool, &schema, &table).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "realtime: reading the table's policies failed");
            return;
        }
    };
    let is_update = msg.event == "UPDATE";
    let old_row = &msg.payload["old_record"];
    for ((role, claims), members) in groups {
        let (visible, old_visible) = if role == "service_role" {
            (true, true)
        } else {
            let condition = policies.condition(&role);
            let target = (schema.as_str(), table.as_str());
            // An UPDATE is also judged on its old row: a row that just
            // became readable (a draft shared) must not reveal what it was.
            let mut rows = vec![row.clone()];
            if is_update {
                rows.push(old_row.clone());
            }
            match check_visible(&pool, &role, &claims, target, &condition, &rows).await {
                Ok(v) => (
                    v.first().copied().unwrap_or(false),
                    !is_update || v.get(1).copied().unwrap_or(false),
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "realtime: change visibility check failed for one claims set");
                    (false, false)
                }
            }
        };
        if !visible {
            continue;
        }
        let shown = if old_visible {
            None
        } else {
            Some(with_old_key_only(msg, &policies.key))
        };
        let msg = shown.as_ref().unwrap_or(msg);
        for (session, name) in members {
            let _ = session.socket.emit(&msg.event, &msg.to_client(&name));
        }
    }
}

/// The change with its old row cut down to the primary key (what Supabase
/// sends with RLS on), for subscribers who could not read that old row.
fn with_old_key_only(msg: &store::Stored, key: &[String]) -> store::Stored {
    let mut msg = msg.clone();
    let old = &msg.payload["old_record"];
    let kept: serde_json::Map<String, Value> = key
        .iter()
        .filter_map(|k| old.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    msg.payload["old_record"] = Value::Object(kept);
    msg
}

async fn check_visible(
    pool: &deadpool_postgres::Pool,
    role: &str,
    claims: &str,
    target: (&str, &str),
    condition: &str,
    rows: &[Value],
) -> crate::error::ApiResult<Vec<bool>> {
    let mut conn = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut conn;
    store::rows_visible(client, role, claims, target, condition, rows).await
}

async fn read_policies(
    hub: &ProjectHub,
    pool: &deadpool_postgres::Pool,
    schema: &str,
    table: &str,
) -> crate::error::ApiResult<Arc<store::ReadPolicies>> {
    let key = format!("{schema}.{table}");
    if let Some((at, p)) = lock(&hub.policies).get(&key)
        && at.elapsed() < POLICY_TTL
    {
        return Ok(p.clone());
    }
    let conn = pool.get().await?;
    let p = Arc::new(store::read_policies(&conn, schema, table).await?);
    lock(&hub.policies).insert(key, (Instant::now(), p.clone()));
    Ok(p)
}
/// A message to publish, as clients send it.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct PublishInput {
    /// Channel name, e.g. `room:1`.
    pub channel: String,
    /// Event name subscribers receive.
    pub event: String,
    /// A JSON object; subscribers get its fields plus `meta`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// Checks and publishes a message as `caller` (socket and HTTP alike).
pub async fn publish(
    app: &App,
    tenant: &Tenant,
    caller: &Caller,
    input: &PublishInput,
    max_bytes: usize,
) -> crate::error::ApiResult<store::Stored> {
    use crate::error::ApiError;
    let ch = channel::Channel::parse(&input.channel)
        .map_err(|e| ApiError::bad_request("invalid_channel", e.to_string()))?;
    if let channel::Channel::Changes { .. } = ch {
        return Err(ApiError::forbidden(
            "read_only_channel",
            "Change channels (db:…) carry database changes only; nobody can publish on them.",
        ));
    }
    channel::check_event(&input.event)
        .map_err(|e| ApiError::bad_request("invalid_event", e.to_string()))?;
    let payload = match &input.payload {
        Value::Null => json!({}),
        Value::Object(_) => input.payload.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_payload",
                "payload must be a JSON object.",
            ));
        }
    };
    let size = serde_json::to_vec(&payload)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_bytes {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The payload is {size} bytes; the limit is {max_bytes}."),
        ));
    }
    let pool = app.project_pool(tenant);
    let mut conn = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut conn;
    let def = store::usable_channel(client, &input.channel).await?;
    store::publish(client, caller, &def, &input.channel, &input.event, &payload).await
}
