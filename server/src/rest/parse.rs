//! The PostgREST query-string grammar: `select`, filters, `or`/`and`/`not`, `order`,
//! `limit`/`offset` (also on embedded resources), `columns` and `on_conflict`.
//!
//! Parsing is purely syntactic: identifiers are checked against the schema cache later,
//! in the planner. Every function here returns `Err` (PGRST100) on malformed input and
//! never panics.

use super::error::RestError;

/// One step of a JSON path: `->key` or `->>key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonStep {
    /// `->>` (text) rather than `->` (json).
    pub(crate) as_text: bool,
    pub(crate) key: String,
}

/// A column reference, possibly followed by a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) json_path: Vec<JsonStep>,
}

impl Field {
    /// Name of the output column PostgREST uses for this field (last JSON key or column).
    pub(crate) fn output_name(&self) -> &str {
        self.json_path
            .last()
            .map_or(self.name.as_str(), |s| s.key.as_str())
    }
}

/// Join type of an embedded resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinType {
    Left,
    Inner,
}

/// An aggregate function of `select=` (PostgREST 12): `amount.sum()`, `count()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggFunc {
    Sum,
    Avg,
    Min,
    Max,
    Count,
}

impl AggFunc {
    fn from_name(s: &str) -> Option<AggFunc> {
        Some(match s {
            "sum" => AggFunc::Sum,
            "avg" => AggFunc::Avg,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "count" => AggFunc::Count,
            _ => return None,
        })
    }

    /// The SQL function name, which is also the default output name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AggFunc::Sum => "sum",
            AggFunc::Avg => "avg",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Count => "count",
        }
    }
}

/// An item of `select=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SelectItem {
    Star,
    /// `[alias:]field[::cast].func()[::cast]`, or `count()` without a field.
    Aggregate {
        alias: Option<String>,
        func: AggFunc,
        /// `None` only for `count()`.
        field: Option<Field>,
        /// Cast of the input value (`amount::numeric.sum()`).
        input_cast: Option<String>,
        /// Cast of the result (`amount.avg()::int`).
        output_cast: Option<String>,
    },
    Field {
        alias: Option<String>,
        field: Field,
        cast: Option<String>,
    },
    Embed {
        alias: Option<String>,
        target: String,
        hint: Option<String>,
        join: Option<JoinType>,
        spread: bool,
        select: Vec<SelectItem>,
    },
}

/// Filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Match,
    Imatch,
    In,
    Is,
    IsDistinct,
    Fts,
    Plfts,
    Phfts,
    Wfts,
    Cs,
    Cd,
    Ov,
    Sl,
    Sr,
    Nxr,
    Nxl,
    Adj,
}

impl Op {
    fn from_name(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "like" => Op::Like,
            "ilike" => Op::Ilike,
            "match" => Op::Match,
            "imatch" => Op::Imatch,
            "in" => Op::In,
            "is" => Op::Is,
            "isdistinct" => Op::IsDistinct,
            "fts" => Op::Fts,
            "plfts" => Op::Plfts,
            "phfts" => Op::Phfts,
            "wfts" => Op::Wfts,
            "cs" => Op::Cs,
            "cd" => Op::Cd,
            "ov" => Op::Ov,
            "sl" => Op::Sl,
            "sr" => Op::Sr,
            "nxr" => Op::Nxr,
            "nxl" => Op::Nxl,
            "adj" => Op::Adj,
            _ => return None,
        })
    }

    /// Operators that accept the `(any)` / `(all)` modifiers.
    fn quantifiable(self) -> bool {
        matches!(
            self,
            Op::Eq
                | Op::Neq
                | Op::Gt
                | Op::Gte
                | Op::Lt
                | Op::Lte
                | Op::Like
                | Op::Ilike
                | Op::Match
                | Op::Imatch
        )
    }

    fn is_fts(self) -> bool {
        matches!(self, Op::Fts | Op::Plfts | Op::Phfts | Op::Wfts)
    }
}

/// `(any)` / `(all)` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quantifier {
    Any,
    All,
}

/// Right-hand side of `is`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IsValue {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

/// Operand of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operand {
    /// A single value, passed to Postgres as text.
    Value(String),
    /// A list (`in.(a,b)`).
    List(Vec<String>),
    Is(IsValue),
}

/// `field=[not.]op[(modifier)].value`
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) field: Field,
    pub(crate) negate: bool,
    pub(crate) op: Op,
    pub(crate) quantifier: Option<Quantifier>,
    /// Text search configuration for `fts(english)`.
    pub(crate) language: Option<String>,
    pub(crate) operand: Operand,
}

/// A boolean tree of filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Logic {
    Filter(Filter),
    Tree {
        or: bool,
        negate: bool,
        children: Vec<Logic>,
    },
}

/// Ordering direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Asc,
    Desc,
}

/// NULLS FIRST/LAST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nulls {
    First,
    Last,
}

/// A term of `order=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderTerm {
    /// `relation(column)` ordering on a to-one embedded resource.
    pub(crate) relation: Option<String>,
    pub(crate) field: Field,
    pub(crate) direction: Option<Direction>,
    pub(crate) nulls: Option<Nulls>,
}

/// The parsed query string. Paths are embed paths (empty for the root resource).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) select: Option<Vec<SelectItem>>,
    pub(crate) columns: Option<Vec<String>>,
    pub(crate) on_conflict: Option<Vec<String>>,
    pub(crate) order: Vec<(Vec<String>, Vec<OrderTerm>)>,
    pub(crate) limit: Vec<(Vec<String>, i64)>,
    pub(crate) offset: Vec<(Vec<String>, i64)>,
    pub(crate) logic: Vec<(Vec<String>, Logic)>,
    /// Remaining `key=value` pairs: filters, or function arguments for `/rpc`.
    pub(crate) params: Vec<(String, String)>,
}

fn perr(msg: &str, details: impl Into<String>) -> RestError {
    RestError::parse(msg.to_owned(), details)
}

/// Decodes and splits a raw query string into parameters. `+` is a space, as with
/// `application/x-www-form-urlencoded` (what `URLSearchParams` produces).
pub(crate) fn parse_query(raw: &str) -> Result<Query, RestError> {
    let mut q = Query::default();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if key.contains('\0') || value.contains('\0') {
            return Err(perr(
                "Invalid query string",
                "NUL characters are not allowed",
            ));
        }
        let key = key.trim();
        let (path, last) = split_key(key);
        match last {
            "select" if path.is_empty() => q.select = Some(parse_select(&value)?),
            "columns" if path.is_empty() => q.columns = Some(parse_name_list(&value)?),
            "on_conflict" if path.is_empty() => q.on_conflict = Some(parse_name_list(&value)?),
            "order" => q.order.push((path, parse_order(&value)?)),
            "limit" => q.limit.push((path, parse_int(&value, "limit")?)),
            "offset" => q.offset.push((path, parse_int(&value, "offset")?)),
            "or" | "and" => {
                let (path, negate) = match path.split_last() {
                    Some((n, rest)) if n == "not" => (rest.to_vec(), true),
                    _ => (path, false),
                };
                let children = parse_logic_list(&value)?;
                q.logic.push((
                    path,
                    Logic::Tree {
                        or: last == "or",
                        negate,
                        children,
                    },
                ));
            }
            _ => q.params.push((key.to_owned(), value.into_owned())),
        }
    }
    Ok(q)
}

/// Splits `a.b.c` into (`[a, b]`, `c`), leaving JSON paths (`data->a.b`) intact.
fn split_key(key: &str) -> (Vec<String>, &str) {
    let head_end = key.find("->").unwrap_or(key.len());
    match key[..head_end].rfind('.') {
        Some(i) => (
            key[..i].split('.').map(str::to_owned).collect(),
            &key[i + 1..],
        ),
        None => (Vec::new(), key),
    }
}

/// Parses a filter parameter `key=value` into its embed path and filter.
pub(crate) fn parse_filter_param(
    key: &str,
    value: &str,
) -> Result<(Vec<String>, Filter), RestError> {
    let (path, last) = split_key(key);
    let field = parse_field(last)?;
    let filter = parse_filter_value(field, value)?;
    Ok((path, filter))
}

fn parse_int(v: &str, what: &str) -> Result<i64, RestError> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            perr(
                &format!("\"failed to parse {what} parameter ({v})\""),
                format!("{what} must be a non-negative integer"),
            )
        })
}

fn parse_name_list(v: &str) -> Result<Vec<String>, RestError> {
    let mut out = Vec::new();
    for part in split_top(v, ',')? {
        let name = unquote_ident(part.trim())?;
        if name.is_empty() {
            return Err(perr(
                "Failed to parse column list",
                format!("Empty column name in '{v}'"),
            ));
        }
        out.push(name);
    }
    Ok(out)
}

/// Removes surrounding double quotes from an identifier.
fn unquote_ident(s: &str) -> Result<String, RestError> {
    if let Some(inner) = s.strip_prefix('"') {
        let Some(inner) = inner.strip_suffix('"') else {
            return Err(perr("Unterminated quoted identifier", s.to_owned()));
        };
        Ok(inner.replace("\"\"", "\""))
    } else {
        Ok(s.to_owned())
    }
}

/// Splits at `sep` outside of parentheses, braces, brackets and double quotes.
fn split_top(s: &str, sep: char) -> Result<Vec<&str>, RestError> {
    let mut out = Vec::new();
    let mut depth: i32 = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => {
                depth -= 1;
                if depth < 0 {
                    return Err(perr("Unbalanced parentheses", s.to_owned()));
                }
            }
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth != 0 || in_quotes {
        return Err(perr("Unbalanced parentheses or quotes", s.to_owned()));
    }
    out.push(&s[start..]);
    Ok(out)
}

/// Index of the quote closing a `"..."` identifier that starts at 0 (`""` is an escaped quote).
fn closing_quote(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'"' {
            if b.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Parses `name->a->>b` (the name may be double-quoted).
pub(crate) fn parse_field(s: &str) -> Result<Field, RestError> {
    let s = s.trim();
    let (name, mut rest) = if s.starts_with('"') {
        let end =
            closing_quote(s).ok_or_else(|| perr("Unterminated quoted identifier", s.to_owned()))?;
        (s[1..end].replace("\"\"", "\""), &s[end + 1..])
    } else {
        let end = s.find("->").unwrap_or(s.len());
        (s[..end].to_owned(), &s[end..])
    };
    if name.is_empty() {
        return Err(perr("Empty column name", s.to_owned()));
    }
    if !s.starts_with('"') && name.contains(['(', ')', ',', '"']) {
        return Err(perr("Invalid column name", name));
    }
    let mut json_path = Vec::new();
    while !rest.is_empty() {
        let (as_text, after) = if let Some(r) = rest.strip_prefix("->>") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix("->") {
            (false, r)
        } else {
            return Err(perr("Invalid JSON path", s.to_owned()));
        };
        let end = after.find("->").unwrap_or(after.len());
        let key = unquote_ident(&after[..end])?;
        if key.is_empty() {
            return Err(perr("Empty JSON key", s.to_owned()));
        }
        json_path.push(JsonStep { as_text, key });
        rest = &after[end..];
    }
    Ok(Field { name, json_path })
}

/// Parses the value of a filter: `[not.]op[(mod)].operand`.
pub(crate) fn parse_filter_value(field: Field, value: &str) -> Result<Filter, RestError> {
    let (negate, rest) = match value.strip_prefix("not.") {
        Some(r) => (true, r),
        None => (false, value),
    };
    let op_end = rest.find(['.', '(']).ok_or_else(|| {
        perr(
            "Failed to parse filter",
            format!("Missing operator or value in '{value}'"),
        )
    })?;
    let op_name = &rest[..op_end];
    let op = Op::from_name(op_name).ok_or_else(|| {
        perr(
            "Unknown operator",
            format!("'{op_name}' is not a valid operator in '{value}'"),
        )
    })?;
    let mut after = &rest[op_end..];
    let mut quantifier = None;
    let mut language = None;
    if let Some(r) = after.strip_prefix('(') {
        let close = r.find(')').ok_or_else(|| {
            perr(
                "Failed to parse filter",
                format!("Unclosed modifier in '{value}'"),
            )
        })?;
        let modifier = &r[..close];
        if op.is_fts() {
            language = Some(modifier.to_owned());
        } else if op.quantifiable() {
            quantifier = Some(match modifier {
                "any" => Quantifier::Any,
                "all" => Quantifier::All,
                _ => {
                    return Err(perr(
                        "Failed to parse filter",
                        format!("Unknown modifier '{modifier}'"),
                    ));
                }
            });
        } else {
            return Err(perr(
                "Failed to parse filter",
                format!("Operator '{op_name}' takes no modifier"),
            ));
        }
        after = &r[close + 1..];
    }
    let operand = after.strip_prefix('.').ok_or_else(|| {
        perr(
            "Failed to parse filter",
            format!("Missing '.' after operator in '{value}'"),
        )
    })?;
    let operand = match op {
        Op::In => Operand::List(parse_in_list(operand)?),
        Op::Is => Operand::Is(match operand.to_ascii_lowercase().as_str() {
            "null" => IsValue::Null,
            "not_null" => IsValue::NotNull,
            "true" => IsValue::True,
            "false" => IsValue::False,
            "unknown" => IsValue::Unknown,
            _ => {
                return Err(perr(
                    "Failed to parse filter",
                    format!("'is' accepts null, not_null, true, false or unknown, not '{operand}'"),
                ));
            }
        }),
        _ if quantifier.is_some() => {
            let inner = operand
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .ok_or_else(|| {
                    perr(
                        "Failed to parse filter",
                        format!("Expected a list '{{a,b}}' in '{value}'"),
                    )
                })?;
            let items = if inner.is_empty() {
                Vec::new()
            } else {
                split_list_items(inner)?
            };
            Operand::List(items)
        }
        _ => Operand::Value(operand.to_owned()),
    };
    if let Some(lang) = &language
        && (lang.is_empty() || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(perr(
            "Failed to parse filter",
            format!("Invalid text search configuration '{lang}'"),
        ));
    }
    Ok(Filter {
        field,
        negate,
        op,
        quantifier,
        language,
        operand,
    })
}

/// `(a,b,"c,d")` -> `[a, b, "c,d"]`.
fn parse_in_list(s: &str) -> Result<Vec<String>, RestError> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| {
            perr(
                "Failed to parse filter",
                format!("'in' expects a list '(a,b)', got '{s}'"),
            )
        })?;
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    split_list_items(inner)
}

/// Splits list items at commas, honouring double quotes with backslash escapes.
fn split_list_items(inner: &str) -> Result<Vec<String>, RestError> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    let mut quoted_item = false;
    loop {
        match chars.next() {
            None => {
                items.push(finish_item(cur, quoted_item));
                break;
            }
            Some('"') if cur.trim().is_empty() && !quoted_item => {
                cur.clear();
                quoted_item = true;
                loop {
                    match chars.next() {
                        None => {
                            return Err(perr("Failed to parse list", "Unterminated quoted value"));
                        }
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err(perr("Failed to parse list", "Dangling escape")),
                        },
                        Some('"') => break,
                        Some(c) => cur.push(c),
                    }
                }
            }
            Some(',') => {
                items.push(finish_item(std::mem::take(&mut cur), quoted_item));
                quoted_item = false;
            }
            Some(c) => {
                if quoted_item {
                    if c.is_whitespace() {
                        continue;
                    }
                    return Err(perr(
                        "Failed to parse list",
                        "Unexpected text after a quoted value",
                    ));
                }
                cur.push(c);
            }
        }
    }
    Ok(items)
}

fn finish_item(s: String, quoted: bool) -> String {
    if quoted { s } else { s.trim().to_owned() }
}

/// Parses `(a.eq.1,and(b.gt.2,c.is.null))`.
pub(crate) fn parse_logic_list(value: &str) -> Result<Vec<Logic>, RestError> {
    let inner = value
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| {
            perr(
                "Failed to parse logic tree",
                format!("Expected '(...)', got '{value}'"),
            )
        })?;
    parse_logic_items(inner, 0)
}

fn parse_logic_items(inner: &str, depth: usize) -> Result<Vec<Logic>, RestError> {
    if depth > 32 {
        return Err(perr("Failed to parse logic tree", "Nesting too deep"));
    }
    let mut out = Vec::new();
    for item in split_top(inner, ',')? {
        let item = item.trim();
        if item.is_empty() {
            return Err(perr(
                "Failed to parse logic tree",
                format!("Empty condition in '({inner})'"),
            ));
        }
        // `not.` before a field belongs to the filter (`a.not.eq.1` is the usual form);
        // before `or(`/`and(` it negates the subtree.
        let (negate, body) = match item.strip_prefix("not.") {
            Some(r) if r.starts_with("or(") || r.starts_with("and(") => (true, r),
            _ => (false, item),
        };
        let tree = [("or(", true), ("and(", false)]
            .into_iter()
            .find_map(|(p, or)| body.strip_prefix(p).map(|r| (r, or)));
        if let Some((rest, or)) = tree {
            let children_src = rest.strip_suffix(')').ok_or_else(|| {
                perr(
                    "Failed to parse logic tree",
                    format!("Unclosed '(' in '{item}'"),
                )
            })?;
            out.push(Logic::Tree {
                or,
                negate,
                children: parse_logic_items(children_src, depth + 1)?,
            });
            continue;
        }
        // field.op.value ; the field may carry a JSON path, so split after it
        let field_end = find_field_end(item).ok_or_else(|| {
            perr(
                "Failed to parse logic tree",
                format!("Expected 'column.operator.value' in '{item}'"),
            )
        })?;
        let field = parse_field(&item[..field_end])?;
        out.push(Logic::Filter(parse_filter_value(
            field,
            &item[field_end + 1..],
        )?));
    }
    Ok(out)
}

/// Index of the `.` that ends the field in `field.op.value`.
fn find_field_end(item: &str) -> Option<usize> {
    if item.starts_with('"') {
        let end = closing_quote(item)?;
        return item[end..].find('.').map(|i| i + end);
    }
    // JSON path keys can't contain dots, so the first dot ends the field
    item.find('.')
}

/// Parses `col.desc.nullslast,other,rel(col).asc`.
pub(crate) fn parse_order(value: &str) -> Result<Vec<OrderTerm>, RestError> {
    let mut out = Vec::new();
    for term in split_top(value, ',')? {
        let term = term.trim();
        if term.is_empty() {
            return Err(perr(
                "\"failed to parse order\"",
                format!("Empty term in '{value}'"),
            ));
        }
        let (relation, rest) = match term.find('(') {
            Some(open) => {
                let close = term
                    .find(')')
                    .filter(|c| *c > open)
                    .ok_or_else(|| perr("\"failed to parse order\"", term.to_owned()))?;
                (
                    Some(term[..open].to_owned()),
                    format!("{}{}", &term[open + 1..close], &term[close + 1..]),
                )
            }
            None => (None, term.to_owned()),
        };
        let mut parts = rest.split('.');
        let field = parse_field(parts.next().unwrap_or(""))?;
        let mut direction = None;
        let mut nulls = None;
        for p in parts {
            match p {
                "asc" if direction.is_none() => direction = Some(Direction::Asc),
                "desc" if direction.is_none() => direction = Some(Direction::Desc),
                "nullsfirst" if nulls.is_none() => nulls = Some(Nulls::First),
                "nullslast" if nulls.is_none() => nulls = Some(Nulls::Last),
                _ => {
                    return Err(perr(
                        "\"failed to parse order\"",
                        format!(
                            "Unexpected '{p}' in '{term}': expected asc, desc, nullsfirst or nullslast"
                        ),
                    ));
                }
            }
        }
        out.push(OrderTerm {
            relation,
            field,
            direction,
            nulls,
        });
    }
    Ok(out)
}

/// Parses `select=`.
pub(crate) fn parse_select(value: &str) -> Result<Vec<SelectItem>, RestError> {
    parse_select_depth(value, 0)
}

fn parse_select_depth(value: &str, depth: usize) -> Result<Vec<SelectItem>, RestError> {
    if depth > 16 {
        return Err(perr(
            "\"failed to parse select parameter\"",
            "Embedding nested too deep",
        ));
    }
    let mut out = Vec::new();
    if value.trim().is_empty() {
        return Ok(out);
    }
    for item in split_top(value, ',')? {
        let item = item.trim();
        if item.is_empty() {
            return Err(perr(
                "\"failed to parse select parameter\"",
                format!("Empty item in '{value}'"),
            ));
        }
        if item == "*" {
            out.push(SelectItem::Star);
            continue;
        }
        let (spread, item) = match item.strip_prefix("...") {
            Some(r) => (true, r),
            None => (false, item),
        };
        // alias:rest (a "::" is a cast, not an alias)
        let (alias, rest) = match find_alias_colon(item) {
            Some(i) => (Some(unquote_ident(item[..i].trim())?), item[i + 1..].trim()),
            None => (None, item),
        };
        if let Some(a) = &alias
            && a.is_empty()
        {
            return Err(perr(
                "\"failed to parse select parameter\"",
                format!("Empty alias in '{item}'"),
            ));
        }
        if let Some(agg) = parse_aggregate(alias.clone(), rest)? {
            if spread {
                return Err(perr(
                    "\"failed to parse select parameter\"",
                    format!("'...' must precede an embedded resource in '{item}'"),
                ));
            }
            out.push(agg);
            continue;
        }
        if let Some(open) = rest.find('(')
            && !rest.starts_with('"')
        {
            let inner = rest[open + 1..].strip_suffix(')').ok_or_else(|| {
                perr(
                    "\"failed to parse select parameter\"",
                    format!("Unclosed '(' in '{item}'"),
                )
            })?;
            let head = &rest[..open];
            let mut segs = head.split('!');
            let target = segs.next().unwrap_or("").trim().to_owned();
            if target.is_empty() {
                return Err(perr(
                    "\"failed to parse select parameter\"",
                    format!("Missing relation in '{item}'"),
                ));
            }
            let mut hint = None;
            let mut join = None;
            for s in segs {
                match s {
                    "inner" => join = Some(JoinType::Inner),
                    "left" => join = Some(JoinType::Left),
                    "" => {
                        return Err(perr(
                            "\"failed to parse select parameter\"",
                            format!("Empty hint in '{item}'"),
                        ));
                    }
                    h if hint.is_none() => hint = Some(h.to_owned()),
                    _ => {
                        return Err(perr(
                            "\"failed to parse select parameter\"",
                            format!("Too many hints in '{item}'"),
                        ));
                    }
                }
            }
            let select = parse_select_depth(inner, depth + 1)?;
            out.push(SelectItem::Embed {
                alias,
                target,
                hint,
                join,
                spread,
                select,
            });
            continue;
        }
        if spread {
            return Err(perr(
                "\"failed to parse select parameter\"",
                format!("'...' must precede an embedded resource in '{item}'"),
            ));
        }
        let (field_src, cast) = match rest.rfind("::") {
            Some(i) if !rest[i..].contains('"') => (&rest[..i], Some(parse_cast(&rest[i + 2..])?)),
            _ => (rest, None),
        };
        let field = parse_field(field_src)?;
        out.push(SelectItem::Field { alias, field, cast });
    }
    Ok(out)
}

/// Parses `field[::cast].func()[::cast]` or `count()[::cast]`; `None` when `rest` is
/// not an aggregate (a column or an embedded resource).
fn parse_aggregate(alias: Option<String>, rest: &str) -> Result<Option<SelectItem>, RestError> {
    // where the `(` is, skipping a leading quoted identifier
    let search_from = if rest.starts_with('"') {
        match closing_quote(rest) {
            Some(end) => end + 1,
            None => return Ok(None),
        }
    } else {
        0
    };
    let Some(open) = rest[search_from..].find('(').map(|i| i + search_from) else {
        return Ok(None);
    };
    let after = &rest[open..];
    let Some(tail) = after.strip_prefix("()") else {
        return Ok(None);
    };
    let output_cast = match tail {
        "" => None,
        t => match t.strip_prefix("::") {
            Some(c) => Some(parse_cast(c)?),
            None => return Ok(None),
        },
    };
    let head = &rest[..open];
    let (field_src, func_name) = if head == "count" {
        (None, "count")
    } else {
        match head.rfind('.') {
            Some(dot) if dot >= search_from => (Some(&head[..dot]), &head[dot + 1..]),
            _ => return Ok(None),
        }
    };
    let Some(func) = AggFunc::from_name(func_name) else {
        return Err(perr(
            "\"failed to parse select parameter\"",
            format!(
                "Unknown aggregate function '{func_name}': use one of avg(), count(), max(), min(), sum()"
            ),
        ));
    };
    let (field, input_cast) = match field_src {
        None => (None, None),
        Some(src) => {
            let (f, cast) = match src.rfind("::") {
                Some(i) if !src[i..].contains('"') => (&src[..i], Some(parse_cast(&src[i + 2..])?)),
                _ => (src, None),
            };
            (Some(parse_field(f)?), cast)
        }
    };
    Ok(Some(SelectItem::Aggregate {
        alias,
        func,
        field,
        input_cast,
        output_cast,
    }))
}

/// Position of the alias separator `:` (not part of `::`) outside quotes.
fn find_alias_colon(item: &str) -> Option<usize> {
    let bytes = item.as_bytes();
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => in_quotes = !in_quotes,
            b'(' if !in_quotes => return None,
            b':' if !in_quotes => {
                if bytes.get(i + 1) == Some(&b':') {
                    return None;
                }
                return Some(i);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

const MULTI_WORD_TYPES: &[&str] = &[
    "double precision",
    "character varying",
    "timestamp with time zone",
    "timestamp without time zone",
    "time with time zone",
    "time without time zone",
    "bit varying",
];

/// Validates a cast target: one identifier-like word (or a known multi-word type),
/// optionally followed by `[]`. Never quoted, so it must not contain anything else.
fn parse_cast(s: &str) -> Result<String, RestError> {
    let s = s.trim();
    let base = s.trim_end_matches("[]");
    let ok_word = !base.is_empty()
        && base
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok_word || MULTI_WORD_TYPES.contains(&base.to_ascii_lowercase().as_str()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(perr(
            "\"failed to parse select parameter\"",
            format!("Invalid cast type '{s}'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: &str) -> Field {
        Field {
            name: n.into(),
            json_path: vec![],
        }
    }

    #[test]
    fn select_items() {
        let s = parse_select("id,name:full_name,price::text,data->a->>b,*,owner:users!owner_fk!inner(id,name),...cat(name),\"odd col\"").unwrap();
        assert_eq!(
            s[0],
            SelectItem::Field {
                alias: None,
                field: field("id"),
                cast: None
            }
        );
        assert_eq!(
            s[1],
            SelectItem::Field {
                alias: Some("name".into()),
                field: field("full_name"),
                cast: None
            }
        );
        assert_eq!(
            s[2],
            SelectItem::Field {
                alias: None,
                field: field("price"),
                cast: Some("text".into())
            }
        );
        match &s[3] {
            SelectItem::Field { field, .. } => {
                assert_eq!(field.name, "data");
                assert_eq!(field.json_path.len(), 2);
                assert!(!field.json_path[0].as_text && field.json_path[1].as_text);
                assert_eq!(field.output_name(), "b");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s[4], SelectItem::Star);
        match &s[5] {
            SelectItem::Embed {
                alias,
                target,
                hint,
                join,
                spread,
                select,
            } => {
                assert_eq!(alias.as_deref(), Some("owner"));
                assert_eq!(target, "users");
                assert_eq!(hint.as_deref(), Some("owner_fk"));
                assert_eq!(*join, Some(JoinType::Inner));
                assert!(!spread);
                assert_eq!(select.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&s[6], SelectItem::Embed { spread: true, .. }));
        assert_eq!(
            s[7],
            SelectItem::Field {
                alias: None,
                field: field("odd col"),
                cast: None
            }
        );
        assert!(parse_select("a::text;drop").is_err());
        assert!(parse_select("a::double precision").is_ok());
        assert!(parse_select("users(id").is_err());
        assert!(parse_select("a,,b").is_err());
    }

    #[test]
    fn aggregates() {
        let s = parse_select("amount.sum(),total:amount::numeric.avg()::int,count(),n:count()::text,data->>x::numeric.max(),cat,\"a.b\".min()").unwrap();
        assert_eq!(
            s[0],
            SelectItem::Aggregate {
                alias: None,
                func: AggFunc::Sum,
                field: Some(field("amount")),
                input_cast: None,
                output_cast: None,
            }
        );
        assert_eq!(
            s[1],
            SelectItem::Aggregate {
                alias: Some("total".into()),
                func: AggFunc::Avg,
                field: Some(field("amount")),
                input_cast: Some("numeric".into()),
                output_cast: Some("int".into()),
            }
        );
        assert!(matches!(
            &s[2],
            SelectItem::Aggregate {
                func: AggFunc::Count,
                field: None,
                alias: None,
                ..
            }
        ));
        assert!(matches!(
            &s[3],
            SelectItem::Aggregate { func: AggFunc::Count, field: None, output_cast: Some(c), .. } if c == "text"
        ));
        match &s[4] {
            SelectItem::Aggregate {
                func: AggFunc::Max,
                field: Some(f),
                input_cast: Some(c),
                ..
            } => {
                assert_eq!(f.name, "data");
                assert_eq!(f.json_path.len(), 1);
                assert_eq!(c, "numeric");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&s[5], SelectItem::Field { .. }));
        assert!(matches!(&s[6], SelectItem::Aggregate { field: Some(f), .. } if f.name == "a.b"));
        // still embeds
        assert!(matches!(
            &parse_select("todos(),users(id)").unwrap()[0],
            SelectItem::Embed { .. }
        ));
        for bad in [
            "amount.drop()",
            "amount.sum()::text;drop",
            "amount::text);--.sum()",
            "...amount.sum()",
            "amount.pg_sleep()",
        ] {
            assert!(parse_select(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters() {
        let (p, f) = parse_filter_param("age", "gte.18").unwrap();
        assert!(p.is_empty());
        assert_eq!((f.op, f.negate), (Op::Gte, false));
        assert_eq!(f.operand, Operand::Value("18".into()));
        let (_, f) = parse_filter_param("name", "not.like(any).{a*,\"b,c\"}").unwrap();
        assert!(f.negate);
        assert_eq!(f.quantifier, Some(Quantifier::Any));
        assert_eq!(f.operand, Operand::List(vec!["a*".into(), "b,c".into()]));
        let (_, f) = parse_filter_param("id", "in.(1, 2,\"3,4\")").unwrap();
        assert_eq!(
            f.operand,
            Operand::List(vec!["1".into(), "2".into(), "3,4".into()])
        );
        let (_, f) = parse_filter_param("x", "in.()").unwrap();
        assert_eq!(f.operand, Operand::List(vec![]));
        let (_, f) = parse_filter_param("x", "is.NULL").unwrap();
        assert_eq!(f.operand, Operand::Is(IsValue::Null));
        let (_, f) = parse_filter_param("body", "fts(english).cat & dog").unwrap();
        assert_eq!(f.language.as_deref(), Some("english"));
        let (p, f) = parse_filter_param("users.name", "eq.a.b").unwrap();
        assert_eq!(p, vec!["users".to_string()]);
        assert_eq!(f.operand, Operand::Value("a.b".into()));
        let (_, f) = parse_filter_param("data->a.b->>c", "eq.1").unwrap();
        assert_eq!(f.field.json_path.len(), 2);
        assert!(parse_filter_param("x", "eq").is_err());
        assert!(parse_filter_param("x", "nope.1").is_err());
        assert!(parse_filter_param("x", "is.maybe").is_err());
        assert!(parse_filter_param("x", "fts(eng;lish).a").is_err());
        assert!(parse_filter_param("x", "eq(some).{1}").is_err());
    }

    #[test]
    fn logic() {
        let q = parse_query(
            "or=(a.eq.1,and(b.gt.2,c.is.null),d.not.in.(1,2))&not.and=(x.eq.1)&users.or=(n.eq.x)",
        )
        .unwrap();
        assert_eq!(q.logic.len(), 3);
        match &q.logic[0].1 {
            Logic::Tree {
                or: true,
                negate: false,
                children,
            } => {
                assert_eq!(children.len(), 3);
                assert!(
                    matches!(&children[1], Logic::Tree { or: false, children, .. } if children.len() == 2)
                );
                assert!(matches!(&children[2], Logic::Filter(f) if f.negate && f.op == Op::In));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &q.logic[1].1,
            Logic::Tree {
                or: false,
                negate: true,
                ..
            }
        ));
        assert_eq!(q.logic[2].0, vec!["users".to_string()]);
        assert!(parse_query("or=a.eq.1").is_err());
        assert!(parse_query("or=(a.eq.1").is_err());
        assert!(parse_query("or=()").is_err());
    }

    #[test]
    fn order_and_paging() {
        let q = parse_query("order=a.desc.nullslast,b,users(name).asc&limit=10&offset=5&users.limit=2&users.order=name").unwrap();
        let (_, terms) = &q.order[0];
        assert_eq!(terms.len(), 3);
        assert_eq!(terms[0].direction, Some(Direction::Desc));
        assert_eq!(terms[0].nulls, Some(Nulls::Last));
        assert_eq!(terms[2].relation.as_deref(), Some("users"));
        assert_eq!(q.limit, vec![(vec![], 10), (vec!["users".to_string()], 2)]);
        assert_eq!(q.offset, vec![(vec![], 5)]);
        assert!(parse_query("limit=-1").is_err());
        assert!(parse_query("order=a.sideways").is_err());
    }

    #[test]
    fn decoding() {
        let q = parse_query("name=eq.John+Smith&x=eq.a%2Bb&columns=a,b&on_conflict=id").unwrap();
        assert_eq!(q.params[0], ("name".into(), "eq.John Smith".into()));
        assert_eq!(q.params[1], ("x".into(), "eq.a+b".into()));
        assert_eq!(q.columns, Some(vec!["a".into(), "b".into()]));
        assert_eq!(q.on_conflict, Some(vec!["id".into()]));
    }

    /// Deterministic fuzzing: random and mutated query strings must never panic.
    #[test]
    fn fuzz_no_panic() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: &[&str] = &[
            "a",
            "b",
            "id",
            ".",
            ",",
            "(",
            ")",
            "{",
            "}",
            "[",
            "]",
            "\"",
            "\\",
            "!",
            ":",
            "::",
            "->",
            "->>",
            "=",
            "&",
            "%",
            "%2",
            "%28",
            "+",
            "*",
            "...",
            "not.",
            "eq.",
            "in.",
            "is.",
            "or=",
            "and=",
            "select=",
            "order=",
            "limit=",
            "offset=",
            "fts(",
            "(any)",
            "(all)",
            "inner",
            "é",
            "\u{0}",
            " ",
            "%00",
            "%FF",
            "users",
            "!",
            "desc",
            "nullslast",
            "1",
            "-",
            "9999999999999999999999",
        ];
        let seeds = [
            "select=id,name,owner:users!fk!inner(id,...x(y)),data->a->>b::text&or=(a.eq.1,and(b.gt.2,c.is.null))&order=a.desc.nullsfirst&limit=1",
            "id=in.(1,2,\"3\")&name=not.ilike(all).{a*,b*}&tags=cs.{a,b}&r=adj.[1,2)&not.or=(x.fts(english).y)",
        ];
        for round in 0..20_000 {
            let s: String = if round % 3 == 0 {
                let n = (next() % 24) as usize;
                (0..n)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            } else {
                let seed = seeds[round % seeds.len()];
                let mut bytes: Vec<char> = seed.chars().collect();
                for _ in 0..(next() % 6 + 1) {
                    if bytes.is_empty() {
                        break;
                    }
                    let pos = (next() % bytes.len() as u64) as usize;
                    match next() % 3 {
                        0 => {
                            bytes.remove(pos);
                        }
                        1 => {
                            let tok = alphabet[(next() % alphabet.len() as u64) as usize];
                            for (k, c) in tok.chars().enumerate() {
                                bytes.insert(pos + k, c);
                            }
                        }
                        _ => bytes.truncate(pos),
                    }
                }
                bytes.into_iter().collect()
            };
            if let Ok(q) = parse_query(&s) {
                for (k, v) in &q.params {
                    let _ = parse_filter_param(k, v);
                }
            }
            let _ = parse_select(&s);
            let _ = parse_order(&s);
            let _ = parse_logic_list(&s);
        }
    }
}
