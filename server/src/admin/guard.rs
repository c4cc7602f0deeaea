//! The admin-SQL guard: every statement is parsed with `pg_query` (Postgres'
//! own grammar) and its whole syntax tree is walked before anything runs.
//!
//! The tree is serialised to JSON and walked generically, so no node type can
//! be skipped by accident: CTEs with DML, subqueries, rule actions, `PREPARE`
//! bodies and `BEGIN ATOMIC` bodies are all visited. Function bodies written
//! as strings (`LANGUAGE sql`, `plpgsql`, `DO` blocks) are parsed and checked
//! recursively; dynamic SQL (`EXECUTE` in PL/pgSQL, `query_to_xml` …) is
//! refused outright because its text cannot be checked ahead of time.
//!
//! What is refused (a statement that "reaches outside the project"): role and
//! database DDL, `SET ROLE`/`SESSION AUTHORIZATION` (also via `set_config`),
//! `COPY` to or from server files or programs, `ALTER SYSTEM`, `LOAD`,
//! untrusted extensions and languages, foreign data wrappers, and writes or
//! DDL on the platform-owned schemas ([`PROTECTED_SCHEMAS`]); reads of those
//! are allowed. Views over those schemas are refused (writes through an
//! auto-updatable view would reach them), and so are aggregates, operators
//! and casts built on `set_config()` or a denied function.
//!
//! The guard reads syntax only; what it promises and what it does not is in
//! `docs/SECURITY.md`. Postgres privileges stay the real boundary: admin SQL
//! runs as the project owner, who cannot reach other databases or roles.

use serde_json::{Map, Value};

/// Schemas the platform owns: readable, never writable through admin SQL.
pub const PROTECTED_SCHEMAS: &[&str] = &["_ferrobase", "auth", "storage", "webhooks"];

/// Extensions a project may create (all are "trusted" in Postgres terms).
pub const ALLOWED_EXTENSIONS: &[&str] = &[
    "pgcrypto",
    "uuid-ossp",
    "citext",
    "hstore",
    "pg_trgm",
    "btree_gin",
    "btree_gist",
    "cube",
    "seg",
    "ltree",
    "tablefunc",
    "unaccent",
    "fuzzystrmatch",
    "intarray",
    "isn",
    "tsm_system_rows",
    "tsm_system_time",
    "dict_int",
];

/// Languages function bodies may be written in.
const ALLOWED_LANGUAGES: &[&str] = &["sql", "plpgsql"];

/// Functions that run SQL given as text, touch server files or other
/// sessions, or reach other databases.
const DENIED_FUNCTIONS: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "ts_stat",
    "ts_rewrite",
    "lo_import",
    "lo_export",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_stat_file",
    "pg_current_logfile",
];

/// Prefixes of denied function names.
const DENIED_FUNCTION_PREFIXES: &[&str] =
    &["dblink", "pg_read_", "pg_ls_", "pg_file_", "pg_logical_"];

/// Settings that may not be changed (`SET`, `RESET`, `set_config`).
const DENIED_SETTINGS: &[&str] = &["role", "session_authorization", "statement_timeout"];

/// Statement types refused outright, with the reason given to the caller.
const REFUSED_STATEMENTS: &[(&str, &str)] = &[
    (
        "CreateRoleStmt",
        "role management (CREATE ROLE/USER/GROUP) is not allowed",
    ),
    (
        "AlterRoleStmt",
        "role management (ALTER ROLE/USER/GROUP) is not allowed",
    ),
    (
        "AlterRoleSetStmt",
        "role management (ALTER ROLE … SET) is not allowed",
    ),
    (
        "DropRoleStmt",
        "role management (DROP ROLE/USER/GROUP) is not allowed",
    ),
    (
        "GrantRoleStmt",
        "granting or revoking role membership is not allowed",
    ),
    ("ReassignOwnedStmt", "REASSIGN OWNED is not allowed"),
    ("DropOwnedStmt", "DROP OWNED is not allowed"),
    ("AlterOwnerStmt", "changing object owners is not allowed"),
    (
        "CreatedbStmt",
        "database management (CREATE DATABASE) is not allowed",
    ),
    (
        "AlterDatabaseStmt",
        "database management (ALTER DATABASE) is not allowed",
    ),
    (
        "AlterDatabaseSetStmt",
        "database management (ALTER DATABASE … SET) is not allowed",
    ),
    (
        "AlterDatabaseRefreshCollStmt",
        "database management (ALTER DATABASE) is not allowed",
    ),
    (
        "DropdbStmt",
        "database management (DROP DATABASE) is not allowed",
    ),
    ("AlterSystemStmt", "ALTER SYSTEM is not allowed"),
    ("LoadStmt", "LOAD is not allowed"),
    ("CheckPointStmt", "CHECKPOINT is not allowed"),
    ("CreateTableSpaceStmt", "tablespaces are not allowed"),
    ("DropTableSpaceStmt", "tablespaces are not allowed"),
    ("AlterTableSpaceOptionsStmt", "tablespaces are not allowed"),
    ("AlterTableMoveAllStmt", "tablespaces are not allowed"),
    ("CreatePLangStmt", "CREATE LANGUAGE is not allowed"),
    ("CreateTransformStmt", "CREATE TRANSFORM is not allowed"),
    ("SecLabelStmt", "SECURITY LABEL is not allowed"),
    ("CreateEventTrigStmt", "event triggers are not allowed"),
    ("AlterEventTrigStmt", "event triggers are not allowed"),
    (
        "CreateSubscriptionStmt",
        "subscriptions (connections to other servers) are not allowed",
    ),
    ("AlterSubscriptionStmt", "subscriptions are not allowed"),
    ("DropSubscriptionStmt", "subscriptions are not allowed"),
    ("CreateFdwStmt", "foreign data wrappers are not allowed"),
    ("AlterFdwStmt", "foreign data wrappers are not allowed"),
    ("CreateForeignServerStmt", "foreign servers are not allowed"),
    ("AlterForeignServerStmt", "foreign servers are not allowed"),
    ("CreateUserMappingStmt", "user mappings are not allowed"),
    ("AlterUserMappingStmt", "user mappings are not allowed"),
    ("DropUserMappingStmt", "user mappings are not allowed"),
    (
        "ImportForeignSchemaStmt",
        "IMPORT FOREIGN SCHEMA is not allowed",
    ),
    ("CreateForeignTableStmt", "foreign tables are not allowed"),
    (
        "AlterExtensionContentsStmt",
        "changing extension contents is not allowed",
    ),
    (
        "DiscardStmt",
        "DISCARD is not allowed (it would reset the statement timeout)",
    ),
    (
        "TransactionStmt",
        "transaction control is managed by the server: each request runs in one transaction",
    ),
];

/// Deepest syntax tree (or function-body nesting) the guard analyses.
const MAX_DEPTH: usize = 400;

/// One statement that passed the guard.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Its exact text (without the separating `;`).
    pub text: String,
    /// The top-level node type, e.g. `SelectStmt`, `CreateStmt`.
    pub kind: String,
    /// A readable command name, e.g. `SELECT`, `CREATE TABLE`.
    pub command: String,
    /// Whether the statement cannot run inside a transaction block
    /// (`VACUUM`, `… CONCURRENTLY`).
    pub no_transaction: bool,
    /// Whether it returns rows that can be wrapped in a CTE to convert them
    /// to JSON (`SELECT`/`VALUES` without `INTO`, DML with `RETURNING`).
    pub wrappable: bool,
    /// Whether it changes the schema (anything but SELECT/DML/SHOW/EXPLAIN…).
    pub is_ddl: bool,
}

/// Why SQL was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// Postgres' grammar does not accept it.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// No statement at all.
    #[error("the query is empty")]
    Empty,
    /// Statement `index` (0-based) reaches outside the project.
    #[error("statement {} refused: {reason}", index + 1)]
    Refused {
        /// 0-based index of the statement.
        index: usize,
        /// What was refused and why.
        reason: String,
    },
}

/// Parses `sql` and checks every statement; returns them in order.
pub fn check(sql: &str) -> Result<Vec<Statement>, GuardError> {
    let parsed = pg_query::parse(sql, 0).map_err(|e| GuardError::Syntax(clean_error(&e)))?;
    let stmts = &parsed.protobuf.stmts;
    if stmts.is_empty() {
        return Err(GuardError::Empty);
    }
    let mut out = Vec::with_capacity(stmts.len());
    for (index, raw) in stmts.iter().enumerate() {
        let refuse = |reason: String| GuardError::Refused { index, reason };
        let tree =
            serde_json::to_value(raw).map_err(|e| refuse(format!("could not analyse: {e}")))?;
        let start = usize::try_from(raw.stmt_location).unwrap_or(0);
        let len = usize::try_from(raw.stmt_len).unwrap_or(0);
        let end = if len == 0 { sql.len() } else { start + len };
        let text = sql.get(start..end).unwrap_or(sql).trim().to_owned();
        let node = tree
            .get("stmt")
            .and_then(|s| s.get("node"))
            .and_then(Value::as_object);
        let Some((kind, body)) = node.and_then(|m| m.iter().next()) else {
            return Err(refuse("could not analyse the statement".into()));
        };
        Walker { depth: 0 }
            .walk(&tree, Mode::Read)
            .map_err(refuse)?;
        out.push(Statement {
            command: command_name(kind, body),
            no_transaction: no_transaction(kind, body),
            wrappable: wrappable(kind, body),
            is_ddl: !matches!(
                kind.as_str(),
                "SelectStmt"
                    | "InsertStmt"
                    | "UpdateStmt"
                    | "DeleteStmt"
                    | "MergeStmt"
                    | "ExplainStmt"
                    | "VariableShowStmt"
                    | "VariableSetStmt"
                    | "CallStmt"
                    | "NotifyStmt"
                    | "ListenStmt"
                    | "UnlistenStmt"
                    | "FetchStmt"
                    | "DeclareCursorStmt"
                    | "ClosePortalStmt"
                    | "PrepareStmt"
                    | "ExecuteStmt"
                    | "DeallocateStmt"
                    | "LockStmt"
                    | "VacuumStmt"
            ),
            kind: kind.clone(),
            text,
        });
    }
    Ok(out)
}

/// Checks one SQL expression (a column default, a policy's `USING`/`WITH
/// CHECK`): it must parse as exactly one expression, and pass the guard.
pub fn check_expression(expr: &str) -> Result<(), String> {
    let parsed = pg_query::parse(expr, pg_query::ParserOptions::PLPGSQL_EXPR)
        .map_err(|e| format!("not a valid SQL expression: {}", clean_error(&e)))?;
    let tree = serde_json::to_value(&parsed.protobuf).map_err(|e| e.to_string())?;
    let stmts = tree["stmts"].as_array().map_or(&[][..], Vec::as_slice);
    let [only] = stmts else {
        return Err("must be exactly one SQL expression".into());
    };
    let select = &only["stmt"]["node"]["SelectStmt"];
    let plain = select.is_object()
        && select["target_list"]
            .as_array()
            .is_some_and(|t| t.len() == 1)
        && [
            "from_clause",
            "group_clause",
            "sort_clause",
            "window_clause",
            "values_lists",
            "distinct_clause",
            "locking_clause",
        ]
        .iter()
        .all(|k| select[k].as_array().is_none_or(Vec::is_empty))
        && [
            "where_clause",
            "having_clause",
            "limit_count",
            "limit_offset",
            "with_clause",
            "into_clause",
            "larg",
            "rarg",
        ]
        .iter()
        .all(|k| select[k].is_null());
    if !plain {
        return Err("must be a single SQL expression (no FROM, WHERE, lists or statements)".into());
    }
    Walker { depth: 0 }.walk(&tree, Mode::Read)
}

fn clean_error(e: &pg_query::Error) -> String {
    let s = e.to_string();
    s.strip_prefix("Invalid statement: ")
        .unwrap_or(&s)
        .to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Inside a query or expression: relations named here are read.
    Read,
    /// Inside DDL: relations and schemas named here are changed.
    Ddl,
}

struct Walker {
    depth: usize,
}

fn protected(schema: &str) -> bool {
    PROTECTED_SCHEMAS.contains(&schema)
}

/// Platform tables whose row-level security policies belong to the project.
fn policy_table(schema: &str, table: &str) -> bool {
    matches!((schema, table), ("storage", "objects" | "buckets"))
}

fn protected_msg(schema: &str) -> String {
    format!("writes and DDL on the platform-owned schema \"{schema}\" are not allowed (reads are)")
}

/// A `RangeVar` appears untagged in typed fields; recognise it by shape.
fn is_range_var(m: &Map<String, Value>) -> bool {
    m.contains_key("relname") && m.contains_key("relpersistence")
}

fn sval(v: &Value) -> Option<&str> {
    // String node: {"String":{"sval":..}} ; A_Const: {"AConst":{"val":{"Sval":{"sval":..}}}}
    v.pointer("/node/String/sval")
        .or_else(|| v.pointer("/String/sval"))
        .or_else(|| v.pointer("/node/AConst/val/Sval/sval"))
        .or_else(|| v.pointer("/AConst/val/Sval/sval"))
        .and_then(Value::as_str)
}

fn check_setting(name: &str, values: &[Option<&str>]) -> Result<(), String> {
    let name = name.to_ascii_lowercase();
    if DENIED_SETTINGS.contains(&name.as_str()) {
        return Err(format!("changing the setting \"{name}\" is not allowed"));
    }
    if name == "search_path" {
        for v in values {
            let Some(v) = v else {
                return Err("search_path must be set to literal schema names".into());
            };
            for part in v.split(',') {
                let part = part.trim().trim_matches('"');
                if protected(part) {
                    return Err(format!(
                        "putting the platform-owned schema \"{part}\" on the search_path is not allowed"
                    ));
                }
            }
        }
    }
    Ok(())
}

impl Walker {
    fn walk(&mut self, v: &Value, mode: Mode) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the statement is too deeply nested to analyse".into());
        }
        let result = match v {
            Value::Array(items) => items.iter().try_for_each(|i| self.walk(i, mode)),
            Value::Object(m) if is_range_var(m) => {
                let schema = m["schemaname"].as_str().unwrap_or_default();
                if mode == Mode::Ddl && protected(schema) {
                    Err(protected_msg(schema))
                } else {
                    Ok(())
                }
            }
            Value::Object(m) => m.iter().try_for_each(|(k, child)| {
                if k.starts_with(|c: char| c.is_ascii_uppercase()) {
                    self.node(k, child, mode)
                } else if k == "into_clause" || k == "rel" && m.contains_key("skip_data") {
                    // SELECT … INTO / CREATE TABLE AS: the target is written.
                    self.walk(child, Mode::Ddl)
                } else {
                    self.walk(child, mode)
                }
            }),
            _ => Ok(()),
        };
        self.depth -= 1;
        result
    }

    fn node(&mut self, kind: &str, body: &Value, mode: Mode) -> Result<(), String> {
        if let Some((_, reason)) = REFUSED_STATEMENTS.iter().find(|(k, _)| *k == kind) {
            return Err((*reason).to_owned());
        }
        match kind {
            "SelectStmt" => self.walk(body, Mode::Read),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                let schema = body.pointer("/relation/schemaname").and_then(Value::as_str);
                if let Some(s) = schema.filter(|s| protected(s)) {
                    return Err(protected_msg(s));
                }
                self.walk(body, Mode::Read)
            }
            "String" => match body["sval"].as_str() {
                Some(s) if mode == Mode::Ddl && protected(s) => Err(protected_msg(s)),
                _ => Ok(()),
            },
            "FuncCall" => {
                self.check_function_call(body)?;
                self.walk(body, Mode::Read)
            }
            // Names of types, columns, operators and referenced (foreign-key)
            // tables are read, not changed, even inside DDL.
            "TypeName" | "ColumnRef" | "Constraint" | "AccessPriv" | "TypeCast" | "AExpr"
            | "RoleSpec" | "SubLink" | "ResTarget" | "IndexElem" => self.walk(body, Mode::Read),
            "VariableSetStmt" => {
                if body["kind"].as_i64() == Some(6) {
                    return Err(
                        "RESET ALL is not allowed (it would reset the statement timeout)".into(),
                    );
                }
                let name = body["name"].as_str().unwrap_or_default();
                let values: Vec<Option<&str>> = body["args"]
                    .as_array()
                    .map(|a| a.iter().map(sval).collect())
                    .unwrap_or_default();
                check_setting(name, &values)
            }
            "CopyStmt" => {
                if body["is_program"].as_bool() == Some(true) {
                    Err("COPY … PROGRAM is not allowed".into())
                } else if body["filename"].as_str().is_some_and(|f| !f.is_empty()) {
                    Err("COPY to or from server files is not allowed".into())
                } else {
                    Err(
                        "COPY … STDIN/STDOUT is not supported by admin SQL; use INSERT or SELECT"
                            .into(),
                    )
                }
            }
            "CreateExtensionStmt" | "AlterExtensionStmt" => {
                let name = body["extname"].as_str().unwrap_or_default();
                if !ALLOWED_EXTENSIONS.contains(&name) {
                    return Err(format!(
                        "the extension \"{name}\" is not in the allow-list of trusted extensions ({})",
                        ALLOWED_EXTENSIONS.join(", ")
                    ));
                }
                let cascade = body["options"].as_array().is_some_and(|o| {
                    o.iter().any(|d| {
                        d.pointer("/node/DefElem/defname").and_then(Value::as_str)
                            == Some("cascade")
                    })
                });
                if cascade {
                    return Err("CREATE EXTENSION … CASCADE is not allowed; create each extension explicitly".into());
                }
                self.walk(body, Mode::Ddl)
            }
            "DoStmt" => {
                let (language, code) = function_options(body["args"].as_array());
                let language = language.unwrap_or_else(|| "plpgsql".into());
                if language != "plpgsql" {
                    return Err(format!(
                        "DO blocks in language \"{language}\" are not allowed (only plpgsql)"
                    ));
                }
                let code = code.first().cloned().unwrap_or_default();
                self.check_plpgsql(&wrap_plpgsql(&code, "void"))
            }
            "CreateFunctionStmt" => {
                self.check_function(body)?;
                self.walk(body, Mode::Ddl)
            }
            // A view over a platform-owned table could be written through
            // (simple views are auto-updatable), which the syntax of the later
            // UPDATE cannot show: such views are refused when created.
            "ViewStmt" => {
                if let Some(schema) = protected_relation(&body["query"]) {
                    return Err(format!(
                        "views over the platform-owned schema \"{schema}\" are not allowed \
                         (writes through the view would reach it); query it directly"
                    ));
                }
                self.walk(body, Mode::Ddl)
            }
            // Aggregates, operators and casts call functions named in their
            // definition with arguments no one wrote down: naming set_config()
            // or a denied function there is refused like calling it.
            "DefineStmt" | "CreateCastStmt" | "ObjectWithArgs" | "CreateOpClassItem" => {
                if let Some(name) = denied_function_named(body) {
                    return Err(format!(
                        "using {name}() in an aggregate, operator or cast is not allowed"
                    ));
                }
                self.walk(
                    body,
                    if kind == "ObjectWithArgs" {
                        mode
                    } else {
                        Mode::Ddl
                    },
                )
            }
            "CreateSchemaStmt" => {
                let name = body["schemaname"].as_str().unwrap_or_default();
                if protected(name) {
                    return Err(protected_msg(name));
                }
                if !body["authrole"].is_null() {
                    return Err("CREATE SCHEMA … AUTHORIZATION is not allowed".into());
                }
                self.walk(body, Mode::Ddl)
            }
            "RenameStmt" | "AlterObjectSchemaStmt" => {
                for key in ["subname", "newname", "newschema"] {
                    if let Some(s) = body[key].as_str().filter(|s| protected(s))
                        && (key == "newschema" || body["relation"].is_null())
                    {
                        return Err(protected_msg(s));
                    }
                }
                self.walk(body, Mode::Ddl)
            }
            "AlterTableCmd" => {
                if !body["newowner"].is_null() {
                    return Err("changing object owners is not allowed".into());
                }
                self.walk(body, Mode::Ddl)
            }
            "DefElem" if mode == Mode::Ddl => {
                if let Some(s) = body.get("arg").and_then(sval).filter(|s| protected(s)) {
                    return Err(protected_msg(s));
                }
                self.walk(body, mode)
            }
            // Policies on the storage tables are how an app decides who may
            // read and write objects (as on Supabase): CREATE/ALTER/DROP
            // POLICY on them is allowed, nothing else in platform schemas.
            "CreatePolicyStmt" | "AlterPolicyStmt" => {
                let schema = body.pointer("/table/schemaname").and_then(Value::as_str);
                let table = body.pointer("/table/relname").and_then(Value::as_str);
                if let Some(s) = schema.filter(|s| protected(s))
                    && !policy_table(s, table.unwrap_or_default())
                {
                    return Err(protected_msg(s));
                }
                self.walk(&body["qual"], Mode::Read)?;
                self.walk(&body["with_check"], Mode::Read)
            }
            "DropStmt"
                if body["remove_type"].as_i64()
                    == Some(pg_query::protobuf::ObjectType::ObjectPolicy as i64) =>
            {
                let on_policy_table = |object: &Value| {
                    let names: Vec<&str> = object
                        .pointer("/node/List/items")
                        .or_else(|| object.pointer("/List/items"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(sval)
                        .collect();
                    matches!(names[..], [schema, table, _] if policy_table(schema, table))
                };
                let objects = body["objects"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if !objects.is_empty() && objects.iter().all(on_policy_table) {
                    Ok(())
                } else {
                    self.walk(body, Mode::Ddl)
                }
            }
            k if k.ends_with("Stmt") => self.walk(body, Mode::Ddl),
            _ => self.walk(body, mode),
        }
    }

    fn check_function_call(&mut self, body: &Value) -> Result<(), String> {
        let name = body["funcname"]
            .as_array()
            .and_then(|n| n.last())
            .and_then(sval)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name != "set_config" && is_denied_function(&name) {
            return Err(format!("calling {name}() is not allowed"));
        }
        if name == "set_config" {
            let args = body["args"].as_array().map_or(&[][..], Vec::as_slice);
            let Some(setting) = args.first().and_then(sval) else {
                return Err("set_config() needs a literal setting name".into());
            };
            check_setting(setting, &[args.get(1).and_then(sval)])?;
        }
        Ok(())
    }

    fn check_function(&mut self, body: &Value) -> Result<(), String> {
        let (language, code) = function_options(body["options"].as_array());
        let has_sql_body = !body["sql_body"].is_null();
        let language = match language {
            Some(l) => l,
            None if has_sql_body => "sql".into(),
            None => return Err("CREATE FUNCTION needs a LANGUAGE".into()),
        };
        if !ALLOWED_LANGUAGES.contains(&language.as_str()) {
            return Err(format!(
                "functions in language \"{language}\" are not allowed (only sql and plpgsql)"
            ));
        }
        let Some(code) = code.first() else {
            return Ok(()); // BEGIN ATOMIC: the body is part of the tree, walked by the caller.
        };
        if language == "sql" {
            return self.check_nested_sql(code);
        }
        let ret = body["return_type"]["names"]
            .as_array()
            .and_then(|n| n.last())
            .and_then(sval)
            .unwrap_or_default();
        let setof = body["return_type"]["setof"].as_bool() == Some(true);
        if matches!(ret, "trigger" | "event_trigger") {
            // libpg_query cannot serialise trigger functions: analyse the body
            // as a record function, inside a block that declares NEW, OLD, TG_*.
            let inner = code.trim_end().trim_end_matches(';');
            let body = format!(
                "declare new record; old record; tg_op text; tg_name text; tg_when text; tg_level text; \
                 tg_table_name text; tg_table_schema text; tg_relid oid; tg_nargs int; tg_argv text[]; \
                 tg_event text; tg_tag text; begin {inner}\n; end"
            );
            return self.check_plpgsql(&wrap_plpgsql(&body, "record"));
        }
        let returns = match ret {
            "void" if !setof => "void",
            _ if setof => "setof record",
            _ => "record",
        };
        if body["is_procedure"].as_bool() == Some(true) {
            return self.check_plpgsql(&wrap_plpgsql_procedure(code));
        }
        self.check_plpgsql(&wrap_plpgsql(code, returns))
    }

    fn check_nested_sql(&mut self, sql: &str) -> Result<(), String> {
        self.enter()?;
        let parsed =
            pg_query::parse(sql, 0).map_err(|e| format!("function body: {}", clean_error(&e)))?;
        let tree = serde_json::to_value(&parsed.protobuf).map_err(|e| e.to_string())?;
        let r = self
            .walk(&tree, Mode::Read)
            .map_err(|e| format!("function body: {e}"));
        self.depth -= 1;
        r
    }

    fn check_plpgsql(&mut self, function_sql: &str) -> Result<(), String> {
        self.enter()?;
        let r = match pg_query::parse_plpgsql(function_sql) {
            Ok(tree) => self.walk_plpgsql(&tree),
            Err(e) => Err(format!(
                "could not analyse the PL/pgSQL body ({}); it was refused to be safe",
                clean_error(&e)
            )),
        };
        self.depth -= 1;
        r
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("function bodies are nested too deeply to analyse".into());
        }
        Ok(())
    }

    fn walk_plpgsql(&mut self, v: &Value) -> Result<(), String> {
        match v {
            Value::Array(items) => items.iter().try_for_each(|i| self.walk_plpgsql(i)),
            Value::Object(m) => {
                for (k, child) in m {
                    match k.as_str() {
                        "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => {
                            return Err("EXECUTE of dynamic SQL in PL/pgSQL is not allowed".into());
                        }
                        "dynquery" => {
                            return Err("OPEN … FOR EXECUTE of dynamic SQL is not allowed".into());
                        }
                        "PLpgSQL_expr" => self.check_plpgsql_expr(child)?,
                        _ => self.walk_plpgsql(child)?,
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_plpgsql_expr(&mut self, expr: &Value) -> Result<(), String> {
        let Some(query) = expr["query"].as_str() else {
            return Ok(());
        };
        let mode = expr["parseMode"]
            .as_i64()
            .and_then(|m| i32::try_from(m).ok())
            .unwrap_or(0);
        let parsed = pg_query::parse(query, mode)
            .map_err(|e| format!("PL/pgSQL statement {query:?}: {}", clean_error(&e)))?;
        let tree = serde_json::to_value(&parsed.protobuf).map_err(|e| e.to_string())?;
        self.walk(&tree, Mode::Read)
            .map_err(|e| format!("in the PL/pgSQL body: {e}"))
    }
}

/// Whether `name` is a function admin SQL may not call (or reference).
fn is_denied_function(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "set_config"
        || DENIED_FUNCTIONS.contains(&name.as_str())
        || DENIED_FUNCTION_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The first denied function named anywhere in `v` (as a string node).
fn denied_function_named(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => items.iter().find_map(denied_function_named),
        Value::Object(m) => {
            if let Some(s) = m.get("sval").and_then(Value::as_str)
                && is_denied_function(s)
            {
                return Some(s.to_ascii_lowercase());
            }
            m.values().find_map(denied_function_named)
        }
        _ => None,
    }
}

/// The platform-owned schema of the first relation named in `v`, if any.
fn protected_relation(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => items.iter().find_map(protected_relation),
        Value::Object(m) => {
            if is_range_var(m)
                && let Some(schema) = m["schemaname"].as_str().filter(|s| protected(s))
            {
                return Some(schema.to_owned());
            }
            m.values().find_map(protected_relation)
        }
        _ => None,
    }
}

/// `LANGUAGE` and `AS` of a function or DO block.
fn function_options(options: Option<&Vec<Value>>) -> (Option<String>, Vec<String>) {
    let mut language = None;
    let mut code = Vec::new();
    for d in options.map_or(&[][..], Vec::as_slice) {
        let Some(def) = d.pointer("/node/DefElem") else {
            continue;
        };
        match def["defname"].as_str() {
            Some("language") => {
                language = def.get("arg").and_then(sval).map(str::to_ascii_lowercase)
            }
            Some("as") => {
                if let Some(s) = def.get("arg").and_then(sval) {
                    code.push(s.to_owned());
                } else if let Some(items) = def
                    .pointer("/arg/node/List/items")
                    .and_then(Value::as_array)
                {
                    code.extend(items.iter().filter_map(sval).map(str::to_owned));
                }
            }
            _ => {}
        }
    }
    (language, code)
}

fn dollar_tag(body: &str) -> String {
    let mut tag = String::from("$fb_guard$");
    while body.contains(&tag) {
        tag.insert(tag.len() - 1, 'x');
    }
    tag
}

fn wrap_plpgsql(body: &str, returns: &str) -> String {
    let tag = dollar_tag(body);
    format!(
        "CREATE FUNCTION fb_guard_check() RETURNS {returns} LANGUAGE plpgsql AS {tag}{body}{tag}"
    )
}

fn wrap_plpgsql_procedure(body: &str) -> String {
    let tag = dollar_tag(body);
    format!("CREATE PROCEDURE fb_guard_check() LANGUAGE plpgsql AS {tag}{body}{tag}")
}

fn no_transaction(kind: &str, body: &Value) -> bool {
    kind == "VacuumStmt"
        || body["concurrent"].as_bool() == Some(true)
        || (kind == "ReindexStmt" && body.to_string().contains("\"concurrently\""))
}

fn wrappable(kind: &str, body: &Value) -> bool {
    match kind {
        "SelectStmt" => body["into_clause"].is_null(),
        "InsertStmt" | "UpdateStmt" | "DeleteStmt" => body["returning_clause"]["exprs"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        _ => false,
    }
}

/// `CreateStmt` → `CREATE TABLE`, `SelectStmt` → `SELECT` …
fn command_name(kind: &str, body: &Value) -> String {
    let known = match kind {
        "SelectStmt" if !body["into_clause"].is_null() => "SELECT INTO",
        "SelectStmt" => "SELECT",
        "InsertStmt" => "INSERT",
        "UpdateStmt" => "UPDATE",
        "DeleteStmt" => "DELETE",
        "MergeStmt" => "MERGE",
        "CreateStmt" => "CREATE TABLE",
        "CreateTableAsStmt" => "CREATE TABLE AS",
        "ViewStmt" => "CREATE VIEW",
        "IndexStmt" => "CREATE INDEX",
        "DropStmt" => "DROP",
        "AlterTableStmt" => "ALTER TABLE",
        "CreateFunctionStmt" => "CREATE FUNCTION",
        "CreatePolicyStmt" => "CREATE POLICY",
        "CreateTrigStmt" => "CREATE TRIGGER",
        "CreateExtensionStmt" => "CREATE EXTENSION",
        "CreateSchemaStmt" => "CREATE SCHEMA",
        "ExplainStmt" => "EXPLAIN",
        "VariableSetStmt" => "SET",
        "VariableShowStmt" => "SHOW",
        "TruncateStmt" => "TRUNCATE",
        "GrantStmt" => "GRANT",
        "CommentStmt" => "COMMENT",
        "RenameStmt" => "ALTER",
        "CallStmt" => "CALL",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    // Split CamelCase: "CreateSeqStmt" -> "CREATE SEQ".
    let base = kind.strip_suffix("Stmt").unwrap_or(kind);
    let mut out = String::new();
    for (i, c) in base.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> bool {
        matches!(check(sql), Err(GuardError::Refused { .. }))
    }

    #[test]
    fn allows_ordinary_sql() {
        for sql in [
            "select 1",
            "create table t (id uuid references auth.users(id), b text default auth.uid()::text)",
            "insert into t (b) values ('x') returning *",
            "create extension pgcrypto",
            "create function f(a int) returns int language sql as $$ select a + 1 $$",
            "create function g() returns trigger language plpgsql as $$ begin new.x := now(); return new; end $$",
            "create policy p on t for select using (auth.uid() = id)",
            "select * from auth.users",
            "set search_path = public, extensions",
            "select set_config('request.jwt.claims', '{}', true)",
            "create view v as select * from public.t",
            "create aggregate mysum(int) (sfunc = int4pl, stype = int)",
            "drop function if exists f(int)",
        ] {
            assert!(check(sql).is_ok(), "{sql}: {:?}", check(sql));
        }
    }

    #[test]
    fn storage_policies_are_the_projects() {
        for sql in [
            "create policy own_files on storage.objects for select to authenticated \
             using (owner = auth.uid())",
            "create policy up on storage.objects for insert with check (bucket_id = 'avatars')",
            "alter policy own_files on storage.objects using (true)",
            "drop policy own_files on storage.objects",
            "drop policy if exists b on storage.buckets",
        ] {
            assert!(!refused(sql), "{sql}");
        }
        for sql in [
            "create policy p on auth.users using (true)",
            "create policy p on storage.migrations using (true)",
            "drop policy p on auth.users",
            "alter table storage.objects disable row level security",
            "create policy p on storage.objects using (pg_read_file('x') <> '')",
        ] {
            assert!(refused(sql), "{sql}");
        }
    }

    #[test]
    fn refuses_bypasses() {
        for sql in [
            "select 1; drop role x",
            "/* hi */ create role x",
            "with x as (delete from auth.users returning *) select * from x",
            "create view public.u as select * from auth.users",
            "create or replace view v as select id, email from auth.users where true",
            "create view v as select * from (select * from storage.objects) s",
            "create aggregate sc(text, boolean) (sfunc = set_config, stype = text, initcond = 'role')",
            "create aggregate sc(text, boolean) (sfunc = pg_catalog.set_config, stype = text)",
            "create operator ### (function = set_config, leftarg = text, rightarg = text)",
            "create cast (text as int8) with function pg_terminate_backend(int4)",
            "do $$ begin execute 'alter role x superuser'; end $$",
            "create function f() returns void language plpgsql as $$ begin execute 'x'; end $$",
            "create function f() returns void language sql as $$ insert into auth.users default values $$",
            "copy t to program 'id'",
            "copy t from '/etc/passwd'",
            "select set_config('role', 'service_role', false)",
            "select set_config(current_user, 'x', false)",
            "alter system set work_mem = '1GB'",
            "load 'plpgsql'",
            "create extension plpython3u",
            "create language plpython3u",
            "set session authorization postgres",
            "set role anon",
            "reset role",
            "alter database x set work_mem = 1",
            "create function auth.uid() returns uuid language sql as $$ select null::uuid $$",
            "set search_path = auth",
            "select query_to_xml('create role x', true, true, '')",
            "create table storage.x (a int)",
            "drop schema public, auth cascade",
            "alter table t set schema auth",
            "begin",
        ] {
            assert!(refused(sql), "{sql} was not refused: {:?}", check(sql));
        }
    }

    #[test]
    fn expressions() {
        assert!(check_expression("now()").is_ok());
        assert!(check_expression("auth.uid() = user_id").is_ok());
        assert!(check_expression("1; drop table t").is_err());
        assert!(check_expression("1 from t").is_err());
        assert!(check_expression("set_config('role', 'x', true)").is_err());
        assert!(check_expression("(select 1 from auth.users limit 1)").is_ok());
    }
}
