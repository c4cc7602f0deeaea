//! Database plumbing: the managed local Postgres cluster ([`embedded`]),
//! connection pools ([`pools`]) and role-switched transactions ([`begin_as`], and
//! [`PooledTx`], the data API's pipelined one).

pub mod cron;
pub mod embedded;
pub mod pools;
mod tx;

pub use tx::{PooledTx, STATEMENT_CACHE_MAX};

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

const BEGIN_AS_SQL: &str = "select set_config('role', $1, true), \
     set_config('request.jwt.claims', $2, true), set_config('statement_timeout', $3, true)";

/// Quotes an SQL identifier: `a"b` → `"a""b"` (the one quoting function of
/// the crate; names are still validated or platform-generated first).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal the way Postgres's `quote_literal()` does:
/// `'` doubled, and an `E''` string with `\` doubled when a backslash occurs,
/// so the value reads back unchanged whatever `standard_conforming_strings`
/// says. For SQL that cannot take parameters (DDL, generated expressions).
pub fn quote_literal(value: &str) -> String {
    let body = value.replace('\'', "''");
    if body.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
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
