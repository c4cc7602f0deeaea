//! The schema cache: tables, views, columns, keys and functions of the exposed schemas,
//! introspected from `pg_catalog` in four round-trips (relations with columns, keys,
//! functions, view definitions), plus relationship discovery (many-to-one, one-to-many,
//! many-to-many through a junction table) used for embedding.
//!
//! Views get the keys of the tables they expose: a view column that is a plain reference
//! to a table column (followed through views, see [`super::view_deps`]) carries that
//! column's primary key and foreign keys, so views embed like their tables and tables
//! embed views, as in PostgREST. The base tables may live in a schema that is not
//! exposed (the usual "private tables, public views" layout).

use std::collections::{BTreeMap, HashMap};

use http::StatusCode;
use tokio_postgres::GenericClient;

use super::error::RestError;
use super::view_deps;

/// `(schema, name)` of a relation or function.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    /// Schema name.
    pub schema: String,
    /// Object name.
    pub name: String,
}

impl QualifiedName {
    /// Builds a qualified name.
    pub fn new(schema: &str, name: &str) -> Self {
        QualifiedName {
            schema: schema.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// Kind of relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    /// Ordinary or partitioned table.
    Table,
    /// View.
    View,
    /// Materialized view.
    MaterializedView,
    /// Foreign table.
    ForeignTable,
}

/// A column of a table or view.
#[derive(Debug, Clone)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Type as `atttypid::regtype::text` (e.g. `integer`, `text[]`, `public.mood`).
    pub pg_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether the column has a default expression.
    pub has_default: bool,
    /// The default expression (`pg_get_expr`), used for `Prefer: missing=default`.
    pub default_expr: Option<String>,
    /// Generated (`GENERATED ALWAYS AS ... STORED`) column.
    pub generated: bool,
    /// Identity column (`GENERATED ... AS IDENTITY`).
    pub identity: bool,
    /// Column comment.
    pub comment: Option<String>,
    /// Labels when the type is an enum.
    pub enum_values: Vec<String>,
}

/// A foreign key constraint.
#[derive(Debug, Clone)]
pub struct ForeignKey {
    /// Constraint name.
    pub name: String,
    /// Referencing columns (in this table).
    pub columns: Vec<String>,
    /// Referenced table.
    pub target: QualifiedName,
    /// Referenced columns.
    pub target_columns: Vec<String>,
}

/// A table, view, materialized view or foreign table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Schema and name.
    pub name: QualifiedName,
    /// Relation kind.
    pub kind: RelKind,
    /// Table comment.
    pub comment: Option<String>,
    /// Columns in attnum order.
    pub columns: Vec<Column>,
    /// Primary key columns (empty when none).
    pub primary_key: Vec<String>,
    /// Foreign keys declared on this table.
    pub foreign_keys: Vec<ForeignKey>,
}

impl Table {
    /// Looks a column up by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Function volatility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    /// `IMMUTABLE`.
    Immutable,
    /// `STABLE`.
    Stable,
    /// `VOLATILE`.
    Volatile,
}

/// An input argument of a function.
#[derive(Debug, Clone)]
pub struct FunctionArg {
    /// Argument name (empty for unnamed arguments).
    pub name: String,
    /// Type as regtype text.
    pub pg_type: String,
    /// Whether the argument has a default.
    pub has_default: bool,
    /// Whether it is a VARIADIC argument.
    pub variadic: bool,
}

/// A function callable through `/rpc/{name}`.
#[derive(Debug, Clone)]
pub struct Function {
    /// Schema and name.
    pub name: QualifiedName,
    /// Input arguments.
    pub args: Vec<FunctionArg>,
    /// Return type as regtype text.
    pub return_type: String,
    /// `RETURNS SETOF` / `RETURNS TABLE`.
    pub returns_set: bool,
    /// The table/view whose row type is returned, when it is one the cache knows.
    pub return_relation: Option<QualifiedName>,
    /// Output columns for `RETURNS TABLE (...)` / OUT parameters.
    pub out_columns: Vec<(String, String)>,
    /// Whether the return type is composite (a row).
    pub returns_composite: bool,
    /// Volatility.
    pub volatility: Volatility,
    /// Function comment.
    pub comment: Option<String>,
    /// Estimated rows (`ROWS n`); `ROWS 1` makes a set-returning computed relationship
    /// to-one, as in PostgREST.
    pub rows: f64,
}

impl Function {
    /// Whether the function returns nothing.
    pub fn returns_void(&self) -> bool {
        self.return_type == "void"
    }
}

/// Introspected description of a project's exposed schemas.
#[derive(Debug, Clone, Default)]
pub struct SchemaCache {
    /// Tables, views, materialized views and foreign tables.
    pub tables: BTreeMap<QualifiedName, Table>,
    /// Functions, grouped by name (overloads share a key).
    pub functions: BTreeMap<QualifiedName, Vec<Function>>,
}

const TABLES_SQL: &str = r#"
WITH enums AS (
  SELECT e.enumtypid, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
  FROM pg_enum e GROUP BY e.enumtypid
)
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, td.description,
       a.attnum::int4, a.attname::text, a.atttypid::regtype::text, NOT a.attnotnull,
       a.atthasdef, a.attgenerated <> '', a.attidentity <> '',
       CASE WHEN a.atthasdef THEN pg_get_expr(d.adbin, d.adrelid) END, cd.description, en.labels
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_description td ON td.objoid = c.oid AND td.classoid = 'pg_class'::regclass AND td.objsubid = 0
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_description cd ON cd.objoid = c.oid AND cd.classoid = 'pg_class'::regclass AND cd.objsubid = a.attnum
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
LEFT JOIN enums en ON en.enumtypid = a.atttypid
WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'v', 'm', 'f', 'p') AND NOT c.relispartition
"#;

/// Keys are returned with attribute numbers, mapped to names from [`TABLES_SQL`].
const KEYS_SQL: &str = r#"
SELECT con.contype::text, con.conrelid::int8, con.conname::text, con.conkey, con.confrelid::int8,
       coalesce(con.confkey, '{}')
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype IN ('p', 'f') AND con.conparentid = 0
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY con.conname
"#;

/// The stored query of every view and materialized view (not only exposed ones: a view
/// may select from a view in another schema).
const VIEWS_SQL: &str = r#"
SELECT c.oid::int8, r.ev_action::text
FROM pg_rewrite r
JOIN pg_class c ON c.oid = r.ev_class
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE r.rulename = '_RETURN' AND c.relkind IN ('v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"#;

/// A primary or foreign key as read from `pg_constraint` (attribute numbers).
struct RawKey {
    primary: bool,
    relid: i64,
    name: String,
    columns: Vec<i16>,
    target: i64,
    target_columns: Vec<i16>,
}

const FUNCTIONS_SQL: &str = r#"
SELECT n.nspname::text, p.proname::text, p.provolatile::text, p.proretset,
       p.prorettype::regtype::text, t.typtype::text, rn.nspname::text, rc.relname::text,
       p.pronargdefaults::int4,
       p.proargtypes::oid[]::regtype[]::text[],
       coalesce(p.proallargtypes::regtype[]::text[], '{}'),
       coalesce(p.proargnames, '{}'),
       coalesce(p.proargmodes::text[], '{}'),
       obj_description(p.oid, 'pg_proc'), p.prorows::float8
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type t ON t.oid = p.prorettype
LEFT JOIN pg_class rc ON rc.oid = t.typrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE n.nspname = ANY($1) AND p.prokind = 'f'
ORDER BY n.nspname, p.proname, p.oid
"#;

impl SchemaCache {
    /// Loads the cache from `pg_catalog` for `schemas` in four round-trips (relations with
    /// columns, keys, functions, view definitions).
    pub async fn load(
        client: &impl GenericClient,
        schemas: &[String],
    ) -> Result<SchemaCache, RestError> {
        let schemas: Vec<String> = schemas.to_vec();
        let mut cache = SchemaCache::default();

        // oid -> (name, attnum -> column name)
        let mut by_oid: HashMap<i64, (QualifiedName, HashMap<i16, String>)> = HashMap::new();
        let mut attnums: HashMap<QualifiedName, Vec<i32>> = HashMap::new();
        for row in client.query(TABLES_SQL, &[&schemas]).await? {
            let oid: i64 = row.try_get(0)?;
            let name = QualifiedName {
                schema: row.try_get(1)?,
                name: row.try_get(2)?,
            };
            let kind: String = row.try_get(3)?;
            let kind = match kind.as_str() {
                "v" => RelKind::View,
                "m" => RelKind::MaterializedView,
                "f" => RelKind::ForeignTable,
                _ => RelKind::Table,
            };
            let table = cache.tables.entry(name.clone()).or_insert_with(|| Table {
                name: name.clone(),
                kind,
                comment: row.try_get(4).ok().flatten(),
                columns: Vec::new(),
                primary_key: Vec::new(),
                foreign_keys: Vec::new(),
            });
            let entry = by_oid
                .entry(oid)
                .or_insert_with(|| (name.clone(), HashMap::new()));
            let attnum: Option<i32> = row.try_get(5)?;
            let col_name: Option<String> = row.try_get(6)?;
            let (Some(attnum), Some(col_name)) = (attnum, col_name) else {
                continue;
            };
            entry
                .1
                .insert(i16::try_from(attnum).unwrap_or(0), col_name.clone());
            attnums.entry(name).or_default().push(attnum);
            table.columns.push(Column {
                name: col_name,
                pg_type: row.try_get(7)?,
                nullable: row.try_get(8)?,
                has_default: row.try_get(9)?,
                generated: row.try_get(10)?,
                identity: row.try_get(11)?,
                default_expr: row.try_get(12)?,
                comment: row.try_get(13)?,
                enum_values: row
                    .try_get::<_, Option<Vec<String>>>(14)?
                    .unwrap_or_default(),
            });
        }
        // order columns by attnum (the query is unordered for speed)
        for (name, nums) in attnums {
            if let Some(t) = cache.tables.get_mut(&name)
                && nums.len() == t.columns.len()
            {
                let mut cols: Vec<(i32, Column)> =
                    nums.into_iter().zip(t.columns.drain(..)).collect();
                cols.sort_by_key(|(n, _)| *n);
                t.columns = cols.into_iter().map(|(_, c)| c).collect();
            }
        }

        let mut raw_keys = Vec::new();
        for row in client.query(KEYS_SQL, &[]).await? {
            let contype: String = row.try_get(0)?;
            let conrelid: i64 = row.try_get(1)?;
            raw_keys.push(RawKey {
                primary: contype == "p",
                relid: conrelid,
                name: row.try_get(2)?,
                columns: row.try_get(3)?,
                target: row.try_get(4)?,
                target_columns: row.try_get(5)?,
            });
            let Some((name, cols_of)) = by_oid.get(&conrelid) else {
                continue;
            };
            let conkey: Vec<i16> = row.try_get(3)?;
            let Some(columns) = conkey
                .iter()
                .map(|n| cols_of.get(n).cloned())
                .collect::<Option<Vec<String>>>()
            else {
                continue;
            };
            if contype == "p" {
                if let Some(t) = cache.tables.get_mut(name) {
                    t.primary_key = columns;
                }
                continue;
            }
            // FKs to relations outside the loaded schemas can't be embedded: skip them
            let confrelid: i64 = row.try_get(4)?;
            let Some((target, target_cols_of)) = by_oid.get(&confrelid) else {
                continue;
            };
            let confkey: Vec<i16> = row.try_get(5)?;
            let Some(target_columns) = confkey
                .iter()
                .map(|n| target_cols_of.get(n).cloned())
                .collect::<Option<Vec<String>>>()
            else {
                continue;
            };
            if let Some(t) = cache.tables.get_mut(name) {
                t.foreign_keys.push(ForeignKey {
                    name: row.try_get(2)?,
                    columns,
                    target: target.clone(),
                    target_columns,
                });
            }
        }

        let mut view_sources = HashMap::new();
        for row in client.query(VIEWS_SQL, &[]).await? {
            let oid: i64 = row.try_get(0)?;
            let tree: Option<String> = row.try_get(1)?;
            view_sources.insert(
                oid,
                tree.map(|t| view_deps::column_sources(&t))
                    .unwrap_or_default(),
            );
        }
        add_view_keys(&mut cache, &by_oid, &view_sources, &raw_keys);

        for row in client.query(FUNCTIONS_SQL, &[&schemas]).await? {
            let name = QualifiedName {
                schema: row.try_get(0)?,
                name: row.try_get(1)?,
            };
            let volatility = match row.try_get::<_, String>(2)?.as_str() {
                "i" => Volatility::Immutable,
                "s" => Volatility::Stable,
                _ => Volatility::Volatile,
            };
            let typtype: String = row.try_get(5)?;
            let rel_schema: Option<String> = row.try_get(6)?;
            let rel_name: Option<String> = row.try_get(7)?;
            let n_defaults: i32 = row.try_get(8)?;
            let in_types: Vec<String> = row.try_get(9)?;
            let all_types: Vec<String> = row.try_get(10)?;
            let names: Vec<String> = row.try_get(11)?;
            let modes: Vec<String> = row.try_get(12)?;

            let mut args = Vec::new();
            let mut out_columns = Vec::new();
            if modes.is_empty() {
                for (i, ty) in in_types.iter().enumerate() {
                    args.push(FunctionArg {
                        name: names.get(i).cloned().unwrap_or_default(),
                        pg_type: ty.clone(),
                        has_default: false,
                        variadic: false,
                    });
                }
            } else {
                for (i, mode) in modes.iter().enumerate() {
                    let arg_name = names.get(i).cloned().unwrap_or_default();
                    let ty = all_types.get(i).cloned().unwrap_or_default();
                    match mode.as_str() {
                        "i" | "b" | "v" => args.push(FunctionArg {
                            name: arg_name.clone(),
                            pg_type: ty.clone(),
                            has_default: false,
                            variadic: mode == "v",
                        }),
                        _ => {}
                    }
                    if matches!(mode.as_str(), "o" | "b" | "t") {
                        out_columns.push((arg_name, ty));
                    }
                }
            }
            let n_defaults = usize::try_from(n_defaults).unwrap_or(0).min(args.len());
            let first_default = args.len() - n_defaults;
            for a in &mut args[first_default..] {
                a.has_default = true;
            }
            let return_relation = match (rel_schema, rel_name) {
                (Some(s), Some(n)) => Some(QualifiedName { schema: s, name: n }),
                _ => None,
            };
            let return_type: String = row.try_get(4)?;
            let returns_composite =
                typtype == "c" || (return_type == "record" && !out_columns.is_empty());
            cache
                .functions
                .entry(name.clone())
                .or_default()
                .push(Function {
                    name,
                    args,
                    return_type,
                    returns_set: row.try_get(3)?,
                    return_relation,
                    out_columns,
                    returns_composite,
                    volatility,
                    comment: row.try_get(13)?,
                    rows: row.try_get(14)?,
                });
        }
        Ok(cache)
    }

    /// Looks a relation up.
    pub fn table(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables.get(&QualifiedName::new(schema, name))
    }

    /// Looks a relation up, or fails with PGRST205 (404).
    pub(crate) fn require_table(&self, schema: &str, name: &str) -> Result<&Table, RestError> {
        self.table(schema, name).ok_or_else(|| {
            let mut e = RestError::unknown_table(schema, name);
            if let Some(similar) = self
                .tables
                .keys()
                .find(|k| k.schema == schema && k.name.eq_ignore_ascii_case(name) && k.name != name)
            {
                e = e.with_hint(format!(
                    "Perhaps you meant the table '{}.{}'",
                    similar.schema, similar.name
                ));
            }
            e
        })
    }

    /// Relationships from `source` to relations named `target` (or to the relation
    /// reached through a foreign key named `target` / a column named `target`, or returned
    /// by a function named `target` taking `source`'s row: a computed relationship).
    pub(crate) fn relationships(&self, source: &QualifiedName, target: &str) -> Vec<Relationship> {
        let mut out = Vec::new();
        let Some(src) = self.tables.get(source) else {
            return out;
        };
        // computed relationships: `target(source) returns [setof] relation`
        let row_type = |ty: &str| {
            ty == source.name
                || ty == format!("{}.{}", source.schema, source.name)
                || ty == format!("\"{}\"", source.name)
        };
        for f in self
            .functions
            .get(&QualifiedName::new(&source.schema, target))
            .into_iter()
            .flatten()
        {
            if let ([arg], Some(ret)) = (f.args.as_slice(), &f.return_relation)
                && row_type(&arg.pg_type)
                && self.tables.contains_key(ret)
            {
                out.push(Relationship {
                    target: ret.clone(),
                    kind: if !f.returns_set || f.rows == 1.0 {
                        RelationshipKind::ManyToOne
                    } else {
                        RelationshipKind::OneToMany
                    },
                    constraint: f.name.name.clone(),
                    source_columns: Vec::new(),
                    target_columns: Vec::new(),
                    junction: None,
                    function: Some((f.name.clone(), source.clone())),
                });
            }
        }
        // many-to-one: source has a FK to target. Named by its column or constraint, a
        // key also reaches the views over its table: the table wins then, so that adding
        // a view never makes `author_id(name)` ambiguous.
        let is_view = |q: &QualifiedName| {
            self.tables
                .get(q)
                .is_some_and(|t| matches!(t.kind, RelKind::View | RelKind::MaterializedView))
        };
        for fk in &src.foreign_keys {
            let target_matches = fk.target.schema == source.schema && fk.target.name == target;
            let via_name = fk.name == target || (fk.columns.len() == 1 && fk.columns[0] == target);
            let shadowed = !target_matches
                && is_view(&fk.target)
                && src
                    .foreign_keys
                    .iter()
                    .any(|o| o.name == fk.name && o.columns == fk.columns && !is_view(&o.target));
            if (target_matches || via_name) && !shadowed && self.tables.contains_key(&fk.target) {
                out.push(Relationship {
                    target: fk.target.clone(),
                    kind: RelationshipKind::ManyToOne,
                    constraint: fk.name.clone(),
                    source_columns: fk.columns.clone(),
                    target_columns: fk.target_columns.clone(),
                    junction: None,
                    function: None,
                });
            }
        }
        // one-to-many: target has a FK to source
        let tq = QualifiedName::new(&source.schema, target);
        if let Some(t) = self.tables.get(&tq) {
            for fk in &t.foreign_keys {
                if &fk.target == source {
                    out.push(Relationship {
                        target: tq.clone(),
                        kind: if is_unique(t, &fk.columns) {
                            RelationshipKind::OneToOne
                        } else {
                            RelationshipKind::OneToMany
                        },
                        constraint: fk.name.clone(),
                        source_columns: fk.target_columns.clone(),
                        target_columns: fk.columns.clone(),
                        junction: None,
                        function: None,
                    });
                }
            }
        }
        // one-to-many through the FK name: `select=*,fk_name(*)` where fk_name is on another table
        for (qn, t) in &self.tables {
            if qn.schema != source.schema || qn.name == target {
                continue;
            }
            for fk in &t.foreign_keys {
                if &fk.target == source && fk.name == target {
                    out.push(Relationship {
                        target: qn.clone(),
                        kind: RelationshipKind::OneToMany,
                        constraint: fk.name.clone(),
                        source_columns: fk.target_columns.clone(),
                        target_columns: fk.columns.clone(),
                        junction: None,
                        function: None,
                    });
                }
            }
        }
        // many-to-many through a junction table whose FK columns are part of its primary key
        if self.tables.contains_key(&tq) {
            for (jn, j) in &self.tables {
                if jn == source || jn == &tq || j.primary_key.is_empty() {
                    continue;
                }
                let in_pk = |cols: &[String]| cols.iter().all(|c| j.primary_key.contains(c));
                for fk1 in j
                    .foreign_keys
                    .iter()
                    .filter(|f| &f.target == source && in_pk(&f.columns))
                {
                    for fk2 in j
                        .foreign_keys
                        .iter()
                        .filter(|f| f.target == tq && f.name != fk1.name && in_pk(&f.columns))
                    {
                        out.push(Relationship {
                            target: tq.clone(),
                            kind: RelationshipKind::ManyToMany,
                            constraint: fk2.name.clone(),
                            source_columns: fk1.target_columns.clone(),
                            target_columns: fk2.target_columns.clone(),
                            junction: Some(Junction {
                                table: jn.clone(),
                                source_constraint: fk1.name.clone(),
                                source_columns: fk1.columns.clone(),
                                target_constraint: fk2.name.clone(),
                                target_columns: fk2.columns.clone(),
                            }),
                            function: None,
                        });
                    }
                }
            }
        }
        out
    }

    /// Fails with PGRST106 (406) when `schema` is not exposed.
    pub(crate) fn check_exposed(schema: &str, exposed: &[String]) -> Result<(), RestError> {
        if exposed.iter().any(|s| s == schema) {
            Ok(())
        } else {
            Err(RestError::new(
                StatusCode::NOT_ACCEPTABLE,
                "PGRST106",
                format!("Invalid schema: {schema}"),
            )
            .with_hint(format!(
                "Only the following schemas are exposed: {}",
                exposed.join(", ")
            )))
        }
    }

    /// Number of relations per schema (handy for logging).
    pub fn summary(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for k in self.tables.keys() {
            *m.entry(k.schema.clone()).or_insert(0) += 1;
        }
        m
    }
}

/// A relation exposing some columns of a table: `(name, its column names for the table's
/// attnums, whether it is a view)`.
type Rep = (QualifiedName, Vec<String>, bool);

/// Gives exposed views the primary and foreign keys of the tables behind them (see the
/// module docs), and tables the foreign keys that point at such views.
fn add_view_keys(
    cache: &mut SchemaCache,
    by_oid: &HashMap<i64, (QualifiedName, HashMap<i16, String>)>,
    view_sources: &HashMap<i64, Vec<view_deps::ColumnSource>>,
    keys: &[RawKey],
) {
    // exposed view oid -> (view attnum, table oid, table attnum), followed through views
    let mut views: Vec<(i64, Vec<view_deps::ColumnSource>)> = Vec::new();
    for (oid, sources) in view_sources {
        if !by_oid.contains_key(oid) {
            continue;
        }
        let mut resolved = Vec::new();
        for &(attnum, mut rel, mut col) in sources {
            let mut hops = 0;
            while let Some(inner) = view_sources.get(&rel) {
                hops += 1;
                match inner.iter().find(|(a, _, _)| *a == col) {
                    Some(&(_, r, c)) if hops < 32 => (rel, col) = (r, c),
                    _ => break,
                }
            }
            if !view_sources.contains_key(&rel) {
                resolved.push((attnum, rel, col));
            }
        }
        if !resolved.is_empty() {
            views.push((*oid, resolved));
        }
    }
    if views.is_empty() {
        return;
    }
    views.sort_by_key(|(oid, _)| *oid);
    // every exposed relation showing all of `cols` of table `rel`
    let reps = |rel: i64, cols: &[i16]| -> Vec<Rep> {
        let mut out = Vec::new();
        if !view_sources.contains_key(&rel)
            && let Some((name, names)) = by_oid.get(&rel)
            && let Some(mapped) = cols
                .iter()
                .map(|c| names.get(c).cloned())
                .collect::<Option<Vec<String>>>()
        {
            out.push((name.clone(), mapped, false));
        }
        for (view, resolved) in &views {
            let Some((name, names)) = by_oid.get(view) else {
                continue;
            };
            let mapped = cols
                .iter()
                .map(|c| {
                    resolved
                        .iter()
                        .find(|(_, r, rc)| *r == rel && rc == c)
                        .and_then(|(a, _, _)| names.get(a).cloned())
                })
                .collect::<Option<Vec<String>>>();
            if let Some(mapped) = mapped {
                out.push((name.clone(), mapped, true));
            }
        }
        out
    };
    for k in keys {
        if k.primary {
            for (name, cols, is_view) in reps(k.relid, &k.columns) {
                if let Some(t) = cache.tables.get_mut(&name)
                    && is_view
                    && t.primary_key.is_empty()
                {
                    t.primary_key = cols;
                }
            }
            continue;
        }
        let targets = reps(k.target, &k.target_columns);
        for (source, columns, source_is_view) in reps(k.relid, &k.columns) {
            for (target, target_columns, target_is_view) in &targets {
                if !source_is_view && !target_is_view {
                    continue; // the table's own key, already there
                }
                if let Some(t) = cache.tables.get_mut(&source) {
                    t.foreign_keys.push(ForeignKey {
                        name: k.name.clone(),
                        columns: columns.clone(),
                        target: target.clone(),
                        target_columns: target_columns.clone(),
                    });
                }
            }
        }
    }
}

fn is_unique(t: &Table, cols: &[String]) -> bool {
    !t.primary_key.is_empty()
        && t.primary_key.len() == cols.len()
        && t.primary_key.iter().all(|c| cols.contains(c))
}

/// Cardinality of a relationship seen from the embedding side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelationshipKind {
    ManyToOne,
    OneToOne,
    OneToMany,
    ManyToMany,
}

impl RelationshipKind {
    pub(crate) fn is_to_one(self) -> bool {
        matches!(
            self,
            RelationshipKind::ManyToOne | RelationshipKind::OneToOne
        )
    }
    pub(crate) fn label(self) -> &'static str {
        match self {
            RelationshipKind::ManyToOne => "many-to-one",
            RelationshipKind::OneToOne => "one-to-one",
            RelationshipKind::OneToMany => "one-to-many",
            RelationshipKind::ManyToMany => "many-to-many",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Junction {
    pub(crate) table: QualifiedName,
    pub(crate) source_constraint: String,
    /// Junction columns referencing the source.
    pub(crate) source_columns: Vec<String>,
    pub(crate) target_constraint: String,
    /// Junction columns referencing the target.
    pub(crate) target_columns: Vec<String>,
}

/// A way to embed `target` from a source relation.
#[derive(Debug, Clone)]
pub(crate) struct Relationship {
    pub(crate) target: QualifiedName,
    pub(crate) kind: RelationshipKind,
    /// FK constraint name (for m2m: the junction's FK to the target).
    pub(crate) constraint: String,
    /// Columns on the source side (for m2m: source columns referenced by the junction).
    pub(crate) source_columns: Vec<String>,
    /// Columns on the target side (for m2m: target columns referenced by the junction).
    pub(crate) target_columns: Vec<String>,
    pub(crate) junction: Option<Junction>,
    /// For a computed relationship: the function returning the target rows, and the
    /// relation whose row it takes.
    pub(crate) function: Option<(QualifiedName, QualifiedName)>,
}

impl Relationship {
    /// Whether `hint` (from `target!hint`) selects this relationship.
    pub(crate) fn matches_hint(&self, hint: &str) -> bool {
        if self.constraint == hint {
            return true;
        }
        if let Some(j) = &self.junction {
            return j.table.name == hint || j.source_constraint == hint;
        }
        let single = |cols: &[String]| cols.len() == 1 && cols[0] == hint;
        single(&self.source_columns) || single(&self.target_columns)
    }
}
