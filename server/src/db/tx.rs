//! The data API's per-request transaction, built to cost one round trip.
//!
//! Every data-plane statement must run inside a transaction that switched to
//! the caller's role and set `request.jwt.claims` (DESIGN §4). Done naively,
//! that is three round trips and four freshly parsed statements per request
//! (`BEGIN` + `set_config`s, the query, `COMMIT`). [`PooledTx`] instead:
//!
//! - defers the prologue (`BEGIN`, then one prepared statement that sets role,
//!   claims and `statement_timeout` and reads the schema version) until the
//!   first statement of the request, and sends both together: tokio-postgres
//!   writes requests issued before their responses arrive back to back, so
//!   Postgres receives `BEGIN`, the prologue and the statement in one packet;
//!   for the last statement of a plain read or write, `COMMIT` joins that
//!   packet too ([`PooledTx::query_final`]), so such a request is one round
//!   trip;
//! - when that last statement is also the first (a one-statement request,
//!   the common case), goes further: the prologue and the statement are sent
//!   under a single `Sync` ([`tokio_postgres::Client::query_pipeline`], our
//!   one addition to the vendored tokio-postgres), where Postgres runs them in
//!   one implicit transaction and commits at the `Sync`. No `BEGIN`, no
//!   `COMMIT`, and one reply instead of four (tokio-postgres otherwise ends
//!   every statement with its own `Sync`, and each costs Postgres a reply
//!   and a flush);
//! - prepares statements once per connection (a bounded per-connection cache
//!   of query shapes), so Postgres binds and executes instead of parsing and
//!   planning on every request;
//! - checks the schema version optimistically: the statement was built with
//!   the cached schema of version `expected`; when the prologue reports
//!   another version, [`PooledTx::is_stale`] says so and the caller rolls back
//!   and replays the request with a reloaded cache (nothing was committed).
//!
//! Safety of the role switch does not rest on timing: the prologue's request
//! is handed to the connection strictly before the statement's and the
//! statement's strictly before `COMMIT` (the futures are polled in order, and
//! every statement is prepared before the pipeline starts, so no send can be
//! delayed past a later one), Postgres executes them in that order in one
//! session, and if the prologue fails the transaction is aborted, so the
//! statement fails too, and the prologue's error is what the caller sees.
//! Under a single `Sync` the same holds by the protocol: after an error
//! Postgres skips every message up to the `Sync` and rolls back.
//! A transaction dropped while open (a cancelled request) closes its
//! connection instead of returning it to the pool, so neither an open
//! transaction nor its role can reach another request.

use std::sync::{Arc, Mutex};

use futures_util::future::{OptionFuture, join4};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

/// The statement run after `BEGIN`: role, claims and statement timeout for
/// this transaction only (`is_local`), and the project's schema version.
///
/// The version is read from its sequence directly rather than through
/// `_ferrobase.schema_version()`: that function is `security definer` with
/// a `search_path` setting, so it cannot be inlined and each call switched
/// user, saved and restored `search_path` and planned its body again. Read
/// here, the subquery is planned once with the prepared statement, and its
/// privilege is checked when the statement starts, before the role switch,
/// as the connection's login role (the project owner, which created the
/// sequence); anon, authenticated and service_role may read it too (V10).
const PROLOGUE_SQL: &str = "select set_config('role', $1, true), \
     set_config('request.jwt.claims', $2, true), set_config('statement_timeout', $3, true), \
     (select last_value from _ferrobase.schema_version)";
const PROLOGUE_TYPES: [Type; 3] = [Type::TEXT, Type::TEXT, Type::TEXT];

/// Prepared statements kept per connection; when full, the cache is emptied
/// (the statements are closed on the server) and refills with what is hot.
/// Generated SQL has a bounded number of shapes per query pattern, but a
/// client can invent patterns, so the cache must not grow without bound.
pub const STATEMENT_CACHE_MAX: usize = 256;

/// Parameter types declared when preparing: all `unknown`, so Postgres infers
/// each one from its context exactly as for an untyped literal.
const UNKNOWN_TYPES: [Type; 64] = [const { Type::UNKNOWN }; 64];

/// Where the transaction stands.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Nothing sent yet.
    Pending,
    /// `BEGIN` and the prologue were sent; the schema version they read
    /// (`None` when they failed).
    Open(Option<i64>),
    /// A statement ran with `COMMIT` in the same pipeline
    /// ([`PooledTx::query_final`]): no transaction is open. The next statement
    /// would open a new one, with the same prologue.
    Committed(i64),
    /// A single-`Sync` pipeline failed after its prologue ran: rolled back,
    /// no transaction is open, the schema version is known.
    RolledBack(i64),
}

/// A pooled connection inside a transaction that runs as the caller's role.
/// See the module docs for how it is sent.
///
/// Finish it with [`PooledTx::commit`] or [`PooledTx::rollback`]. If it is
/// dropped while open (the request was cancelled), the connection is closed
/// rather than returned to the pool.
pub struct PooledTx {
    conn: Option<deadpool_postgres::Object>,
    role: String,
    claims: Arc<str>,
    timeout: String,
    state: Mutex<State>,
    expected: Option<i64>,
}

impl PooledTx {
    /// A transaction that will run as `role` with `claims_json` (the
    /// claims as JSON text, shared with the verified-token cache so it is not
    /// serialised per request), to be opened with its first statement.
    /// `expected` is the schema version the caller's statements are built for
    /// (`None`: unknown, never stale).
    pub fn new(
        conn: deadpool_postgres::Object,
        role: &str,
        claims_json: Arc<str>,
        statement_timeout_ms: u64,
        expected: Option<i64>,
    ) -> PooledTx {
        PooledTx {
            conn: Some(conn),
            role: role.to_owned(),
            claims: claims_json,
            timeout: format!("{statement_timeout_ms}ms"),
            state: Mutex::new(State::Pending),
            expected,
        }
    }

    fn conn(&self) -> &deadpool_postgres::Object {
        match &self.conn {
            Some(conn) => conn,
            // `conn` is only taken by `finish` (which consumes self) and Drop.
            None => unreachable!("PooledTx used after it was finished"),
        }
    }

    fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// The schema version the prologue returned, once it has run.
    pub fn version(&self) -> Option<i64> {
        match self.state() {
            State::Open(v) => v,
            State::Committed(v) | State::RolledBack(v) => Some(v),
            State::Pending => None,
        }
    }

    /// Whether a statement committed in its own round trip
    /// ([`PooledTx::query_final`], [`PooledTx::execute_final`]) and no
    /// transaction was opened since.
    pub fn is_committed(&self) -> bool {
        matches!(self.state(), State::Committed(_))
    }

    /// Whether a transaction is open on the connection.
    pub fn is_open(&self) -> bool {
        matches!(self.state(), State::Open(_))
    }

    /// Whether the schema changed since the statements were built: the
    /// request must be rolled back and replayed with a reloaded cache.
    pub fn is_stale(&self) -> bool {
        match (self.expected, self.version()) {
            (Some(expected), Some(actual)) => expected != actual,
            _ => false,
        }
    }

    /// A prepared statement for `sql` from this connection's cache.
    async fn prepare(&self, sql: &str, types: &[Type]) -> Result<Statement, tokio_postgres::Error> {
        let conn = self.conn();
        let cache = &conn.statement_cache;
        if cache.size() >= STATEMENT_CACHE_MAX {
            cache.clear();
        }
        let prepared = cache.prepare_typed(conn, sql, types).await;
        if prepared.is_err() {
            // Failed shapes leave an empty slot behind: drop it, so failing
            // queries cannot grow the cache.
            cache.remove(sql, types);
        }
        prepared
    }

    /// Sends, in one pipeline: `BEGIN` and the prologue (unless a
    /// transaction is open), `statement`, and `COMMIT` when `commit`.
    /// `statement` must hand its request to the connection on its first poll
    /// (a prepared statement, or an unnamed one sent whole), so nothing can
    /// overtake it. Returns the statement's result, or the first error of
    /// the prologue or the `COMMIT`.
    async fn pipeline<T, F>(&self, statement: F, commit: bool) -> Result<T, tokio_postgres::Error>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let open_version = match self.state() {
            State::Open(v) => Some(v),
            State::Pending | State::Committed(_) | State::RolledBack(_) => None,
        };
        // Prepared before anything is sent, so that polling the prologue
        // below sends its Bind/Execute at once.
        let prologue = match open_version {
            Some(_) => None,
            None => Some(self.prepare(PROLOGUE_SQL, &PROLOGUE_TYPES).await?),
        };
        let client: &tokio_postgres::Client = self.conn();
        let claims: &str = &self.claims;
        let values: [&(dyn ToSql + Sync); 3] = [&self.role, &claims, &self.timeout];
        // From here on the connection may be inside a transaction: a
        // cancellation drops the connection (see Drop).
        self.set_state(State::Open(open_version.flatten()));
        // `join4` polls its futures in order on every poll, so on the first
        // one BEGIN, the prologue, the statement and COMMIT are handed to the
        // connection in that order.
        let (begin, setup, result, end) = join4(
            OptionFuture::from(prologue.is_some().then(|| client.batch_execute("BEGIN"))),
            OptionFuture::from(prologue.as_ref().map(|p| client.query_one(p, &values))),
            statement,
            OptionFuture::from(commit.then(|| client.batch_execute("COMMIT"))),
        )
        .await;
        begin.transpose()?;
        let version = match setup {
            Some(row) => Some(row?.try_get::<_, Option<i64>>(3)?.unwrap_or(-1)),
            None => open_version.flatten(),
        };
        self.set_state(State::Open(version));
        if let Some(end) = end {
            end?;
            self.set_state(State::Committed(version.unwrap_or(-1)));
        }
        result
    }

    /// The whole request in one reply: the prologue and `sql` under a single
    /// `Sync` ([`tokio_postgres::Client::query_pipeline`]), so they run in one
    /// implicit transaction that Postgres commits at the `Sync`, without
    /// `BEGIN` and `COMMIT`. If the prologue fails, the statement is skipped
    /// and the prologue's error is returned; if either fails, nothing is
    /// committed and no transaction is left open.
    async fn one_sync(
        &self,
        sql: &str,
        types: &[Type],
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<tokio_postgres::PipelineOutput, tokio_postgres::Error> {
        // Both prepared before anything is sent (a cached shape costs nothing).
        let prologue = self.prepare(PROLOGUE_SQL, &PROLOGUE_TYPES).await?;
        let stmt = self.prepare(sql, types).await?;
        let claims: &str = &self.claims;
        let values: [&(dyn ToSql + Sync); 3] = [&self.role, &claims, &self.timeout];
        // Until the reply is in, a cancellation drops the connection (Drop).
        self.set_state(State::Open(None));
        let (outputs, error) = self
            .conn()
            .query_pipeline_partial(&[(&prologue, &values), (&stmt, params)])
            .await;
        let mut outputs = outputs.into_iter();
        // The prologue's row, when it ran (even if the statement then failed:
        // the caller still needs the version to tell a stale cache).
        let version = match outputs.next().as_ref().and_then(|o| o.rows.first()) {
            Some(row) => Some(row.try_get::<_, Option<i64>>(3)?.unwrap_or(-1)),
            None => None,
        };
        match (error, outputs.next(), version) {
            (None, Some(out), Some(version)) => {
                self.set_state(State::Committed(version));
                Ok(out)
            }
            (Some(e), _, version) => {
                // Rolled back at the Sync: nothing is open. Without the
                // prologue's row, `open` reads the version if asked.
                self.set_state(version.map_or(State::Pending, State::RolledBack));
                Err(e)
            }
            (None, _, _) => unreachable!("query_pipeline returns one output per statement"),
        }
    }

    /// Opens the transaction now if no statement did yet; returns the schema
    /// version.
    pub async fn open(&self) -> Result<i64, tokio_postgres::Error> {
        if self.version().is_none() {
            self.pipeline(async { Ok(()) }, false).await?;
        }
        Ok(self.version().unwrap_or(-1))
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        commit: bool,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let client: &tokio_postgres::Client = self.conn();
        match UNKNOWN_TYPES.get(..params.len()) {
            Some(types) if commit && !self.is_open() => {
                Ok(self.one_sync(sql, types, params).await?.rows)
            }
            Some(types) => {
                let stmt = self.prepare(sql, types).await?;
                self.pipeline(client.query(&stmt, params), commit).await
            }
            None => {
                // More parameters than shapes worth caching: unnamed statement.
                let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                    params.iter().map(|p| (*p, Type::UNKNOWN)).collect();
                self.pipeline(client.query_typed(sql, &typed), commit).await
            }
        }
    }

    /// Runs `sql` (parameters declared `unknown`: Postgres infers each one's
    /// type from its context, exactly as for an untyped literal) as a cached
    /// prepared statement; returns its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.rows(sql, params, false).await
    }

    /// Like [`PooledTx::query`], committing in the same round trip: for the
    /// last statement of a read whose response cannot fail afterwards.
    /// [`PooledTx::commit`] and [`PooledTx::rollback`] then have nothing left
    /// to do; a further statement would run in a new transaction with the
    /// same role and claims, never outside one.
    pub async fn query_final(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.rows(sql, params, true).await
    }

    /// Like [`PooledTx::query`], returning the number of rows affected.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        self.count(sql, params, false).await
    }

    /// Like [`PooledTx::execute`], committing in the same round trip (see
    /// [`PooledTx::query_final`]). It returns `Ok` only once the commit
    /// succeeded (an explicit `COMMIT`, or the implicit one at the `Sync`
    /// of a one-statement request, whose `ReadyForQuery` Postgres sends after
    /// the commit is durable), so the write is as durable as with a separate
    /// `COMMIT`, and a failure at commit time (a deferred constraint) is this
    /// call's error.
    pub async fn execute_final(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        self.count(sql, params, true).await
    }

    async fn count(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        commit: bool,
    ) -> Result<u64, tokio_postgres::Error> {
        let client: &tokio_postgres::Client = self.conn();
        match UNKNOWN_TYPES.get(..params.len()) {
            Some(types) if commit && !self.is_open() => {
                Ok(self.one_sync(sql, types, params).await?.rows_affected)
            }
            Some(types) => {
                let stmt = self.prepare(sql, types).await?;
                self.pipeline(client.execute(&stmt, params), commit).await
            }
            None => {
                use futures_util::StreamExt;
                let typed = params.iter().map(|p| (*p, Type::UNKNOWN));
                self.pipeline(
                    async {
                        let stream = client.query_typed_raw(sql, typed).await?;
                        futures_util::pin_mut!(stream);
                        while let Some(row) = stream.next().await {
                            row?;
                        }
                        Ok(stream.rows_affected().unwrap_or(0))
                    },
                    commit,
                )
                .await
            }
        }
    }

    /// Runs parameterless statements in the transaction (simple protocol).
    pub async fn batch_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        let client: &tokio_postgres::Client = self.conn();
        self.pipeline(client.batch_execute(sql), false).await
    }

    /// Commits (durably: `COMMIT` is awaited) and hands the connection back.
    pub async fn commit(self) -> Result<deadpool_postgres::Object, tokio_postgres::Error> {
        self.finish("COMMIT").await
    }

    /// Rolls back and hands the connection back.
    pub async fn rollback(self) -> Result<deadpool_postgres::Object, tokio_postgres::Error> {
        self.finish("ROLLBACK").await
    }

    async fn finish(
        mut self,
        sql: &str,
    ) -> Result<deadpool_postgres::Object, tokio_postgres::Error> {
        // Never opened, or already committed: there is nothing to end.
        if self.is_open() {
            self.conn().batch_execute(sql).await?;
            self.set_state(State::Pending);
        }
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => unreachable!("PooledTx finished twice"),
        }
    }
}

impl Drop for PooledTx {
    fn drop(&mut self) {
        // Open, or in the middle of a pipeline that was cancelled.
        let open = self.is_open();
        if let Some(conn) = self.conn.take()
            && open
        {
            // Detach from the pool and close: the server aborts the transaction.
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}
