//! OpenAPI 2.0 (Swagger) description of a schema, served at the root as PostgREST does.
//!
//! Lists every table/view of the schema (GET, and POST/PATCH/DELETE for tables and
//! views) and every function (`/rpc/{name}`, GET and POST), with definitions built from
//! the column types. Privileges are not consulted.

use serde_json::{Map, Value, json};

use super::schema::{RelKind, SchemaCache, Table, Volatility};

/// Swagger type/format of a Postgres type.
fn swagger_type(pg: &str) -> (&'static str, Option<String>) {
    if pg.ends_with("[]") {
        return ("array", Some(pg.to_owned()));
    }
    let t = match pg {
        "smallint" | "integer" | "bigint" => "integer",
        "numeric" | "real" | "double precision" => "number",
        "boolean" => "boolean",
        "json" | "jsonb" => "object",
        _ => "string",
    };
    (t, Some(pg.to_owned()))
}

fn definition(t: &Table) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for c in &t.columns {
        let (ty, format) = swagger_type(&c.pg_type);
        let mut p = Map::new();
        if ty == "object" {
            // json columns accept any JSON value
        } else {
            p.insert("type".into(), json!(ty));
        }
        if let Some(f) = format {
            p.insert("format".into(), json!(f));
        }
        if ty == "array" {
            let item = c.pg_type.trim_end_matches("[]");
            p.insert("items".into(), json!({"type": swagger_type(item).0}));
        }
        let mut desc = c.comment.clone().unwrap_or_default();
        if t.primary_key.contains(&c.name) {
            if !desc.is_empty() {
                desc.push_str("\n\n");
            }
            desc.push_str("Note:\nThis is a Primary Key.<pk/>");
        }
        for fk in &t.foreign_keys {
            if fk.columns.len() == 1 && fk.columns[0] == c.name {
                if !desc.is_empty() {
                    desc.push_str("\n\n");
                }
                desc.push_str(&format!(
                    "Note:\nThis is a Foreign Key to `{}.{}`.<fk table='{}' column='{}'/>",
                    fk.target.name,
                    fk.target_columns.join(","),
                    fk.target.name,
                    fk.target_columns.join(",")
                ));
            }
        }
        if !desc.is_empty() {
            p.insert("description".into(), json!(desc));
        }
        if c.has_default
            && let Some(d) = &c.default_expr
        {
            p.insert("default".into(), json!(d));
        }
        if !c.enum_values.is_empty() {
            p.insert("enum".into(), json!(c.enum_values));
        }
        if !c.nullable && !c.has_default && !c.generated && !c.identity {
            required.push(c.name.clone());
        }
        props.insert(c.name.clone(), Value::Object(p));
    }
    let mut d = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        d["required"] = json!(required);
    }
    if let Some(c) = &t.comment {
        d["description"] = json!(c);
    }
    d
}

/// Builds the OpenAPI document for `schema`.
pub(crate) fn document(cache: &SchemaCache, schema: &str) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    let mut parameters = Map::new();
    for (name, p) in [
        (
            "select",
            json!({"name": "select", "in": "query", "type": "string", "description": "Filtering Columns"}),
        ),
        (
            "order",
            json!({"name": "order", "in": "query", "type": "string", "description": "Ordering"}),
        ),
        (
            "limit",
            json!({"name": "limit", "in": "query", "type": "string", "description": "Limiting and Pagination"}),
        ),
        (
            "offset",
            json!({"name": "offset", "in": "query", "type": "string", "description": "Limiting and Pagination"}),
        ),
        (
            "on_conflict",
            json!({"name": "on_conflict", "in": "query", "type": "string", "description": "On Conflict"}),
        ),
        (
            "columns",
            json!({"name": "columns", "in": "query", "type": "string", "description": "Columns to insert"}),
        ),
        (
            "range",
            json!({"name": "Range", "in": "header", "type": "string", "description": "Limiting and Pagination"}),
        ),
        (
            "rangeUnit",
            json!({"name": "Range-Unit", "in": "header", "type": "string", "default": "items", "description": "Limiting and Pagination"}),
        ),
        (
            "preferCount",
            json!({"name": "Prefer", "in": "header", "type": "string", "enum": ["count=none"], "description": "Preference"}),
        ),
        (
            "preferReturn",
            json!({"name": "Prefer", "in": "header", "type": "string", "enum": ["return=representation", "return=minimal", "return=none"], "description": "Preference"}),
        ),
        (
            "preferPost",
            json!({"name": "Prefer", "in": "header", "type": "string", "enum": ["return=representation", "return=minimal", "return=none", "resolution=ignore-duplicates", "resolution=merge-duplicates"], "description": "Preference"}),
        ),
        (
            "preferParams",
            json!({"name": "Prefer", "in": "header", "type": "string", "enum": ["params=single-object"], "description": "Preference"}),
        ),
    ] {
        parameters.insert(name.to_owned(), p);
    }
    let r = |n: &str| json!({"$ref": format!("#/parameters/{n}")});
    paths.insert(
        "/".into(),
        json!({"get": {"tags": ["Introspection"], "summary": "OpenAPI description (this document)", "produces": ["application/openapi+json", "application/json"], "responses": {"200": {"description": "OK"}}}}),
    );
    for t in cache.tables.values().filter(|t| t.name.schema == schema) {
        let n = &t.name.name;
        definitions.insert(n.clone(), definition(t));
        let mut row_filters = Vec::new();
        for c in &t.columns {
            let key = format!("rowFilter.{n}.{}", c.name);
            parameters.insert(
                key.clone(),
                json!({"name": c.name, "in": "query", "required": false, "type": "string", "format": c.pg_type, "description": c.comment}),
            );
            row_filters.push(r(&key));
        }
        let body_key = format!("body.{n}");
        parameters.insert(
            body_key.clone(),
            json!({"name": n, "in": "body", "required": false, "description": n, "schema": {"$ref": format!("#/definitions/{n}")}}),
        );
        let mut get_params = row_filters.clone();
        for p in [
            "select",
            "order",
            "range",
            "rangeUnit",
            "offset",
            "limit",
            "preferCount",
        ] {
            get_params.push(r(p));
        }
        let tag = n.clone();
        let mut item = Map::new();
        item.insert(
            "get".into(),
            json!({"tags": [tag], "summary": t.comment, "parameters": get_params,
                   "responses": {"200": {"description": "OK", "schema": {"type": "array", "items": {"$ref": format!("#/definitions/{n}")}}}, "206": {"description": "Partial Content"}}}),
        );
        if t.kind != RelKind::MaterializedView {
            item.insert(
                "post".into(),
                json!({"tags": [tag], "parameters": [r(&body_key), r("select"), r("columns"), r("on_conflict"), r("preferPost")], "responses": {"201": {"description": "Created"}}}),
            );
            let mut patch_params = row_filters.clone();
            patch_params.push(r(&body_key));
            patch_params.push(r("preferReturn"));
            item.insert("patch".into(), json!({"tags": [tag], "parameters": patch_params, "responses": {"204": {"description": "No Content"}}}));
            let mut del_params = row_filters;
            del_params.push(r("preferReturn"));
            item.insert("delete".into(), json!({"tags": [tag], "parameters": del_params, "responses": {"204": {"description": "No Content"}}}));
        }
        paths.insert(format!("/{n}"), Value::Object(item));
    }
    for fs in cache.functions.values() {
        let Some(f) = fs.first() else { continue };
        if f.name.schema != schema {
            continue;
        }
        let mut props = Map::new();
        let mut required = Vec::new();
        for a in f.args.iter().filter(|a| !a.name.is_empty()) {
            let (ty, format) = swagger_type(&a.pg_type);
            props.insert(a.name.clone(), json!({"type": ty, "format": format}));
            if !a.has_default {
                required.push(a.name.clone());
            }
        }
        let mut item = Map::new();
        item.insert(
            "post".into(),
            json!({"tags": ["(rpc) ".to_owned() + &f.name.name], "summary": f.comment, "produces": ["application/json", "application/vnd.pgrst.object+json"],
                   "parameters": [{"name": "args", "in": "body", "required": true, "schema": {"type": "object", "required": required, "properties": props}}, r("preferParams")],
                   "responses": {"200": {"description": "OK"}}}),
        );
        if f.volatility != Volatility::Volatile {
            let q: Vec<Value> = f
                .args
                .iter()
                .filter(|a| !a.name.is_empty())
                .map(|a| json!({"name": a.name, "in": "query", "required": !a.has_default, "type": swagger_type(&a.pg_type).0, "format": a.pg_type}))
                .collect();
            item.insert(
                "get".into(),
                json!({"tags": ["(rpc) ".to_owned() + &f.name.name], "summary": f.comment, "parameters": q, "responses": {"200": {"description": "OK"}}}),
            );
        }
        paths.insert(format!("/rpc/{}", f.name.name), Value::Object(item));
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Ferrobase REST API", "description": format!("PostgREST-compatible API for schema '{schema}'"), "version": "12.2.0"},
        "host": "",
        "basePath": "/rest/v1",
        "schemes": ["http", "https"],
        "consumes": ["application/json", "application/vnd.pgrst.object+json;nulls=stripped", "application/vnd.pgrst.object+json", "text/csv"],
        "produces": ["application/json", "application/vnd.pgrst.object+json;nulls=stripped", "application/vnd.pgrst.object+json", "text/csv"],
        "paths": paths,
        "definitions": definitions,
        "parameters": parameters,
        "externalDocs": {"description": "PostgREST Documentation", "url": "https://postgrest.org/en/stable/references/api.html"},
    })
}
