//! Property tests of the query-string grammar: arbitrary input and structured
//! mutations of valid PostgREST queries never panic (every function returns
//! `Ok` or a 4xx error), and nesting cannot overflow the stack.

use proptest::prelude::*;

use super::parse::{
    parse_field, parse_filter_param, parse_logic_list, parse_order, parse_query, parse_select,
};

/// Valid queries, the seeds that mutations start from.
const SEEDS: &[&str] = &[
    "select=id,name&order=id",
    "select=uid:id,n:name,idt:id::text&id=eq.1",
    "select=id,data->address->>city,age:data->age,data->pets->0&id=eq.1",
    "select=id,owner:users!owner_id(name)&id=in.(1,4)&order=id",
    "select=name,todos!owner_id!inner(id,title)&todos.order=id.desc&todos.limit=1",
    "select=id,...users!owner_id(owner_name:name)&users=not.is.null",
    "select=%22weird%20%22%22col%22%22%22",
    "title=like(any).{Buy*,Cook*}&order=priority.desc.nullslast,id",
    "or=(id.eq.1,and(done.is.true,priority.gt.100))",
    "not.or=(id.not.in.(1,2,3),title.ilike.*milk*)&limit=2&offset=1",
    "tsv=wfts(english).%22write%20report%22%20or%20milk",
    "name=in.(%22Alice%22,%22Bob,%20Jr%22)&data=cs.{%22age%22:25}",
    "during=ov.[4,11)&tags=cd.{food,shop}",
    "columns=id,name&on_conflict=email&select=id",
    "select=done,n:count()&order=done&users(name).desc",
];

/// Fragments of the grammar, to mutate with.
const TOKENS: &[&str] = &[
    "a",
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
    "%22",
    "%00",
    "%ff",
    "+",
    "*",
    "...",
    "eq.",
    "not.",
    "in.",
    "is.",
    "or=",
    "and=",
    "(any)",
    "(all)",
    "fts(",
    "select=",
    "order=",
    ".desc",
    ".nullsfirst",
    "limit=",
    "-1",
    "99999999999999999999",
    "inner",
    "'",
    ";",
    "--",
    "\u{0}",
    "é",
    "\u{202e}",
];

/// A mutation of a seed: insert, delete, duplicate or replace a span.
fn mutated() -> impl Strategy<Value = String> {
    let edit = (
        0usize..4,
        any::<prop::sample::Index>(),
        0usize..12,
        prop::sample::select(TOKENS),
    );
    (
        prop::sample::select(SEEDS),
        prop::collection::vec(edit, 1..8),
    )
        .prop_map(|(seed, edits)| {
            let mut s: Vec<char> = seed.chars().collect();
            for (kind, at, len, token) in edits {
                let i = at.index(s.len() + 1);
                let j = (i + len).min(s.len());
                match kind {
                    0 => s.splice(i..i, token.chars()).for_each(drop),
                    1 => s.drain(i..j).for_each(drop),
                    2 => {
                        let span: Vec<char> = s[i..j].to_vec();
                        s.splice(j..j, span).for_each(drop);
                    }
                    _ => s.splice(i..j, token.chars()).for_each(drop),
                }
            }
            s.into_iter().collect()
        })
}

/// Every entry point on one input; panics propagate, errors must be 4xx.
fn exercise(input: &str) {
    let check = |r: Result<(), super::RestError>| {
        if let Err(e) = r {
            assert!(
                e.status.is_client_error(),
                "{input:?} → {} {}",
                e.status,
                e.message
            );
        }
    };
    check(parse_query(input).map(drop));
    check(parse_select(input).map(drop));
    check(parse_order(input).map(drop));
    check(parse_logic_list(input).map(drop));
    check(parse_field(input).map(drop));
    if let Some((k, v)) = input.split_once('=') {
        check(parse_filter_param(k, v).map(drop));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(input in any::<String>()) {
        exercise(&input);
    }

    #[test]
    fn grammar_soup_never_panics(parts in prop::collection::vec(prop::sample::select(TOKENS), 0..40)) {
        exercise(&parts.concat());
    }

    #[test]
    fn mutated_queries_never_panic(input in mutated()) {
        exercise(&input);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn deep_nesting_is_refused_not_overflowed(depth in 1usize..5000) {
        exercise(&format!("select={}id{}", "a(".repeat(depth), ")".repeat(depth)));
        exercise(&format!("or=({}id.eq.1{})", "or(".repeat(depth), ")".repeat(depth)));
        exercise(&format!("{}{}", "(".repeat(depth), "{".repeat(depth)));
    }
}

#[test]
fn seeds_are_valid() {
    for seed in SEEDS {
        assert!(
            parse_query(seed).is_ok(),
            "{seed}: {:?}",
            parse_query(seed).err()
        );
    }
}
