//! Property tests of the query-string grammar: arbitrary input and structured
//! mutations of valid PostgREST queries never panic (every function returns
//! `Ok` or a 4xx error), and nesting cannot overflow the stack.

use proptest::prelude::*;

use super::fuzz_grammar::{mutated, soup};

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
    fn grammar_soup_never_panics(input in soup(40)) {
        exercise(&input);
    }

    #[test]
    fn mutated_queries_never_panic(input in mutated(SEEDS)) {
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
