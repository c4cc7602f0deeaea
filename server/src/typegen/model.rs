//! What types are generated from: the data API's schema cache of the
//! exposed schemas, plus every enum of those schemas (the cache knows an
//! enum's labels only where a column uses it).

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::TypesError;
use crate::rest::schema::{Function, RelKind, SchemaCache, Table};

/// Enums of the exposed schemas with their labels in sort order.
const ENUMS_SQL: &str = "
select n.nspname::text, t.typname::text, array_agg(e.enumlabel::text order by e.enumsortorder)
from pg_type t
join pg_namespace n on n.oid = t.typnamespace
join pg_enum e on e.enumtypid = t.oid
where n.nspname = any($1)
group by n.nspname, t.typname
";

/// One exposed schema's objects, sorted by name.
#[derive(Debug, Default)]
pub struct SchemaTypes<'a> {
    /// Tables (ordinary, partitioned, foreign).
    pub tables: Vec<&'a Table>,
    /// Views and materialized views.
    pub views: Vec<&'a Table>,
    /// Functions callable by RPC (the first overload of each name).
    pub functions: Vec<&'a Function>,
    /// Enums: name → labels.
    pub enums: BTreeMap<String, Vec<String>>,
}

/// Everything the generators need.
#[derive(Debug)]
pub struct Model {
    /// The exposed schemas, in the project's order.
    pub schemas: Vec<String>,
    /// The catalog, as the data API sees it.
    pub cache: SchemaCache,
    /// (schema, enum name) → labels.
    pub enums: BTreeMap<(String, String), Vec<String>>,
}

impl Model {
    /// Reads the catalog of `schemas`.
    pub async fn load(
        client: &impl GenericClient,
        schemas: &[String],
    ) -> Result<Model, TypesError> {
        let cache = SchemaCache::load(client, schemas)
            .await
            .map_err(|e| TypesError::Schema(e.to_string()))?;
        let mut enums = BTreeMap::new();
        for row in client.query(ENUMS_SQL, &[&schemas]).await? {
            enums.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
        }
        Ok(Model {
            schemas: schemas.to_vec(),
            cache,
            enums,
        })
    }

    /// The objects of `schema`.
    pub fn schema(&self, schema: &str) -> SchemaTypes<'_> {
        let mut out = SchemaTypes::default();
        for (name, table) in &self.cache.tables {
            if name.schema != schema {
                continue;
            }
            match table.kind {
                RelKind::View | RelKind::MaterializedView => out.views.push(table),
                RelKind::Table | RelKind::ForeignTable => out.tables.push(table),
            }
        }
        for (name, overloads) in &self.cache.functions {
            if name.schema == schema
                && let Some(f) = overloads.first()
            {
                out.functions.push(f);
            }
        }
        for ((s, name), labels) in &self.enums {
            if s == schema {
                out.enums.insert(name.clone(), labels.clone());
            }
        }
        out
    }

    /// The enum a Postgres type name refers to, as (schema, name): `mood`
    /// and `public.mood` both name `public.mood` when `public` is exposed
    /// (`regtype` leaves out the schema of types on the search path).
    pub fn enum_of(&self, pg_type: &str, default_schema: &str) -> Option<(String, String)> {
        let unquoted = pg_type.replace('"', "");
        let (schema, name) = match unquoted.split_once('.') {
            Some((s, n)) => (s.to_owned(), n.to_owned()),
            None => (default_schema.to_owned(), unquoted),
        };
        if self.enums.contains_key(&(schema.clone(), name.clone())) {
            return Some((schema, name));
        }
        // Unqualified and not in the table's own schema: any exposed schema
        // (in the project's order) that has it.
        if !pg_type.contains('.') {
            for s in &self.schemas {
                if self.enums.contains_key(&(s.clone(), name.clone())) {
                    return Some((s.clone(), name));
                }
            }
        }
        None
    }
}

/// What a Postgres type is, for the generators.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// `boolean`.
    Bool,
    /// `smallint`.
    I16,
    /// `integer`, `oid`.
    I32,
    /// `bigint`.
    I64,
    /// `real`.
    F32,
    /// `double precision`, `numeric` (JSON numbers).
    F64,
    /// `json`, `jsonb`.
    Json,
    /// Everything sent as a JSON string (text, uuid, dates, times, bytea, …).
    Text,
    /// An enum of the exposed schemas: (schema, name).
    Enum(String, String),
    /// `void`.
    Void,
    /// Anything else (composite, record, unknown types): any JSON.
    Unknown,
}

/// A column or argument type: a scalar with array dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct PgType {
    /// Element type.
    pub scalar: Scalar,
    /// `[]` count.
    pub dims: usize,
}

impl Model {
    /// Maps a `regtype` name (`integer`, `text[]`, `public.mood`,
    /// `character varying(20)`, …).
    pub fn map_type(&self, pg_type: &str, schema: &str) -> PgType {
        let mut base = pg_type.trim();
        let mut dims = 0;
        while let Some(inner) = base.strip_suffix("[]") {
            base = inner.trim_end();
            dims += 1;
        }
        // `character varying(20)`, `numeric(10,2)`, `timestamp(3) with time zone`
        let plain: String = match base.find('(') {
            Some(open) => {
                let close = base[open..].find(')').map_or(base.len(), |c| open + c + 1);
                format!("{}{}", &base[..open], &base[close..])
            }
            None => base.to_owned(),
        };
        let scalar = match plain.trim() {
            "boolean" => Scalar::Bool,
            "smallint" => Scalar::I16,
            "integer" | "oid" => Scalar::I32,
            "bigint" => Scalar::I64,
            "real" => Scalar::F32,
            "double precision" | "numeric" => Scalar::F64,
            "json" | "jsonb" => Scalar::Json,
            "void" => Scalar::Void,
            "text"
            | "character varying"
            | "character"
            | "\"char\""
            | "name"
            | "citext"
            | "uuid"
            | "date"
            | "time without time zone"
            | "time with time zone"
            | "timestamp without time zone"
            | "timestamp with time zone"
            | "interval"
            | "bytea"
            | "inet"
            | "cidr"
            | "macaddr"
            | "macaddr8"
            | "money"
            | "tsvector"
            | "tsquery"
            | "xml"
            | "bit"
            | "bit varying"
            | "int4range"
            | "int8range"
            | "numrange"
            | "tsrange"
            | "tstzrange"
            | "daterange"
            | "point"
            | "ltree" => Scalar::Text,
            other => match self.enum_of(other, schema) {
                Some((s, n)) => Scalar::Enum(s, n),
                None => Scalar::Unknown,
            },
        };
        PgType { scalar, dims }
    }
}
