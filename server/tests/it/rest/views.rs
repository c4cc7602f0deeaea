//! Embedding through views: a view exposing a table's key columns embeds
//! like the table (both directions, views over views, views over tables in a
//! schema that is not exposed, renamed columns), with spreads, aggregates and
//! `!inner`; a `security_invoker` view keeps RLS; the schema cache follows
//! views created, replaced or dropped later. Also computed relationships
//! (a function taking the row, `ROWS 1` for to-one).

use serde_json::json;

use super::{Fx, USER_2, Who, case, get};

const SQL: &str = "
create table authors (id int primary key, name text not null);
create table books (id int primary key, title text not null, author_id int references authors(id), price numeric);
insert into authors values (1, 'Ann'), (2, 'Ben'), (3, 'Cid');
insert into books values (1, 'A1', 1, 10), (2, 'A2', 1, 20), (3, 'B1', 2, 30), (4, 'C1', 3, 5);
create view cheap_books as select id, title, author_id as writer, price from books where price < 25;
create view cheap_titles as select id as book, title from cheap_books;
create view author_names as select id, upper(name) as shout from authors;
create schema private;
create table private.publishers (id int primary key, name text not null);
create table private.editions (id int primary key, book_id int not null references books(id),
  publisher_id int references private.publishers(id), year int not null);
insert into private.publishers values (1, 'Acme'), (2, 'Zed');
insert into private.editions values (1, 1, 1, 2001), (2, 1, 2, 2010), (3, 3, 2, 2020);
create view publishers as select id, name from private.publishers;
create view editions as select id, book_id, publisher_id, year from private.editions;
grant usage on schema private to anon, authenticated, service_role;
grant select on all tables in schema private to anon, authenticated, service_role;
create table notes (id int primary key, owner uuid not null, book_id int references books(id), body text);
alter table notes enable row level security;
create policy own on notes for select to authenticated using (owner = auth.uid());
insert into notes values (1, '00000000-0000-4000-8000-000000000001', 1, 'mine'),
  (2, '00000000-0000-4000-8000-000000000002', 1, 'theirs');
create view my_notes with (security_invoker = true) as select id, book_id, body from notes;
create function writer(books) returns setof authors rows 1 language sql stable
  as 'select * from authors where id = $1.author_id';
create function cheap_of(authors) returns setof books language sql stable
  as 'select * from books where author_id = $1.id and price < 25';
create function not_a_relationship(int) returns setof books language sql stable as 'select * from books';
";

#[tokio::test]
async fn embedding_through_views() {
    let fx = Fx::new("views", SQL).await;
    fx.run(vec![
        get("view → table (many-to-one, renamed column)", "cheap_books?select=title,authors(name)&order=id")
            .is(200, json!([{"title":"A1","authors":{"name":"Ann"}},{"title":"A2","authors":{"name":"Ann"}},{"title":"C1","authors":{"name":"Cid"}}])),
        get("column hint through a view", "cheap_books?select=title,author:writer(name)&id=eq.4")
            .is(200, json!([{"title":"C1","author":{"name":"Cid"}}])),
        get("table → view (one-to-many)", "authors?select=name,cheap_books(title)&cheap_books.order=id&order=id")
            .is(200, json!([{"name":"Ann","cheap_books":[{"title":"A1"},{"title":"A2"}]},{"name":"Ben","cheap_books":[]},{"name":"Cid","cheap_books":[{"title":"C1"}]}])),
        get("!inner and a filter through a view", "authors?select=name,cheap_books!inner(title)&cheap_books.price=gt.15")
            .is(200, json!([{"name":"Ann","cheap_books":[{"title":"A2"}]}])),
        get("spread through a view", "cheap_books?select=title,...authors(author:name)&id=eq.2")
            .is(200, json!([{"title":"A2","author":"Ann"}])),
        get("aggregate through a view", "authors?select=name,cheap_books(price.sum())&order=id")
            .is(200, json!([{"name":"Ann","cheap_books":[{"sum":30}]},{"name":"Ben","cheap_books":[{"sum":null}]},{"name":"Cid","cheap_books":[{"sum":5}]}])),
        get("a view over a view", "cheap_titles?select=title,editions(year)&editions.order=year&order=book")
            .is(200, json!([{"title":"A1","editions":[{"year":2001},{"year":2010}]},{"title":"A2","editions":[]},{"title":"C1","editions":[]}])),
        get("computed columns do not break it", "books?select=title,author_names(shout)&id=eq.3")
            .is(200, json!([{"title":"B1","author_names":{"shout":"BEN"}}])),
        get("views over private tables, nested", "books?select=title,editions(year,publishers(name))&editions.order=year&id=eq.1")
            .is(200, json!([{"title":"A1","editions":[{"year":2001,"publishers":{"name":"Acme"}},{"year":2010,"publishers":{"name":"Zed"}}]}])),
        get("view → view (one-to-many)", "publishers?select=name,editions(year)&editions.order=year&order=id")
            .is(200, json!([{"name":"Acme","editions":[{"year":2001}]},{"name":"Zed","editions":[{"year":2010},{"year":2020}]}])),
        get("the table's own relationship is unchanged", "books?select=title,authors(name)&id=eq.3")
            .is(200, json!([{"title":"B1","authors":{"name":"Ben"}}])),
        // computed relationships: functions of the row
        get("computed to-one (ROWS 1)", "books?select=title,writer(name)&id=eq.3")
            .is(200, json!([{"title":"B1","writer":{"name":"Ben"}}])),
        get("computed to-many with order", "authors?select=name,cheap_of(title)&cheap_of.order=id.desc&id=eq.1")
            .is(200, json!([{"name":"Ann","cheap_of":[{"title":"A2"},{"title":"A1"}]}])),
        get("computed, aliased, spread", "books?select=title,...writer(by:name)&id=eq.4")
            .is(200, json!([{"title":"C1","by":"Cid"}])),
        get("a function not taking the row", "books?select=title,not_a_relationship(id)").err(400, "PGRST200"),
        get("no relationship to a computed column", "author_names?select=shout,cheap_titles(title)").err(400, "PGRST200"),
        get("the private table itself stays hidden", "books?select=title,private.editions(year)").refused(),
        // a view's inferred key: limited writes pick by it
        case("limited PATCH on a view", "PATCH", "cheap_books?order=price.desc&limit=1&select=id,title")
            .body(r#"{"title":"A2!"}"#).prefer("return=representation")
            .is(200, json!([{"id":2,"title":"A2!"}])),
        // RLS: a security_invoker view runs as the caller
        get("RLS through a security_invoker view", "books?select=title,my_notes(body)&id=eq.1")
            .is(200, json!([{"title":"A1","my_notes":[{"body":"mine"}]}])),
        get("the other user", "books?select=title,my_notes(body)&id=eq.1").who(Who::User(USER_2))
            .is(200, json!([{"title":"A1","my_notes":[{"body":"theirs"}]}])),
        get("anon", "books?select=title,my_notes(body)&id=eq.1").who(Who::Anon)
            .is(200, json!([{"title":"A1","my_notes":[]}])),
    ])
    .await;

    // the schema cache follows views created, dropped and replaced later
    fx.t.owner_sql(
        &fx.p,
        "create view pricey as select id, author_id, title from books where price > 15",
    )
    .await;
    fx.run(vec![
        get("a new view embeds at once", "pricey?select=title,authors(name)&order=id")
            .is(200, json!([{"title":"A2!","authors":{"name":"Ann"}},{"title":"B1","authors":{"name":"Ben"}}])),
    ])
    .await;
    fx.t.owner_sql(
        &fx.p,
        "drop view cheap_books cascade; create view cheap_books as select id, title, price from books where price < 25",
    )
    .await;
    fx.run(vec![
        get(
            "a replaced view without the key column",
            "cheap_books?select=title,authors(name)",
        )
        .err(400, "PGRST200"),
        get("a dropped view is gone", "cheap_titles?select=title").err(404, "PGRST205"),
        get(
            "the new view still reads",
            "cheap_books?select=title&order=id",
        )
        .is(200, json!([{"title":"A1"},{"title":"A2!"},{"title":"C1"}])),
    ])
    .await;
}
