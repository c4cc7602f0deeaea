//! The Rust SDK's functions client against a real server and Deno: deploy,
//! typed invoke, streaming invoke, errors, logs, secrets, schedules.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Fx;

#[derive(Debug, Deserialize, PartialEq)]
struct Greeting {
    message: String,
    secret: Option<String>,
}

#[tokio::test]
async fn sdk_deploys_invokes_and_manages_functions() {
    let Some(fx) = Fx::new("fn-sdk").await else {
        return;
    };
    let admin = ferrobase::Client::new(&fx.p.url, &fx.p.service).expect("admin client");
    let functions = admin.functions();
    let deployed = functions
        .deploy(
            "greet",
            r#"export default { async fetch(req: Request) {
                const path = new URL(req.url).pathname;
                if (path.endsWith("/stream")) {
                  const enc = new TextEncoder();
                  return new Response(new ReadableStream({ start(c) { c.enqueue(enc.encode("a")); c.enqueue(enc.encode("b")); c.close(); } }));
                }
                if (path.endsWith("/fail")) return Response.json({ code: "nope", message: "refused by the function" }, { status: 422 });
                const { name } = await req.json();
                console.log("greeting", name);
                return Response.json({ message: `hi ${name}`, secret: Deno.env.get("GREETING_SECRET") ?? null });
            } };"#,
        )
        .await
        .expect("deploy");
    assert_eq!(deployed["active_version"], 1);

    let user = ferrobase::Client::new(&fx.p.url, &fx.p.anon).expect("anon client");
    let g: Greeting = user
        .functions()
        .invoke("greet", &json!({"name": "Ada"}))
        .await
        .expect("invoke");
    assert_eq!(
        g,
        Greeting {
            message: "hi Ada".into(),
            secret: None
        }
    );

    // Secrets through the SDK reach the function; values never come back.
    let listed = functions
        .set_secrets(&BTreeMap::from([(
            "GREETING_SECRET".to_owned(),
            "s3cr3t".to_owned(),
        )]))
        .await
        .expect("secrets");
    assert!(!listed.to_string().contains("s3cr3t"));
    let g: Greeting = user
        .functions()
        .invoke("greet", &json!({"name": "Bo"}))
        .await
        .expect("invoke");
    assert_eq!(g.secret.as_deref(), Some("s3cr3t"));

    // Streaming.
    let req = user
        .functions()
        .request(reqwest::Method::GET, "greet/stream")
        .expect("request");
    let resp = user
        .functions()
        .invoke_streaming(req)
        .await
        .expect("stream");
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(got, b"ab");

    // Errors decode into Error::Api with the function's code, and the platform's.
    let err = user
        .functions()
        .invoke::<Value>("greet/fail", &json!({}))
        .await
        .expect_err("422");
    assert_eq!(err.status(), Some(422));
    assert_eq!(err.code(), Some("nope"));
    let err = user
        .functions()
        .invoke::<Value>("missing", &json!({}))
        .await
        .expect_err("404");
    assert_eq!(err.code(), Some("function_not_found"));
    let err = user
        .functions()
        .list()
        .await
        .expect_err("anon is not admin");
    assert_eq!(err.status(), Some(403));

    // Versions, logs, schedules, delete.
    functions
        .deploy(
            "greet",
            "export default { fetch: () => Response.json({ message: 'v2', secret: null }) }",
        )
        .await
        .expect("v2");
    let g: Greeting = user
        .functions()
        .invoke("greet", &json!({}))
        .await
        .expect("v2 invoke");
    assert_eq!(g.message, "v2");
    functions.activate("greet", 1).await.expect("rollback");
    let g: Greeting = user
        .functions()
        .invoke("greet", &json!({"name": "Cy"}))
        .await
        .expect("v1 again");
    assert_eq!(g.message, "hi Cy");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let logs = functions
            .logs("greet", &[("search", "greeting Cy")])
            .await
            .expect("logs");
        if logs.as_array().is_some_and(|a| !a.is_empty()) || tokio::time::Instant::now() > deadline
        {
            assert_eq!(logs[0]["message"], "greeting Cy", "{logs}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let inv = functions
        .invocations("greet", &[("limit", "1")])
        .await
        .expect("invocations");
    assert_eq!(inv.as_array().map(Vec::len), Some(1));
    // A handful of calls stays within the per-second allowance: each has its
    // own record, none is only counted.
    assert_eq!(
        functions
            .invocation_counts("greet", &[("limit", "10")])
            .await
            .expect("invocation counts"),
        json!([])
    );
    let s = functions
        .schedule("greet", "nightly", "0 3 * * *", &json!({"name": "cron"}))
        .await
        .expect("schedule");
    assert_eq!(s["enabled"], true);
    assert_eq!(
        functions
            .schedule_runs("greet", "nightly")
            .await
            .expect("runs"),
        json!([])
    );
    functions
        .delete_secret("GREETING_SECRET")
        .await
        .expect("delete secret");
    assert_eq!(functions.secrets().await.expect("secrets"), json!([]));
    functions.delete("greet").await.expect("delete");
    assert_eq!(functions.list().await.expect("list"), json!([]));
}
