//! A todo list where Row Level Security keeps every user's todos private.
//!
//! ```sh
//! FERROBASE_URL=http://127.0.0.1:8080/p/default FERROBASE_ANON_KEY=… FERROBASE_SERVICE_ROLE_KEY=… \
//!   cargo run --manifest-path examples/Cargo.toml -p todo
//! ```
//!
//! Set-up (the service-role key, as a deploy script would): the table and
//! its policy through admin SQL. Then, as an app would with the anon key: two
//! users sign up, insert todos and read their lists back.

use std::time::{SystemTime, UNIX_EPOCH};

use ferrobase::{AdminUserAttributes, AuthClient, Client, Order, SignUp};
use serde::{Deserialize, Serialize};

/// The table, its RLS policy and the default owner: `user_id` is filled from
/// the caller's token, so the app never sends it.
const SCHEMA: &str = "
create table if not exists public.todos (
    id bigint generated always as identity primary key,
    user_id uuid not null default auth.uid(),
    title text not null check (length(title) between 1 and 200),
    done boolean not null default false,
    created_at timestamptz not null default now()
);
alter table public.todos enable row level security;
drop policy if exists todos_owner on public.todos;
create policy todos_owner on public.todos
    for all to authenticated
    using (user_id = auth.uid())
    with check (user_id = auth.uid());
";

/// A row as the data API returns it.
#[derive(Debug, Deserialize)]
struct Todo {
    id: i64,
    user_id: String,
    title: String,
    done: bool,
}

/// What the app sends to create a todo.
#[derive(Serialize)]
struct NewTodo<'a> {
    title: &'a str,
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn setting(name: &str) -> AnyResult<String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/README.md)").into())
}

/// Signs a new user up and in; when the project requires email
/// confirmation, confirms the address with the admin API first.
async fn new_user(
    anon: &Client,
    service: &Client,
    email: &str,
    password: &str,
) -> AnyResult<AuthClient> {
    let auth = anon.auth();
    match auth.sign_up(email, password, None).await? {
        SignUp::Session(_) => {}
        SignUp::User(user) => {
            let confirm = AdminUserAttributes {
                email_confirm: Some(true),
                ..AdminUserAttributes::default()
            };
            service
                .auth()
                .admin()
                .update_user_by_id(&user.id, &confirm)
                .await?;
            auth.sign_in_with_password(email, password).await?;
        }
    }
    Ok(auth)
}

/// The signed-in user's todos, oldest first.
async fn list(user: &Client) -> AnyResult<Vec<Todo>> {
    Ok(user
        .from("todos")
        .select("id, user_id, title, done")
        .order("id", Order::asc())
        .fetch()
        .await?)
}

fn check(ok: bool, what: &str) -> AnyResult<()> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let url = setting("FERROBASE_URL")?;
    let anon = Client::new(&url, setting("FERROBASE_ANON_KEY")?)?;
    let service = Client::new(&url, setting("FERROBASE_SERVICE_ROLE_KEY")?)?;

    service.admin_sql(SCHEMA, &[]).await?;
    println!("table public.todos ready (RLS: own rows only)");

    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let password = "correct horse battery staple";
    let alice = new_user(
        &anon,
        &service,
        &format!("alice-{run}@example.com"),
        password,
    )
    .await?;
    let bob = new_user(&anon, &service, &format!("bob-{run}@example.com"), password).await?;
    let alice_id = alice.get_user().await?.id;
    println!("signed up alice and bob");

    let alice_db = alice.client().await?;
    let bob_db = bob.client().await?;
    let inserted: Vec<Todo> = alice_db
        .from("todos")
        .insert(vec![
            NewTodo { title: "buy milk" },
            NewTodo {
                title: "walk the dog",
            },
        ])
        .fetch()
        .await?;
    bob_db
        .from("todos")
        .insert(NewTodo {
            title: "water the plants",
        })
        .execute::<serde_json::Value>()
        .await?;

    let alice_todos = list(&alice_db).await?;
    let bob_todos = list(&bob_db).await?;
    for t in &alice_todos {
        println!("alice: #{} {} (done: {})", t.id, t.title, t.done);
    }
    for t in &bob_todos {
        println!("bob: #{} {} (done: {})", t.id, t.title, t.done);
    }
    println!(
        "alice sees {} todos, bob sees {}",
        alice_todos.len(),
        bob_todos.len()
    );
    check(
        alice_todos.len() == 2 && alice_todos.iter().all(|t| t.user_id == alice_id),
        "alice sees exactly her two todos",
    )?;
    check(
        bob_todos.len() == 1 && bob_todos[0].title == "water the plants",
        "bob sees only his todo",
    )?;

    // Bob asks for Alice's todo by id and tries to complete it.
    let target = inserted.first().ok_or("the insert returned no rows")?.id;
    let peek: Vec<Todo> = bob_db
        .from("todos")
        .select("id, user_id, title, done")
        .eq("id", target)
        .fetch()
        .await?;
    check(peek.is_empty(), "bob cannot read alice's todo by id")?;
    let changed: Vec<Todo> = bob_db
        .from("todos")
        .update(serde_json::json!({"done": true}))
        .eq("id", target)
        .fetch()
        .await?;
    check(changed.is_empty(), "bob cannot complete alice's todo")?;

    // Alice completes it herself.
    let done: Vec<Todo> = alice_db
        .from("todos")
        .update(serde_json::json!({"done": true}))
        .eq("id", target)
        .fetch()
        .await?;
    check(
        done.len() == 1 && done[0].done,
        "alice completes her own todo",
    )?;

    // Without a user token (anon key only) the table shows nothing.
    let anonymous: Vec<Todo> = anon
        .from("todos")
        .select("id, user_id, title, done")
        .fetch()
        .await?;
    check(anonymous.is_empty(), "the anon key alone sees no todos")?;

    println!("todo example finished");
    Ok(())
}
