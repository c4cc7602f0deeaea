//! Limited PATCH/DELETE (`limit`/`offset` with an explicit `order`, as
//! PostgREST's "limited update/delete"): only the ordered page changes, the
//! primary key breaks ties, a relation without one refuses ties (PGRST110),
//! no order is PGRST109, and RLS still decides which rows count.

use serde_json::json;

use super::{Fx, Who, case, get};

const REP: &str = "return=representation";

const SQL: &str = "
create table items (id int primary key, grp text not null, name text not null);
insert into items values (1, 'a', 'one'), (2, 'a', 'two'), (3, 'b', 'three'), (4, 'b', 'four'), (5, 'b', 'five');
create table nopk (k int, v text);
insert into nopk values (1, 'x'), (1, 'y'), (2, 'z');
create view items_b as select id, name from items where grp = 'b';
create view nopk_v as select k, v from nopk;
create table mine (id int primary key, owner uuid not null, n int not null default 0);
alter table mine enable row level security;
create policy own on mine for all to authenticated using (owner = auth.uid()) with check (owner = auth.uid());
insert into mine values (1, '00000000-0000-4000-8000-000000000002', 0),
  (2, '00000000-0000-4000-8000-000000000001', 0), (3, '00000000-0000-4000-8000-000000000001', 0);
";

#[tokio::test]
async fn limited_update_and_delete() {
    let fx = Fx::new("limited", SQL).await;
    fx.run(vec![
        case("PATCH the first two by id", "PATCH", "items?order=id&limit=2&select=id,name")
            .body(r#"{"name":"p1"}"#).prefer(REP)
            .is(200, json!([{"id":1,"name":"p1"},{"id":2,"name":"p1"}]))
            .header("content-range", "0-1/*"),
        case("PATCH with an offset", "PATCH", "items?order=id&limit=1&offset=2&select=id")
            .body(r#"{"name":"p2"}"#).prefer(REP)
            .is(200, json!([{"id":3}])),
        get("only those changed", "items?select=id,name&order=id")
            .is(200, json!([{"id":1,"name":"p1"},{"id":2,"name":"p1"},{"id":3,"name":"p2"},{"id":4,"name":"four"},{"id":5,"name":"five"}])),
        case("filters and a descending order", "PATCH", "items?grp=eq.b&order=id.desc&limit=2")
            .body(r#"{"name":"p3"}"#)
            .text(204, "").header("content-range", "0-1/*"),
        get("the last two of b", "items?select=id&name=eq.p3&order=id").is(200, super::ids(&[4, 5])),
        case("ties broken by the primary key", "PATCH", "items?order=grp&limit=1&select=id")
            .body(r#"{"name":"tie"}"#).prefer(REP)
            .is(200, json!([{"id":1}])),
        case("DELETE the newest of b", "DELETE", "items?grp=eq.b&order=id.desc&limit=1&select=id").prefer(REP)
            .is(200, json!([{"id":5}])),
        case("offset alone also needs an order", "DELETE", "items?offset=1")
            .is(400, json!({"code":"PGRST109","message":"A 'limit' was applied without an explicit 'order'","details":null,"hint":"Apply an 'order' using unique column(s)"})),
        case("limit without order", "PATCH", "items?limit=1").body(r#"{"name":"x"}"#).err(400, "PGRST109"),
        case("limit=0 changes nothing", "DELETE", "items?order=id&limit=0").text(204, "").header("content-range", "*/*"),
        get("nothing deleted by the refusals", "items?select=id&order=id").is(200, super::ids(&[1, 2, 3, 4])),
        case("order on an unknown column", "DELETE", "items?order=nope&limit=1").err(400, "42703"),
        case("order on an unselected embed", "DELETE", "items?order=users(name)&limit=1").status(400),
        case("injection in the order", "DELETE", "items?order=id;delete%20from%20items&limit=1").status(400),
        case("negative limit", "DELETE", "items?order=id&limit=-1").err(400, "PGRST100"),
        // a relation without a primary key: the order columns name the rows
        case("ties without a key → PGRST110, rolled back", "DELETE", "nopk?order=k&limit=1")
            .is(400, json!({"code":"PGRST110","message":"The maximum number of rows allowed to change was surpassed","details":"Results contain 2 rows changed but the maximum number allowed is 1","hint":null})),
        get("nothing deleted", "nopk?select=v&order=v").is(200, json!([{"v":"x"},{"v":"y"},{"v":"z"}])),
        case("a unique order without a key", "DELETE", "nopk?order=k.desc&limit=1&select=v").prefer(REP)
            .is(200, json!([{"v":"z"}])),
        case("a view over a keyed table", "PATCH", "items_b?order=id&limit=1&select=id,name")
            .body(r#"{"name":"via view"}"#).prefer(REP)
            .is(200, json!([{"id":3,"name":"via view"}])),
        case("a view without a key, ties refused", "PATCH", "nopk_v?order=k&limit=1")
            .body(r#"{"v":"w"}"#).err(400, "PGRST110"),
        case("max-affected still applies", "PATCH", "items?order=id&limit=3")
            .body(r#"{"name":"m"}"#).prefer("handling=strict, max-affected=2").err(400, "PGRST124"),
        // RLS: the page is taken from the rows the caller may see
        case("user's first own row, not the first row", "PATCH", "mine?order=id&limit=1&select=id,n")
            .body(r#"{"n":1}"#).prefer(REP)
            .is(200, json!([{"id":2,"n":1}])),
        case("delete own rows only", "DELETE", "mine?order=id&limit=5&select=id").prefer(REP)
            .is(200, json!([{"id":2},{"id":3}])),
        get("the other user's row survives", "mine?select=id,n").who(Who::Service)
            .is(200, json!([{"id":1,"n":0}])),
        case("anon changes nothing", "DELETE", "mine?order=id&limit=1").who(Who::Anon).status(204),
        get("still there", "mine?select=id").who(Who::Service).is(200, super::ids(&[1])),
    ])
    .await;
}
