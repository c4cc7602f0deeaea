//! Project administration through the service-role key (or a platform admin
//! token used as the key): [`Client::admin_sql`] runs guarded SQL as the
//! project owner (`{project}/admin/v1/sql`), and [`SchemaAdmin`] (from
//! [`Client::schema_admin`]) lists and changes tables, indexes, policies and
//! row level security (`{project}/admin/v1/…`).
//!
//! Definitions are sent as any `Serialize` value (usually `serde_json::json!`)
//! in the server's documented shape, and listings come back as
//! `serde_json::Value`, so the SDK does not lag behind the server's catalog
//! fields.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::Result;
use crate::http;

/// A result column of [`Client::admin_sql`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlColumn {
    /// Column name.
    pub name: String,
    /// Postgres type name, e.g. `int4`, `text`, `jsonb`.
    #[serde(rename = "type")]
    pub pg_type: String,
}

/// The outcome of one statement of [`Client::admin_sql`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlResult {
    /// Result columns (empty when the statement returns no rows).
    pub columns: Vec<SqlColumn>,
    /// Rows as JSON objects keyed by column name (numeric values as strings).
    pub rows: Vec<serde_json::Map<String, Value>>,
    /// Rows returned, or affected for INSERT/UPDATE/DELETE without RETURNING.
    pub row_count: u64,
    /// Whether the server's row limit cut the result.
    pub truncated: bool,
    /// The command, e.g. `SELECT`, `CREATE TABLE`.
    pub command: String,
}

/// Options of [`Client::admin_sql_with`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct SqlOptions {
    /// Run `EXPLAIN (ANALYZE, FORMAT JSON)` instead, in a rolled-back transaction.
    pub explain: bool,
    /// Statement timeout in milliseconds (server default 15000, at most 60000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Most rows returned per statement (server default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
}

impl Client {
    /// Runs `query` (one or more statements) as the project owner with
    /// `params` bound to `$1`, `$2` … (sent as text). Needs the service-role
    /// key. Returns one [`SqlResult`] per statement. Statements that reach
    /// outside the project are refused with an [`Error::Api`](crate::Error::Api)
    /// whose code is `sql_refused`.
    pub async fn admin_sql(&self, query: &str, params: &[Value]) -> Result<Vec<SqlResult>> {
        self.admin_sql_with(query, params, &SqlOptions::default())
            .await
    }

    /// [`Client::admin_sql`] with a timeout, row limit or EXPLAIN.
    pub async fn admin_sql_with(
        &self,
        query: &str,
        params: &[Value],
        options: &SqlOptions,
    ) -> Result<Vec<SqlResult>> {
        let mut body = json!({ "query": query, "params": params, "explain": options.explain });
        if let Some(t) = options.timeout_ms {
            body["timeout_ms"] = json!(t);
        }
        if let Some(m) = options.max_rows {
            body["max_rows"] = json!(m);
        }
        let value: Value = self
            .admin_call(Method::POST, "admin/v1/sql", &[], Some(&body))
            .await?;
        // One statement answers an object, several an array.
        if value.is_array() {
            http::decode_json(value.to_string().as_bytes())
        } else {
            Ok(vec![http::decode_json(value.to_string().as_bytes())?])
        }
    }

    /// The schema-management API of this project (needs the service-role key).
    pub fn schema_admin(&self) -> SchemaAdmin {
        SchemaAdmin {
            client: self.clone(),
        }
    }

    pub(crate) async fn admin_call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T> {
        let mut url = self.endpoint(path.split('/').filter(|s| !s.is_empty()));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut builder = self
            .http_client()
            .request(method, url)
            .headers(self.auth_headers()?);
        if let Some(b) = body {
            builder = builder.json(b);
        }
        let response = self.execute(builder.build()?).await?.error_for_status()?;
        if response.body.is_empty() {
            return http::decode_json(b"null");
        }
        http::decode_json(&response.body)
    }
}

/// Schema management of one project: `{project}/admin/v1/{schemas,tables,…}`.
///
/// ```no_run
/// # async fn demo(client: ferrobase::Client) -> ferrobase::Result<()> {
/// use serde_json::json;
/// let admin = client.schema_admin();
/// admin.create_table(&json!({
///     "name": "todos", "id": true, "timestamps": true,
///     "columns": [{"name": "title", "type": "text", "not_null": true}]
/// })).await?;
/// admin.create_policy("todos", &json!({
///     "name": "read", "command": "select", "roles": ["anon"], "using": "true"
/// })).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SchemaAdmin {
    client: Client,
}

fn to_value(body: &impl Serialize) -> Result<Value> {
    serde_json::to_value(body).map_err(|e| crate::Error::Encode(e.to_string()))
}

fn query(schema: Option<&str>, cascade: bool) -> Vec<(&'static str, &str)> {
    let mut q = Vec::new();
    if let Some(s) = schema {
        q.push(("schema", s));
    }
    if cascade {
        q.push(("cascade", "true"));
    }
    q
}

impl SchemaAdmin {
    async fn get(&self, path: String, schema: Option<&str>) -> Result<Value> {
        self.client
            .admin_call(Method::GET, &path, &query(schema, false), None)
            .await
    }

    async fn send(&self, method: Method, path: String, body: Option<Value>) -> Result<Value> {
        self.client
            .admin_call(method, &path, &[], body.as_ref())
            .await
    }

    /// Schemas of the project.
    pub async fn schemas(&self) -> Result<Value> {
        self.get("admin/v1/schemas".into(), None).await
    }

    /// Tables (of `schema`, or of all schemas) with columns, keys, indexes,
    /// RLS state, policies and row estimates.
    pub async fn tables(&self, schema: Option<&str>) -> Result<Value> {
        self.get("admin/v1/tables".into(), schema).await
    }

    /// One table of the `public` schema.
    pub async fn table(&self, name: &str) -> Result<Value> {
        self.get(format!("admin/v1/tables/{name}"), None).await
    }

    /// Views, functions or triggers: `kind` is `views`, `functions` or `triggers`.
    pub async fn list(&self, kind: &str, schema: Option<&str>) -> Result<Value> {
        self.get(format!("admin/v1/{kind}"), schema).await
    }

    /// Creates a table (`{name, schema?, columns: [{name, type, default?,
    /// not_null?, unique?, primary_key?, references?}], id?, timestamps?,
    /// foreign_keys?, rls?, comment?}`) and returns it.
    pub async fn create_table(&self, definition: &impl Serialize) -> Result<Value> {
        self.send(
            Method::POST,
            "admin/v1/tables".into(),
            Some(to_value(definition)?),
        )
        .await
    }

    /// Applies `actions` (`[{op: "add_column" | "drop_column" | "rename_column" |
    /// "alter_type" | "set_default" | "drop_default" | "set_not_null" |
    /// "drop_not_null" | "add_foreign_key" | "drop_constraint" | "rename", …}]`)
    /// to table `name` in one transaction and returns the table.
    pub async fn alter_table(&self, name: &str, actions: &impl Serialize) -> Result<Value> {
        let body = json!({ "actions": to_value(actions)? });
        self.send(Method::PATCH, format!("admin/v1/tables/{name}"), Some(body))
            .await
    }

    /// Drops table `name` (with dependent objects when `cascade`).
    pub async fn drop_table(&self, name: &str, cascade: bool) -> Result<()> {
        let path = format!("admin/v1/tables/{name}");
        self.client
            .admin_call::<Value>(Method::DELETE, &path, &query(None, cascade), None)
            .await
            .map(drop)
    }

    /// Enables or disables row level security on table `name`.
    pub async fn set_rls(&self, name: &str, enabled: bool) -> Result<Value> {
        self.send(
            Method::PUT,
            format!("admin/v1/tables/{name}/rls"),
            Some(json!({ "enabled": enabled })),
        )
        .await
    }

    /// Creates an index (`{name?, columns, unique?, method?}`) on table `name`.
    pub async fn create_index(&self, table: &str, index: &impl Serialize) -> Result<Value> {
        self.send(
            Method::POST,
            format!("admin/v1/tables/{table}/indexes"),
            Some(to_value(index)?),
        )
        .await
    }

    /// Drops index `name`.
    pub async fn drop_index(&self, name: &str) -> Result<()> {
        self.send(Method::DELETE, format!("admin/v1/indexes/{name}"), None)
            .await
            .map(drop)
    }

    /// Creates a policy (`{name, command?, roles?, using?, with_check?, permissive?}`).
    pub async fn create_policy(&self, table: &str, policy: &impl Serialize) -> Result<Value> {
        self.send(
            Method::POST,
            format!("admin/v1/tables/{table}/policies"),
            Some(to_value(policy)?),
        )
        .await
    }

    /// Drops policy `name` of `table`.
    pub async fn drop_policy(&self, table: &str, name: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            format!("admin/v1/tables/{table}/policies/{name}"),
            None,
        )
        .await
        .map(drop)
    }
}
