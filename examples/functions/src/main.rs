//! Deploy an edge function, invoke it, deploy a new version and roll back.
//!
//! ```sh
//! FERROBASE_URL=http://127.0.0.1:8080/p/default FERROBASE_ANON_KEY=… FERROBASE_SERVICE_ROLE_KEY=… \
//!   cargo run --manifest-path examples/Cargo.toml -p functions
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use ferrobase::Client;
use serde::Deserialize;
use serde_json::{Value, json};

/// Version one: greets by name with the project's secret greeting; refuses
/// an empty name with its own error body.
const HELLO_V1: &str = r#"
export default {
  async fetch(req: Request): Promise<Response> {
    const { name } = await req.json().catch(() => ({}));
    if (typeof name !== "string" || name.length === 0) {
      return Response.json({ code: "name_required", message: "send {\"name\": \"…\"}" }, { status: 422 });
    }
    console.log("greeting", name);
    const greeting = Deno.env.get("GREETING") ?? "Hello";
    return Response.json({ message: `${greeting}, ${name}!`, version: "v1" });
  },
};
"#;

/// Version two: a different answer, to show versions and rollback.
const HELLO_V2: &str = r#"
export default {
  fetch: async (req: Request) => {
    const { name } = await req.json().catch(() => ({}));
    return Response.json({ message: `Hi there, ${name ?? "stranger"}.`, version: "v2" });
  },
};
"#;

/// What `hello` answers.
#[derive(Debug, Deserialize)]
struct Greeting {
    message: String,
    version: String,
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn setting(name: &str) -> AnyResult<String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/README.md)").into())
}

fn check(ok: bool, what: &str) -> AnyResult<()> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

/// The active version number in a deploy/activate answer.
fn active_version(function: &Value) -> AnyResult<u32> {
    function["active_version"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("no active_version in {function}").into())
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let url = setting("FERROBASE_URL")?;
    let app = Client::new(&url, setting("FERROBASE_ANON_KEY")?)?;
    let service = Client::new(&url, setting("FERROBASE_SERVICE_ROLE_KEY")?)?;
    let admin = service.functions();

    // Secrets are set before the deploy; their values never come back.
    let listed = admin
        .set_secrets(&BTreeMap::from([(
            "GREETING".to_owned(),
            "Bonjour".to_owned(),
        )]))
        .await?;
    check(
        !listed.to_string().contains("Bonjour"),
        "the secret is stored, its value not listed",
    )?;
    let v1 = active_version(&admin.deploy("hello", HELLO_V1).await?)?;
    println!("deployed hello (version {v1})");

    let hello = app.functions();
    let g: Greeting = hello.invoke("hello", &json!({"name": "Ada"})).await?;
    println!("hello answered: {} ({})", g.message, g.version);
    check(
        g.message == "Bonjour, Ada!" && g.version == "v1",
        "the function read its secret",
    )?;
    let err = hello
        .invoke::<Value>("hello", &json!({}))
        .await
        .err()
        .ok_or("FAILED: an empty name was accepted")?;
    check(
        err.status() == Some(422) && err.code() == Some("name_required"),
        "the function's own error is a typed error (422 name_required)",
    )?;

    let v2 = active_version(&admin.deploy("hello", HELLO_V2).await?)?;
    let g: Greeting = hello.invoke("hello", &json!({"name": "Ada"})).await?;
    println!("deployed version {v2}; hello answered: {}", g.message);
    check(g.version == "v2", "the new version serves")?;
    admin.activate("hello", v1).await?;
    let g: Greeting = hello.invoke("hello", &json!({"name": "Ada"})).await?;
    check(g.version == "v1", &format!("rolled back to version {v1}"))?;

    // console.log output lands in the function's logs (written shortly after).
    let mut logged = false;
    for _ in 0..100 {
        let logs = admin.logs("hello", &[("search", "greeting Ada")]).await?;
        if logs.as_array().is_some_and(|l| !l.is_empty()) {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(logged, "console.log output is in the function's logs")?;

    println!("functions example finished");
    Ok(())
}
