//! Where a view's columns come from, read from its stored query (`pg_rewrite.ev_action`,
//! the `_RETURN` rule), so that keys of the underlying tables carry over to views:
//! a view exposing `books.author_id` embeds `authors` like `books` does (PostgREST's
//! "embedding views" through view column dependencies).
//!
//! `ev_action` is PostgreSQL's node-tree text (`({QUERY :commandType 1 … :targetList
//! ({TARGETENTRY … :resno 1 :resname id … :resorigtbl 16391 :resorigcol 1 …})…})`).
//! Only the target list of the top-level query describes the view's columns (subqueries,
//! CTEs and sublinks nest their own target lists deeper), and in it the parser already
//! resolved each plain column reference to its origin table and column
//! (`resorigtbl`/`resorigcol`, also through subqueries and CTEs); computed columns have
//! origin 0. Special characters in names are backslash-escaped in this format, so brace
//! counting with escapes is exact.

use std::collections::HashMap;

/// Origin of one view column: `(view attnum, source relation oid, source attnum)`.
pub(crate) type ColumnSource = (i16, i64, i16);

/// The origins of the view columns that are plain references to a relation's column.
/// Returns an empty list for anything it does not understand (never panics).
pub(crate) fn column_sources(tree: &str) -> Vec<ColumnSource> {
    let Some(list) = top_level_target_list(tree) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in nodes(list) {
        let fields = top_fields(entry);
        let get = |k: &str| fields.get(k).copied();
        if get(":resjunk") == Some("true") {
            continue;
        }
        let (Some(resno), Some(tbl), Some(col)) = (
            get(":resno").and_then(|v| v.parse::<i16>().ok()),
            get(":resorigtbl").and_then(|v| v.parse::<i64>().ok()),
            get(":resorigcol").and_then(|v| v.parse::<i16>().ok()),
        ) else {
            continue;
        };
        if tbl != 0 && col > 0 {
            out.push((resno, tbl, col));
        }
    }
    out
}

/// The text of the top-level query's `:targetList (…)` (without the parentheses).
fn top_level_target_list(tree: &str) -> Option<&str> {
    const KEY: &str = ":targetList ";
    let b = tree.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b':' if depth == 1 && tree[i..].starts_with(KEY) => {
                let rest = &tree[i + KEY.len()..];
                if !rest.starts_with('(') {
                    return None; // `<>`: no columns
                }
                let end = matching(rest, b'(', b')')?;
                return rest.get(1..end);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the bracket closing the one at 0 (escapes skipped; braces inside nested
/// nodes balance themselves).
fn matching(s: &str, open: u8, close: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            i += 2;
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// The `{…}` nodes of a list, each without its braces.
fn nodes(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = list;
    while let Some(start) = rest.find('{') {
        let Some(end) = matching(&rest[start..], b'{', b'}') else {
            break;
        };
        if let Some(node) = rest.get(start + 1..start + end) {
            out.push(node);
        }
        rest = &rest[start + end + 1..];
    }
    out
}

/// `:key value` pairs of a node, ignoring nested nodes and lists.
fn top_fields(node: &str) -> HashMap<&str, &str> {
    let mut flat = Vec::new();
    let b = node.as_bytes();
    let mut depth = 0i32;
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'{' | b'(' => {
                if depth == 0 {
                    flat.push(&node[start..i]);
                }
                depth += 1;
            }
            b'}' | b')' => {
                depth -= 1;
                if depth == 0 {
                    start = i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth == 0 && start <= node.len() {
        flat.push(&node[start..]);
    }
    let mut fields = HashMap::new();
    for part in flat {
        let mut tokens = part.split_whitespace().peekable();
        while let Some(t) = tokens.next() {
            if t.starts_with(':')
                && let Some(v) = tokens.peek()
                && !v.starts_with(':')
            {
                fields.insert(t, *v);
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `create view v as select b.id, b.title as t, (select 1) as one, b.author_id from books b
    /// where price < (select avg(price) from books)`, abridged from PostgreSQL 15's output.
    const TREE: &str = r#"({QUERY :commandType 1 :hasSubLinks true :cteList <> :rtable ({RANGETBLENTRY :eref {ALIAS :aliasname b :colnames ("id" "title" "author_id" "price")} :relid 16391 :relkind r}) :jointree {FROMEXPR :fromlist ({RANGETBLREF :rtindex 3}) :quals {OPEXPR :args ({VAR :varno 3 :varattno 4} {SUBLINK :subLinkType 4 :subselect {QUERY :commandType 1 :targetList ({TARGETENTRY :expr {AGGREF :args ({TARGETENTRY :expr {VAR :varno 1 :varattno 4} :resno 1 :resname <> :resorigtbl 0 :resorigcol 0 :resjunk false})} :resno 1 :resname avg :resorigtbl 0 :resorigcol 0 :resjunk false}) :resno 9 :resorigtbl 777 :resorigcol 4}})}} :targetList ({TARGETENTRY :expr {VAR :varno 3 :varattno 1 :vartype 23} :resno 1 :resname id :ressortgroupref 0 :resorigtbl 16391 :resorigcol 1 :resjunk false} {TARGETENTRY :expr {VAR :varno 3 :varattno 2} :resno 2 :resname t :resorigtbl 16391 :resorigcol 2 :resjunk false} {TARGETENTRY :expr {SUBLINK :subLinkType 4 :subselect {QUERY :targetList ({TARGETENTRY :expr {CONST :consttype 23 :constvalue 4 [ 1 0 0 0 0 0 0 0 ]} :resno 1 :resname \{odd\ name\} :resorigtbl 5 :resorigcol 5 :resjunk false})}} :resno 3 :resname one :resorigtbl 0 :resorigcol 0 :resjunk false} {TARGETENTRY :expr {VAR :varno 3 :varattno 3} :resno 4 :resname author_id :resorigtbl 16391 :resorigcol 3 :resjunk false} {TARGETENTRY :expr {VAR :varno 3 :varattno 4} :resno 5 :resname <> :resorigtbl 16391 :resorigcol 4 :resjunk true}) :override 0 :onConflict <>})"#;

    #[test]
    fn top_level_columns_only() {
        assert_eq!(
            column_sources(TREE),
            vec![(1, 16391, 1), (2, 16391, 2), (4, 16391, 3)]
        );
    }

    #[test]
    fn garbage_is_empty_not_a_panic() {
        for s in [
            "",
            "(",
            "({QUERY :targetList <>})",
            "({QUERY :targetList (",
            "({QUERY :targetList ({TARGETENTRY :resno x :resorigtbl 1 :resorigcol 1})})",
            "\\",
            "{{{{:targetList (",
            "({QUERY :targetList ({TARGETENTRY :resno 1 :resorigtbl 1 :resorigcol 1\\",
        ] {
            let _ = column_sources(s);
        }
        assert!(column_sources("({QUERY :targetList <>})").is_empty());
    }
}
