//! Ferrobase addition (not in upstream tokio-postgres 0.7.18): several
//! prepared statements sent back to back and closed by a single `Sync`.
//!
//! Upstream ends every statement with its own `Sync`, so even a pipelined
//! `BEGIN; statement; COMMIT` costs Postgres one `ReadyForQuery` (and a flush)
//! per statement, plus the explicit transaction commands. Between two `Sync`s
//! the extended protocol runs everything in one implicit transaction: it
//! commits at the `Sync` when every statement succeeded, and when one fails,
//! Postgres skips the rest up to the `Sync` and rolls back. That makes a
//! single-`Sync` pipeline an atomic unit with one reply.

use crate::client::InnerClient;
use crate::codec::FrontendMessage;
use crate::connection::RequestMessages;
use crate::query::{encode_bind, extract_row_affected};
use crate::types::ToSql;
use crate::{Error, Row, Statement};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

/// What one statement of a [`Client::query_pipeline`](crate::Client::query_pipeline) returned.
#[derive(Debug)]
pub struct PipelineOutput {
    /// The rows the statement returned.
    pub rows: Vec<Row>,
    /// The number of rows it affected (as in `Client::execute`).
    pub rows_affected: u64,
}

pub async fn query_pipeline(
    client: &InnerClient,
    statements: &[(&Statement, &[&(dyn ToSql + Sync)])],
) -> Result<Vec<PipelineOutput>, Error> {
    match query_pipeline_partial(client, statements).await {
        (out, None) => Ok(out),
        (_, Some(e)) => Err(e),
    }
}

pub async fn query_pipeline_partial(
    client: &InnerClient,
    statements: &[(&Statement, &[&(dyn ToSql + Sync)])],
) -> (Vec<PipelineOutput>, Option<Error>) {
    let mut out = Vec::with_capacity(statements.len());
    let error = run(client, statements, &mut out).await.err();
    (out, error)
}

async fn run(
    client: &InnerClient,
    statements: &[(&Statement, &[&(dyn ToSql + Sync)])],
    out: &mut Vec<PipelineOutput>,
) -> Result<(), Error> {
    let buf = client.with_buf(|buf| {
        for (statement, params) in statements {
            encode_bind(statement, params.iter().copied(), "", buf)?;
            frontend::execute("", 0, buf).map_err(Error::encode)?;
        }
        frontend::sync(buf);
        Ok(buf.split().freeze())
    })?;
    let mut responses = client.send(RequestMessages::Single(FrontendMessage::Raw(buf)))?;
    // The first ErrorResponse ends this with that error (the statement that
    // failed, or the implicit COMMIT); Postgres skipped everything after it.
    for (statement, _) in statements {
        match responses.next().await? {
            Message::BindComplete => {}
            _ => return Err(Error::unexpected_message()),
        }
        let mut rows = Vec::new();
        let rows_affected = loop {
            match responses.next().await? {
                Message::DataRow(body) => rows.push(Row::new((*statement).clone(), body)?),
                Message::CommandComplete(body) => break extract_row_affected(&body)?,
                Message::EmptyQueryResponse => break 0,
                _ => return Err(Error::unexpected_message()),
            }
        };
        out.push(PipelineOutput {
            rows,
            rows_affected,
        });
    }
    // The implicit transaction commits here: a failure to commit (a deferred
    // constraint, a serialization failure) arrives as an error instead.
    match responses.next().await? {
        Message::ReadyForQuery(_) => Ok(()),
        _ => Err(Error::unexpected_message()),
    }
}
