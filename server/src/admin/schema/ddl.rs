//! Typed table, index and policy definitions and the DDL they become.
//!
//! Building DDL is pure (no database) except for type resolution, which asks
//! Postgres (`to_regtype`) after the type text parsed as a type name.

use std::collections::HashSet;

use serde::Deserialize;
use tokio_postgres::GenericClient;

use super::SchemaError;
use crate::admin::guard::{PROTECTED_SCHEMAS, check_expression};
use crate::db::quote_ident;

/// A validated SQL identifier (`^[A-Za-z_][A-Za-z0-9_$]{0,62}$`), quoted on output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ident(String);

impl Ident {
    /// Validates `name` as the `what` (named in the error).
    pub fn parse(name: &str, what: &str) -> Result<Ident, SchemaError> {
        let mut chars = name.chars();
        let ok = name.len() <= 63
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if ok {
            Ok(Ident(name.to_owned()))
        } else {
            Err(SchemaError::Invalid(format!(
                "{what} {name:?} is not a valid identifier: use 1-63 letters, digits, `_` or `$`, not starting with a digit."
            )))
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quoted name.
    pub fn q(&self) -> String {
        quote_ident(&self.0)
    }
}

/// A schema that DDL may change (not platform-owned, not a system schema).
pub fn writable_schema(name: &str) -> Result<Ident, SchemaError> {
    let ident = Ident::parse(name, "schema")?;
    if PROTECTED_SCHEMAS.contains(&name)
        || name.starts_with("pg_")
        || name == "information_schema"
        || name == "extensions"
    {
        return Err(SchemaError::Invalid(format!(
            "schema {name:?} is owned by the platform and cannot be changed through the admin API."
        )));
    }
    Ok(ident)
}

/// `schema.table`, both quoted.
pub fn qualified(schema: &Ident, table: &Ident) -> String {
    format!("{}.{}", schema.q(), table.q())
}

/// Checks a type name: it must parse as a type name only, and exist.
pub async fn check_type(client: &impl GenericClient, ty: &str) -> Result<String, SchemaError> {
    let ty = ty.trim();
    if ty.is_empty() || pg_query::parse(ty, pg_query::ParserOptions::TYPE_NAME).is_err() {
        return Err(SchemaError::Invalid(format!(
            "{ty:?} is not a valid type name."
        )));
    }
    let row = client
        .query_one("select to_regtype($1)::text", &[&ty])
        .await;
    match row {
        Ok(row) if row.get::<_, Option<String>>(0).is_some() => Ok(ty.to_owned()),
        // to_regtype raises on some malformed names; treat as unknown.
        _ => Err(SchemaError::Invalid(format!("unknown type {ty:?}."))),
    }
}

fn expression(expr: &str, what: &str) -> Result<String, SchemaError> {
    check_expression(expr).map_err(|e| SchemaError::Invalid(format!("{what} {expr:?}: {e}.")))?;
    // The newline ends a trailing `--` comment before the closing parenthesis.
    Ok(format!("({expr}\n)"))
}

/// Referential action of a foreign key.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum FkAction {
    /// `NO ACTION` (the default).
    #[default]
    NoAction,
    /// `RESTRICT`.
    Restrict,
    /// `CASCADE`.
    Cascade,
    /// `SET NULL`.
    SetNull,
    /// `SET DEFAULT`.
    SetDefault,
}

impl FkAction {
    fn sql(self) -> &'static str {
        match self {
            FkAction::NoAction => "no action",
            FkAction::Restrict => "restrict",
            FkAction::Cascade => "cascade",
            FkAction::SetNull => "set null",
            FkAction::SetDefault => "set default",
        }
    }
}

/// A column of a new table (or one added by `add_column`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Postgres type, e.g. `text`, `int8`, `numeric(10,2)`, `text[]`, `jsonb`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Default expression, e.g. `now()` or `'draft'`.
    pub default: Option<String>,
    /// `NOT NULL`.
    #[serde(default)]
    pub not_null: bool,
    /// `UNIQUE`.
    #[serde(default)]
    pub unique: bool,
    /// Part of the primary key.
    #[serde(default)]
    pub primary_key: bool,
    /// A foreign key from this column.
    pub references: Option<ColumnReference>,
}

/// The target of a single-column foreign key.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnReference {
    /// Schema of the referenced table (default `public`).
    pub schema: Option<String>,
    /// Referenced table.
    pub table: String,
    /// Referenced column (default: its primary key).
    pub column: Option<String>,
    /// `ON DELETE` action.
    #[serde(default)]
    pub on_delete: FkAction,
    /// `ON UPDATE` action.
    #[serde(default)]
    pub on_update: FkAction,
}

/// A (possibly multi-column) foreign key.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForeignKeyDef {
    /// Constraint name (generated when absent).
    pub name: Option<String>,
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Schema of the referenced table (default `public`).
    pub references_schema: Option<String>,
    /// Referenced table.
    pub references_table: String,
    /// Referenced columns (default: its primary key).
    #[serde(default)]
    pub references_columns: Vec<String>,
    /// `ON DELETE` action.
    #[serde(default)]
    pub on_delete: FkAction,
    /// `ON UPDATE` action.
    #[serde(default)]
    pub on_update: FkAction,
}

/// Body of `POST /admin/v1/tables`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTable {
    /// Schema (default `public`).
    pub schema: Option<String>,
    /// Table name.
    pub name: String,
    /// Columns, in order.
    #[serde(default)]
    pub columns: Vec<ColumnDef>,
    /// Add `id uuid primary key default gen_random_uuid()` first.
    #[serde(default)]
    pub id: bool,
    /// Add `created_at` and `updated_at timestamptz not null default now()`,
    /// with a trigger that sets `updated_at` on every update.
    #[serde(default)]
    pub timestamps: bool,
    /// Table-level foreign keys.
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKeyDef>,
    /// Enable row level security (default true: nobody but the service role
    /// sees rows until a policy allows it).
    pub rls: Option<bool>,
    /// Table comment.
    pub comment: Option<String>,
}

fn references_sql(
    schema: Option<&str>,
    table: &str,
    columns: &[String],
    on_delete: FkAction,
    on_update: FkAction,
) -> Result<String, SchemaError> {
    let schema = Ident::parse(schema.unwrap_or("public"), "referenced schema")?;
    let table = Ident::parse(table, "referenced table")?;
    let cols = ident_list(columns, "referenced column")?;
    let cols = if cols.is_empty() {
        String::new()
    } else {
        format!(" ({cols})")
    };
    Ok(format!(
        "references {}{cols} on delete {} on update {}",
        qualified(&schema, &table),
        on_delete.sql(),
        on_update.sql()
    ))
}

fn ident_list(names: &[String], what: &str) -> Result<String, SchemaError> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(Ident::parse(n, what)?.q());
    }
    Ok(out.join(", "))
}

/// The column clause `"name" type [not null] [unique] [default …] [references …]`
/// (primary keys are added by the caller).
async fn column_sql(
    client: &impl GenericClient,
    c: &ColumnDef,
    inline_pk: bool,
) -> Result<String, SchemaError> {
    let name = Ident::parse(&c.name, "column")?;
    let ty = check_type(client, &c.data_type).await?;
    let mut sql = format!("{} {ty}", name.q());
    if inline_pk {
        sql.push_str(" primary key");
    }
    if c.not_null {
        sql.push_str(" not null");
    }
    if c.unique {
        sql.push_str(" unique");
    }
    if let Some(d) = &c.default {
        sql.push_str(&format!(" default {}", expression(d, "default")?));
    }
    if let Some(r) = &c.references {
        let cols: Vec<String> = r.column.iter().cloned().collect();
        sql.push(' ');
        sql.push_str(&references_sql(
            r.schema.as_deref(),
            &r.table,
            &cols,
            r.on_delete,
            r.on_update,
        )?);
    }
    Ok(sql)
}

fn foreign_key_sql(fk: &ForeignKeyDef) -> Result<String, SchemaError> {
    if fk.columns.is_empty() {
        return Err(SchemaError::Invalid(
            "a foreign key needs at least one column.".into(),
        ));
    }
    let name = match &fk.name {
        Some(n) => format!("constraint {} ", Ident::parse(n, "constraint")?.q()),
        None => String::new(),
    };
    Ok(format!(
        "{name}foreign key ({}) {}",
        ident_list(&fk.columns, "column")?,
        references_sql(
            fk.references_schema.as_deref(),
            &fk.references_table,
            &fk.references_columns,
            fk.on_delete,
            fk.on_update
        )?
    ))
}

/// Statements that ensure the shared `updated_at` trigger function exists.
pub const UPDATED_AT_FUNCTION: &str = "do $fb$ begin \
    if to_regprocedure('extensions.fb_set_updated_at()') is null then \
      create function extensions.fb_set_updated_at() returns trigger language plpgsql as $f$ \
        begin new.updated_at := now(); return new; end $f$; \
    end if; end $fb$";

/// The statements that create table `def`.
pub async fn create_table(
    client: &impl GenericClient,
    def: &CreateTable,
) -> Result<Vec<String>, SchemaError> {
    let schema = writable_schema(def.schema.as_deref().unwrap_or("public"))?;
    let table = Ident::parse(&def.name, "table")?;
    let target = qualified(&schema, &table);
    let mut seen = HashSet::new();
    let implicit: Vec<&str> = [
        def.id.then_some("id"),
        def.timestamps.then_some("created_at"),
        def.timestamps.then_some("updated_at"),
    ]
    .into_iter()
    .flatten()
    .collect();
    for name in implicit
        .iter()
        .copied()
        .chain(def.columns.iter().map(|c| c.name.as_str()))
    {
        if !seen.insert(name) {
            return Err(SchemaError::Invalid(format!("duplicate column {name:?}.")));
        }
    }
    if def.columns.is_empty() && !def.id && !def.timestamps {
        return Err(SchemaError::Invalid(
            "a table needs at least one column.".into(),
        ));
    }
    let pk: Vec<&ColumnDef> = def.columns.iter().filter(|c| c.primary_key).collect();
    if def.id && !pk.is_empty() {
        return Err(SchemaError::Invalid(
            "`id: true` adds the primary key; do not mark other columns primary_key.".into(),
        ));
    }
    let mut parts = Vec::new();
    if def.id {
        parts.push("\"id\" uuid primary key default gen_random_uuid()".to_owned());
    }
    for c in &def.columns {
        parts.push(column_sql(client, c, c.primary_key && pk.len() == 1).await?);
    }
    if def.timestamps {
        parts.push("\"created_at\" timestamptz not null default now()".to_owned());
        parts.push("\"updated_at\" timestamptz not null default now()".to_owned());
    }
    if pk.len() > 1 {
        let names: Vec<String> = pk.iter().map(|c| c.name.clone()).collect();
        parts.push(format!("primary key ({})", ident_list(&names, "column")?));
    }
    for fk in &def.foreign_keys {
        parts.push(foreign_key_sql(fk)?);
    }
    let mut out = vec![format!(
        "create table {target} (\n  {}\n)",
        parts.join(",\n  ")
    )];
    if def.rls.unwrap_or(true) {
        out.push(format!("alter table {target} enable row level security"));
    }
    if def.timestamps {
        out.push(UPDATED_AT_FUNCTION.to_owned());
        let trigger = Ident::parse(
            &format!("{}_updated_at", truncate(&def.name, 50)),
            "trigger",
        )?;
        out.push(format!(
            "create trigger {} before update on {target} for each row execute function extensions.fb_set_updated_at()",
            trigger.q()
        ));
    }
    if let Some(c) = &def.comment {
        out.push(format!(
            "comment on table {target} is {}",
            crate::db::quote_literal(c)
        ));
    }
    Ok(out)
}

fn truncate(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// One change of `PATCH /admin/v1/tables/{table}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AlterAction {
    /// Add a column.
    AddColumn {
        /// The column.
        column: ColumnDef,
    },
    /// Drop a column.
    DropColumn {
        /// Column name.
        name: String,
        /// Also drop objects that depend on it.
        #[serde(default)]
        cascade: bool,
    },
    /// Rename a column.
    RenameColumn {
        /// Current name.
        name: String,
        /// New name.
        to: String,
    },
    /// Change a column's type.
    AlterType {
        /// Column name.
        name: String,
        /// New type.
        #[serde(rename = "type")]
        data_type: String,
        /// Conversion expression (default: a cast).
        using: Option<String>,
    },
    /// Set a column default.
    SetDefault {
        /// Column name.
        name: String,
        /// Default expression.
        default: String,
    },
    /// Drop a column default.
    DropDefault {
        /// Column name.
        name: String,
    },
    /// `SET NOT NULL`.
    SetNotNull {
        /// Column name.
        name: String,
    },
    /// `DROP NOT NULL`.
    DropNotNull {
        /// Column name.
        name: String,
    },
    /// Add a foreign key.
    AddForeignKey {
        /// The key.
        #[serde(flatten)]
        foreign_key: ForeignKeyDef,
    },
    /// Drop a constraint (e.g. a foreign key) by name.
    DropConstraint {
        /// Constraint name.
        name: String,
    },
    /// Rename the table.
    Rename {
        /// New name.
        to: String,
    },
}

/// Body of `PATCH /admin/v1/tables/{table}`: changes applied in order, in one transaction.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlterTable {
    /// The changes.
    pub actions: Vec<AlterAction>,
}

/// The statements of an ALTER request on `schema.table`.
pub async fn alter_table(
    client: &impl GenericClient,
    schema: &Ident,
    table: &Ident,
    actions: &[AlterAction],
) -> Result<Vec<String>, SchemaError> {
    if actions.is_empty() {
        return Err(SchemaError::Invalid("`actions` is empty.".into()));
    }
    let mut target = qualified(schema, table);
    let mut out = Vec::new();
    for a in actions {
        let col = |n: &str| Ident::parse(n, "column").map(|i| i.q());
        let sql = match a {
            AlterAction::AddColumn { column } => format!(
                "alter table {target} add column {}",
                column_sql(client, column, column.primary_key).await?
            ),
            AlterAction::DropColumn { name, cascade } => format!(
                "alter table {target} drop column {}{}",
                col(name)?,
                if *cascade { " cascade" } else { "" }
            ),
            AlterAction::RenameColumn { name, to } => {
                format!(
                    "alter table {target} rename column {} to {}",
                    col(name)?,
                    col(to)?
                )
            }
            AlterAction::AlterType {
                name,
                data_type,
                using,
            } => {
                let ty = check_type(client, data_type).await?;
                let using = match using {
                    Some(u) => format!(" using {}", expression(u, "using")?),
                    None => format!(" using {}::{ty}", col(name)?),
                };
                format!(
                    "alter table {target} alter column {} type {ty}{using}",
                    col(name)?
                )
            }
            AlterAction::SetDefault { name, default } => format!(
                "alter table {target} alter column {} set default {}",
                col(name)?,
                expression(default, "default")?
            ),
            AlterAction::DropDefault { name } => {
                format!(
                    "alter table {target} alter column {} drop default",
                    col(name)?
                )
            }
            AlterAction::SetNotNull { name } => {
                format!(
                    "alter table {target} alter column {} set not null",
                    col(name)?
                )
            }
            AlterAction::DropNotNull { name } => {
                format!(
                    "alter table {target} alter column {} drop not null",
                    col(name)?
                )
            }
            AlterAction::AddForeignKey { foreign_key } => {
                format!("alter table {target} add {}", foreign_key_sql(foreign_key)?)
            }
            AlterAction::DropConstraint { name } => format!(
                "alter table {target} drop constraint {}",
                Ident::parse(name, "constraint")?.q()
            ),
            AlterAction::Rename { to } => {
                let to = Ident::parse(to, "table")?;
                let sql = format!("alter table {target} rename to {}", to.q());
                target = qualified(schema, &to);
                sql
            }
        };
        out.push(sql);
    }
    Ok(out)
}

/// Body of `POST /admin/v1/tables/{table}/indexes`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    /// Index name (generated when absent).
    pub name: Option<String>,
    /// Indexed columns.
    pub columns: Vec<String>,
    /// `UNIQUE`.
    #[serde(default)]
    pub unique: bool,
    /// Access method: btree (default), hash, gin, gist, brin, spgist.
    pub method: Option<String>,
}

/// The statement that creates index `def` on `schema.table`.
pub fn create_index(
    schema: &Ident,
    table: &Ident,
    def: &CreateIndex,
) -> Result<String, SchemaError> {
    if def.columns.is_empty() {
        return Err(SchemaError::Invalid(
            "an index needs at least one column.".into(),
        ));
    }
    let method = def
        .method
        .as_deref()
        .unwrap_or("btree")
        .to_ascii_lowercase();
    if !["btree", "hash", "gin", "gist", "brin", "spgist"].contains(&method.as_str()) {
        return Err(SchemaError::Invalid(format!(
            "unknown index method {method:?} (use btree, hash, gin, gist, brin or spgist)."
        )));
    }
    let name = match &def.name {
        Some(n) => format!("{} ", Ident::parse(n, "index")?.q()),
        None => String::new(),
    };
    Ok(format!(
        "create {}index {name}on {} using {method} ({})",
        if def.unique { "unique " } else { "" },
        qualified(schema, table),
        ident_list(&def.columns, "column")?
    ))
}

/// Body of `POST /admin/v1/tables/{table}/policies`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    /// Policy name.
    pub name: String,
    /// `all` (default), `select`, `insert`, `update` or `delete`.
    pub command: Option<String>,
    /// Roles it applies to: `anon`, `authenticated`, `service_role`, `public` (default `public`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// `USING` expression (which existing rows are visible / affected).
    pub using: Option<String>,
    /// `WITH CHECK` expression (which new rows are allowed).
    pub with_check: Option<String>,
    /// Permissive (default) or restrictive.
    pub permissive: Option<bool>,
}

/// The statement that creates policy `def` on `schema.table`.
pub fn create_policy(
    schema: &Ident,
    table: &Ident,
    def: &CreatePolicy,
) -> Result<String, SchemaError> {
    let name = Ident::parse(&def.name, "policy")?;
    let command = def.command.as_deref().unwrap_or("all").to_ascii_lowercase();
    if !["all", "select", "insert", "update", "delete"].contains(&command.as_str()) {
        return Err(SchemaError::Invalid(format!(
            "unknown policy command {command:?} (use all, select, insert, update or delete)."
        )));
    }
    let mut roles = Vec::new();
    for r in &def.roles {
        if !["anon", "authenticated", "service_role", "public"].contains(&r.as_str()) {
            return Err(SchemaError::Invalid(format!(
                "unknown role {r:?} (use anon, authenticated, service_role or public)."
            )));
        }
        roles.push(if r == "public" {
            "public".to_owned()
        } else {
            quote_ident(r)
        });
    }
    if roles.is_empty() {
        roles.push("public".into());
    }
    if def.using.is_none() && def.with_check.is_none() {
        return Err(SchemaError::Invalid(
            "a policy needs `using` and/or `with_check`.".into(),
        ));
    }
    if command == "insert" && def.using.is_some() {
        return Err(SchemaError::Invalid(
            "an insert policy takes only `with_check`.".into(),
        ));
    }
    if matches!(command.as_str(), "select" | "delete") && def.with_check.is_some() {
        return Err(SchemaError::Invalid(format!(
            "a {command} policy takes only `using`."
        )));
    }
    let mut sql = format!(
        "create policy {} on {} as {} for {command} to {}",
        name.q(),
        qualified(schema, table),
        if def.permissive.unwrap_or(true) {
            "permissive"
        } else {
            "restrictive"
        },
        roles.join(", ")
    );
    if let Some(u) = &def.using {
        sql.push_str(&format!(" using {}", expression(u, "using")?));
    }
    if let Some(c) = &def.with_check {
        sql.push_str(&format!(" with check {}", expression(c, "with_check")?));
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(Ident::parse("todos", "t").is_ok());
        assert!(Ident::parse("_a$1", "t").is_ok());
        for bad in ["", "1a", "a-b", "a\"b", "a;drop", &"x".repeat(64), "é"] {
            assert!(Ident::parse(bad, "t").is_err(), "{bad}");
        }
        assert!(writable_schema("auth").is_err());
        assert!(writable_schema("public").is_ok());
    }

    #[test]
    fn policies_are_checked() {
        let s = Ident::parse("public", "s").unwrap();
        let t = Ident::parse("t", "t").unwrap();
        let ok = CreatePolicy {
            name: "own".into(),
            command: Some("select".into()),
            roles: vec!["authenticated".into()],
            using: Some("auth.uid() = owner".into()),
            with_check: None,
            permissive: None,
        };
        assert!(
            create_policy(&s, &t, &ok)
                .unwrap()
                .contains("using (auth.uid() = owner\n)")
        );
        let bad = CreatePolicy {
            using: Some("true) ; drop table t; --".into()),
            ..ok.clone()
        };
        assert!(create_policy(&s, &t, &bad).is_err());
        let bad_role = CreatePolicy {
            roles: vec!["postgres".into()],
            ..ok
        };
        assert!(create_policy(&s, &t, &bad_role).is_err());
    }
}
