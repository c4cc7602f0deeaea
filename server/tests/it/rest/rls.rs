//! Row Level Security through the data API: in a table where users see only
//! their own rows (`owner = auth.uid()`), user A can never read, count,
//! update or delete user B's rows — through filters, embedding, rpc, bulk
//! writes or upserts. anon sees nothing; service_role sees everything.

use serde_json::{Value, json};

use super::{Fx, USER_1, USER_2, Who, case, get, ids, post};

/// Todos owned by users; lists are public and hold todos of several users.
pub const RLS_SQL: &str = "
create table lists (id int primary key, name text not null);
create table todos (
  id bigserial primary key,
  owner uuid not null default auth.uid(),
  list_id int references lists(id),
  title text not null,
  done boolean not null default false
);
alter table todos enable row level security;
create policy own_select on todos for select to authenticated using (owner = auth.uid());
create policy own_insert on todos for insert to authenticated with check (owner = auth.uid());
create policy own_update on todos for update to authenticated using (owner = auth.uid()) with check (owner = auth.uid());
create policy own_delete on todos for delete to authenticated using (owner = auth.uid());
create function all_todos() returns setof todos language sql stable as 'select * from todos order by id';
create function count_todos() returns bigint language sql stable as 'select count(*) from todos';
create function rename_all(t text) returns bigint language sql volatile
  as 'with u as (update todos set title = t returning 1) select count(*) from u';
insert into lists values (1, 'shared');
insert into todos (id, owner, list_id, title) values
  (1, '00000000-0000-4000-8000-000000000001', 1, 'a1'),
  (2, '00000000-0000-4000-8000-000000000001', 1, 'a2'),
  (3, '00000000-0000-4000-8000-000000000002', 1, 'b1');
select setval('todos_id_seq', 100);
";

#[tokio::test]
async fn users_only_ever_reach_their_own_rows() {
    let fx = Fx::new("rls", RLS_SQL).await;
    let b = format!("\"owner\":\"{USER_2}\"");
    fx.run(vec![
        // Reads.
        get("own rows only", "todos?select=id&order=id").is(200, ids(&[1, 2])),
        get("B's row by id", "todos?id=eq.3").is(200, json!([])),
        get("B's rows by owner", &format!("todos?owner=eq.{USER_2}")).is(200, json!([])),
        get(
            "B's rows through or",
            &format!("todos?select=id&or=(id.eq.3,owner.eq.{USER_2})"),
        )
        .is(200, json!([])),
        get("B's rows through not", "todos?select=id&id=not.in.(1,2)").is(200, json!([])),
        get("single object on B's row", "todos?id=eq.3")
            .h("Accept", "application/vnd.pgrst.object+json")
            .err(406, "PGRST116"),
        // Counts.
        get("exact count", "todos?select=id&limit=1")
            .prefer("count=exact")
            .status(206)
            .header("content-range", "0-0/2"),
        get("estimated count", "todos?select=id&limit=1")
            .prefer("count=estimated")
            .status(206)
            .header("content-range", "0-0/2"),
        get("aggregate count", "todos?select=count()").is(200, json!([{"count":2}])),
        case("HEAD count", "HEAD", "todos")
            .prefer("count=exact")
            .text(200, "")
            .header("content-range", "0-1/2"),
        // Embedding.
        get(
            "one-to-many embed",
            "lists?select=id,todos(id)&todos.order=id",
        )
        .is(200, json!([{"id":1,"todos":[{"id":1},{"id":2}]}])),
        get("embedded count", "lists?select=todos(count)")
            .is(200, json!([{"todos":[{"count":2}]}])),
        get(
            "!inner on B's row",
            "lists?select=id,todos!inner(id)&todos.id=eq.3",
        )
        .is(200, json!([])),
        get(
            "spread from the embedded side",
            "todos?select=id,...lists(name)&order=id",
        )
        .is(
            200,
            json!([{"id":1,"name":"shared"},{"id":2,"name":"shared"}]),
        ),
        // RPC.
        get("set-returning function", "rpc/all_todos?select=id").is(200, ids(&[1, 2])),
        get("function filtered to B's row", "rpc/all_todos?id=eq.3").is(200, json!([])),
        post("count in a function", "rpc/count_todos", "{}").is(200, json!(2)),
        post(
            "bulk update in a function",
            "rpc/rename_all",
            r#"{"t":"renamed by A"}"#,
        )
        .is(200, json!(2)),
        // Writes on B's rows change nothing.
        case("PATCH B's row", "PATCH", "todos?id=eq.3")
            .body(r#"{"title":"hacked"}"#)
            .prefer("return=representation")
            .is(200, json!([])),
        case("PATCH everything", "PATCH", "todos?select=id&order=id")
            .body(r#"{"done":true}"#)
            .prefer("return=representation")
            .is(200, ids(&[1, 2])),
        case("PATCH own row to B", "PATCH", "todos?id=eq.1")
            .body(&format!("{{{b}}}"))
            .err(403, "42501"),
        case("DELETE B's row", "DELETE", "todos?id=eq.3")
            .prefer("return=representation")
            .is(200, json!([])),
        case(
            "DELETE by B's owner",
            "DELETE",
            &format!("todos?owner=eq.{USER_2}"),
        )
        .text(204, ""),
        post(
            "INSERT as B",
            "todos",
            &format!("{{{b},\"title\":\"forged\"}}"),
        )
        .err(403, "42501"),
        post(
            "bulk INSERT with one of B's",
            "todos",
            &format!("[{{\"title\":\"mine\"}},{{{b},\"title\":\"forged\"}}]"),
        )
        .prefer("missing=default")
        .err(403, "42501"),
        post(
            "upsert onto B's row (merge)",
            "todos",
            r#"{"id":3,"title":"stolen"}"#,
        )
        .prefer("resolution=merge-duplicates,missing=default")
        .err(403, "42501"),
        post(
            "upsert onto B's row (ignore)",
            "todos?select=id",
            r#"{"id":3,"title":"stolen"}"#,
        )
        .prefer("resolution=ignore-duplicates,missing=default,return=representation")
        .is(201, json!([])),
        case("PUT onto B's row", "PUT", "todos?id=eq.3")
            .body(&format!(
                "{{\"id\":3,\"owner\":\"{USER_1}\",\"title\":\"stolen\"}}"
            ))
            .err(403, "42501"),
        post(
            "own insert works",
            "todos?select=title",
            r#"{"title":"a3"}"#,
        )
        .prefer("return=representation")
        .is(201, json!([{"title":"a3"}])),
        // anon: nothing to see, nothing to write.
        get("anon reads nothing", "todos")
            .who(Who::Anon)
            .is(200, json!([])),
        get("anon counts zero", "todos?select=count()")
            .who(Who::Anon)
            .is(200, json!([{"count":0}])),
        post("anon insert", "todos", r#"{"title":"anon"}"#)
            .who(Who::Anon)
            .err(401, "42501"),
        case("anon delete", "DELETE", "todos")
            .who(Who::Anon)
            .text(204, ""),
        // B sees exactly B's untouched row.
        get("B sees B's row", "todos?select=id,title,done")
            .who(Who::User(USER_2))
            .is(200, json!([{"id":3,"title":"b1","done":false}])),
    ])
    .await;

    // service_role bypasses RLS and confirms B's row was never touched.
    let all = fx
        .service_get("todos?select=id,owner,title&id=lte.3&order=id")
        .await;
    let rows: Vec<(i64, String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["owner"].as_str().unwrap().to_owned(),
                r["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, USER_1.to_owned(), "renamed by A".to_owned()),
            (2, USER_1.to_owned(), "renamed by A".to_owned()),
            (3, USER_2.to_owned(), "b1".to_owned()),
        ],
        "{all}"
    );
    let new: Value = fx.service_get("todos?select=owner,title&id=gt.3").await;
    assert_eq!(
        new,
        json!([{"owner": USER_1, "title": "a3"}]),
        "only A's own insert went through"
    );
}
