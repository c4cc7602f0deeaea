//! Database plumbing: the managed local Postgres cluster ([`embedded`]),
//! connection pools ([`pools`]) and role-switched transactions ([`begin_as`]).

pub mod embedded;
pub mod pools;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// Whether an error means the server or the connection is gone (→ 503), as
/// opposed to an error in the statement itself.
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        // Class 08 (connection exception), 57P01-57P03 (admin shutdown, crash
        // shutdown, cannot connect now), 53300 (too many connections).
        let code = db.code().code();
        return code.starts_with("08") || code.starts_with("57P") || code == "53300";
    }
    // No SQLSTATE: an I/O or protocol failure on the socket.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Builds a bounded pool. Connections are checked with a cheap `is_closed`
/// test on checkout, so a restarted Postgres is recovered from without a
/// server restart: dead connections are dropped and new ones opened.
pub fn make_pool(
    config: tokio_postgres::Config,
    max_size: usize,
    acquire_timeout: Duration,
) -> Pool {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(acquire_timeout))
        .create_timeout(Some(acquire_timeout))
        .recycle_timeout(Some(acquire_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        // Only fails when a timeout is set without a runtime; we set one.
        .expect("pool configuration is valid")
}

/// Starts a transaction that runs as `role` with `request.jwt.claims` set, as
/// every data-plane statement must (see DESIGN §4). Values are bound, never
/// interpolated.
pub async fn begin_as<'a>(
    client: &'a mut tokio_postgres::Client,
    role: &str,
    claims: &serde_json::Value,
    statement_timeout_ms: u64,
) -> Result<tokio_postgres::Transaction<'a>, tokio_postgres::Error> {
    use tokio_postgres::types::Type;
    let tx = client.transaction().await?;
    let claims = claims.to_string();
    let timeout = format!("{statement_timeout_ms}ms");
    // Typed parameters: one round trip, no separate prepare.
    tx.query_typed(
        BEGIN_AS_SQL,
        &[
            (&role, Type::TEXT),
            (&claims, Type::TEXT),
            (&timeout, Type::TEXT),
        ],
    )
    .await?;
    Ok(tx)
}

/// A pooled connection inside a transaction that runs as the caller's role,
/// opened in a single round trip (`BEGIN` and the role switch travel in one
/// simple-query batch, which also returns the project's schema version). This
/// is the data API's hot path.
///
/// Finish it with [`PooledTx::commit`] or [`PooledTx::rollback`]. If it is
/// dropped while open (the request was cancelled), the connection is closed
/// rather than returned to the pool, so an open transaction, with its role,
/// can never leak into another request.
pub struct PooledTx {
    conn: Option<deadpool_postgres::Object>,
}

impl PooledTx {
    /// Opens the transaction; returns it with the schema version.
    pub async fn begin(
        conn: deadpool_postgres::Object,
        role: &str,
        claims: &serde_json::Value,
        statement_timeout_ms: u64,
    ) -> Result<(PooledTx, i64), tokio_postgres::Error> {
        let tx = PooledTx { conn: Some(conn) };
        // Literals instead of parameters, because a simple-query batch has no
        // parameters: both are quoted (standard_conforming_strings is on).
        let sql = format!(
            "BEGIN; select set_config('role', {}, true), set_config('request.jwt.claims', {}, true), \
             set_config('statement_timeout', '{statement_timeout_ms}ms', true), _ferrobase.schema_version()",
            quote_literal(role),
            quote_literal(&claims.to_string()),
        );
        let messages = tx.client().simple_query(&sql).await?;
        let version = messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(3),
                _ => None,
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        Ok((tx, version))
    }

    /// The connection, for running statements inside the transaction.
    pub fn client(&self) -> &tokio_postgres::Client {
        match &self.conn {
            Some(conn) => conn,
            // `conn` is only taken by `finish` (which consumes self) and Drop.
            None => unreachable!("PooledTx used after it was finished"),
        }
    }

    /// Commits and hands the connection back.
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
        self.client().batch_execute(sql).await?;
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => unreachable!("PooledTx finished twice"),
        }
    }
}

impl Drop for PooledTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Detach from the pool and close: the server aborts the transaction.
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}

const BEGIN_AS_SQL: &str = "select set_config('role', $1, true), \
     set_config('request.jwt.claims', $2, true), set_config('statement_timeout', $3, true)";

/// Quotes an SQL identifier (`"` doubled). Use only on names the platform generated or validated.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal. Used only for DDL that cannot take parameters
/// (e.g. `CREATE ROLE … PASSWORD`), on platform-generated values.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Opens one connection (outside any pool) and drives it on the runtime.
pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "database connection closed");
        }
    });
    Ok(client)
}
