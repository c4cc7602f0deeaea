//! Reads: `GET`/`HEAD` on tables and views (filters, order, ranges, counts,
//! embedding), single-object and CSV answers, and the `explain` plan.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::db::PooledTx;

use super::*;
use parse::{Logic, Query, SelectItem};
use plan::{Builder, RelInfo, SelectParts, TextParam};

/// Splits `query.params` into filters (with their embed path), except `skip` keys.
pub(super) fn collect_logic(
    query: &Query,
    skip: &[String],
) -> Result<Vec<(Vec<String>, Logic)>, RestError> {
    let mut logic = query.logic.clone();
    for (k, v) in &query.params {
        if skip.iter().any(|s| s == k) {
            continue;
        }
        let (path, f) = parse::parse_filter_param(k, v)?;
        logic.push((path, Logic::Filter(f)));
    }
    Ok(logic)
}

/// Runs `sql` as a prepared statement cached on the connection (see [`PooledTx`]):
/// parameters are declared `unknown`, so Postgres infers their types exactly as for
/// untyped literals, and they are sent as text.
pub(super) async fn query_rows(
    tx: &PooledTx,
    sql: &str,
    params: &[TextParam],
) -> Result<Vec<tokio_postgres::Row>, RestError> {
    let params: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    Ok(tx.query(sql, &params).await?)
}

/// In plan mode, runs `EXPLAIN (…) sql` instead of `sql`, keeps the plan in the context
/// and stops the request (with [`explain::PLAN_DONE`], which [`execute`] turns into the plan
/// response). Otherwise does nothing. Called right before each request's main statement.
pub(super) async fn explain_instead(
    ctx: &Ctx<'_>,
    sql: &str,
    params: &[TextParam],
) -> Result<(), RestError> {
    let Some(p) = &ctx.plan else {
        return Ok(());
    };
    let rows = query_rows(
        ctx.tx,
        &format!("EXPLAIN ({}) {sql}", p.options_sql()),
        params,
    )
    .await?;
    let body = if p.json {
        let mut plans = Vec::new();
        for r in &rows {
            let v: Value = r.try_get(0)?;
            match v {
                Value::Array(items) => plans.extend(items),
                other => plans.push(other),
            }
        }
        Value::Array(plans).to_string()
    } else {
        let mut lines = Vec::new();
        for r in &rows {
            lines.push(r.try_get::<_, String>(0)?);
        }
        lines.join("\n")
    };
    *ctx.plan_out.lock().unwrap_or_else(|e| e.into_inner()) = Some((body, p.json));
    Err(RestError::new(StatusCode::OK, explain::PLAN_DONE, "plan"))
}

/// Like [`query_rows`] for exactly one row.
pub(super) async fn query_row(
    tx: &PooledTx,
    sql: &str,
    params: &[TextParam],
) -> Result<tokio_postgres::Row, RestError> {
    query_rows(tx, sql, params)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| RestError::internal("Query returned no row"))
}

/// Runs a statement and returns the number of affected rows; with `commit`, `COMMIT`
/// goes in the same round trip (and must succeed for this to return `Ok`).
pub(super) async fn execute_count(
    tx: &PooledTx,
    sql: &str,
    params: &[TextParam],
    commit: bool,
) -> Result<u64, RestError> {
    let params: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    Ok(if commit {
        tx.execute_final(sql, &params).await?
    } else {
        tx.execute(sql, &params).await?
    })
}

/// Parses the `Range` header (`0-9`, `items=0-9`, `10-`) into (offset, optional limit).
pub(super) fn range_header(headers: &HeaderMap) -> Result<Option<(i64, Option<i64>)>, RestError> {
    let Some(r) = header_str(headers, "range") else {
        return Ok(None);
    };
    let r = r.strip_prefix("items=").unwrap_or(r);
    let bad = || {
        RestError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "PGRST103",
            "Requested range not satisfiable",
        )
        .with_details(format!("Invalid Range header '{r}'"))
    };
    let (lo, hi) = r.split_once('-').ok_or_else(bad)?;
    let lo: i64 = lo.trim().parse().map_err(|_| bad())?;
    let hi = hi.trim();
    if hi.is_empty() {
        return Ok(Some((lo, None)));
    }
    let hi: i64 = hi.parse().map_err(|_| bad())?;
    if hi < lo || lo < 0 {
        return Err(bad());
    }
    Ok(Some((lo, Some((hi - lo).saturating_add(1)))))
}

/// Combines `limit`/`offset` with the `Range` header (interval intersection).
pub(super) fn effective_range(
    parts: &mut SelectParts,
    headers: &HeaderMap,
) -> Result<(), RestError> {
    let Some((lo, rlimit)) = range_header(headers)? else {
        return Ok(());
    };
    let off = parts.offset.unwrap_or(0);
    let q_end = parts.limit.map(|l| off.saturating_add(l)); // exclusive
    let r_end = rlimit.map(|l| lo.saturating_add(l));
    let start = off.max(lo);
    let end = match (q_end, r_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    parts.offset = Some(start);
    parts.limit = end.map(|e| e.saturating_sub(start).max(0));
    Ok(())
}

/// The page's statement: its rows as the body for the chosen media type, with
/// the total (`count_expr`) and the number of rows. JSON bodies aggregate the
/// page in one pass over a subquery; CSV reads the page twice (header and
/// rows), so it goes through a CTE, which Postgres then materialises.
fn page_statement(prelude: &str, page_sql: &str, count_expr: &str, media: Media) -> String {
    let agg = match media {
        Media::Csv => {
            return format!(
                "WITH {prelude}_src AS ({page_sql}) SELECT {count_expr}, (SELECT count(*) FROM _src), \
                 (SELECT coalesce((SELECT string_agg(_k, ',') FROM json_object_keys((SELECT row_to_json(_h) FROM _src AS _h LIMIT 1)) AS _k), '') \
                 || E'\\n' || coalesce(string_agg(substring(_s::text, 2, length(_s::text) - 2), E'\\n'), '') FROM _src AS _s)"
            );
        }
        Media::Object => "coalesce((json_agg(_s) -> 0)::text, '')",
        Media::Json | Media::OpenApi => "coalesce(json_agg(_s), '[]')::text",
    };
    // A write's prelude (`_mut AS (…), `) stays a CTE: the page reads from it.
    let with = prelude
        .strip_suffix(", ")
        .map(|p| format!("WITH {p} "))
        .unwrap_or_default();
    format!("{with}SELECT {count_expr}, count(*), {agg} FROM ({page_sql}) AS _s")
}

/// Outcome of a read-style query.
pub(super) struct Page {
    pub(super) total: Option<i64>,
    pub(super) rows: i64,
    pub(super) body: String,
}

/// Runs `SELECT total, count, body` over the page (see [`page_statement`]; + EXPLAIN for planned counts).
/// `last`: the request's last statement, after which nothing can refuse the response
/// but a count or a single-object `Accept` (checked here): it may commit in its round trip.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one page, as its three callers hold them"
)]
pub(super) async fn run_page(
    ctx: &Ctx<'_>,
    b: &Builder<'_>,
    parts: &SelectParts,
    rel: &RelInfo,
    alias: &str,
    media: Media,
    prelude: &str,
    last: bool,
) -> Result<Page, RestError> {
    let page_sql = parts.render(&rel.from_sql, alias, true);
    let exact = matches!(ctx.prefs.count, Some(Count::Exact | Count::Estimated));
    let count_expr = if exact && parts.group_by.is_some() {
        // aggregated: the total is the number of groups
        format!(
            "(SELECT count(*) FROM ({}) AS _c)",
            parts.render(&rel.from_sql, alias, false)
        )
    } else if exact {
        format!(
            "(SELECT count(*){})",
            parts.source_and_filters(&rel.from_sql, alias)
        )
    } else {
        "NULL::bigint".to_owned()
    };
    let sql = page_statement(prelude, &page_sql, &count_expr, media);
    tracing::debug!(sql = %sql, "rest: read");
    explain_instead(ctx, &sql, &b.params).await?;
    // For the request's `last` statement, without a count or a single-object Accept,
    // nothing after this query can fail the response: commit with it (one round trip
    // for the whole request).
    let row = if last && ctx.prefs.count.is_none() && media != Media::Object {
        let params: Vec<&(dyn ToSql + Sync)> =
            b.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        ctx.tx
            .query_final(&sql, &params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| RestError::internal("Query returned no row"))?
    } else {
        query_row(ctx.tx, &sql, &b.params).await?
    };
    let mut total: Option<i64> = row.try_get(0)?;
    let rows: i64 = row.try_get(1)?;
    let body: Option<String> = row.try_get(2)?;
    if ctx.prefs.count == Some(Count::Planned) {
        let explain = format!(
            "EXPLAIN (FORMAT JSON) WITH {prelude}_src AS ({}) SELECT * FROM _src",
            parts.render(&rel.from_sql, alias, false)
        );
        let row = query_row(ctx.tx, &explain, &b.params).await?;
        let plan: Value = row.try_get(0)?;
        total = plan
            .pointer("/0/Plan/Plan Rows")
            .and_then(Value::as_f64)
            .map(|f| f.round() as i64);
    }
    Ok(Page {
        total,
        rows,
        body: body.unwrap_or_default(),
    })
}

/// Builds a read response: status (200/206/416), Content-Range, body.
pub(super) fn page_response(
    ctx: &Ctx<'_>,
    page: Page,
    offset: i64,
    media: Media,
    head: bool,
) -> Result<RestResponse, RestError> {
    if media == Media::Object && page.rows != 1 {
        return Err(singular_error(page.rows));
    }
    let total_s = page.total.map_or("*".to_owned(), |t| t.to_string());
    let range = if page.rows == 0 {
        format!("*/{total_s}")
    } else {
        format!(
            "{}-{}/{total_s}",
            offset,
            offset.saturating_add(page.rows - 1)
        )
    };
    let mut status = StatusCode::OK;
    if let Some(total) = page.total {
        if page.rows == 0 && offset > 0 && offset >= total {
            return Err(RestError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "PGRST103",
                "Requested range not satisfiable",
            )
            .with_details(format!(
                "An offset of {offset} was requested, but there are only {total} rows."
            )));
        }
        if page.rows < total && ctx.prefs.count.is_some() {
            status = StatusCode::PARTIAL_CONTENT;
        }
    }
    let mut headers = ok_headers(media);
    set_header(&mut headers, "content-range", &range);
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(page.body)
    };
    Ok(RestResponse {
        status,
        headers,
        body,
    })
}

pub(super) fn singular_error(rows: i64) -> RestError {
    RestError::new(
        StatusCode::NOT_ACCEPTABLE,
        "PGRST116",
        "JSON object requested, multiple (or no) rows returned",
    )
    .with_details(format!("The result contains {rows} rows"))
}

pub(super) fn select_items(query: &Query) -> Vec<SelectItem> {
    query
        .select
        .clone()
        .unwrap_or_else(|| vec![SelectItem::Star])
}

pub(super) async fn read_table(ctx: &Ctx<'_>, name: &str) -> Result<RestResponse, RestError> {
    let table = ctx.cache.require_table(&ctx.schema, name)?;
    let media = negotiate(&ctx.req.headers, false)?;
    let logic = collect_logic(&ctx.query, &[])?;
    let mut b = Builder::new(ctx.cache, &ctx.query, logic);
    let rel = RelInfo::table(table);
    let alias = b.alias();
    let items = select_items(&ctx.query);
    let mut parts = b.build_select(&rel, &alias, &items, &[])?;
    b.check_paths()?;
    effective_range(&mut parts, &ctx.req.headers)?;
    let offset = parts.offset.unwrap_or(0);
    let page = run_page(ctx, &b, &parts, &rel, &alias, media, "", ctx.final_read).await?;
    page_response(ctx, page, offset, media, ctx.req.method == Method::HEAD)
}
