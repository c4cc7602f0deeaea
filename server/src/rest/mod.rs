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
#[cfg(test)]
mod fuzz_grammar;
pub mod handlers;
mod openapi;
pub(crate) mod parse;
pub(crate) mod plan;
mod read;
mod rpc;
pub mod schema;
mod view_deps;
mod write;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::db::PooledTx;

pub use error::{RestError, status_for_sqlstate};
pub use schema::{
    Column, ForeignKey, Function, FunctionArg, QualifiedName, RelKind, SchemaCache, Table,
    Volatility,
};

use parse::Query;
use read::*;
use rpc::*;
use write::*;

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
    req: &RestRequest,
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
    // Only a plan request changes the request (its `Accept`): others are not copied.
    let planned: RestRequest;
    let req = match &plan {
        Some(p) => {
            let mut copy = req.clone();
            set_header(&mut copy.headers, "accept", &p.for_media);
            planned = copy;
            &planned
        }
        None => req,
    };
    if plan.is_some() {
        if !req.plan_allowed {
            return Err(RestError::new(
                StatusCode::NOT_ACCEPTABLE,
                "PGRST107",
                "None of these media types are available: application/vnd.pgrst.plan",
            )
            .with_hint("Query plans are available to the roles in FERROBASE_REST_PLAN_ROLES (service_role by default)."));
        }
        rollback = true;
    }
    let table_path = !path.is_empty() && !path.starts_with("rpc/") && !rollback;
    let final_read = read && table_path;
    let final_write = !read && table_path;
    let ctx = Ctx {
        tx,
        cache,
        schema,
        req,
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
