//! Writes: `POST` (insert, upsert, CSV), `PATCH`, `DELETE` and `PUT`, with
//! `Prefer` handling, limited updates/deletes and `max-affected`.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use super::*;
use parse::Logic;
use plan::{Builder, RelInfo, SelectParts, quote_ident, quote_qualified};

/// The JSON payload of a write, normalised to an array text, with its keys.
pub(super) struct Payload {
    /// JSON array text.
    json: String,
    /// Column names (first-seen order).
    keys: Vec<String>,
    rows: usize,
    /// The first object (used by PUT).
    first: Option<serde_json::Map<String, Value>>,
}

pub(super) fn payload(ctx: &Ctx<'_>) -> Result<Payload, RestError> {
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

pub(super) fn missing_column(table: &Table, col: &str) -> RestError {
    RestError::new(
        StatusCode::BAD_REQUEST,
        "PGRST204",
        format!(
            "Could not find the '{col}' column of '{}' in the schema cache",
            table.name.name
        ),
    )
}

pub(super) async fn write_table(ctx: &Ctx<'_>, name: &str) -> Result<RestResponse, RestError> {
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
            // As for `return=minimal` below: commit with the statement when the
            // checks after it cannot refuse the write.
            let last = ctx.final_write && ctx.prefs.max_affected.is_none() && row_limit.is_none();
            let page = run_page(ctx, &b, &parts, &mut_rel, &ralias, media, &prelude, last).await?;
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
pub(super) fn limited_rows(
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
pub(super) fn check_limited(limit: Option<i64>, n: i64) -> Result<(), RestError> {
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
pub(super) fn check_max_affected(ctx: &Ctx<'_>, n: i64) -> Result<(), RestError> {
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

pub(super) fn mutation_range(created: bool, n: i64) -> String {
    if created || n == 0 {
        "*/*".to_owned()
    } else {
        format!("0-{}/*", n - 1)
    }
}

pub(super) fn empty_insert(ctx: &Ctx<'_>, media: Media) -> Result<RestResponse, RestError> {
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
pub(super) fn write_columns(
    ctx: &Ctx<'_>,
    table: &Table,
    pl: &Payload,
) -> Result<Vec<String>, RestError> {
    let cols = ctx.query.columns.clone().unwrap_or_else(|| pl.keys.clone());
    for c in &cols {
        if table.column(c).is_none() {
            return Err(missing_column(table, c));
        }
    }
    Ok(cols)
}

/// PUT: all primary key columns must be filtered with `eq` and match the payload.
pub(super) fn put_checks(table: &Table, root: &[Logic], pl: &Payload) -> Result<(), RestError> {
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
pub(super) fn insert_sql(
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
