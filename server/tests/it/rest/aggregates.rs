//! Aggregate functions in `select` (PostgREST 12): `sum`/`avg`/`min`/`max`/
//! `count` on columns, grouping by the other selected columns (embedded and
//! spread resources included), input and output casts, aggregates inside
//! embeds and spreads, counts of groups, RLS (an aggregate only sees the
//! caller's rows), and hostile function names, casts and columns.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Fx, USER_2, Who, get};

/// Authors and their books (Dee has none); `notes` are private to their owner.
pub const BOOKS_SQL: &str = "
create table authors (id int primary key, name text not null, country text not null);
create table books (id int primary key, title text not null, author_id int references authors(id),
  price numeric(10,2), category text not null, data jsonb);
insert into authors values (1, 'Ann', 'FR'), (2, 'Ben', 'DE'), (3, 'Cid', 'FR'), (4, 'Dee', 'US');
insert into books values
  (1, 'A1', 1, 10.00, 'novel', '{\"pages\": 100}'),
  (2, 'A2', 1, 20.00, 'essay', '{\"pages\": 200}'),
  (3, 'B1', 2, 30.00, 'novel', '{\"pages\": 300}'),
  (4, 'C1', 3, 5.50, 'novel', '{\"pages\": 50}'),
  (5, 'C2', 3, null, 'essay', null);
create table notes (id int primary key, owner uuid not null, amount int not null);
alter table notes enable row level security;
create policy own on notes for select to authenticated using (owner = auth.uid());
insert into notes values (1, '00000000-0000-4000-8000-000000000001', 10),
  (2, '00000000-0000-4000-8000-000000000001', 5), (3, '00000000-0000-4000-8000-000000000002', 100);
";

#[tokio::test]
async fn aggregate_functions() {
    let fx = Fx::new("aggregates", BOOKS_SQL).await;
    fx.run(vec![
        get("sum of a column", "books?select=price.sum()").is(200, json!([{"sum":65.5}])),
        get("each function, renamed", "books?select=lo:price.min(),hi:price.max(),n:price.count(),all:count()")
            .is(200, json!([{"lo":5.5,"hi":30.0,"n":4,"all":5}])),
        get("output cast", "books?select=price.avg()::float8").is(200, json!([{"avg":16.375}])),
        get("output cast to int", "books?select=avg:price.avg()::int").is(200, json!([{"avg":16}])),
        get("output cast to text", "books?select=price.sum()::text").is(200, json!([{"sum":"65.50"}])),
        get("input cast of a JSON value", "books?select=pages:data->>pages::int.sum()").is(200, json!([{"pages":650}])),
        get("grouped by the plain columns", "books?select=category,price.sum(),id.count()&order=category")
            .is(200, json!([{"category":"essay","sum":20.0,"count":2},{"category":"novel","sum":45.5,"count":3}])),
        get("filters apply before aggregating", "books?select=author_id,count()&category=eq.novel&order=author_id")
            .is(200, json!([{"author_id":1,"count":1},{"author_id":2,"count":1},{"author_id":3,"count":1}])),
        get("exact count is the number of groups", "books?select=category,count()&order=category&limit=1")
            .prefer("count=exact")
            .is(206, json!([{"category":"essay","count":2}]))
            .header("content-range", "0-0/2"),
        get("legacy bare count", "books?select=count").is(200, json!([{"count":5}])),
        get("no rows: one row of nulls", "books?select=price.sum(),count()&id=gt.100").is(200, json!([{"sum":null,"count":0}])),
        get("CSV", "books?select=category,price.max()&order=category").h("Accept", "text/csv")
            .text(200, "category,max\nessay,20.00\nnovel,30.00"),
        // inside embeds: grouped per parent row
        get("aggregate inside an embed", "authors?select=name,books(price.sum())&order=id")
            .is(200, json!([{"name":"Ann","books":[{"sum":30.0}]},{"name":"Ben","books":[{"sum":30.0}]},
                {"name":"Cid","books":[{"sum":5.5}]},{"name":"Dee","books":[{"sum":null}]}])),
        get("grouped inside an embed", "authors?select=name,books(category,n:count())&books.order=category&id=in.(1,3)&order=id")
            .is(200, json!([{"name":"Ann","books":[{"category":"essay","n":1},{"category":"novel","n":1}]},
                {"name":"Cid","books":[{"category":"essay","n":1},{"category":"novel","n":1}]}])),
        // embedded and spread resources as grouping columns
        get("grouped by a to-one embed", "books?select=price.sum(),authors(name)&author_id=eq.1")
            .is(200, json!([{"sum":30.0,"authors":{"name":"Ann"}}])),
        get("grouped by spread columns", "books?select=total:price.sum(),...authors(country)&order=authors(country)")
            .is(200, json!([{"total":30.0,"country":"DE"},{"total":35.5,"country":"FR"}])),
        get("aggregates of a spread apply at the top", "books?select=category,...authors(first:name.min(),last:name.max())&order=category")
            .is(200, json!([{"category":"essay","first":"Ann","last":"Cid"},{"category":"novel","first":"Ann","last":"Cid"}])),
        get("count() of a spread", "books?select=...authors(n:count())&author_id=not.is.null")
            .is(200, json!([{"n":5}])),
        // hostile or invalid input: 4xx in the error shape, never a 500
        get("unknown function", "books?select=price.drop()").err(400, "PGRST100"),
        get("function call smuggling", "books?select=price.pg_sleep()").err(400, "PGRST100"),
        get("arguments are not allowed", "books?select=price.sum(1)").refused(),
        get("injection in the output cast", "books?select=price.sum()::text;select%201").err(400, "PGRST100"),
        get("injection in the input cast", "books?select=price::int)%20from%20authors;--.sum()").refused(),
        get("a cast to a missing type", "books?select=price.sum()::nope").err(400, "42704"),
        get("unknown column", "books?select=nope.sum()").err(400, "42703"),
        get("sum of text", "books?select=title.sum()").refused(),
        get("ordering by an ungrouped column", "books?select=category,price.sum()&order=price").err(400, "42803"),
        get("spread on an aggregate", "books?select=...price.sum()").err(400, "PGRST100"),
        get("aggregate on an unknown embed column", "authors?select=books(nope.max())").err(400, "42703"),
    ])
    .await;
}

#[tokio::test]
async fn aggregates_respect_rls() {
    let fx = Fx::new("aggregates-rls", BOOKS_SQL).await;
    fx.run(vec![
        get(
            "user 1 sums their own rows",
            "notes?select=amount.sum(),count()",
        )
        .is(200, json!([{"sum":15,"count":2}])),
        get("user 2 too", "notes?select=amount.sum(),count()")
            .who(Who::User(USER_2))
            .is(200, json!([{"sum":100,"count":1}])),
        get("anon sees nothing", "notes?select=amount.sum(),count()")
            .who(Who::Anon)
            .is(200, json!([{"sum":null,"count":0}])),
        get(
            "a filter cannot widen it",
            "notes?select=amount.max()&or=(owner.eq.00000000-0000-4000-8000-000000000002,id.gt.0)",
        )
        .is(200, json!([{"max":10}])),
        get("service role sees all", "notes?select=amount.sum()")
            .who(Who::Service)
            .is(200, json!([{"sum":115}])),
    ])
    .await;

    // several groups with no order: compare as a set
    let resp = fx
        .request(
            Method::GET,
            "books?select=n:count(),authors(name)",
            &Who::Service,
        )
        .await
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut got: Vec<Value> = resp.json().await.expect("json");
    got.sort_by_key(|v| v["authors"]["name"].to_string());
    assert_eq!(
        Value::Array(got),
        json!([{"n":2,"authors":{"name":"Ann"}},{"n":1,"authors":{"name":"Ben"}},{"n":2,"authors":{"name":"Cid"}}])
    );
}
