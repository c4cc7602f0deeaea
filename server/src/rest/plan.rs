//! Turns the parsed query (AST) plus the schema cache into SQL text and parameters.
//!
//! Safety rules enforced here:
//! * every value is a bound parameter sent in text format ([`TextParam`]), so Postgres
//!   infers its type from the context exactly as it would for an untyped literal;
//! * every identifier is checked against the [`SchemaCache`] and then double-quoted with
//!   embedded `"` doubled ([`quote_ident`]); aliases and JSON keys, which are free-form,
//!   are quoted the same way or emitted as escaped string literals ([`quote_literal`]);
//! * cast targets are validated by the parser to be plain type names.
//!
//! Responses are built in SQL (`json_agg`), so numeric values keep their exact text.

use std::collections::HashSet;
use std::error::Error as StdError;

use bytes::BytesMut;
use http::StatusCode;
use tokio_postgres::types::{Format, IsNull, ToSql, Type};

use super::error::RestError;
use super::parse::{
    AggFunc, Direction, Field, Filter, IsValue, JoinType, Logic, Nulls, Op, Operand, OrderTerm,
    Quantifier, Query, SelectItem,
};
use super::schema::{QualifiedName, Relationship, RelationshipKind, SchemaCache, Table};

/// A query parameter sent to Postgres in text format; the server infers its type.
#[derive(Debug, Clone)]
pub(crate) struct TextParam(pub(crate) Option<String>);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match &self.0 {
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}

pub(crate) use crate::db::{quote_ident, quote_literal};

/// `"schema"."name"`.
pub(crate) fn quote_qualified(q: &QualifiedName) -> String {
    format!("{}.{}", quote_ident(&q.schema), quote_ident(&q.name))
}

fn is_text_type(ty: &str) -> bool {
    matches!(
        ty,
        "text" | "character varying" | "character" | "\"char\"" | "name" | "citext"
    ) || ty.ends_with(".citext")
}

/// Builds a Postgres array literal (`{"a","b"}`) from items.
pub(crate) fn array_literal(items: &[String]) -> String {
    let mut s = String::from("{");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for c in it.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// A column of a relation as the planner sees it.
#[derive(Debug, Clone)]
pub(crate) struct ColInfo {
    pub(crate) name: String,
    pub(crate) ty: String,
}

/// A relation to select from: a table/view, a CTE with a table's row type, or a
/// function call.
#[derive(Debug, Clone)]
pub(crate) struct RelInfo {
    /// Name used in error messages and to look relationships up.
    pub(crate) qname: QualifiedName,
    pub(crate) columns: Vec<ColInfo>,
    /// SQL placed after `FROM` (before ` AS alias`).
    pub(crate) from_sql: String,
}

impl RelInfo {
    pub(crate) fn table(t: &Table) -> RelInfo {
        RelInfo {
            qname: t.name.clone(),
            columns: t
                .columns
                .iter()
                .map(|c| ColInfo {
                    name: c.name.clone(),
                    ty: c.pg_type.clone(),
                })
                .collect(),
            from_sql: quote_qualified(&t.name),
        }
    }

    fn column(&self, name: &str) -> Option<&ColInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The pieces of one `SELECT`.
#[derive(Debug, Default)]
pub(crate) struct SelectParts {
    pub(crate) cols: Vec<String>,
    pub(crate) names: Vec<String>,
    pub(crate) joins: Vec<String>,
    pub(crate) conds: Vec<String>,
    pub(crate) order: Vec<String>,
    pub(crate) limit: Option<i64>,
    pub(crate) offset: Option<i64>,
    /// Set when `count()` is selected: the plain columns become the GROUP BY.
    pub(crate) group_by: Option<Vec<String>>,
}

impl SelectParts {
    /// `FROM ... joins WHERE ...` (shared by the page query and the count query).
    pub(crate) fn source_and_filters(&self, from_sql: &str, alias: &str) -> String {
        let mut s = format!(" FROM {from_sql} AS {alias}");
        for j in &self.joins {
            s.push(' ');
            s.push_str(j);
        }
        if !self.conds.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&self.conds.join(" AND "));
        }
        s
    }

    /// The full `SELECT` text.
    pub(crate) fn render(&self, from_sql: &str, alias: &str, paginate: bool) -> String {
        let cols = if self.cols.is_empty() {
            "NULL::int AS \"_pgrst_empty\"".to_owned()
        } else {
            self.cols.join(", ")
        };
        let mut s = format!("SELECT {cols}{}", self.source_and_filters(from_sql, alias));
        if let Some(g) = &self.group_by
            && !g.is_empty()
        {
            s.push_str(" GROUP BY ");
            s.push_str(&g.join(", "));
        }
        if !self.order.is_empty() {
            s.push_str(" ORDER BY ");
            s.push_str(&self.order.join(", "));
        }
        if paginate {
            if let Some(l) = self.limit {
                s.push_str(&format!(" LIMIT {l}"));
            }
            if let Some(o) = self.offset
                && o > 0
            {
                s.push_str(&format!(" OFFSET {o}"));
            }
        }
        s
    }
}

/// Information about an embed that the parent needs for `embed=is.null` filters and
/// `order=embed(col)`.
struct EmbedRef {
    name: String,
    lateral: String,
    spread: bool,
    to_one: bool,
    /// What the parent groups by when it aggregates: the spread columns, or the
    /// embedded JSON as text (json has no equality operator).
    group_exprs: Vec<String>,
    /// For a non-spread embed: its position in the parent's columns and the column to
    /// use instead when the parent aggregates (the JSON rebuilt from the grouped text).
    grouped_col: Option<(usize, String)>,
}

/// SQL builder state for one request.
pub(crate) struct Builder<'a> {
    pub(crate) cache: &'a SchemaCache,
    pub(crate) query: &'a Query,
    /// Filters (from `or`/`and` and plain params) with their embed path.
    pub(crate) logic: Vec<(Vec<String>, Logic)>,
    pub(crate) params: Vec<TextParam>,
    /// Do not apply root filters (they were applied by the mutation itself).
    pub(crate) skip_root_filters: bool,
    /// Do not apply the root `limit`/`offset` (a limited PATCH/DELETE already used them
    /// to pick the rows; the representation shows every changed row).
    pub(crate) skip_root_paging: bool,
    next_alias: usize,
    visited: HashSet<Vec<String>>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(
        cache: &'a SchemaCache,
        query: &'a Query,
        logic: Vec<(Vec<String>, Logic)>,
    ) -> Self {
        Builder {
            cache,
            query,
            logic,
            params: Vec::new(),
            skip_root_filters: false,
            skip_root_paging: false,
            next_alias: 0,
            visited: HashSet::new(),
        }
    }

    /// Adds a parameter and returns its placeholder.
    pub(crate) fn param(&mut self, v: Option<String>) -> String {
        self.params.push(TextParam(v));
        format!("${}", self.params.len())
    }

    pub(crate) fn alias(&mut self) -> String {
        let a = format!("_t{}", self.next_alias);
        self.next_alias += 1;
        a
    }

    /// Fails with PGRST108 when a filter/order/limit targets an embed path that is not in
    /// `select`.
    pub(crate) fn check_paths(&self) -> Result<(), RestError> {
        let q = self.query;
        let paths = self
            .logic
            .iter()
            .map(|(p, _)| p)
            .chain(q.order.iter().map(|(p, _)| p))
            .chain(q.limit.iter().map(|(p, _)| p))
            .chain(q.offset.iter().map(|(p, _)| p));
        for p in paths {
            if !p.is_empty() && !self.visited.contains(p) {
                return Err(RestError::new(
                    StatusCode::BAD_REQUEST,
                    "PGRST108",
                    format!(
                        "'{}' is not an embedded resource in this request",
                        p.join(".")
                    ),
                )
                .with_hint(format!(
                    "Verify that '{}' is included in the 'select' query parameter.",
                    p.join(".")
                )));
            }
        }
        Ok(())
    }

    /// SQL of a column (with its JSON path) of `rel` aliased `alias`; 42703 when unknown.
    pub(crate) fn column_sql(
        &self,
        rel: &RelInfo,
        alias: &str,
        field: &Field,
    ) -> Result<String, RestError> {
        Ok(self.field_expr(rel, alias, field)?.0)
    }

    /// Column expression for `field` on `alias`: (sql, is_text, base type).
    fn field_expr(
        &self,
        rel: &RelInfo,
        alias: &str,
        field: &Field,
    ) -> Result<(String, bool, String), RestError> {
        let col = rel
            .column(&field.name)
            .ok_or_else(|| RestError::unknown_column(&rel.qname.name, &field.name))?;
        let mut sql = format!("{alias}.{}", quote_ident(&col.name));
        let mut is_text = is_text_type(&col.ty);
        for step in &field.json_path {
            let key = if let Ok(i) = step.key.parse::<i64>() {
                format!("({i})")
            } else {
                quote_literal(&step.key)
            };
            sql = format!("{sql}{}{key}", if step.as_text { "->>" } else { "->" });
            is_text = step.as_text;
        }
        let ty = if field.json_path.is_empty() {
            col.ty.clone()
        } else if is_text {
            "text".to_owned()
        } else {
            "jsonb".to_owned()
        };
        Ok((sql, is_text, ty))
    }

    /// Builds the `SELECT` pieces for `rel` (aliased `alias`) at embed `path`.
    pub(crate) fn build_select(
        &mut self,
        rel: &RelInfo,
        alias: &str,
        items: &[SelectItem],
        path: &[String],
    ) -> Result<SelectParts, RestError> {
        self.visited.insert(path.to_vec());
        let mut parts = SelectParts::default();
        let mut embeds: Vec<EmbedRef> = Vec::new();
        let mut plain_exprs: Vec<String> = Vec::new();
        for item in items {
            if is_count(rel, item) {
                let name = match item {
                    SelectItem::Field { alias: Some(a), .. } => a.clone(),
                    _ => "count".to_owned(),
                };
                parts
                    .cols
                    .push(format!("count(*) AS {}", quote_ident(&name)));
                parts.names.push(name);
                parts.group_by = Some(Vec::new());
                continue;
            }
            match item {
                SelectItem::Aggregate {
                    alias: out,
                    func,
                    field,
                    input_cast,
                    output_cast,
                } => {
                    let arg = match field {
                        Some(f) => {
                            let sql = self.field_expr(rel, alias, f)?.0;
                            match input_cast {
                                Some(c) => format!("({sql})::{c}"),
                                None => sql,
                            }
                        }
                        None => "*".to_owned(),
                    };
                    let mut expr = format!("{}({arg})", func.name());
                    if let Some(c) = output_cast {
                        expr = format!("({expr})::{c}");
                    }
                    let name = out.clone().unwrap_or_else(|| func.name().to_owned());
                    parts.cols.push(format!("{expr} AS {}", quote_ident(&name)));
                    parts.names.push(name);
                    parts.group_by.get_or_insert_with(Vec::new);
                }
                SelectItem::Star => {
                    for c in &rel.columns {
                        let q = quote_ident(&c.name);
                        parts.cols.push(format!("{alias}.{q} AS {q}"));
                        plain_exprs.push(format!("{alias}.{q}"));
                        parts.names.push(c.name.clone());
                    }
                }
                SelectItem::Field {
                    alias: out,
                    field,
                    cast,
                } => {
                    let (mut sql, _, _) = self.field_expr(rel, alias, field)?;
                    if let Some(c) = cast {
                        sql = format!("({sql})::{c}");
                    }
                    let name = out
                        .clone()
                        .unwrap_or_else(|| field.output_name().to_owned());
                    parts.cols.push(format!("{sql} AS {}", quote_ident(&name)));
                    plain_exprs.push(sql);
                    parts.names.push(name);
                }
                SelectItem::Embed {
                    alias: out,
                    target,
                    hint,
                    join,
                    spread,
                    select,
                } => {
                    let name = out.clone().unwrap_or_else(|| target.clone());
                    let mut child_path = path.to_vec();
                    child_path.push(name.clone());
                    let rel_info =
                        self.resolve_relationship(&rel.qname, target, hint.as_deref())?;
                    let e = self.build_embed(
                        &mut parts,
                        alias,
                        &rel_info,
                        &name,
                        join.unwrap_or(JoinType::Left) == JoinType::Inner,
                        *spread,
                        select,
                        &child_path,
                    )?;
                    embeds.push(e);
                }
            }
        }

        // Aggregates group by every other selected column, embedded resources included.
        if let Some(g) = &mut parts.group_by {
            g.extend(plain_exprs);
            for e in &embeds {
                g.extend(e.group_exprs.iter().cloned());
                if let Some((i, col)) = &e.grouped_col
                    && let Some(slot) = parts.cols.get_mut(*i)
                {
                    slot.clone_from(col);
                }
            }
        }
        // filters
        let mine: Vec<Logic> = self
            .logic
            .iter()
            .filter(|(p, _)| p.as_slice() == path && !(path.is_empty() && self.skip_root_filters))
            .map(|(_, l)| l.clone())
            .collect();
        for l in &mine {
            let c = self.logic_sql(rel, alias, l, &embeds)?;
            parts.conds.push(c);
        }
        // order
        let orders: Vec<OrderTerm> = self
            .query
            .order
            .iter()
            .filter(|(p, _)| p.as_slice() == path)
            .flat_map(|(_, t)| t.iter().cloned())
            .collect();
        for t in &orders {
            parts.order.push(self.order_sql(rel, alias, t, &embeds)?);
        }
        if !(path.is_empty() && self.skip_root_paging) {
            parts.limit = self
                .query
                .limit
                .iter()
                .rev()
                .find(|(p, _)| p.as_slice() == path)
                .map(|(_, l)| *l);
            parts.offset = self
                .query
                .offset
                .iter()
                .rev()
                .find(|(p, _)| p.as_slice() == path)
                .map(|(_, l)| *l);
        }
        Ok(parts)
    }

    fn order_sql(
        &self,
        rel: &RelInfo,
        alias: &str,
        t: &OrderTerm,
        embeds: &[EmbedRef],
    ) -> Result<String, RestError> {
        let expr = match &t.relation {
            Some(r) => {
                let e = embeds
                    .iter()
                    .find(|e| &e.name == r && e.to_one)
                    .ok_or_else(|| {
                        RestError::new(
                            StatusCode::BAD_REQUEST,
                            "PGRST118",
                            format!("A related order on '{r}' is not possible"),
                        )
                        .with_details(format!(
                            "'{r}' must be a to-one embedded resource in 'select'"
                        ))
                    })?;
                if !t.field.json_path.is_empty() {
                    return Err(RestError::parse(
                        "Failed to parse order",
                        "JSON paths are not supported in related orders",
                    ));
                }
                if e.spread {
                    format!("{}.{}", e.lateral, quote_ident(&t.field.name))
                } else {
                    format!(
                        "(({}._j)::jsonb -> {})",
                        e.lateral,
                        quote_literal(&t.field.name)
                    )
                }
            }
            None => self.field_expr(rel, alias, &t.field)?.0,
        };
        let mut s = expr;
        match t.direction {
            Some(Direction::Desc) => s.push_str(" DESC"),
            Some(Direction::Asc) => s.push_str(" ASC"),
            None => {}
        }
        match t.nulls {
            Some(Nulls::First) => s.push_str(" NULLS FIRST"),
            Some(Nulls::Last) => s.push_str(" NULLS LAST"),
            None => {}
        }
        Ok(s)
    }

    fn logic_sql(
        &mut self,
        rel: &RelInfo,
        alias: &str,
        l: &Logic,
        embeds: &[EmbedRef],
    ) -> Result<String, RestError> {
        match l {
            Logic::Filter(f) => self.filter_sql(rel, alias, f, embeds),
            Logic::Tree {
                or,
                negate,
                children,
            } => {
                let mut parts = Vec::with_capacity(children.len());
                for c in children {
                    parts.push(self.logic_sql(rel, alias, c, embeds)?);
                }
                let joined = parts.join(if *or { " OR " } else { " AND " });
                Ok(if *negate {
                    format!("NOT ({joined})")
                } else {
                    format!("({joined})")
                })
            }
        }
    }

    fn filter_sql(
        &mut self,
        rel: &RelInfo,
        alias: &str,
        f: &Filter,
        embeds: &[EmbedRef],
    ) -> Result<String, RestError> {
        // `embed=is.null` / `embed=not.is.null` on an embedded resource
        if f.field.json_path.is_empty()
            && rel.column(&f.field.name).is_none()
            && let Some(e) = embeds.iter().find(|e| e.name == f.field.name)
        {
            let Operand::Is(v @ (IsValue::Null | IsValue::NotNull)) = f.operand else {
                return Err(RestError::parse(
                    "Failed to parse filter",
                    "Only 'is.null' and 'not.is.null' are supported on embedded resources",
                ));
            };
            let target = if e.spread {
                format!("{}.\"_pgrst_present\"", e.lateral)
            } else {
                format!("{}._j", e.lateral)
            };
            let mut is_null = v == IsValue::Null;
            if f.negate {
                is_null = !is_null;
            }
            return Ok(format!(
                "{target} IS {}NULL",
                if is_null { "" } else { "NOT " }
            ));
        }
        let (lhs, is_text, ty) = self.field_expr(rel, alias, &f.field)?;
        let text_lhs = if is_text {
            lhs.clone()
        } else {
            format!("({lhs})::text")
        };
        let expr = match (&f.operand, f.quantifier) {
            (Operand::Is(v), _) => {
                let rhs = match v {
                    IsValue::Null => "NULL",
                    IsValue::NotNull => "NOT NULL",
                    IsValue::True => "TRUE",
                    IsValue::False => "FALSE",
                    IsValue::Unknown => "UNKNOWN",
                };
                format!("{lhs} IS {rhs}")
            }
            (Operand::List(items), None) => {
                // in.(...)
                let p = self.param(Some(array_literal(items)));
                format!("{lhs} = ANY({p})")
            }
            (Operand::List(items), Some(q)) => {
                let quant = if q == Quantifier::Any { "ANY" } else { "ALL" };
                let (op, is_pattern) = comparison(f.op)?;
                let items: Vec<String> = if matches!(f.op, Op::Like | Op::Ilike) {
                    items.iter().map(|s| s.replace('*', "%")).collect()
                } else {
                    items.clone()
                };
                let p = self.param(Some(array_literal(&items)));
                let l = if is_pattern { &text_lhs } else { &lhs };
                format!("{l} {op} {quant}({p})")
            }
            (Operand::Value(v), _) => match f.op {
                Op::Fts | Op::Plfts | Op::Phfts | Op::Wfts => {
                    let func = match f.op {
                        Op::Fts => "to_tsquery",
                        Op::Plfts => "plainto_tsquery",
                        Op::Phfts => "phraseto_tsquery",
                        _ => "websearch_to_tsquery",
                    };
                    let lang = f.language.clone();
                    let vector = if ty == "tsvector" {
                        lhs.clone()
                    } else if let Some(l) = &lang {
                        let p = self.param(Some(l.clone()));
                        format!("to_tsvector({p}::regconfig, {text_lhs})")
                    } else {
                        format!("to_tsvector({text_lhs})")
                    };
                    let query = match &lang {
                        Some(l) => {
                            let pl = self.param(Some(l.clone()));
                            let pv = self.param(Some(v.clone()));
                            format!("{func}({pl}::regconfig, {pv})")
                        }
                        None => {
                            let pv = self.param(Some(v.clone()));
                            format!("{func}({pv})")
                        }
                    };
                    format!("{vector} @@ {query}")
                }
                Op::IsDistinct => {
                    let p = self.param(Some(v.clone()));
                    format!("{lhs} IS DISTINCT FROM {p}")
                }
                Op::Like | Op::Ilike => {
                    let p = self.param(Some(v.replace('*', "%")));
                    let op = if f.op == Op::Like { "LIKE" } else { "ILIKE" };
                    format!("{text_lhs} {op} {p}")
                }
                Op::Match | Op::Imatch => {
                    let p = self.param(Some(v.clone()));
                    let op = if f.op == Op::Match { "~" } else { "~*" };
                    format!("{text_lhs} {op} {p}")
                }
                op => {
                    let sql_op = match op {
                        Op::Cs => "@>",
                        Op::Cd => "<@",
                        Op::Ov => "&&",
                        Op::Sl => "<<",
                        Op::Sr => ">>",
                        Op::Nxr => "&<",
                        Op::Nxl => "&>",
                        Op::Adj => "-|-",
                        other => comparison(other)?.0,
                    };
                    let p = self.param(Some(v.clone()));
                    format!("{lhs} {sql_op} {p}")
                }
            },
        };
        Ok(if f.negate {
            format!("NOT ({expr})")
        } else {
            expr
        })
    }

    /// Picks the relationship for `target!hint` from `source`.
    fn resolve_relationship(
        &self,
        source: &QualifiedName,
        target: &str,
        hint: Option<&str>,
    ) -> Result<Relationship, RestError> {
        let all = self.cache.relationships(source, target);
        let found: Vec<Relationship> = match hint {
            Some(h) => {
                let mut m: Vec<Relationship> =
                    all.into_iter().filter(|r| r.matches_hint(h)).collect();
                // Self-referencing FK hinted by its column (`people!manager_id`): both the
                // many-to-one (parent) and one-to-many (children) match; the column names
                // the parent, as in `boss:people!manager_id(*)`.
                if m.len() == 2 && m.iter().all(|r| &r.target == source) {
                    m.retain(|r| {
                        r.kind == RelationshipKind::ManyToOne
                            && r.source_columns.len() == 1
                            && r.source_columns[0] == h
                    });
                }
                m
            }
            None => all,
        };
        match found.len() {
            1 => Ok(found.into_iter().next().ok_or_else(|| RestError::internal("relationship"))?),
            0 => Err(RestError::new(
                StatusCode::BAD_REQUEST,
                "PGRST200",
                format!(
                    "Could not find a relationship between '{}' and '{}' in the schema cache",
                    source.name, target
                ),
            )
            .with_details(format!(
                "Searched for a foreign key relationship between '{}' and '{}'{} in the schema '{}', but no matches were found.",
                source.name,
                target,
                hint.map(|h| format!(" using the hint '{h}'")).unwrap_or_default(),
                source.schema
            ))
            .with_hint("If a new foreign key between these entities was created in the database, try reloading the schema cache.")),
            _ => {
                let details: Vec<serde_json::Value> = found
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "cardinality": r.kind.label(),
                            "embedding": format!("{} with {}", source.name, r.target.name),
                            "relationship": match &r.junction {
                                Some(j) => format!("{} using {} and {}", quote_qualified(&j.table), j.source_constraint, j.target_constraint),
                                None => format!("{} using {}({}) and {}({})", r.constraint, source.name, r.source_columns.join(", "), r.target.name, r.target_columns.join(", ")),
                            },
                        })
                    })
                    .collect();
                let options: Vec<String> = found
                    .iter()
                    .map(|r| match &r.junction {
                        Some(j) => format!("'{target}!{}'", j.table.name),
                        None => format!("'{target}!{}'", r.constraint),
                    })
                    .collect();
                Err(RestError::new(
                    StatusCode::MULTIPLE_CHOICES,
                    "PGRST201",
                    format!(
                        "Could not embed because more than one relationship was found for '{}' and '{}'",
                        source.name, target
                    ),
                )
                .with_details(serde_json::Value::Array(details).to_string())
                .with_hint(format!(
                    "Try changing '{target}' to one of the following: {}. Find the desired relationship in the 'details' key.",
                    options.join(", ")
                )))
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the embedding grammar: every part is needed"
    )]
    fn build_embed(
        &mut self,
        parent: &mut SelectParts,
        parent_alias: &str,
        rel: &Relationship,
        name: &str,
        inner: bool,
        spread: bool,
        select: &[SelectItem],
        child_path: &[String],
    ) -> Result<EmbedRef, RestError> {
        let target = self
            .cache
            .tables
            .get(&rel.target)
            .ok_or_else(|| RestError::unknown_table(&rel.target.schema, &rel.target.name))?;
        let child_rel = RelInfo::table(target);
        let ca = self.alias();
        let default_select = [SelectItem::Star];
        let items = if select.is_empty() && !spread {
            &default_select[..]
        } else {
            select
        };
        // A spread's aggregates apply at the parent's level (as in PostgREST): the child
        // only selects their inputs, under a private name.
        let mut hoisted: Vec<Hoisted> = Vec::new();
        let rewritten: Vec<SelectItem>;
        let items = if spread {
            rewritten = items
                .iter()
                .enumerate()
                .filter_map(|(i, it)| match it {
                    SelectItem::Aggregate {
                        alias: out,
                        func,
                        field,
                        input_cast,
                        output_cast,
                    } => {
                        let input = format!("_pgrst_agg_{i}");
                        hoisted.push(Hoisted {
                            input: field.as_ref().map(|_| input.clone()),
                            func: *func,
                            output_cast: output_cast.clone(),
                            name: out.clone().unwrap_or_else(|| func.name().to_owned()),
                        });
                        field.as_ref().map(|f| SelectItem::Field {
                            alias: Some(input),
                            field: f.clone(),
                            cast: input_cast.clone(),
                        })
                    }
                    other => Some(other.clone()),
                })
                .collect();
            &rewritten[..]
        } else {
            items
        };
        let mut child = self.build_select(&child_rel, &ca, items, child_path)?;
        let mut from = child_rel.from_sql.clone();
        let mut join_conds = Vec::new();
        match &rel.junction {
            // computed relationship: the function of the parent's row gives the rows
            None if rel.function.is_some() => {
                if let Some((f, arg)) = &rel.function {
                    from = format!(
                        "{}({parent_alias}::{})",
                        quote_qualified(f),
                        quote_qualified(arg)
                    );
                }
            }
            None => {
                for (s, t) in rel.source_columns.iter().zip(&rel.target_columns) {
                    join_conds.push(format!(
                        "{ca}.{} = {parent_alias}.{}",
                        quote_ident(t),
                        quote_ident(s)
                    ));
                }
            }
            Some(j) => {
                let ja = format!("{ca}_j");
                let mut on = Vec::new();
                for (jc, tc) in j.target_columns.iter().zip(&rel.target_columns) {
                    on.push(format!(
                        "{ja}.{} = {ca}.{}",
                        quote_ident(jc),
                        quote_ident(tc)
                    ));
                }
                from = format!(
                    "{} AS {ja} JOIN {from} AS {ca} ON {}",
                    quote_qualified(&j.table),
                    on.join(" AND ")
                );
                for (jc, sc) in j.source_columns.iter().zip(&rel.source_columns) {
                    join_conds.push(format!(
                        "{ja}.{} = {parent_alias}.{}",
                        quote_ident(jc),
                        quote_ident(sc)
                    ));
                }
            }
        }
        join_conds.append(&mut child.conds);
        child.conds = join_conds;
        let lateral = format!("{ca}_l");
        let to_one = rel.kind.is_to_one();
        let mut group_exprs = Vec::new();
        let mut grouped_col = None;
        if spread {
            if !to_one {
                return Err(RestError::new(
                    StatusCode::BAD_REQUEST,
                    "PGRST119",
                    format!("A spread operation on '{name}' is not possible"),
                )
                .with_details("'...' can only be used on to-one relationships"));
            }
            child.cols.push("1 AS \"_pgrst_present\"".to_owned());
            // a JOIN in FROM for m2m would break "FROM x AS alias": m2m is never to-one
            let sql = child.render(&from, &ca, true);
            parent.joins.push(format!(
                "LEFT JOIN LATERAL (SELECT * FROM ({sql}) AS _e LIMIT 1) AS {lateral} ON TRUE"
            ));
            let aggregate = |h: &Hoisted| {
                let arg = match &h.input {
                    Some(i) => format!("{lateral}.{}", quote_ident(i)),
                    None => format!("{lateral}.\"_pgrst_present\""),
                };
                let mut expr = format!("{}({arg})", h.func.name());
                if let Some(c) = &h.output_cast {
                    expr = format!("({expr})::{c}");
                }
                format!("{expr} AS {}", quote_ident(&h.name))
            };
            for n in &child.names {
                if let Some(h) = hoisted.iter().find(|h| h.input.as_ref() == Some(n)) {
                    parent.cols.push(aggregate(h));
                    parent.names.push(h.name.clone());
                    continue;
                }
                let q = quote_ident(n);
                parent.cols.push(format!("{lateral}.{q} AS {q}"));
                parent.names.push(n.clone());
                group_exprs.push(format!("{lateral}.{q}"));
            }
            for h in hoisted.iter().filter(|h| h.input.is_none()) {
                parent.cols.push(aggregate(h));
                parent.names.push(h.name.clone());
            }
            if !hoisted.is_empty() {
                parent.group_by.get_or_insert_with(Vec::new);
            }
            if inner {
                parent
                    .conds
                    .push(format!("{lateral}.\"_pgrst_present\" IS NOT NULL"));
            }
        } else {
            let sql = render_from(&child, &from, &ca, rel.junction.is_some());
            let json = if to_one {
                format!("{lateral}._j")
            } else {
                format!("coalesce({lateral}._j, '[]')")
            };
            group_exprs.push(format!("({json})::text"));
            grouped_col = Some((
                parent.cols.len(),
                format!("(({json})::text)::json AS {}", quote_ident(name)),
            ));
            if to_one {
                parent.joins.push(format!(
                    "LEFT JOIN LATERAL (SELECT row_to_json(_e) AS _j FROM ({sql}) AS _e LIMIT 1) AS {lateral} ON TRUE"
                ));
                parent
                    .cols
                    .push(format!("{lateral}._j AS {}", quote_ident(name)));
            } else {
                parent.joins.push(format!(
                    "LEFT JOIN LATERAL (SELECT json_agg(_e) AS _j FROM ({sql}) AS _e) AS {lateral} ON TRUE"
                ));
                parent.cols.push(format!(
                    "coalesce({lateral}._j, '[]') AS {}",
                    quote_ident(name)
                ));
            }
            parent.names.push(name.to_owned());
            if inner {
                parent.conds.push(format!("{lateral}._j IS NOT NULL"));
            }
        }
        Ok(EmbedRef {
            name: name.to_owned(),
            lateral,
            spread,
            to_one,
            group_exprs,
            grouped_col,
        })
    }
}

/// An aggregate of a spread embed, computed by the parent over the embed's column.
struct Hoisted {
    /// The child's column holding the input (`None` for `count()`).
    input: Option<String>,
    func: AggFunc,
    output_cast: Option<String>,
    /// Output name.
    name: String,
}

/// A bare `count` when the relation has no such column (PostgREST's legacy spelling of
/// `count()`).
fn is_count(rel: &RelInfo, item: &SelectItem) -> bool {
    match item {
        SelectItem::Field {
            field, cast: None, ..
        } => field.name == "count" && field.json_path.is_empty() && rel.column("count").is_none(),
        _ => false,
    }
}

/// Renders a child select; for m2m the FROM already contains `junction AS x JOIN t AS alias`.
fn render_from(child: &SelectParts, from: &str, alias: &str, joined: bool) -> String {
    if !joined {
        return child.render(from, alias, true);
    }
    // FROM already carries the alias of the target: render by hand.
    let cols = if child.cols.is_empty() {
        "NULL::int AS \"_pgrst_empty\"".to_owned()
    } else {
        child.cols.join(", ")
    };
    let mut s = format!("SELECT {cols} FROM {from}");
    for j in &child.joins {
        s.push(' ');
        s.push_str(j);
    }
    if !child.conds.is_empty() {
        s.push_str(" WHERE ");
        s.push_str(&child.conds.join(" AND "));
    }
    if let Some(g) = &child.group_by
        && !g.is_empty()
    {
        s.push_str(" GROUP BY ");
        s.push_str(&g.join(", "));
    }
    if !child.order.is_empty() {
        s.push_str(" ORDER BY ");
        s.push_str(&child.order.join(", "));
    }
    if let Some(l) = child.limit {
        s.push_str(&format!(" LIMIT {l}"));
    }
    if let Some(o) = child.offset {
        s.push_str(&format!(" OFFSET {o}"));
    }
    s
}

/// SQL operator for a comparison, and whether it is a text pattern operator.
fn comparison(op: Op) -> Result<(&'static str, bool), RestError> {
    Ok(match op {
        Op::Eq => ("=", false),
        Op::Neq => ("<>", false),
        Op::Gt => (">", false),
        Op::Gte => (">=", false),
        Op::Lt => ("<", false),
        Op::Lte => ("<=", false),
        Op::Like => ("LIKE", true),
        Op::Ilike => ("ILIKE", true),
        Op::Match => ("~", true),
        Op::Imatch => ("~*", true),
        _ => {
            return Err(RestError::parse(
                "Failed to parse filter",
                "Operator does not take a list",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(
            array_literal(&["a".into(), "b,\"c\\".into()]),
            "{\"a\",\"b,\\\"c\\\\\"}"
        );
    }
}
