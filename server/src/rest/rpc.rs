//! `/rpc/{function}`: calls a database function with named arguments (JSON
//! body or query string), choosing `GET` only for stable or read-only ones.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use super::*;
use plan::{Builder, ColInfo, RelInfo, quote_ident, quote_qualified};

/// `/rpc/{name}`.
pub(super) async fn rpc(ctx: &Ctx<'_>, name: &str) -> Result<RestResponse, RestError> {
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
            let mut page = run_page(ctx, &b, &parts, &rel, &alias, page_media, "", false).await?;
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
