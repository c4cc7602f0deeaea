//! PostgREST-compatible data API (`/rest/v1`): an engine independent of the HTTP
//! framework, and its HTTP glue in [`handlers`] (the only file that knows axum).
//!
//! The handler strips the `/rest/v1` prefix, opens a transaction, switches role
//! (`SET LOCAL ROLE`, `request.jwt.claims`), and calls [`execute`] with a [`RestRequest`].
//! It commits when [`execute`] returns `Ok` with `rollback == false`, and rolls back on
//! `Err` or when the client asked for `Prefer: tx=rollback`.
//!
//! PostgREST's documentation is the contract:
//! * `GET`/`HEAD` on tables and views: `select` (aliases, casts, JSON paths, embedding
//!   through foreign keys incl. many-to-many, `!inner`, hints, spreads), aggregates
//!   (`amount.sum()`, `count()`, grouped by the other selected columns), all filter
//!   operators with `not.`, `(any)`/`(all)`, `or`/`and` trees, `order`, `limit`/`offset`,
//!   `Range` headers, `Prefer: count=...`, single-object and CSV output;
//! * `POST` (JSON object/array or CSV, `columns`, `on_conflict`, `Prefer: return`,
//!   `missing=default`, `resolution=...`), `PATCH`, `DELETE` (both limited by
//!   `order` + `limit`/`offset`), `PUT`; `Prefer: handling=strict, max-affected=N`;
//! * `/rpc/{function}` with `POST` or (for stable/immutable functions, or read-only ones)
//!   `GET`;
//! * `GET ""`: an OpenAPI 2.0 description.
//!
//! See [`schema`] for the cache, [`parse`] for the query grammar and [`plan`] for the SQL
//! generation and its safety rules.

mod csv;
pub mod error;
mod explain;
#[cfg(test)]
mod fuzz;
pub mod handlers;
mod openapi;
pub(crate) mod parse;
pub(crate) mod plan;
pub mod schema;
mod view_deps;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::db::PooledTx;

pub use error::{RestError, status_for_sqlstate};
pub use schema::{
    Column, ForeignKey, Function, FunctionArg, QualifiedName, RelKind, SchemaCache, Table,
    Volatility,
};

use parse::{Logic, Query, SelectItem};
use plan::{Builder, ColInfo, RelInfo, SelectParts, TextParam, quote_ident, quote_qualified};

/// One REST request, already stripped of the `/rest/v1` prefix.
#[derive(Debug, Clone)]
pub struct RestRequest {
    /// HTTP method.
    pub method: Method,
    /// `""` (root: OpenAPI), `"todos"`, `"rpc/my_fn"`.
    pub path: String,
    /// Raw query string (may be empty), not yet decoded.
    pub query: String,
    /// Request headers (Prefer, Accept, Range, Range-Unit, Accept-Profile, Content-Profile,
    /// Content-Type).
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// Whether this caller may ask for query plans (`Accept:
    /// application/vnd.pgrst.plan+json`); the HTTP glue decides from the caller's role.
    pub plan_allowed: bool,
}

/// The HTTP response to send.
#[derive(Debug, Clone)]
pub struct RestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Content-Type, Content-Range, Location, Preference-Applied, ...
    pub headers: HeaderMap,
    /// Body (empty for HEAD and `return=minimal`).
    pub body: Bytes,
}

/// Result of [`execute`].
#[derive(Debug, Clone)]
pub struct RestOutcome {
    /// The response.
    pub response: RestResponse,
    /// `Prefer: tx=rollback` was requested: roll the transaction back instead of committing.
    pub rollback: bool,
}

/// Output media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    Object,
    Csv,
    OpenApi,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Media::Json => "application/json; charset=utf-8",
            Media::Object => "application/vnd.pgrst.object+json; charset=utf-8",
            Media::Csv => "text/csv; charset=utf-8",
            Media::OpenApi => "application/openapi+json; charset=utf-8",
        }
    }
}

/// `Prefer: return=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Return {
    Minimal,
    HeadersOnly,
    Representation,
}

/// `Prefer: count=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    Exact,
    Planned,
    Estimated,
}

/// `Prefer: resolution=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Merge,
    Ignore,
}

/// Parsed `Prefer` headers.
#[derive(Debug, Default, Clone)]
struct Prefs {
    ret: Option<Return>,
    count: Option<Count>,
    resolution: Option<Resolution>,
    missing_default: bool,
    tx: Option<bool>,
    /// `handling=strict`: unknown preferences are an error (PGRST122) and
    /// `max-affected` is enforced.
    strict: bool,
    /// `max-affected=N` (PATCH/DELETE; only with `handling=strict`, as PostgREST).
    max_affected: Option<i64>,
    /// `params=single-object`: the whole POST body is the one json argument of the function.
    single_object: bool,
    /// Preferences that were not understood.
    invalid: Vec<String>,
    applied: Vec<String>,
}

impl Prefs {
    fn parse(headers: &HeaderMap) -> Prefs {
        let mut p = Prefs::default();
        for v in headers.get_all("prefer") {
            let Ok(s) = v.to_str() else { continue };
            for item in s.split(',') {
                let item = item.trim();
                let applied = match item {
                    "return=minimal" => p.ret.replace(Return::Minimal).is_none(),
                    "return=headers-only" => p.ret.replace(Return::HeadersOnly).is_none(),
                    "return=representation" => p.ret.replace(Return::Representation).is_none(),
                    "count=exact" => p.count.replace(Count::Exact).is_none(),
                    "count=planned" => p.count.replace(Count::Planned).is_none(),
                    "count=estimated" => p.count.replace(Count::Estimated).is_none(),
                    "resolution=merge-duplicates" => {
                        p.resolution.replace(Resolution::Merge).is_none()
                    }
                    "resolution=ignore-duplicates" => {
                        p.resolution.replace(Resolution::Ignore).is_none()
                    }
                    "missing=default" => {
                        p.missing_default = true;
                        true
                    }
                    "tx=rollback" => p.tx.replace(true).is_none(),
                    "tx=commit" => p.tx.replace(false).is_none(),
                    "missing=null" | "handling=lenient" => true,
                    "handling=strict" => {
                        p.strict = true;
                        true
                    }
                    "params=single-object" => {
                        p.single_object = true;
                        true
                    }
                    "" => false,
                    other => match other
                        .strip_prefix("max-affected=")
                        .and_then(|n| n.parse::<i64>().ok())
                        .filter(|n| *n >= 0)
                    {
                        Some(n) => p.max_affected.replace(n).is_none(),
                        None => {
                            p.invalid.push(other.to_owned());
                            false
                        }
                    },
                };
                if applied {
                    p.applied.push(item.to_owned());
                }
            }
        }
        p
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Chooses the output media type from `Accept`.
fn negotiate(headers: &HeaderMap, root: bool) -> Result<Media, RestError> {
    let Some(accept) = header_str(headers, "accept") else {
        return Ok(if root { Media::OpenApi } else { Media::Json });
    };
    for part in accept.split(',') {
        let mt = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let m = match mt.as_str() {
            "application/json" | "application/*" | "*/*" | "" => {
                if root {
                    Media::OpenApi
                } else {
                    Media::Json
                }
            }
            "application/openapi+json" if root => Media::OpenApi,
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" if !root => {
                Media::Object
            }
            "text/csv" if !root => Media::Csv,
            _ => continue,
        };
        return Ok(m);
    }
    Err(RestError::new(
        StatusCode::NOT_ACCEPTABLE,
        "PGRST107",
        format!("None of these media types are available: {accept}"),
    ))
}

fn ok_headers(media: Media) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    h
}

fn set_header(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Everything a handler needs about the request.
struct Ctx<'a> {
    tx: &'a PooledTx,
    cache: &'a SchemaCache,
    schema: String,
    req: &'a RestRequest,
    prefs: Prefs,
    query: Query,
    profile_header: Option<&'static str>,
    /// `Accept: application/vnd.pgrst.plan…`: explain the main statement instead.
    plan: Option<explain::PlanRequest>,
    /// The plan text and whether it is JSON, left by [`explain_instead`].
    plan_out: std::sync::Mutex<Option<(String, bool)>>,
    /// A plain table read (GET/HEAD, not rpc, no `tx=rollback`): its page query may
    /// commit in the same round trip when nothing can fail after it.
    final_read: bool,
    /// The same for a table write (POST/PATCH/DELETE/PUT, no `tx=rollback`).
    final_write: bool,
}

/// Runs one request on `tx`, a connection inside an open transaction (the caller already
/// did `BEGIN`, `SET LOCAL ROLE` and set `request.jwt.claims`; it commits on `Ok` unless
/// [`RestOutcome::rollback`], and rolls back on `Err`). `exposed_schemas[0]` is the
/// default schema.
///
/// Errors from Postgres are mapped with [`status_for_sqlstate`]; `42501` is always 403
/// here, use [`RestError::for_role`] to turn it into 401 for the anonymous role.
pub async fn execute(
    tx: &PooledTx,
    cache: &SchemaCache,
    exposed_schemas: &[String],
    req: RestRequest,
) -> Result<RestOutcome, RestError> {
    let Some(default_schema) = exposed_schemas.first() else {
        return Err(RestError::internal("No schema is exposed"));
    };
    let read = matches!(req.method, Method::GET | Method::HEAD);
    let profile_name = if read {
        "accept-profile"
    } else {
        "content-profile"
    };
    let (schema, profile_header) = match header_str(&req.headers, profile_name) {
        Some(s) => {
            SchemaCache::check_exposed(s, exposed_schemas)?;
            (s.to_owned(), Some("content-profile"))
        }
        None => (default_schema.clone(), None),
    };
    let prefs = Prefs::parse(&req.headers);
    if prefs.strict && !prefs.invalid.is_empty() {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "PGRST122",
            "Invalid preferences given with handling=strict",
        )
        .with_details(format!("Invalid preferences: {}", prefs.invalid.join(", "))));
    }
    let mut rollback = prefs.tx == Some(true);
    let query = parse::parse_query(&req.query)?;
    let path = req.path.trim_matches('/').to_owned();
    // A plan request answers for the media type it names (`for=`), so the handlers
    // negotiate that one; the statement is explained instead of run, and rolled back
    // (EXPLAIN ANALYZE of a write does write).
    let plan = explain::PlanRequest::from_headers(&req.headers)?;
    let mut req = req;
    if let Some(p) = &plan {
        if !req.plan_allowed {
            return Err(RestError::new(
                StatusCode::NOT_ACCEPTABLE,
                "PGRST107",
                "None of these media types are available: application/vnd.pgrst.plan",
            )
            .with_hint("Query plans are available to the roles in FERROBASE_REST_PLAN_ROLES (service_role by default)."));
        }
        set_header(&mut req.headers, "accept", &p.for_media);
        rollback = true;
    }
    let table_path = !path.is_empty() && !path.starts_with("rpc/") && !rollback;
    let final_read = read && table_path;
    let final_write = !read && table_path;
    let ctx = Ctx {
        tx,
        cache,
        schema,
        req: &req,
        prefs,
        query,
        profile_header,
        plan,
        plan_out: std::sync::Mutex::new(None),
        final_read,
        final_write,
    };
    let mut response = match route(&ctx, &path).await {
        Err(e) if e.code == explain::PLAN_DONE => {
            let (body, json) = ctx
                .plan_out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| RestError::internal("No plan"))?;
            let for_media = ctx
                .plan
                .as_ref()
                .map_or("application/json", |p| p.for_media.as_str());
            let mut headers = HeaderMap::new();
            set_header(
                &mut headers,
                "content-type",
                &format!(
                    "application/vnd.pgrst.plan+{}; for=\"{for_media}\"; charset=utf-8",
                    if json { "json" } else { "text" }
                ),
            );
            RestResponse {
                status: StatusCode::OK,
                headers,
                body: if req.method == Method::HEAD {
                    Bytes::new()
                } else {
                    Bytes::from(body)
                },
            }
        }
        other => other?,
    };
    if let Some(name) = ctx.profile_header {
        set_header(&mut response.headers, name, &ctx.schema);
    }
    if !ctx.prefs.applied.is_empty() {
        set_header(
            &mut response.headers,
            "preference-applied",
            &ctx.prefs.applied.join(", "),
        );
    }
    Ok(RestOutcome { response, rollback })
}

/// Dispatches on the path and method.
async fn route(ctx: &Ctx<'_>, path: &str) -> Result<RestResponse, RestError> {
    let req = ctx.req;
    let cache = ctx.cache;
    let path = path.to_owned();
    let response = if path.is_empty() {
        match req.method {
            Method::GET | Method::HEAD => {
                let media = negotiate(&req.headers, true)?;
                let doc = openapi::document(cache, &ctx.schema);
                let h = ok_headers(media);
                let body = if req.method == Method::HEAD {
                    Bytes::new()
                } else {
                    Bytes::from(doc.to_string())
                };
                RestResponse {
                    status: StatusCode::OK,
                    headers: h,
                    body,
                }
            }
            _ => return Err(unsupported_method(&req.method)),
        }
    } else if let Some(func) = path.strip_prefix("rpc/") {
        match req.method {
            Method::GET | Method::HEAD | Method::POST => rpc(ctx, func).await?,
            _ => {
                return Err(RestError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "PGRST101",
                    format!("Cannot use the {} method on RPC", req.method),
                ));
            }
        }
    } else if path.contains('/') {
        return Err(RestError::new(
            StatusCode::NOT_FOUND,
            "PGRST125",
            format!("Invalid path specified in request URL: /{path}"),
        ));
    } else {
        match req.method {
            Method::GET | Method::HEAD => read_table(ctx, &path).await?,
            Method::POST | Method::PATCH | Method::DELETE | Method::PUT => {
                write_table(ctx, &path).await?
            }
            Method::OPTIONS => {
                ctx.cache.require_table(&ctx.schema, &path)?;
                let mut h = HeaderMap::new();
                h.insert(
                    header::ALLOW,
                    HeaderValue::from_static("OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE"),
                );
                RestResponse {
                    status: StatusCode::OK,
                    headers: h,
                    body: Bytes::new(),
                }
            }
            _ => return Err(unsupported_method(&req.method)),
        }
    };
    Ok(response)
}

fn unsupported_method(m: &Method) -> RestError {
    RestError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "PGRST117",
        format!("Unsupported HTTP method: {m}"),
    )
}

/// Splits `query.params` into filters (with their embed path), except `skip` keys.
fn collect_logic(query: &Query, skip: &[String]) -> Result<Vec<(Vec<String>, Logic)>, RestError> {
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
async fn query_rows(
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
async fn explain_instead(ctx: &Ctx<'_>, sql: &str, params: &[TextParam]) -> Result<(), RestError> {
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
async fn query_row(
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
async fn execute_count(
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
fn range_header(headers: &HeaderMap) -> Result<Option<(i64, Option<i64>)>, RestError> {
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
fn effective_range(parts: &mut SelectParts, headers: &HeaderMap) -> Result<(), RestError> {
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

/// Body expression over the `_src` CTE for the chosen media type.
fn body_expr(media: Media) -> &'static str {
    match media {
        Media::Object => "(SELECT coalesce((json_agg(_s) -> 0)::text, '') FROM _src AS _s)",
        Media::Csv => {
            "(SELECT coalesce((SELECT string_agg(_k, ',') FROM json_object_keys((SELECT row_to_json(_h) FROM _src AS _h LIMIT 1)) AS _k), '') \
             || E'\\n' || coalesce(string_agg(substring(_s::text, 2, length(_s::text) - 2), E'\\n'), '') FROM _src AS _s)"
        }
        _ => "(SELECT coalesce(json_agg(_s), '[]')::text FROM _src AS _s)",
    }
}

/// Outcome of a read-style query.
struct Page {
    total: Option<i64>,
    rows: i64,
    body: String,
}

/// Runs `WITH _src AS (<page>) SELECT total, count, body` (+ EXPLAIN for planned counts).
async fn run_page(
    ctx: &Ctx<'_>,
    b: &Builder<'_>,
    parts: &SelectParts,
    rel: &RelInfo,
    alias: &str,
    media: Media,
    prelude: &str,
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
    let sql = format!(
        "WITH {prelude}_src AS ({page_sql}) SELECT {count_expr}, (SELECT count(*) FROM _src), {}",
        body_expr(media)
    );
    tracing::debug!(sql = %sql, "rest: read");
    explain_instead(ctx, &sql, &b.params).await?;
    // Without a count or a single-object Accept, nothing after this query can fail the
    // response: commit with it (one round trip for the whole request).
    let row = if ctx.final_read && ctx.prefs.count.is_none() && media != Media::Object {
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
fn page_response(
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

fn singular_error(rows: i64) -> RestError {
    RestError::new(
        StatusCode::NOT_ACCEPTABLE,
        "PGRST116",
        "JSON object requested, multiple (or no) rows returned",
    )
    .with_details(format!("The result contains {rows} rows"))
}

fn select_items(query: &Query) -> Vec<SelectItem> {
    query
        .select
        .clone()
        .unwrap_or_else(|| vec![SelectItem::Star])
}

async fn read_table(ctx: &Ctx<'_>, name: &str) -> Result<RestResponse, RestError> {
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
    let page = run_page(ctx, &b, &parts, &rel, &alias, media, "").await?;
    page_response(ctx, page, offset, media, ctx.req.method == Method::HEAD)
}

/// The JSON payload of a write, normalised to an array text, with its keys.
struct Payload {
    /// JSON array text.
    json: String,
    /// Column names (first-seen order).
    keys: Vec<String>,
    rows: usize,
    /// The first object (used by PUT).
    first: Option<serde_json::Map<String, Value>>,
}

fn payload(ctx: &Ctx<'_>) -> Result<Payload, RestError> {
    let ct = header_str(&ctx.req.headers, "content-type")
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let mt = ct.split(';').next().unwrap_or("").trim().to_owned();
    let (value, raw): (Value, Option<String>) = match mt.as_str() {
        "text/csv" => {
            let text = std::str::from_utf8(&ctx.req.body)
                .map_err(|_| RestError::body("Invalid CSV: not UTF-8"))?;
            (csv::csv_to_json(text)?, None)
        }
        "application/json"
        | ""
        | "application/vnd.pgrst.object+json"
        | "application/vnd.pgrst.object"
        | "*/*" => {
            let text = std::str::from_utf8(&ctx.req.body)
                .map_err(|_| RestError::body("Empty or invalid json"))?;
            let v: Value = serde_json::from_str(text).map_err(|e| {
                RestError::body("Empty or invalid json").with_details(e.to_string())
            })?;
            (v, Some(text.trim().to_owned()))
        }
        "application/x-www-form-urlencoded" => {
            let mut m = serde_json::Map::new();
            for (k, v) in url::form_urlencoded::parse(&ctx.req.body) {
                m.insert(k.into_owned(), Value::String(v.into_owned()));
            }
            (Value::Object(m), None)
        }
        other => {
            return Err(RestError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "PGRST107",
                format!("The request's Content-Type '{other}' is not supported"),
            ));
        }
    };
    let objs: Vec<&serde_json::Map<String, Value>> = match &value {
        Value::Object(o) => vec![o],
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| RestError::body("All array elements must be JSON objects"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(RestError::body(
                "The payload must be a JSON object or an array of objects",
            ));
        }
    };
    let mut keys: Vec<String> = Vec::new();
    for o in &objs {
        for k in o.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let rows = objs.len();
    let first = objs.first().map(|o| (*o).clone());
    let json = match (raw, &value) {
        (Some(r), Value::Object(_)) => format!("[{r}]"),
        (Some(r), _) => r,
        (None, v @ Value::Object(_)) => format!("[{v}]"),
        (None, v) => v.to_string(),
    };
    Ok(Payload {
        json,
        keys,
        rows,
        first,
    })
}

fn missing_column(table: &Table, col: &str) -> RestError {
    RestError::new(
        StatusCode::BAD_REQUEST,
        "PGRST204",
        format!(
            "Could not find the '{col}' column of '{}' in the schema cache",
            table.name.name
        ),
    )
}

async fn write_table(ctx: &Ctx<'_>, name: &str) -> Result<RestResponse, RestError> {
    let table = ctx.cache.require_table(&ctx.schema, name)?;
    let method = ctx.req.method.clone();
    let media = negotiate(&ctx.req.headers, false)?;
    let qt = quote_qualified(&table.name);
    let logic = collect_logic(&ctx.query, &[])?;
    let root_logic: Vec<Logic> = logic
        .iter()
        .filter(|(p, _)| p.is_empty())
        .map(|(_, l)| l.clone())
        .collect();
    let mut b = Builder::new(ctx.cache, &ctx.query, logic);
    let alias = b.alias();
    let rel = RelInfo::table(table);

    // WHERE of PATCH/DELETE from the root filters, narrowed by `limit`/`offset`
    let mut conds = Vec::new();
    let mut row_limit = None;
    if matches!(method, Method::PATCH | Method::DELETE) {
        let empty = Vec::new();
        let mut wb = Builder::new(
            ctx.cache,
            &ctx.query,
            root_logic.iter().map(|l| (Vec::new(), l.clone())).collect(),
        );
        let mut p = wb.build_select(&rel, &alias, &empty, &[])?;
        let limited = if p.limit.is_some() || p.offset.is_some() {
            row_limit = p.limit;
            Some(limited_rows(&wb, table, &rel, &alias, &p)?)
        } else {
            None
        };
        conds.append(&mut p.conds);
        conds.extend(limited);
        b.params = wb.params;
        // the representation shows every changed row, whatever the page was
        b.skip_root_paging = true;
    }
    // root filters select the rows of PATCH/DELETE (and are checked by PUT); they must not
    // filter the representation again
    b.skip_root_filters = true;

    let mutation = match method {
        Method::DELETE => {
            let w = if conds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conds.join(" AND "))
            };
            format!("DELETE FROM {qt} AS {alias}{w}")
        }
        Method::PATCH => {
            let pl = payload(ctx)?;
            if pl.rows != 1 || pl.json.trim_start().starts_with("[[") {
                return Err(RestError::body("PATCH expects a single JSON object"));
            }
            let cols = write_columns(ctx, table, &pl)?;
            if cols.is_empty() {
                // nothing to update: PostgREST answers without touching the table
                let mut h = ok_headers(media);
                set_header(&mut h, "content-range", "*/*");
                return Ok(if ctx.prefs.ret == Some(Return::Representation) {
                    RestResponse {
                        status: StatusCode::OK,
                        headers: h,
                        body: Bytes::from_static(b"[]"),
                    }
                } else {
                    RestResponse {
                        status: StatusCode::NO_CONTENT,
                        headers: h,
                        body: Bytes::new(),
                    }
                });
            }
            let p = b.param(Some(pl.json.clone()));
            let sets: Vec<String> = cols
                .iter()
                .map(|c| format!("{q} = _p.{q}", q = quote_ident(c)))
                .collect();
            let w = if conds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conds.join(" AND "))
            };
            format!(
                "UPDATE {qt} AS {alias} SET {} FROM (SELECT * FROM json_populate_recordset(NULL::{qt}, {p}::json) LIMIT 1) AS _p{w}",
                sets.join(", ")
            )
        }
        Method::PUT => {
            let pl = payload(ctx)?;
            put_checks(table, &root_logic, &pl)?;
            let cols = write_columns(ctx, table, &pl)?;
            insert_sql(
                ctx,
                &mut b,
                table,
                &alias,
                &pl,
                &cols,
                Some(Resolution::Merge),
                Some(table.primary_key.clone()),
            )?
        }
        _ => {
            let pl = payload(ctx)?;
            if pl.rows == 0 {
                return empty_insert(ctx, media);
            }
            let cols = write_columns(ctx, table, &pl)?;
            insert_sql(
                ctx,
                &mut b,
                table,
                &alias,
                &pl,
                &cols,
                ctx.prefs.resolution,
                ctx.query.on_conflict.clone(),
            )?
        }
    };

    let ret = ctx.prefs.ret.unwrap_or(Return::Minimal);
    let created = method == Method::POST;
    let ok_status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let params_owned = b.params.clone();
    match ret {
        Return::Representation => {
            let mut_rel = RelInfo {
                qname: table.name.clone(),
                columns: rel.columns.clone(),
                from_sql: "_mut".to_owned(),
            };
            let ralias = b.alias();
            let items = select_items(&ctx.query);
            let parts = b.build_select(&mut_rel, &ralias, &items, &[])?;
            b.check_paths()?;
            let prelude = format!("_mut AS ({mutation} RETURNING {alias}.*), ");
            let page = run_page(ctx, &b, &parts, &mut_rel, &ralias, media, &prelude).await?;
            check_limited(row_limit, page.rows)?;
            check_max_affected(ctx, page.rows)?;
            if media == Media::Object && page.rows != 1 {
                return Err(singular_error(page.rows));
            }
            let mut headers = ok_headers(media);
            set_header(
                &mut headers,
                "content-range",
                &mutation_range(created, page.rows),
            );
            Ok(RestResponse {
                status: ok_status,
                headers,
                body: Bytes::from(page.body),
            })
        }
        Return::HeadersOnly if created && !table.primary_key.is_empty() => {
            let pk: Vec<String> = table.primary_key.iter().map(|c| quote_ident(c)).collect();
            let sql = format!(
                "WITH _mut AS ({mutation} RETURNING {alias}.*) SELECT (SELECT count(*) FROM _mut), (SELECT row_to_json(_l)::text FROM (SELECT {} FROM _mut LIMIT 1) AS _l)",
                pk.join(", ")
            );
            explain_instead(ctx, &sql, &params_owned).await?;
            let row = query_row(ctx.tx, &sql, &params_owned).await?;
            let n: i64 = row.try_get(0)?;
            if media == Media::Object && n != 1 {
                return Err(singular_error(n));
            }
            let loc: Option<String> = row.try_get(1)?;
            let mut headers = HeaderMap::new();
            set_header(&mut headers, "content-range", &mutation_range(created, n));
            if let Some(loc) =
                loc.and_then(|l| serde_json::from_str::<serde_json::Map<String, Value>>(&l).ok())
            {
                let q: Vec<String> = table
                    .primary_key
                    .iter()
                    .map(|k| {
                        let v = match loc.get(k) {
                            Some(Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => "null".to_owned(),
                        };
                        let enc: String =
                            url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
                        format!("{k}=eq.{enc}")
                    })
                    .collect();
                set_header(
                    &mut headers,
                    "location",
                    &format!("/{}?{}", table.name.name, q.join("&")),
                );
            }
            Ok(RestResponse {
                status: StatusCode::CREATED,
                headers,
                body: Bytes::new(),
            })
        }
        _ => {
            b.check_paths()?;
            explain_instead(ctx, &mutation, &params_owned).await?;
            // Nothing after the statement can fail the response: commit with it
            // (not for a limited write: check_limited may still refuse it).
            let last = ctx.final_write
                && media != Media::Object
                && ctx.prefs.max_affected.is_none()
                && row_limit.is_none();
            let n = execute_count(ctx.tx, &mutation, &params_owned, last).await?;
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            check_limited(row_limit, n)?;
            check_max_affected(ctx, n)?;
            if media == Media::Object && n != 1 {
                return Err(singular_error(n));
            }
            let mut headers = HeaderMap::new();
            set_header(&mut headers, "content-range", &mutation_range(created, n));
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::NO_CONTENT
            };
            Ok(RestResponse {
                status,
                headers,
                body: Bytes::new(),
            })
        }
    }
}

/// The condition choosing the rows of a limited PATCH/DELETE (PostgREST's "limited
/// update/delete"): `limit`/`offset` need an explicit root `order` (PGRST109), and the
/// rows are those of that ordered page. They are named by the primary key, which also
/// breaks ties of the order so that the page is deterministic; a relation without one
/// (a view) names them by the order columns, as PostgREST does, and then ties can make
/// more than `limit` rows change, which [`check_limited`] refuses (PGRST110).
fn limited_rows(
    b: &Builder<'_>,
    table: &Table,
    rel: &RelInfo,
    alias: &str,
    page: &SelectParts,
) -> Result<String, RestError> {
    if page.order.is_empty() {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "PGRST109",
            "A 'limit' was applied without an explicit 'order'",
        )
        .with_hint("Apply an 'order' using unique column(s)"));
    }
    let mut sub = SelectParts {
        conds: page.conds.clone(),
        order: page.order.clone(),
        limit: page.limit,
        offset: page.offset,
        ..SelectParts::default()
    };
    if table.primary_key.is_empty() {
        for (_, terms) in b.query.order.iter().filter(|(p, _)| p.is_empty()) {
            for t in terms {
                sub.cols.push(b.column_sql(rel, alias, &t.field)?);
            }
        }
    } else {
        for c in &table.primary_key {
            let id = format!("{alias}.{}", quote_ident(c));
            sub.order.push(id.clone());
            sub.cols.push(id);
        }
    }
    Ok(format!(
        "({}) IN ({})",
        sub.cols.join(", "),
        sub.render(&rel.from_sql, alias, true)
    ))
}

/// A limited PATCH/DELETE that changed more rows than `limit` (ties in the order of a
/// relation without a primary key) fails with PGRST110, so it is rolled back.
fn check_limited(limit: Option<i64>, n: i64) -> Result<(), RestError> {
    match limit {
        Some(max) if n > max => Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "PGRST110",
            "The maximum number of rows allowed to change was surpassed",
        )
        .with_details(format!(
            "Results contain {n} rows changed but the maximum number allowed is {max}"
        ))),
        _ => Ok(()),
    }
}

/// `Prefer: handling=strict, max-affected=N` on PATCH and DELETE: more rows
/// than N is an error (PGRST124), so the transaction is rolled back.
fn check_max_affected(ctx: &Ctx<'_>, n: i64) -> Result<(), RestError> {
    let applies = ctx.prefs.strict && matches!(ctx.req.method, Method::PATCH | Method::DELETE);
    match ctx.prefs.max_affected {
        Some(max) if applies && n > max => Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "PGRST124",
            "Query result exceeds max-affected preference constraint",
        )
        .with_details(format!("The query affects {n} rows"))),
        _ => Ok(()),
    }
}

fn mutation_range(created: bool, n: i64) -> String {
    if created || n == 0 {
        "*/*".to_owned()
    } else {
        format!("0-{}/*", n - 1)
    }
}

fn empty_insert(ctx: &Ctx<'_>, media: Media) -> Result<RestResponse, RestError> {
    let mut headers = ok_headers(media);
    set_header(&mut headers, "content-range", "*/*");
    if media == Media::Object {
        return Err(singular_error(0));
    }
    let body = if ctx.prefs.ret == Some(Return::Representation) {
        if media == Media::Csv {
            Bytes::from_static(b"\n")
        } else {
            Bytes::from_static(b"[]")
        }
    } else {
        Bytes::new()
    };
    Ok(RestResponse {
        status: StatusCode::CREATED,
        headers,
        body,
    })
}

/// Columns written: `columns=` if given, else the payload keys; all must exist.
fn write_columns(ctx: &Ctx<'_>, table: &Table, pl: &Payload) -> Result<Vec<String>, RestError> {
    let cols = ctx.query.columns.clone().unwrap_or_else(|| pl.keys.clone());
    for c in &cols {
        if table.column(c).is_none() {
            return Err(missing_column(table, c));
        }
    }
    Ok(cols)
}

/// PUT: all primary key columns must be filtered with `eq` and match the payload.
fn put_checks(table: &Table, root: &[Logic], pl: &Payload) -> Result<(), RestError> {
    let bad = || {
        RestError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "PGRST105",
            "Filters must include all and only primary key columns with 'eq' operators",
        )
    };
    if table.primary_key.is_empty() || pl.rows != 1 || root.len() != table.primary_key.len() {
        return Err(bad());
    }
    let first = pl.first.as_ref().ok_or_else(bad)?;
    for pk in &table.primary_key {
        let f = root
            .iter()
            .find_map(|l| match l {
                Logic::Filter(f)
                    if &f.field.name == pk
                        && f.field.json_path.is_empty()
                        && f.op == parse::Op::Eq
                        && !f.negate =>
                {
                    Some(f)
                }
                _ => None,
            })
            .ok_or_else(bad)?;
        let parse::Operand::Value(v) = &f.operand else {
            return Err(bad());
        };
        let body_v = match first.get(pk) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        if &body_v != v {
            return Err(RestError::new(
                StatusCode::BAD_REQUEST,
                "PGRST115",
                "Payload values do not match URL in primary key column(s)",
            ));
        }
    }
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are the parts of one request"
)]
fn insert_sql(
    ctx: &Ctx<'_>,
    b: &mut Builder<'_>,
    table: &Table,
    alias: &str,
    pl: &Payload,
    cols: &[String],
    resolution: Option<Resolution>,
    on_conflict: Option<Vec<String>>,
) -> Result<String, RestError> {
    let qt = quote_qualified(&table.name);
    if cols.is_empty() {
        if pl.rows > 1 {
            return Err(RestError::body(
                "Cannot insert several rows without columns",
            ));
        }
        return Ok(format!("INSERT INTO {qt} AS {alias} DEFAULT VALUES"));
    }
    let p = b.param(Some(pl.json.clone()));
    let qcols: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let source = if ctx.prefs.missing_default {
        let exprs: Vec<String> = cols
            .iter()
            .map(|c| {
                let default = table
                    .column(c)
                    .and_then(|col| col.default_expr.clone())
                    .unwrap_or_else(|| "NULL".to_owned());
                format!(
                    "CASE WHEN (_e.j)::jsonb ? {} THEN _p.{} ELSE {default} END",
                    plan::quote_literal(c),
                    quote_ident(c)
                )
            })
            .collect();
        format!(
            "SELECT {} FROM json_array_elements({p}::json) WITH ORDINALITY AS _e(j, o) CROSS JOIN LATERAL json_populate_record(NULL::{qt}, _e.j) AS _p ORDER BY _e.o",
            exprs.join(", ")
        )
    } else {
        let exprs: Vec<String> = qcols.iter().map(|c| format!("_p.{c}")).collect();
        format!(
            "SELECT {} FROM json_populate_recordset(NULL::{qt}, {p}::json) AS _p",
            exprs.join(", ")
        )
    };
    let mut sql = format!(
        "INSERT INTO {qt} AS {alias} ({}) {source}",
        qcols.join(", ")
    );
    if let Some(res) = resolution {
        let target = on_conflict.unwrap_or_else(|| table.primary_key.clone());
        if target.is_empty() {
            return Err(RestError::new(
                StatusCode::BAD_REQUEST,
                "PGRST100",
                "on_conflict is required: the table has no primary key",
            ));
        }
        for c in &target {
            if table.column(c).is_none() {
                return Err(RestError::unknown_column(&table.name.name, c));
            }
        }
        let t: Vec<String> = target.iter().map(|c| quote_ident(c)).collect();
        let sets: Vec<String> = qcols
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        if res == Resolution::Ignore || sets.is_empty() {
            sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", t.join(", ")));
        } else {
            sql.push_str(&format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                t.join(", "),
                sets.join(", ")
            ));
        }
    }
    Ok(sql)
}

/// `/rpc/{name}`.
async fn rpc(ctx: &Ctx<'_>, name: &str) -> Result<RestResponse, RestError> {
    let qname = QualifiedName::new(&ctx.schema, name);
    let overloads = ctx
        .cache
        .functions
        .get(&qname)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let is_get = matches!(ctx.req.method, Method::GET | Method::HEAD);

    // Arguments: the JSON body (POST) or query parameters named like arguments (GET).
    let all_arg_names: Vec<String> = overloads
        .iter()
        .flat_map(|f| f.args.iter().map(|a| a.name.clone()))
        .filter(|n| !n.is_empty())
        .collect();
    let (args, raw_body): (serde_json::Map<String, Value>, Option<String>) = if is_get {
        let mut m = serde_json::Map::new();
        for (k, v) in &ctx.query.params {
            if all_arg_names.contains(k) {
                m.insert(k.clone(), Value::String(v.clone()));
            }
        }
        (m, None)
    } else {
        let text = std::str::from_utf8(&ctx.req.body)
            .map_err(|_| RestError::body("Empty or invalid json"))?;
        if text.trim().is_empty() {
            (serde_json::Map::new(), Some("{}".to_owned()))
        } else {
            let v: Value = serde_json::from_str(text).map_err(|e| {
                RestError::body("Empty or invalid json").with_details(e.to_string())
            })?;
            match v {
                Value::Object(m) => (m, Some(text.trim().to_owned())),
                other => (serde_json::Map::new(), Some(other.to_string())),
            }
        }
    };
    let keys: Vec<&String> = args.keys().collect();

    let single_json = |f: &&Function| {
        f.args.len() == 1
            && f.args[0].name.is_empty()
            && matches!(f.args[0].pg_type.as_str(), "json" | "jsonb")
    };
    let named: Vec<&Function> = overloads
        .iter()
        .filter(|f| {
            keys.iter().all(|k| f.args.iter().any(|a| &a.name == *k))
                && f.args
                    .iter()
                    .all(|a| a.has_default || args.contains_key(&a.name))
                && f.args.iter().all(|a| !a.name.is_empty() || a.has_default)
        })
        .collect();
    // `Prefer: params=single-object`: the body is the one json/jsonb argument, whatever its name.
    let single_object = (ctx.prefs.single_object && !is_get)
        .then(|| {
            overloads.iter().find(|f| {
                f.args.len() == 1 && matches!(f.args[0].pg_type.as_str(), "json" | "jsonb")
            })
        })
        .flatten();
    let chosen: &Function = if let Some(f) = single_object {
        f
    } else {
        match named.as_slice() {
            [one] => one,
            [] => match overloads.iter().find(|f| single_json(f)) {
                Some(f) if !is_get => f,
                _ => {
                    let mut names: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
                    names.sort_unstable();
                    return Err(RestError::new(
                    StatusCode::NOT_FOUND,
                    "PGRST202",
                    format!("Could not find the function {}.{}({}) in the schema cache", ctx.schema, name, names.join(", ")),
                )
                .with_hint("If a new function was created in the database with this name and parameters, try reloading the schema cache."));
                }
            },
            many => {
                return Err(RestError::new(
                StatusCode::MULTIPLE_CHOICES,
                "PGRST203",
                format!("Could not choose the best candidate function between: {}", many.iter().map(|f| format!("{}.{}({})", f.name.schema, f.name.name, f.args.iter().map(|a| format!("{} => {}", a.name, a.pg_type)).collect::<Vec<_>>().join(", "))).collect::<Vec<_>>().join(", ")),
            )
            .with_hint("Try renaming the parameters or the function itself in the database so function overloading can be resolved"));
            }
        }
    };
    if is_get && chosen.volatility == Volatility::Volatile {
        // As PostgREST: GET runs read-only, so a volatile function that writes fails with 25006 (405).
        ctx.tx.batch_execute("SET TRANSACTION READ ONLY").await?;
    }

    let arg_names: Vec<String> = chosen
        .args
        .iter()
        .filter(|a| !a.name.is_empty())
        .map(|a| a.name.clone())
        .collect();
    let logic = collect_logic(&ctx.query, if is_get { &arg_names } else { &[] })?;
    let mut b = Builder::new(ctx.cache, &ctx.query, logic);
    let qf = quote_qualified(&chosen.name);

    // call expression + FROM items that provide the arguments
    let (call, args_from) = if single_object.is_some() || (single_json(&chosen) && named.is_empty())
    {
        let p = b.param(raw_body.clone());
        (format!("{qf}({p}::{})", chosen.args[0].pg_type), None)
    } else if args.is_empty() {
        (format!("{qf}()"), None)
    } else {
        let provided: Vec<&FunctionArg> = chosen
            .args
            .iter()
            .filter(|a| args.contains_key(&a.name))
            .collect();
        let defs: Vec<String> = provided
            .iter()
            .map(|a| format!("{} {}", quote_ident(&a.name), a.pg_type))
            .collect();
        let call_args: Vec<String> = provided
            .iter()
            .map(|a| {
                format!(
                    "{}{q} := _a.{q}",
                    if a.variadic { "VARIADIC " } else { "" },
                    q = quote_ident(&a.name)
                )
            })
            .collect();
        let json = Value::Object(args.clone()).to_string();
        let json = match (&raw_body, is_get) {
            (Some(r), false) => r.clone(),
            _ => json,
        };
        let p = b.param(Some(json));
        (
            format!("{qf}({})", call_args.join(", ")),
            Some(format!(
                "json_to_record({p}::json) AS _a({})",
                defs.join(", ")
            )),
        )
    };
    let from_args = args_from
        .as_ref()
        .map(|a| format!(" FROM {a}"))
        .unwrap_or_default();
    let head = ctx.req.method == Method::HEAD;

    if chosen.returns_void() {
        b.check_paths()?;
        let sql = format!("SELECT {call}{from_args}");
        explain_instead(ctx, &sql, &b.params).await?;
        query_rows(ctx.tx, &sql, &b.params).await?;
        return Ok(RestResponse {
            status: StatusCode::NO_CONTENT,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        });
    }

    let columns: Option<Vec<ColInfo>> = if let Some(t) = chosen
        .return_relation
        .as_ref()
        .and_then(|r| ctx.cache.tables.get(r))
    {
        Some(RelInfo::table(t).columns)
    } else if !chosen.out_columns.is_empty() {
        Some(
            chosen
                .out_columns
                .iter()
                .map(|(n, t)| ColInfo {
                    name: n.clone(),
                    ty: t.clone(),
                })
                .collect(),
        )
    } else {
        None
    };

    let media = negotiate(&ctx.req.headers, false)?;
    match columns {
        Some(columns) if chosen.returns_composite => {
            let from_sql = match &args_from {
                Some(a) => format!("(SELECT _f.* FROM {a} CROSS JOIN LATERAL {call} AS _f)"),
                None => format!("(SELECT _f.* FROM {call} AS _f)"),
            };
            let rel = RelInfo {
                qname: chosen
                    .return_relation
                    .clone()
                    .unwrap_or_else(|| chosen.name.clone()),
                columns,
                from_sql,
            };
            let alias = b.alias();
            let items = select_items(&ctx.query);
            let mut parts = b.build_select(&rel, &alias, &items, &[])?;
            b.check_paths()?;
            let single = !chosen.returns_set;
            if !single {
                effective_range(&mut parts, &ctx.req.headers)?;
            }
            let offset = parts.offset.unwrap_or(0);
            let page_media = if single && media == Media::Json {
                Media::Object
            } else {
                media
            };
            let mut page = run_page(ctx, &b, &parts, &rel, &alias, page_media, "").await?;
            if single && media == Media::Json {
                if page.body.is_empty() {
                    page.body = "null".to_owned();
                }
                let mut headers = ok_headers(Media::Json);
                set_header(
                    &mut headers,
                    "content-range",
                    if page.rows == 0 { "*/*" } else { "0-0/*" },
                );
                return Ok(RestResponse {
                    status: StatusCode::OK,
                    headers,
                    body: if head {
                        Bytes::new()
                    } else {
                        Bytes::from(page.body)
                    },
                });
            }
            page_response(ctx, page, offset, media, head)
        }
        _ => {
            b.check_paths()?;
            let parts_limit = ctx
                .query
                .limit
                .iter()
                .rev()
                .find(|(p, _)| p.is_empty())
                .map(|(_, l)| *l);
            let parts_offset = ctx
                .query
                .offset
                .iter()
                .rev()
                .find(|(p, _)| p.is_empty())
                .map(|(_, l)| *l);
            let sql = if chosen.returns_set {
                let mut inner = match &args_from {
                    Some(a) => format!("SELECT _f AS _v FROM {a} CROSS JOIN LATERAL {call} AS _f"),
                    None => format!("SELECT _f AS _v FROM {call} AS _f"),
                };
                if let Some(l) = parts_limit {
                    inner.push_str(&format!(" LIMIT {l}"));
                }
                if let Some(o) = parts_offset {
                    inner.push_str(&format!(" OFFSET {o}"));
                }
                format!(
                    "SELECT coalesce(json_agg(_x._v), '[]')::text, count(*) FROM ({inner}) AS _x"
                )
            } else {
                format!("SELECT coalesce(to_json({call})::text, 'null'), 1::bigint{from_args}")
            };
            explain_instead(ctx, &sql, &b.params).await?;
            let row = query_row(ctx.tx, &sql, &b.params).await?;
            let body: String = row.try_get(0)?;
            let n: i64 = row.try_get(1)?;
            if media == Media::Object && n != 1 {
                return Err(singular_error(n));
            }
            let mut headers = ok_headers(if media == Media::Object {
                Media::Object
            } else {
                Media::Json
            });
            let range = if n == 0 {
                "*/*".to_owned()
            } else {
                format!("0-{}/*", n - 1)
            };
            set_header(&mut headers, "content-range", &range);
            Ok(RestResponse {
                status: StatusCode::OK,
                headers,
                body: if head {
                    Bytes::new()
                } else {
                    Bytes::from(body)
                },
            })
        }
    }
}
