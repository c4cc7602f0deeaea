//! The data-API query builder (`{project}/rest/v1`), modelled on postgrest-js.
//!
//! Layout:
//! - [`QueryBuilder`] comes from [`Client::from`] and picks the operation:
//!   [`select`](QueryBuilder::select), [`insert`](QueryBuilder::insert),
//!   [`upsert`](QueryBuilder::upsert), [`update`](QueryBuilder::update) or
//!   [`delete`](QueryBuilder::delete).
//! - [`FilterBuilder`] carries filters (`eq`, `in_`, `or`, ...), modifiers
//!   (`order`, `range`, `count`, `single`, ...) and runs the request with
//!   [`execute`](FilterBuilder::execute) or [`fetch`](FilterBuilder::fetch).
//!   [`Client::rpc`] returns one directly.
//! - [`MaybeSingle`] is the terminal state after
//!   [`maybe_single`](FilterBuilder::maybe_single): it yields `Option<T>`.
//!
//! Nothing is sent until `execute`/`fetch`; [`FilterBuilder::build_request`]
//! shows exactly what would be sent. Filter values are written the way
//! postgrest-js writes them and every query-string key and value is
//! percent-encoded (spaces as `%20`), so a value can never inject another
//! parameter. Values given to [`FilterBuilder::or`],
//! [`FilterBuilder::not`] and [`FilterBuilder::filter`] are PostgREST syntax
//! and are used as they are.

use std::collections::HashSet;
use std::fmt::Display;

use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::http::{RawResponse, decode_json};

const MEDIA_OBJECT: &str = "application/vnd.pgrst.object+json";
const MEDIA_JSON: &str = "application/json";

/// Row-count algorithm requested with [`FilterBuilder::count`]
/// (`Prefer: count=...`); the total comes back in [`Response::count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Count {
    /// `COUNT(*)`: exact but slow on large tables.
    Exact,
    /// The planner's estimate: fast but approximate.
    Planned,
    /// Exact for small results, planned for large ones.
    Estimated,
}

impl Count {
    fn as_str(self) -> &'static str {
        match self {
            Count::Exact => "exact",
            Count::Planned => "planned",
            Count::Estimated => "estimated",
        }
    }
}

/// Sort direction and options for [`FilterBuilder::order`].
///
/// ```
/// use ferrobase::Order;
/// let newest_first = Order::desc().nulls_last();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    descending: bool,
    /// `Some(true)` = `nullsfirst`, `Some(false)` = `nullslast`.
    nulls_first: Option<bool>,
    referenced_table: Option<String>,
}

impl Order {
    /// Ascending order (`col.asc`).
    pub fn asc() -> Order {
        Order::default()
    }

    /// Descending order (`col.desc`).
    pub fn desc() -> Order {
        Order {
            descending: true,
            ..Order::default()
        }
    }

    /// Put `NULL`s first (`.nullsfirst`).
    #[must_use]
    pub fn nulls_first(mut self) -> Order {
        self.nulls_first = Some(true);
        self
    }

    /// Put `NULL`s last (`.nullslast`).
    #[must_use]
    pub fn nulls_last(mut self) -> Order {
        self.nulls_first = Some(false);
        self
    }

    /// Order the rows of an embedded (referenced) table instead of the main
    /// table (`{table}.order=...`).
    #[must_use]
    pub fn referenced_table(mut self, table: impl Into<String>) -> Order {
        self.referenced_table = Some(table.into());
        self
    }
}

/// How [`FilterBuilder::text_search`] reads its query.
///
/// ```
/// use ferrobase::TextSearch;
/// let search = TextSearch::websearch().config("english");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextSearch {
    /// Operator prefix: `""` (`to_tsquery`), `pl`, `ph` or `w`.
    prefix: &'static str,
    config: Option<String>,
}

impl TextSearch {
    /// `to_tsquery` syntax (`fts`).
    pub fn tsquery() -> TextSearch {
        TextSearch::default()
    }

    /// `plainto_tsquery` (`plfts`).
    pub fn plain() -> TextSearch {
        TextSearch {
            prefix: "pl",
            config: None,
        }
    }

    /// `phraseto_tsquery` (`phfts`).
    pub fn phrase() -> TextSearch {
        TextSearch {
            prefix: "ph",
            config: None,
        }
    }

    /// `websearch_to_tsquery` (`wfts`).
    pub fn websearch() -> TextSearch {
        TextSearch {
            prefix: "w",
            config: None,
        }
    }

    /// Text search configuration, e.g. `english` (`fts(english)`).
    #[must_use]
    pub fn config(mut self, config: impl Into<String>) -> TextSearch {
        self.config = Some(config.into());
        self
    }
}

/// A successful data-API response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response<T> {
    /// The decoded body. An empty body (`return=minimal`, HEAD, 204) decodes
    /// as JSON `null`, so use `()` or `Option<_>` there.
    pub data: T,
    /// The total from `Content-Range` (`0-9/42` gives 42), present when a
    /// count was requested with [`FilterBuilder::count`].
    pub count: Option<u64>,
    /// The HTTP status (200, 201, 204, ...).
    pub status: u16,
}

/// First step of a table query, returned by [`Client::from`]: choose the
/// operation.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until an operation is chosen and executed"]
pub struct QueryBuilder {
    client: Client,
    table: String,
}

impl QueryBuilder {
    pub(crate) fn new(client: Client, table: String) -> QueryBuilder {
        QueryBuilder { client, table }
    }

    fn build(self, method: Method) -> FilterBuilder {
        FilterBuilder::new(self.client, Target::Table(self.table), method)
    }

    /// `GET`: read rows. `columns` is PostgREST `select` syntax, with
    /// renames, casts and embedded resources:
    /// `"id, title, owner:users(name)"`. Whitespace outside double quotes is
    /// removed, as postgrest-js does.
    pub fn select(self, columns: &str) -> FilterBuilder {
        self.build(Method::GET).select(columns)
    }

    /// `POST`: insert one row (a JSON object) or many (an array of objects).
    ///
    /// The inserted rows are returned (`Prefer: return=representation`)
    /// unless [`FilterBuilder::returning_minimal`] is used. For an array the
    /// union of keys is sent as `columns=`, so rows may omit keys (missing
    /// values become `NULL`, or the column default with
    /// [`FilterBuilder::missing_default`]).
    pub fn insert(self, values: impl Serialize) -> FilterBuilder {
        self.build(Method::POST).with_rows(values)
    }

    /// `POST` with `Prefer: resolution=merge-duplicates`: insert rows, or
    /// update the ones whose primary key (or
    /// [`on_conflict`](FilterBuilder::on_conflict) columns) already exist.
    /// See also [`FilterBuilder::ignore_duplicates`].
    pub fn upsert(self, values: impl Serialize) -> FilterBuilder {
        let mut builder = self.build(Method::POST).with_rows(values);
        builder.resolution = Some(Resolution::MergeDuplicates);
        builder
    }

    /// `PATCH`: set the given columns on every row matching the filters.
    /// Add filters, or every row (that RLS lets you see) is updated.
    pub fn update(self, values: impl Serialize) -> FilterBuilder {
        self.build(Method::PATCH).with_body(values)
    }

    /// `DELETE`: delete every row matching the filters.
    /// Add filters, or every row (that RLS lets you see) is deleted.
    pub fn delete(self) -> FilterBuilder {
        self.build(Method::DELETE)
    }
}

/// What a request addresses under `rest/v1`.
#[derive(Debug, Clone)]
enum Target {
    Table(String),
    Rpc(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returning {
    Representation,
    Minimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

/// A data-API request being built: filters, modifiers, then
/// [`execute`](FilterBuilder::execute) or [`fetch`](FilterBuilder::fetch).
///
/// Cheap to clone, so a base query can be reused.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is executed"]
pub struct FilterBuilder {
    client: Client,
    target: Target,
    method: Method,
    /// Query-string pairs in order; filters append, modifiers replace.
    query: Vec<(String, String)>,
    body: Option<Value>,
    /// A body that failed to serialize; reported when the request is built.
    encode_error: Option<String>,
    accept: Option<&'static str>,
    returning: Option<Returning>,
    count: Option<Count>,
    resolution: Option<Resolution>,
    missing_default: bool,
    extra_headers: Vec<(String, String)>,
}

impl FilterBuilder {
    fn new(client: Client, target: Target, method: Method) -> FilterBuilder {
        let returning = match method {
            Method::POST | Method::PATCH | Method::DELETE => Some(Returning::Representation),
            _ => None,
        };
        FilterBuilder {
            client,
            target,
            method,
            query: Vec::new(),
            body: None,
            encode_error: None,
            accept: None,
            returning,
            count: None,
            resolution: None,
            missing_default: false,
            extra_headers: Vec::new(),
        }
    }

    pub(crate) fn rpc(client: Client, function: String, args: impl Serialize) -> FilterBuilder {
        let mut builder = FilterBuilder::new(client, Target::Rpc(function), Method::POST);
        builder.returning = None;
        builder = builder.with_body(args);
        if builder.body == Some(Value::Null) {
            // `()` or `None` as arguments: call the function with no arguments.
            builder.body = Some(Value::Object(serde_json::Map::new()));
        }
        builder
    }

    fn with_body(mut self, body: impl Serialize) -> FilterBuilder {
        match serde_json::to_value(body) {
            Ok(value) => self.body = Some(value),
            Err(e) => self.encode_error = Some(format!("request body: {e}")),
        }
        self
    }

    fn with_rows(self, rows: impl Serialize) -> FilterBuilder {
        let mut builder = self.with_body(rows);
        if let Some(Value::Array(rows)) = &builder.body {
            let mut seen = HashSet::new();
            let columns: Vec<String> = rows
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|row| row.keys())
                .filter(|key| seen.insert(key.as_str()))
                .map(|key| format!("\"{}\"", key.replace('"', "\"\"")))
                .collect();
            if !columns.is_empty() {
                builder = builder.set_param("columns", columns.join(","));
            }
        }
        builder
    }

    fn append_param(mut self, key: impl Into<String>, value: impl Into<String>) -> FilterBuilder {
        self.query.push((key.into(), value.into()));
        self
    }

    /// Replaces every existing `key` parameter with one `key=value`, keeping
    /// the position of the first one.
    fn set_param(mut self, key: &str, value: impl Into<String>) -> FilterBuilder {
        let value = value.into();
        match self.query.iter().position(|(k, _)| k == key) {
            Some(first) => {
                self.query[first].1 = value;
                let mut index = 0;
                self.query.retain(|(k, _)| {
                    index += 1;
                    index - 1 == first || k != key
                });
            }
            None => self.query.push((key.to_owned(), value)),
        }
        self
    }

    fn op(self, column: &str, operator: &str, value: impl Display) -> FilterBuilder {
        self.append_param(column, format!("{operator}.{value}"))
    }

    // ----- filters -----------------------------------------------------

    /// `column = value` (`col=eq.value`). For `NULL` use
    /// [`is_null`](FilterBuilder::is_null).
    pub fn eq(self, column: &str, value: impl Display) -> FilterBuilder {
        self.op(column, "eq", value)
    }

    /// `column <> value` (`neq`).
    pub fn neq(self, column: &str, value: impl Display) -> FilterBuilder {
        self.op(column, "neq", value)
    }

    /// `column > value` (`gt`).
    pub fn gt(self, column: &str, value: impl Display) -> FilterBuilder {
        self.op(column, "gt", value)
    }

    /// `column >= value` (`gte`).
    pub fn gte(self, column: &str, value: impl Display) -> FilterBuilder {
        self.op(column, "gte", value)
    }

    /// `column < value` (`lt`).
    pub fn lt(self, column: &str, value: impl Display) -> FilterBuilder {
        self.op(column, "lt", value)
    }

    /// `column <= value` (`lte`).
    pub fn lte(self, column: &str, value: impl Display) -> FilterBuilder {
        self.op(column, "lte", value)
    }

    /// `column LIKE pattern` (`like`); `%` or `*` is the wildcard.
    pub fn like(self, column: &str, pattern: impl Display) -> FilterBuilder {
        self.op(column, "like", pattern)
    }

    /// `column ILIKE pattern` (`ilike`), case-insensitive.
    pub fn ilike(self, column: &str, pattern: impl Display) -> FilterBuilder {
        self.op(column, "ilike", pattern)
    }

    /// `column LIKE ALL (patterns)` (`like(all).{a,b}`).
    pub fn like_all_of<V: Display>(
        self,
        column: &str,
        patterns: impl IntoIterator<Item = V>,
    ) -> FilterBuilder {
        self.op(column, "like(all)", pg_array(patterns))
    }

    /// `column LIKE ANY (patterns)` (`like(any).{a,b}`).
    pub fn like_any_of<V: Display>(
        self,
        column: &str,
        patterns: impl IntoIterator<Item = V>,
    ) -> FilterBuilder {
        self.op(column, "like(any)", pg_array(patterns))
    }

    /// `column ILIKE ALL (patterns)` (`ilike(all).{a,b}`).
    pub fn ilike_all_of<V: Display>(
        self,
        column: &str,
        patterns: impl IntoIterator<Item = V>,
    ) -> FilterBuilder {
        self.op(column, "ilike(all)", pg_array(patterns))
    }

    /// `column ILIKE ANY (patterns)` (`ilike(any).{a,b}`).
    pub fn ilike_any_of<V: Display>(
        self,
        column: &str,
        patterns: impl IntoIterator<Item = V>,
    ) -> FilterBuilder {
        self.op(column, "ilike(any)", pg_array(patterns))
    }

    /// `column ~ pattern`, a POSIX regular expression (`match`).
    pub fn regex_match(self, column: &str, pattern: impl Display) -> FilterBuilder {
        self.op(column, "match", pattern)
    }

    /// `column ~* pattern`, case-insensitive (`imatch`).
    pub fn regex_imatch(self, column: &str, pattern: impl Display) -> FilterBuilder {
        self.op(column, "imatch", pattern)
    }

    /// `column IS value`, where value is `null`, `true`, `false` or
    /// `unknown` (`is`).
    pub fn is_(self, column: &str, value: impl Display) -> FilterBuilder {
        self.op(column, "is", value)
    }

    /// `column IS NULL` (`is.null`).
    pub fn is_null(self, column: &str) -> FilterBuilder {
        self.op(column, "is", "null")
    }

    /// `column IS NOT NULL` (`not.is.null`).
    pub fn is_not_null(self, column: &str) -> FilterBuilder {
        self.op(column, "not.is", "null")
    }

    /// `column IS DISTINCT FROM value` (`isdistinct`).
    pub fn is_distinct(self, column: &str, value: impl Display) -> FilterBuilder {
        self.op(column, "isdistinct", value)
    }

    /// `column IN (values)` (`in.(a,b)`). Duplicates are dropped; a value
    /// containing `,` `.` `:` `(` `)` `"` `\` or edge whitespace is
    /// double-quoted (with `"` and `\` backslash-escaped).
    pub fn in_<V: Display>(
        self,
        column: &str,
        values: impl IntoIterator<Item = V>,
    ) -> FilterBuilder {
        self.op(column, "in", in_list(values))
    }

    /// `column NOT IN (values)` (`not.in.(a,b)`), quoted like
    /// [`in_`](FilterBuilder::in_).
    pub fn not_in<V: Display>(
        self,
        column: &str,
        values: impl IntoIterator<Item = V>,
    ) -> FilterBuilder {
        self.op(column, "not.in", in_list(values))
    }

    /// `column @> value` for array, range and jsonb columns (`cs`).
    ///
    /// `value` is written like postgrest-js does: a string is sent as is (a
    /// range like `"[1,5)"` or a literal like `"{a,b}"`), an array becomes a
    /// Postgres array literal (`{a,b}`), an object becomes JSON (for jsonb).
    /// For a jsonb column holding an array, pass the JSON text as a string.
    pub fn contains(self, column: &str, value: impl Serialize) -> FilterBuilder {
        self.structured_op(column, "cs", value)
    }

    /// `column <@ value` (`cd`); `value` is written as in
    /// [`contains`](FilterBuilder::contains).
    pub fn contained_by(self, column: &str, value: impl Serialize) -> FilterBuilder {
        self.structured_op(column, "cd", value)
    }

    /// `column && value`: the array or range shares an element (`ov`);
    /// `value` is written as in [`contains`](FilterBuilder::contains).
    pub fn overlaps(self, column: &str, value: impl Serialize) -> FilterBuilder {
        self.structured_op(column, "ov", value)
    }

    /// Range column strictly left of `range` (`sl`).
    pub fn range_lt(self, column: &str, range: impl Display) -> FilterBuilder {
        self.op(column, "sl", range)
    }

    /// Range column strictly right of `range` (`sr`).
    pub fn range_gt(self, column: &str, range: impl Display) -> FilterBuilder {
        self.op(column, "sr", range)
    }

    /// Range column does not extend to the left of `range` (`nxl`).
    pub fn range_gte(self, column: &str, range: impl Display) -> FilterBuilder {
        self.op(column, "nxl", range)
    }

    /// Range column does not extend to the right of `range` (`nxr`).
    pub fn range_lte(self, column: &str, range: impl Display) -> FilterBuilder {
        self.op(column, "nxr", range)
    }

    /// Range column is adjacent to `range` (`adj`).
    pub fn range_adjacent(self, column: &str, range: impl Display) -> FilterBuilder {
        self.op(column, "adj", range)
    }

    /// Full-text search on a text or tsvector column: `fts`, `plfts`,
    /// `phfts` or `wfts`, with an optional configuration
    /// (`col=wfts(english).cat dog`).
    pub fn text_search(
        self,
        column: &str,
        query: impl Display,
        options: TextSearch,
    ) -> FilterBuilder {
        let config = options.config.map(|c| format!("({c})")).unwrap_or_default();
        self.append_param(column, format!("{}fts{config}.{query}", options.prefix))
    }

    /// Rows matching at least one of `filters`, given in PostgREST syntax
    /// and used as is: `.or("status.eq.done,priority.gt.3")` sends
    /// `or=(status.eq.done,priority.gt.3)`. Nest with `and(...)`.
    pub fn or(self, filters: &str) -> FilterBuilder {
        self.append_param("or", format!("({filters})"))
    }

    /// [`or`](FilterBuilder::or) applied to an embedded resource
    /// (`{table}.or=(...)`).
    pub fn or_referenced(self, table: &str, filters: &str) -> FilterBuilder {
        self.append_param(format!("{table}.or"), format!("({filters})"))
    }

    /// Negates a PostgREST filter: `.not("status", "eq", "done")` sends
    /// `status=not.eq.done`. `operator` and `value` are used as is.
    pub fn not(self, column: &str, operator: &str, value: impl Display) -> FilterBuilder {
        self.append_param(column, format!("not.{operator}.{value}"))
    }

    /// Any PostgREST filter, as is: `.filter("tags", "cs", "{a,b}")` sends
    /// `tags=cs.{a,b}`. Escape hatch for operators without a method.
    pub fn filter(self, column: &str, operator: &str, value: impl Display) -> FilterBuilder {
        self.op(column, operator, value)
    }

    fn structured_op(self, column: &str, operator: &str, value: impl Serialize) -> FilterBuilder {
        match serde_json::to_value(value) {
            Ok(value) => {
                let text = match value {
                    Value::String(s) => s,
                    Value::Array(items) => pg_array_json(&items),
                    other => other.to_string(),
                };
                self.op(column, operator, text)
            }
            Err(e) => {
                let mut builder = self;
                builder.encode_error = Some(format!("value for filter on {column:?}: {e}"));
                builder
            }
        }
    }

    // ----- modifiers ---------------------------------------------------

    /// Sets the columns to return (`select=`). On `insert`, `upsert`,
    /// `update` and `delete` this picks the columns of the returned rows and
    /// turns `return=representation` back on.
    pub fn select(mut self, columns: &str) -> FilterBuilder {
        if self.returning.is_some() {
            self.returning = Some(Returning::Representation);
        }
        self.set_param("select", clean_columns(columns))
    }

    /// Adds a sort key; call again for further keys
    /// (`order=done.asc,created_at.desc.nullslast`).
    pub fn order(self, column: &str, order: Order) -> FilterBuilder {
        let key = match order.referenced_table {
            Some(table) => format!("{table}.order"),
            None => "order".to_owned(),
        };
        let mut term = format!("{column}.{}", if order.descending { "desc" } else { "asc" });
        match order.nulls_first {
            Some(true) => term.push_str(".nullsfirst"),
            Some(false) => term.push_str(".nullslast"),
            None => {}
        }
        let value = match self.query.iter().find(|(k, _)| *k == key) {
            Some((_, existing)) => format!("{existing},{term}"),
            None => term,
        };
        self.set_param(&key, value)
    }

    /// Returns at most `count` rows (`limit=`).
    pub fn limit(self, count: u64) -> FilterBuilder {
        self.set_param("limit", count.to_string())
    }

    /// Limits the rows of an embedded resource (`{table}.limit=`).
    pub fn limit_referenced(self, table: &str, count: u64) -> FilterBuilder {
        self.set_param(&format!("{table}.limit"), count.to_string())
    }

    /// Skips the first `offset` rows (`offset=`).
    pub fn offset(self, offset: u64) -> FilterBuilder {
        self.set_param("offset", offset.to_string())
    }

    /// Rows `from..=to`, zero-based and inclusive: `range(0, 9)` is the
    /// first ten rows (`offset=0&limit=10`). Use with
    /// [`order`](FilterBuilder::order) for stable pages. An empty range
    /// (`to < from`) asks for zero rows.
    pub fn range(self, from: u64, to: u64) -> FilterBuilder {
        let limit = (to + 1).saturating_sub(from);
        self.set_param("offset", from.to_string())
            .set_param("limit", limit.to_string())
    }

    /// Asks for the total row count (`Prefer: count=exact|planned|estimated`),
    /// returned in [`Response::count`].
    pub fn count(mut self, count: Count) -> FilterBuilder {
        self.count = Some(count);
        self
    }

    /// Sends a `HEAD` instead of a `GET`: no rows, just the status and (with
    /// [`count`](FilterBuilder::count)) the total. Only affects reads.
    pub fn head(mut self) -> FilterBuilder {
        if self.method == Method::GET {
            self.method = Method::HEAD;
        }
        self
    }

    /// Expects exactly one row and returns it as an object instead of an
    /// array (`Accept: application/vnd.pgrst.object+json`). Zero or several
    /// rows give an [`Error::Api`] with status 406 and code `PGRST116`.
    pub fn single(mut self) -> FilterBuilder {
        self.accept = Some(MEDIA_OBJECT);
        self
    }

    /// Expects zero or one row; the result is `Option<T>`. Several rows give
    /// an [`Error::Api`] with code `PGRST116`. Call it last.
    pub fn maybe_single(self) -> MaybeSingle {
        MaybeSingle { inner: self }
    }

    /// For `insert`, `upsert`, `update` and `delete`: do not return the
    /// affected rows (`Prefer: return=minimal`). Execute with `()` as the
    /// data type.
    pub fn returning_minimal(mut self) -> FilterBuilder {
        if self.returning.is_some() {
            self.returning = Some(Returning::Minimal);
        }
        self
    }

    /// For `upsert`: the unique columns that decide what is a duplicate
    /// (`on_conflict=col1,col2`); defaults to the primary key.
    pub fn on_conflict(self, columns: &str) -> FilterBuilder {
        self.set_param("on_conflict", clean_columns(columns))
    }

    /// For `upsert`: keep existing rows untouched instead of merging
    /// (`Prefer: resolution=ignore-duplicates`).
    pub fn ignore_duplicates(mut self) -> FilterBuilder {
        if self.resolution.is_some() {
            self.resolution = Some(Resolution::IgnoreDuplicates);
        }
        self
    }

    /// For bulk `insert`/`upsert`: keys missing from a row take the column
    /// default instead of `NULL` (`Prefer: missing=default`).
    pub fn missing_default(mut self) -> FilterBuilder {
        self.missing_default = true;
        self
    }

    /// Adds a raw header to the request (for example `Range` or a custom
    /// `Prefer`). An invalid name or value fails when the request is built.
    pub fn header(mut self, name: &str, value: &str) -> FilterBuilder {
        self.extra_headers.push((name.to_owned(), value.to_owned()));
        self
    }

    // ----- running -----------------------------------------------------

    /// The request that [`execute`](FilterBuilder::execute) would send, for
    /// inspection or logging (its auth headers are marked sensitive).
    pub fn build_request(&self) -> Result<reqwest::Request> {
        self.build_request_with_accept(self.accept)
    }

    fn build_request_with_accept(&self, accept: Option<&'static str>) -> Result<reqwest::Request> {
        if let Some(message) = &self.encode_error {
            return Err(Error::Encode(message.clone()));
        }
        let mut headers = self.client.auth_headers()?;
        if let Some(accept) = accept {
            headers.insert(ACCEPT, HeaderValue::from_static(accept));
        }
        if let Some(prefer) = self.prefer() {
            headers.insert(
                HeaderName::from_static("prefer"),
                HeaderValue::from_str(&prefer).expect("Prefer is built from ASCII tokens"),
            );
        }
        if let Some(schema) = self.client.schema_name() {
            let name = if self.is_read() {
                "accept-profile"
            } else {
                "content-profile"
            };
            let value = HeaderValue::from_str(schema).map_err(|_| {
                Error::Encode(format!(
                    "schema name {schema:?} is not a valid header value"
                ))
            })?;
            headers.insert(HeaderName::from_static(name), value);
        }
        add_raw_headers(&mut headers, &self.extra_headers)?;

        let mut builder = self
            .client
            .http_client()
            .request(self.method.clone(), self.url())
            .headers(headers);
        if let Some(body) = &self.body {
            builder = builder.json(body);
        }
        Ok(builder.build()?)
    }

    /// Sends the request and decodes the body as `T`, e.g. `Vec<Todo>` for
    /// reads, `Todo` after [`single`](FilterBuilder::single), `()` after
    /// [`returning_minimal`](FilterBuilder::returning_minimal) or
    /// [`head`](FilterBuilder::head).
    pub async fn execute<T: DeserializeOwned>(self) -> Result<Response<T>> {
        let request = self.build_request()?;
        let raw = self.client.execute(request).await?.error_for_status()?;
        decode_response(&raw)
    }

    /// [`execute`](FilterBuilder::execute), keeping only the data.
    pub async fn fetch<T: DeserializeOwned>(self) -> Result<T> {
        Ok(self.execute().await?.data)
    }

    fn is_read(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD)
    }

    fn url(&self) -> url::Url {
        let mut url = match &self.target {
            Target::Table(table) => self.client.endpoint(["rest", "v1", table.as_str()]),
            Target::Rpc(function) => self
                .client
                .endpoint(["rest", "v1", "rpc", function.as_str()]),
        };
        if !self.query.is_empty() {
            let query = self
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
                .collect::<Vec<_>>()
                .join("&");
            url.set_query(Some(&query));
        }
        url
    }

    /// The `Prefer` header, in the order postgrest-js writes it.
    fn prefer(&self) -> Option<String> {
        let mut parts = Vec::new();
        match self.returning {
            Some(Returning::Representation) => parts.push("return=representation"),
            Some(Returning::Minimal) => parts.push("return=minimal"),
            None => {}
        }
        match self.resolution {
            Some(Resolution::MergeDuplicates) => parts.push("resolution=merge-duplicates"),
            Some(Resolution::IgnoreDuplicates) => parts.push("resolution=ignore-duplicates"),
            None => {}
        }
        let count;
        if let Some(c) = self.count {
            count = format!("count={}", c.as_str());
            parts.push(&count);
        }
        if self.missing_default {
            parts.push("missing=default");
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// A query that returns zero or one row, from
/// [`FilterBuilder::maybe_single`].
///
/// Reads ask for a JSON array and check its length client-side (as
/// postgrest-js does); writes ask for a single object and treat the
/// server's "0 rows" error as `None`.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is executed"]
pub struct MaybeSingle {
    inner: FilterBuilder,
}

impl MaybeSingle {
    /// The request that [`execute`](MaybeSingle::execute) would send.
    pub fn build_request(&self) -> Result<reqwest::Request> {
        let accept = if self.inner.is_read() {
            MEDIA_JSON
        } else {
            MEDIA_OBJECT
        };
        self.inner.build_request_with_accept(Some(accept))
    }

    /// Sends the request; `data` is `None` when no row matched.
    pub async fn execute<T: DeserializeOwned>(self) -> Result<Response<Option<T>>> {
        let request = self.build_request()?;
        let raw = self.inner.client.execute(request).await?;
        decode_maybe_single(raw, self.inner.is_read())
    }

    /// [`execute`](MaybeSingle::execute), keeping only the data.
    pub async fn fetch<T: DeserializeOwned>(self) -> Result<Option<T>> {
        Ok(self.execute().await?.data)
    }
}

fn decode_response<T: DeserializeOwned>(raw: &RawResponse) -> Result<Response<T>> {
    Ok(Response {
        data: decode_json(&raw.body)?,
        count: parse_count(&raw.headers),
        status: raw.status.as_u16(),
    })
}

fn decode_maybe_single<T: DeserializeOwned>(
    raw: RawResponse,
    array_expected: bool,
) -> Result<Response<Option<T>>> {
    let raw = match raw.error_for_status() {
        Ok(raw) => raw,
        Err(Error::Api {
            details: Some(details),
            ..
        }) if !array_expected && details.contains("0 rows") => {
            return Ok(Response {
                data: None,
                count: None,
                status: 200,
            });
        }
        Err(e) => return Err(e),
    };
    let count = parse_count(&raw.headers);
    let status = raw.status.as_u16();
    if !array_expected {
        return Ok(Response {
            data: decode_json(&raw.body)?,
            count,
            status,
        });
    }
    let value: Value = decode_json(&raw.body)?;
    let row = match value {
        Value::Array(mut rows) => match rows.len() {
            0 => None,
            1 => rows.pop(),
            n => {
                return Err(Error::Api {
                    status: 406,
                    code: "PGRST116".to_owned(),
                    message: "JSON object requested, multiple (or no) rows returned".to_owned(),
                    details: Some(format!(
                        "Results contain {n} rows, application/vnd.pgrst.object+json requires 1 row"
                    )),
                    hint: None,
                });
            }
        },
        Value::Null => None,
        other => Some(other),
    };
    let data = row
        .map(|row| {
            serde_json::from_value(row)
                .map_err(|e| Error::Decode(format!("{e} (as {})", std::any::type_name::<T>())))
        })
        .transpose()?;
    Ok(Response {
        data,
        count,
        status,
    })
}

/// The total from `Content-Range: 0-9/42` or `*/42`; `None` for `*/*` or
/// no header.
fn parse_count(headers: &HeaderMap) -> Option<u64> {
    let range = headers.get("content-range")?.to_str().ok()?;
    let (_, total) = range.rsplit_once('/')?;
    total.trim().parse().ok()
}

fn add_raw_headers(headers: &mut HeaderMap, raw: &[(String, String)]) -> Result<()> {
    for (name, value) in raw {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::Encode(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| Error::Encode(format!("invalid value for header {name}")))?;
        headers.append(name, value);
    }
    Ok(())
}

/// Percent-encodes a query-string key or value like `URLSearchParams` does,
/// except that a space becomes `%20` rather than `+`, which every decoder
/// reads as a space.
fn encode_component(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Removes whitespace outside double quotes, as postgrest-js does for
/// `select`.
fn clean_columns(columns: &str) -> String {
    let mut quoted = false;
    columns
        .chars()
        .filter(|&c| {
            if c == '"' {
                quoted = !quoted;
            }
            quoted || !c.is_whitespace()
        })
        .collect()
}

/// Characters that make an `in.(...)` element need quotes.
const LIST_RESERVED: &[char] = &[',', '.', ':', '(', ')', '"', '\\'];

/// `(a,b,"c,d")`: deduplicated, with reserved elements quoted.
fn in_list<V: Display>(values: impl IntoIterator<Item = V>) -> String {
    let mut seen = HashSet::new();
    let items: Vec<String> = values
        .into_iter()
        .map(|v| v.to_string())
        .filter(|v| seen.insert(v.clone()))
        .map(|v| {
            let needs_quotes = v.is_empty() || v.contains(LIST_RESERVED) || v.trim() != v;
            if needs_quotes { quote(&v) } else { v }
        })
        .collect();
    format!("({})", items.join(","))
}

/// Double-quotes `s`, backslash-escaping `"` and `\`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A Postgres array literal element: quoted when it would otherwise be
/// misread (delimiters, braces, quotes, whitespace, empty, or `NULL`).
fn pg_array_item(s: &str) -> String {
    let needs_quotes = s.is_empty()
        || s.eq_ignore_ascii_case("null")
        || s.chars()
            .any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace());
    if needs_quotes { quote(s) } else { s.to_owned() }
}

/// `{a,b}` from displayable items.
fn pg_array<V: Display>(items: impl IntoIterator<Item = V>) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|v| pg_array_item(&v.to_string()))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// `{a,b}` from JSON items: nested arrays nest, `null` stays `NULL`, objects
/// are quoted JSON.
fn pg_array_json(items: &[Value]) -> String {
    let items: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::Null => "NULL".to_owned(),
            Value::String(s) => pg_array_item(s),
            Value::Array(inner) => pg_array_json(inner),
            other => pg_array_item(&other.to_string()),
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use serde::Deserialize;
    use serde_json::json;

    fn client() -> Client {
        Client::new("http://127.0.0.1:8080/p/myref", "anon-key").unwrap()
    }

    fn todos() -> QueryBuilder {
        client().from("todos")
    }

    /// The decoded query pairs of a built request.
    fn pairs(builder: &FilterBuilder) -> Vec<(String, String)> {
        builder
            .build_request()
            .unwrap()
            .url()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    /// The raw (encoded) query string of a built request.
    fn raw_query(builder: &FilterBuilder) -> String {
        builder
            .build_request()
            .unwrap()
            .url()
            .query()
            .unwrap_or_default()
            .to_owned()
    }

    fn header(request: &reqwest::Request, name: &str) -> Option<String> {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn body(request: &reqwest::Request) -> Value {
        serde_json::from_slice(request.body().unwrap().as_bytes().unwrap()).unwrap()
    }

    #[test]
    fn select_builds_a_get_with_cleaned_columns() {
        let q = todos().select("id, title,\n owner:users ( name ), \"odd name\"");
        let req = q.build_request().unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(
            req.url().path(),
            "/p/myref/rest/v1/todos",
            "table path under the project URL"
        );
        assert_eq!(
            pairs(&q),
            [p("select", "id,title,owner:users(name),\"odd name\"")]
        );
        assert_eq!(header(&req, "apikey").as_deref(), Some("anon-key"));
        assert_eq!(
            header(&req, "authorization").as_deref(),
            Some("Bearer anon-key")
        );
        assert_eq!(header(&req, "prefer"), None);
        assert_eq!(header(&req, "accept"), None);
        assert!(req.body().is_none());
    }

    #[test]
    fn comparison_filters() {
        let q = todos()
            .select("*")
            .eq("done", false)
            .neq("title", "x")
            .gt("id", 1)
            .gte("id", 2)
            .lt("score", 3.5)
            .lte("score", 4)
            .is_("flag", true)
            .is_distinct("owner", "null");
        assert_eq!(
            pairs(&q),
            [
                p("select", "*"),
                p("done", "eq.false"),
                p("title", "neq.x"),
                p("id", "gt.1"),
                p("id", "gte.2"),
                p("score", "lt.3.5"),
                p("score", "lte.4"),
                p("flag", "is.true"),
                p("owner", "isdistinct.null"),
            ]
        );
    }

    #[test]
    fn pattern_filters() {
        let q = todos()
            .select("*")
            .like("title", "%milk%")
            .ilike("title", "*MILK*")
            .like_all_of("a", ["x%", "%y"])
            .like_any_of("a", ["p q%"])
            .ilike_all_of("a", ["z"])
            .ilike_any_of("a", ["1,2"])
            .regex_match("b", "^a.*$")
            .regex_imatch("b", "^A");
        assert_eq!(
            pairs(&q)[1..],
            [
                p("title", "like.%milk%"),
                p("title", "ilike.*MILK*"),
                p("a", "like(all).{x%,%y}"),
                p("a", "like(any).{\"p q%\"}"),
                p("a", "ilike(all).{z}"),
                p("a", "ilike(any).{\"1,2\"}"),
                p("b", "match.^a.*$"),
                p("b", "imatch.^A"),
            ]
        );
        // `%` must travel percent-encoded.
        assert!(raw_query(&q).contains("title=like.%25milk%25"));
    }

    #[test]
    fn null_filters() {
        let q = todos().select("*").is_null("a").is_not_null("b");
        assert_eq!(pairs(&q)[1..], [p("a", "is.null"), p("b", "not.is.null")]);
    }

    #[test]
    fn in_filter_quotes_reserved_values_and_dedups() {
        let q = todos()
            .select("*")
            .in_("id", [1, 2, 3, 2])
            .in_(
                "name",
                [
                    "plain",
                    "a,b",
                    "v1.2",
                    "12:30",
                    "f(x)",
                    "say \"hi\"",
                    "back\\slash",
                    " pad",
                    "",
                ],
            )
            .not_in("status", ["done", "x,y"]);
        assert_eq!(
            pairs(&q)[1..],
            [
                p("id", "in.(1,2,3)"),
                p(
                    "name",
                    r#"in.(plain,"a,b","v1.2","12:30","f(x)","say \"hi\"","back\\slash"," pad","")"#
                ),
                p("status", "not.in.(done,\"x,y\")"),
            ]
        );
        let empty: [&str; 0] = [];
        let q = todos().select("*").in_("id", empty);
        assert_eq!(pairs(&q)[1..], [p("id", "in.()")]);
    }

    #[test]
    fn structured_filters() {
        let q = todos()
            .select("*")
            .contains("tags", ["a", "b c", "x,y"])
            .contains("meta", json!({"k": 1}))
            .contains("period", "[1,5)")
            .contained_by("tags", vec![json!(1), json!(null), json!([2, 3])])
            .overlaps("tags", ["a"])
            .range_lt("r", "[1,2]")
            .range_gt("r", "[1,2]")
            .range_gte("r", "[1,2]")
            .range_lte("r", "[1,2]")
            .range_adjacent("r", "[1,2]");
        assert_eq!(
            pairs(&q)[1..],
            [
                p("tags", r#"cs.{a,"b c","x,y"}"#),
                p("meta", r#"cs.{"k":1}"#),
                p("period", "cs.[1,5)"),
                p("tags", "cd.{1,NULL,{2,3}}"),
                p("tags", "ov.{a}"),
                p("r", "sl.[1,2]"),
                p("r", "sr.[1,2]"),
                p("r", "nxl.[1,2]"),
                p("r", "nxr.[1,2]"),
                p("r", "adj.[1,2]"),
            ]
        );
    }

    #[test]
    fn text_search_variants() {
        let q = todos()
            .select("*")
            .text_search("body", "cat & dog", TextSearch::tsquery())
            .text_search("body", "cat dog", TextSearch::plain())
            .text_search("body", "fat cats", TextSearch::phrase().config("english"))
            .text_search(
                "body",
                "\"a b\" -c",
                TextSearch::websearch().config("simple"),
            );
        assert_eq!(
            pairs(&q)[1..],
            [
                p("body", "fts.cat & dog"),
                p("body", "plfts.cat dog"),
                p("body", "phfts(english).fat cats"),
                p("body", "wfts(simple).\"a b\" -c"),
            ]
        );
    }

    #[test]
    fn logical_and_raw_filters() {
        let q = todos()
            .select("*, users(*)")
            .or("status.eq.done,and(priority.gt.3,owner.is.null)")
            .or_referenced("users", "name.eq.a,name.eq.b")
            .not("status", "in", "(a,b)")
            .filter("tags", "cs", "{x}");
        assert_eq!(
            pairs(&q)[1..],
            [
                p("or", "(status.eq.done,and(priority.gt.3,owner.is.null))"),
                p("users.or", "(name.eq.a,name.eq.b)"),
                p("status", "not.in.(a,b)"),
                p("tags", "cs.{x}"),
            ]
        );
    }

    #[test]
    fn values_are_percent_encoded_and_cannot_inject_params() {
        let q = todos().select("*").eq("title", "a&b=c d+e#f");
        let raw = raw_query(&q);
        assert_eq!(raw, "select=*&title=eq.a%26b%3Dc%20d%2Be%23f");
        assert_eq!(pairs(&q)[1..], [p("title", "eq.a&b=c d+e#f")]);
        // Non-ASCII is UTF-8 percent-encoded.
        let q = todos().select("*").eq("name", "żółw");
        assert_eq!(pairs(&q)[1..], [p("name", "eq.żółw")]);
        // Column names are encoded too.
        let q = todos().select("*").eq("odd&col", 1);
        assert!(raw_query(&q).contains("odd%26col=eq.1"));
    }

    #[test]
    fn select_string_encoding_matches_url_search_params() {
        let q = todos().select("*,owner:users(*)");
        assert_eq!(raw_query(&q), "select=*%2Cowner%3Ausers%28*%29");
    }

    #[test]
    fn order_limit_offset_range() {
        let q = todos()
            .select("*")
            .order("done", Order::asc())
            .order("created_at", Order::desc().nulls_last())
            .order("title", Order::asc().nulls_first())
            .order("name", Order::desc().referenced_table("users"))
            .limit(10)
            .limit_referenced("users", 2)
            .offset(5);
        assert_eq!(
            pairs(&q)[1..],
            [
                p(
                    "order",
                    "done.asc,created_at.desc.nullslast,title.asc.nullsfirst"
                ),
                p("users.order", "name.desc"),
                p("limit", "10"),
                p("users.limit", "2"),
                p("offset", "5"),
            ]
        );

        // `range` replaces earlier limit/offset rather than duplicating them.
        let q = todos().select("*").limit(3).range(10, 19);
        assert_eq!(
            pairs(&q),
            [p("select", "*"), p("limit", "10"), p("offset", "10")]
        );
        let q = todos().select("*").range(0, 0);
        assert_eq!(pairs(&q)[1..], [p("offset", "0"), p("limit", "1")]);
        let q = todos().select("*").range(5, 4);
        assert_eq!(pairs(&q)[1..], [p("offset", "5"), p("limit", "0")]);
    }

    #[test]
    fn select_called_twice_replaces() {
        let q = todos().select("id").eq("a", 1).select("id, title");
        assert_eq!(pairs(&q), [p("select", "id,title"), p("a", "eq.1")]);
    }

    #[test]
    fn count_single_and_head() {
        let q = todos().select("*").count(Count::Exact).single();
        let req = q.build_request().unwrap();
        assert_eq!(header(&req, "prefer").as_deref(), Some("count=exact"));
        assert_eq!(header(&req, "accept").as_deref(), Some(MEDIA_OBJECT));

        let req = todos()
            .select("*")
            .count(Count::Planned)
            .head()
            .build_request()
            .unwrap();
        assert_eq!(req.method(), Method::HEAD);
        assert_eq!(header(&req, "prefer").as_deref(), Some("count=planned"));

        let req = todos()
            .select("*")
            .count(Count::Estimated)
            .build_request()
            .unwrap();
        assert_eq!(header(&req, "prefer").as_deref(), Some("count=estimated"));
    }

    #[test]
    fn maybe_single_accept_depends_on_method() {
        let req = todos()
            .select("*")
            .eq("id", 1)
            .maybe_single()
            .build_request()
            .unwrap();
        assert_eq!(header(&req, "accept").as_deref(), Some(MEDIA_JSON));
        let req = todos()
            .update(json!({"done": true}))
            .eq("id", 1)
            .maybe_single()
            .build_request()
            .unwrap();
        assert_eq!(header(&req, "accept").as_deref(), Some(MEDIA_OBJECT));
    }

    #[test]
    fn insert_returns_representation_by_default() {
        let q = todos().insert(json!({"title": "milk"}));
        let req = q.build_request().unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            header(&req, "prefer").as_deref(),
            Some("return=representation")
        );
        assert_eq!(
            header(&req, "content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(body(&req), json!({"title": "milk"}));
        assert_eq!(req.url().query(), None);

        let req = todos()
            .insert(json!({"title": "milk"}))
            .returning_minimal()
            .build_request()
            .unwrap();
        assert_eq!(header(&req, "prefer").as_deref(), Some("return=minimal"));

        let req = todos()
            .insert(json!({"title": "milk"}))
            .returning_minimal()
            .select("id")
            .build_request()
            .unwrap();
        assert_eq!(
            header(&req, "prefer").as_deref(),
            Some("return=representation")
        );
        assert_eq!(req.url().query(), Some("select=id"));
    }

    #[test]
    fn bulk_insert_sends_union_of_columns() {
        #[derive(Serialize)]
        struct NewTodo<'a> {
            title: &'a str,
        }
        let q = todos()
            .insert(json!([{"title": "a", "done": true}, {"title": "b", "owner": 7}]))
            .count(Count::Exact)
            .missing_default();
        let req = q.build_request().unwrap();
        // serde_json objects iterate keys sorted; the order does not matter.
        assert_eq!(pairs(&q), [p("columns", r#""done","title","owner""#)]);
        assert_eq!(
            header(&req, "prefer").as_deref(),
            Some("return=representation, count=exact, missing=default")
        );
        // Typed rows work too.
        let q = todos().insert(vec![NewTodo { title: "x" }]);
        assert_eq!(pairs(&q), [p("columns", r#""title""#)]);
        assert_eq!(body(&q.build_request().unwrap()), json!([{"title": "x"}]));
    }

    #[test]
    fn upsert_options() {
        let q = todos()
            .upsert(json!({"id": 1, "title": "a"}))
            .on_conflict("id, tenant");
        let req = q.build_request().unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(pairs(&q), [p("on_conflict", "id,tenant")]);
        assert_eq!(
            header(&req, "prefer").as_deref(),
            Some("return=representation, resolution=merge-duplicates")
        );

        let req = todos()
            .upsert(json!({"id": 1}))
            .ignore_duplicates()
            .returning_minimal()
            .build_request()
            .unwrap();
        assert_eq!(
            header(&req, "prefer").as_deref(),
            Some("return=minimal, resolution=ignore-duplicates")
        );
        // ignore_duplicates is meaningless (and ignored) for a plain insert.
        let req = todos()
            .insert(json!({"id": 1}))
            .ignore_duplicates()
            .build_request()
            .unwrap();
        assert_eq!(
            header(&req, "prefer").as_deref(),
            Some("return=representation")
        );
    }

    #[test]
    fn update_and_delete_with_filters() {
        let q = todos()
            .update(json!({"done": true}))
            .eq("id", 5)
            .select("id,done");
        let req = q.build_request().unwrap();
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(pairs(&q), [p("id", "eq.5"), p("select", "id,done")]);
        assert_eq!(body(&req), json!({"done": true}));
        assert_eq!(
            header(&req, "prefer").as_deref(),
            Some("return=representation")
        );

        let q = todos().delete().in_("id", [1, 2]).returning_minimal();
        let req = q.build_request().unwrap();
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(pairs(&q), [p("id", "in.(1,2)")]);
        assert_eq!(header(&req, "prefer").as_deref(), Some("return=minimal"));
        assert!(req.body().is_none());
    }

    #[test]
    fn rpc_posts_json_args() {
        let q = client()
            .rpc("add_them", json!({"a": 1, "b": 2}))
            .order("x", Order::asc())
            .limit(1);
        let req = q.build_request().unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.url().path(), "/p/myref/rest/v1/rpc/add_them");
        assert_eq!(body(&req), json!({"a": 1, "b": 2}));
        assert_eq!(pairs(&q), [p("order", "x.asc"), p("limit", "1")]);
        assert_eq!(header(&req, "prefer"), None);

        let req = client().rpc("now", ()).build_request().unwrap();
        assert_eq!(body(&req), json!({}));
    }

    #[test]
    fn schema_sets_profile_headers() {
        let api = client().schema("api");
        let req = api.from("t").select("*").build_request().unwrap();
        assert_eq!(header(&req, "accept-profile").as_deref(), Some("api"));
        assert_eq!(header(&req, "content-profile"), None);
        let req = api.from("t").select("*").head().build_request().unwrap();
        assert_eq!(header(&req, "accept-profile").as_deref(), Some("api"));
        let req = api.from("t").insert(json!({})).build_request().unwrap();
        assert_eq!(header(&req, "content-profile").as_deref(), Some("api"));
        assert_eq!(header(&req, "accept-profile"), None);
        let req = api.rpc("f", json!({})).build_request().unwrap();
        assert_eq!(header(&req, "content-profile").as_deref(), Some("api"));
        // The original client is unaffected.
        let req = client().from("t").select("*").build_request().unwrap();
        assert_eq!(header(&req, "accept-profile"), None);
    }

    #[test]
    fn table_names_are_path_encoded() {
        let req = client()
            .from("my table/x")
            .select("*")
            .build_request()
            .unwrap();
        assert_eq!(req.url().path(), "/p/myref/rest/v1/my%20table%2Fx");
    }

    #[test]
    fn raw_headers() {
        let req = todos()
            .select("*")
            .header("Range", "0-4")
            .build_request()
            .unwrap();
        assert_eq!(header(&req, "range").as_deref(), Some("0-4"));
        let err = todos()
            .select("*")
            .header("bad header", "x")
            .build_request()
            .unwrap_err();
        assert!(matches!(err, Error::Encode(_)), "{err}");
    }

    #[test]
    fn unserializable_body_fails_at_build_time() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1); // non-string keys cannot become JSON
        let err = todos().insert(map).build_request().unwrap_err();
        assert!(matches!(err, Error::Encode(_)), "{err}");
    }

    fn raw(status: u16, headers: &[(&str, &str)], body: &str) -> RawResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Todo {
        id: i64,
    }

    #[test]
    fn counts_come_from_content_range() {
        let r: Response<Vec<Todo>> = decode_response(&raw(
            200,
            &[("content-range", "0-1/42")],
            r#"[{"id":1},{"id":2}]"#,
        ))
        .unwrap();
        assert_eq!(r.data, [Todo { id: 1 }, Todo { id: 2 }]);
        assert_eq!(r.count, Some(42));
        assert_eq!(r.status, 200);

        let r: Response<()> = decode_response(&raw(200, &[("content-range", "*/7")], "")).unwrap();
        assert_eq!(r.count, Some(7));
        let r: Response<Vec<Todo>> =
            decode_response(&raw(200, &[("content-range", "0-1/*")], "[]")).unwrap();
        assert_eq!(r.count, None);
        let r: Response<()> = decode_response(&raw(201, &[], "")).unwrap();
        assert_eq!((r.count, r.status), (None, 201));
    }

    #[test]
    fn maybe_single_on_reads() {
        let r: Response<Option<Todo>> = decode_maybe_single(raw(200, &[], "[]"), true).unwrap();
        assert_eq!(r.data, None);
        let r: Response<Option<Todo>> =
            decode_maybe_single(raw(200, &[], r#"[{"id":3}]"#), true).unwrap();
        assert_eq!(r.data, Some(Todo { id: 3 }));
        let err =
            decode_maybe_single::<Todo>(raw(200, &[], r#"[{"id":3},{"id":4}]"#), true).unwrap_err();
        assert_eq!(err.status(), Some(406));
        assert_eq!(err.code(), Some("PGRST116"));
        // Errors pass through.
        let err = decode_maybe_single::<Todo>(
            raw(404, &[], r#"{"code":"42P01","message":"no table"}"#),
            true,
        )
        .unwrap_err();
        assert_eq!(err.code(), Some("42P01"));
    }

    #[test]
    fn maybe_single_on_writes() {
        let zero = r#"{"code":"PGRST116","message":"JSON object requested, multiple (or no) rows returned","details":"The result contains 0 rows","hint":null}"#;
        let r: Response<Option<Todo>> = decode_maybe_single(raw(406, &[], zero), false).unwrap();
        assert_eq!(r.data, None);
        let two = r#"{"code":"PGRST116","message":"m","details":"The result contains 2 rows"}"#;
        let err = decode_maybe_single::<Todo>(raw(406, &[], two), false).unwrap_err();
        assert_eq!(err.code(), Some("PGRST116"));
        let r: Response<Option<Todo>> =
            decode_maybe_single(raw(200, &[], r#"{"id":9}"#), false).unwrap();
        assert_eq!(r.data, Some(Todo { id: 9 }));
    }

    #[test]
    fn wrong_shape_is_a_decode_error() {
        let err = decode_response::<Vec<Todo>>(&raw(200, &[], r#"{"id":1}"#)).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err}");
    }
}
