//! The REST query grammar's fuzzing vocabulary, shared by the parser's
//! property tests ([`super::fuzz`]) and the end-to-end fuzz test
//! (`server/tests/it/rest/fuzz.rs`, which includes this file by path): one
//! token list and one mutation strategy.

use proptest::prelude::*;

/// Fragments of the grammar (and of the test schemas), to mutate with.
pub const TOKENS: &[&str] = &[
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
    "users",
    "todos",
    "title",
    "::int",
    "::nosuch",
    "count()",
];

/// A mutation of one of `seeds`: insert, delete, duplicate or replace spans.
pub fn mutated(seeds: &'static [&'static str]) -> impl Strategy<Value = String> {
    let edit = (
        0usize..4,
        any::<prop::sample::Index>(),
        0usize..12,
        prop::sample::select(TOKENS),
    );
    (
        prop::sample::select(seeds),
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

/// Up to `max` tokens in any order.
pub fn soup(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..max).prop_map(|v| v.concat())
}
