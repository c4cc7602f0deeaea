//! The official clients, unchanged: `@supabase/postgrest-js` (Node) and
//! Python `postgrest` run a scripted session (filters, embedding, count,
//! upsert, rpc, single, errors; as anon and as two users) against a project.
//!
//! The scripts live in `tests/peers/`; `cargo xtask test` installs the pinned
//! clients (`tests/peers/package.json` into `tests/peers/node_modules`,
//! `tests/peers/requirements.txt` into `.peers/venv`) and exports
//! `FERROBASE_PEERS_DIR`, `FERROBASE_PEERS_NODE` and `FERROBASE_PEERS_PYTHON`.
//! A failing script fails the test, with its output.

use std::path::PathBuf;
use std::process::Stdio;

use super::{Fx, USER_1, USER_2};

/// Public tags, per-user todos (RLS on `auth.uid()`), lists holding both.
const PEER_SQL: &str = "
create table lists (id int primary key, name text not null);
create table tags (id int primary key, name text not null unique);
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
create function add(a int, b int) returns int language sql immutable as 'select a + b';
create function my_todos() returns setof todos language sql stable as 'select * from todos';
create function fail_it() returns void language plpgsql
  as $$ begin raise exception 'boom' using detail = 'det', hint = 'hin'; end $$;
insert into lists values (1, 'home'), (2, 'work');
insert into tags values (1, 'red'), (2, 'green'), (3, 'blue');
insert into todos (owner, list_id, title) values
  ('00000000-0000-4000-8000-000000000001', 1, 'a1'),
  ('00000000-0000-4000-8000-000000000001', 1, 'a2'),
  ('00000000-0000-4000-8000-000000000002', 1, 'b1');
";

/// `$name`, or a panic telling how to get it.
fn env_path(name: &str) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{name} is not set: run the tests with `cargo xtask test`, which installs the peer clients")
    })
}

/// Runs `program script URL ANON USER_A USER_B` and fails the test with its
/// output unless it exits 0; returns its stdout.
async fn run_session(program: PathBuf, script: &str, fx: &Fx) -> String {
    let script = env_path("FERROBASE_PEERS_DIR").join(script);
    let user_a = fx.user_token(USER_1).await;
    let user_b = fx.user_token(USER_2).await;
    let out = tokio::process::Command::new(&program)
        .arg(&script)
        .args([&fx.p.url, &fx.p.anon, &user_a, &user_b])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .unwrap_or_else(|_| panic!("{} timed out", script.display()))
        .unwrap_or_else(|e| panic!("could not start {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        program.display(),
        script.display(),
        out.status
    );
    stdout
}

#[tokio::test]
async fn postgrest_js_session() {
    let fx = Fx::new("peer-js", PEER_SQL).await;
    let out = run_session(
        env_path("FERROBASE_PEERS_NODE"),
        "postgrest_js_session.mjs",
        &fx,
    )
    .await;
    assert!(out.contains("checks passed"), "{out}");
}

#[tokio::test]
async fn postgrest_py_session() {
    let fx = Fx::new("peer-py", PEER_SQL).await;
    let out = run_session(
        env_path("FERROBASE_PEERS_PYTHON"),
        "postgrest_py_session.py",
        &fx,
    )
    .await;
    assert!(out.contains("checks passed"), "{out}");
}
