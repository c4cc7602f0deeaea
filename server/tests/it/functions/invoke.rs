//! Deploy → invoke → update → rollback, what a function sees of the request
//! and the caller, secrets, `verify_jwt`, the data API under the caller's
//! RLS, streaming both ways.

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Fx, expect_error};

const HELLO_V1: &str = r#"Deno.serve(() => new Response("hello v1"));"#;
const HELLO_V2: &str = r#"export default { fetch: () => new Response("hello v2") };"#;

async fn text(fx: &Fx, path: &str) -> (u16, String) {
    let resp = fx.call(Method::GET, path).send().await.expect("invoke");
    (resp.status().as_u16(), resp.text().await.expect("text"))
}

/// Invokes `slug` (with request id `request_id`), whose function answers 200
/// with a first chunk `first\n` and then loses its stream: the client's body
/// must fail promptly (`hung` says what waiting over 10 s would mean), not
/// end as if complete, and the invocation is recorded as a `stream_error`.
async fn assert_stream_cut(fx: &Fx, slug: &str, request_id: &str, hung: &str) {
    let started = Instant::now();
    let resp = fx
        .call(Method::GET, slug)
        .header("x-request-id", request_id)
        .send()
        .await
        .expect("invoke");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("a chunk").expect("bytes");
    assert_eq!(&first[..], b"first\n");
    let mut failed = false;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect(hung)
    {
        if chunk.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "the cut stream ended as if complete");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let inv = fx
        .poll(
            slug,
            "invocations",
            &format!("request_id={request_id}"),
            |v| v.as_array().is_some_and(|a| !a.is_empty()),
        )
        .await;
    assert_eq!(inv[0]["error"], "stream_error", "{inv}");
}

#[tokio::test]
async fn deploy_invoke_update_rollback() {
    let Some(fx) = Fx::new("fn-deploy").await else {
        return;
    };
    let created = fx.deploy("hello", HELLO_V1).await;
    assert_eq!(created["slug"], "hello");
    assert_eq!(created["active_version"], 1);
    assert_eq!(created["verify_jwt"], true);
    assert_eq!(text(&fx, "hello").await, (200, "hello v1".to_owned()));

    let resp = fx
        .admin(Method::PUT, "functions/hello")
        .json(&json!({ "code": HELLO_V2 }))
        .send()
        .await
        .expect("update");
    assert_eq!(resp.status(), 200);
    let updated: Value = resp.json().await.expect("json");
    assert_eq!(updated["active_version"], 2);
    let versions = updated["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    assert_ne!(versions[0]["checksum"], versions[1]["checksum"]);
    assert_eq!(versions[0]["active"], true);
    assert_eq!(text(&fx, "hello").await, (200, "hello v2".to_owned()));

    // Rollback to version 1, then the version's files are readable.
    let resp = fx
        .admin(Method::POST, "functions/hello/versions/1/activate")
        .send()
        .await
        .expect("activate");
    assert_eq!(resp.status(), 200);
    assert_eq!(text(&fx, "hello").await, (200, "hello v1".to_owned()));
    let v1: Value = fx
        .admin(Method::GET, "functions/hello/versions/1")
        .send()
        .await
        .expect("version")
        .json()
        .await
        .expect("json");
    assert_eq!(v1["files"]["index.ts"], HELLO_V1);
    assert_eq!(v1["active"], true);

    // A deploy with activate=false stores the version without running it.
    let resp = fx
        .admin(Method::PUT, "functions/hello")
        .json(&json!({ "code": "export default { fetch: () => new Response('v3') }", "activate": false }))
        .send()
        .await
        .expect("update");
    assert_eq!(resp.status(), 200);
    assert_eq!(text(&fx, "hello").await, (200, "hello v1".to_owned()));

    // PUT on a new slug creates it; list shows both; delete removes one.
    let resp = fx
        .admin(Method::PUT, "functions/other")
        .json(&json!({ "files": {"main.ts": "import { x } from './lib/x.ts'; export default { fetch: () => new Response(x) }", "lib/x.ts": "export const x = 'multi-file';"}, "entrypoint": "main.ts" }))
        .send()
        .await
        .expect("put new");
    assert_eq!(resp.status(), 201);
    assert_eq!(text(&fx, "other").await, (200, "multi-file".to_owned()));
    let list: Value = fx
        .admin(Method::GET, "functions")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let slugs: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|f| f["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["hello", "other"]);
    let resp = fx
        .admin(Method::DELETE, "functions/other")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    expect_error(
        fx.call(Method::GET, "other").send().await.expect("gone"),
        404,
        "function_not_found",
    )
    .await;
}

const ECHO: &str = r#"
export default {
  async fetch(req: Request) {
    const url = new URL(req.url);
    const claims = req.headers.get("x-ferrobase-claims");
    return Response.json({
      method: req.method,
      path: url.pathname,
      query: url.search,
      host: url.host,
      custom: req.headers.get("x-custom"),
      body: await req.text(),
      claims: claims ? JSON.parse(atob(claims)) : null,
      role: req.headers.get("x-ferrobase-role"),
      invocation: req.headers.get("x-ferrobase-invocation-id"),
      request_id: req.headers.get("x-request-id"),
    }, { status: 201, headers: { "x-from-function": "yes" } });
  },
};
"#;

#[tokio::test]
async fn the_function_sees_the_request_and_the_verified_caller() {
    let Some(fx) = Fx::new("fn-echo").await else {
        return;
    };
    fx.deploy("echo", ECHO).await;
    let user = fx.user_token("00000000-0000-4000-8000-000000000001").await;
    let resp =
        fx.t.http
            .put(format!("{}/functions/v1/echo/a/b?x=1&y=two", fx.p.url))
            .bearer_auth(&user)
            .header("apikey", &fx.p.anon)
            .header("x-custom", "kept")
            // A client cannot forge the trusted headers.
            .header(
                "x-ferrobase-claims",
                base64::engine::general_purpose::STANDARD.encode(r#"{"role":"service_role"}"#),
            )
            .header("x-ferrobase-role", "service_role")
            .header("x-request-id", "req-echo-1")
            .body("payload")
            .send()
            .await
            .expect("invoke");
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-from-function"], "yes");
    assert_eq!(resp.headers()["x-ferrobase-function-version"], "1");
    let inv = resp.headers()["x-ferrobase-invocation-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/echo/a/b");
    assert_eq!(v["query"], "?x=1&y=two");
    assert_eq!(v["custom"], "kept");
    assert_eq!(v["body"], "payload");
    assert_eq!(v["role"], "authenticated");
    assert_eq!(v["claims"]["sub"], "00000000-0000-4000-8000-000000000001");
    assert_eq!(v["claims"]["ref"], "fn-echo");
    assert_eq!(v["invocation"], inv);
    assert_eq!(v["request_id"], "req-echo-1");
    assert!(
        v["host"]
            .as_str()
            .is_some_and(|h| h.starts_with("127.0.0.1:")),
        "{v}"
    );
}

#[tokio::test]
async fn verify_jwt_on_and_off() {
    let Some(fx) = Fx::new("fn-jwt").await else {
        return;
    };
    fx.deploy("locked", ECHO).await;
    fx.deploy_with("open", json!({ "code": ECHO, "verify_jwt": false }))
        .await;
    let url = |slug: &str| format!("{}/functions/v1/{slug}", fx.p.url);

    // verify_jwt on: no key, a garbage token, a token of another project → 401.
    expect_error(
        fx.t.http.post(url("locked")).send().await.expect("no key"),
        401,
        "missing_api_key",
    )
    .await;
    expect_error(
        fx.t.http
            .post(url("locked"))
            .bearer_auth("not.a.jwt")
            .send()
            .await
            .expect("bad"),
        401,
        "invalid_token",
    )
    .await;
    let other = fx.t.create_project("fn-jwt-other").await;
    expect_error(
        fx.t.http
            .post(url("locked"))
            .bearer_auth(&other.anon)
            .send()
            .await
            .expect("other"),
        401,
        "invalid_token",
    )
    .await;
    let ok =
        fx.t.http
            .post(url("locked"))
            .bearer_auth(&fx.p.anon)
            .send()
            .await
            .expect("anon");
    assert_eq!(ok.status(), 201);
    assert_eq!(ok.json::<Value>().await.expect("json")["role"], "anon");

    // verify_jwt off: anyone may call; a valid token still reaches the function, a bad one does not.
    let v: Value =
        fx.t.http
            .post(url("open"))
            .send()
            .await
            .expect("open")
            .json()
            .await
            .expect("json");
    assert_eq!(v["claims"], Value::Null);
    let v: Value =
        fx.t.http
            .post(url("open"))
            .bearer_auth("forged.token.here")
            .send()
            .await
            .expect("open bad")
            .json()
            .await
            .expect("json");
    assert_eq!(v["claims"], Value::Null);
    assert_eq!(v["role"], Value::Null);
    let v: Value =
        fx.t.http
            .post(url("open"))
            .bearer_auth(&fx.p.service)
            .send()
            .await
            .expect("open service")
            .json()
            .await
            .expect("json");
    assert_eq!(v["role"], "service_role");

    // Turning verify_jwt on takes effect at once.
    let resp = fx
        .admin(Method::PUT, "functions/open")
        .json(&json!({ "verify_jwt": true }))
        .send()
        .await
        .expect("settings");
    assert_eq!(resp.status(), 200);
    expect_error(
        fx.t.http
            .post(url("open"))
            .send()
            .await
            .expect("now locked"),
        401,
        "missing_api_key",
    )
    .await;
}

#[tokio::test]
async fn secrets_are_env_vars_and_never_returned() {
    let Some(fx) = Fx::new("fn-secrets").await else {
        return;
    };
    fx.deploy(
        "env",
        r#"export default { fetch: () => Response.json({
            secret: Deno.env.get("STRIPE_KEY") ?? null,
            url: Deno.env.get("FERROBASE_URL"),
            anon: Deno.env.get("FERROBASE_ANON_KEY"),
            service: Deno.env.get("SUPABASE_SERVICE_ROLE_KEY"),
        }) };"#,
    )
    .await;
    let v: Value = fx
        .call(Method::GET, "env")
        .send()
        .await
        .expect("invoke")
        .json()
        .await
        .expect("json");
    assert_eq!(v["secret"], Value::Null);
    assert_eq!(v["url"], fx.p.url);
    assert_eq!(v["anon"], fx.p.anon);
    assert_eq!(v["service"], fx.p.service);

    let resp = fx
        .admin(Method::POST, "functions/secrets")
        .json(&json!({ "STRIPE_KEY": "sk_live_very_secret" }))
        .send()
        .await
        .expect("set");
    assert_eq!(resp.status(), 200);
    let listed = resp.text().await.expect("text");
    assert!(!listed.contains("sk_live_very_secret"), "{listed}");
    assert!(listed.contains("STRIPE_KEY"));
    // The warm process restarts with the new environment.
    let v: Value = fx
        .call(Method::GET, "env")
        .send()
        .await
        .expect("invoke")
        .json()
        .await
        .expect("json");
    assert_eq!(v["secret"], "sk_live_very_secret");

    // Supabase's list shape, replacing the value.
    let resp = fx
        .admin(Method::POST, "functions/secrets")
        .json(&json!([{ "name": "STRIPE_KEY", "value": "sk_rotated" }]))
        .send()
        .await
        .expect("rotate");
    assert_eq!(resp.status(), 200);
    let v: Value = fx
        .call(Method::GET, "env")
        .send()
        .await
        .expect("invoke")
        .json()
        .await
        .expect("json");
    assert_eq!(v["secret"], "sk_rotated");

    // Stored encrypted: the plaintext is nowhere in the control plane row.
    let client = fx.t.app.platform.control().get().await.expect("control");
    let row = client
        .query_one(
            "select value_enc from function_secrets where name = 'STRIPE_KEY'",
            &[],
        )
        .await
        .expect("row");
    let enc: String = row.get(0);
    assert!(!enc.contains("sk_rotated"));

    let listed = fx
        .admin(Method::GET, "functions/secrets")
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    assert!(!listed.contains("sk_rotated"), "{listed}");
    let resp = fx
        .admin(Method::DELETE, "functions/secrets/STRIPE_KEY")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    let v: Value = fx
        .call(Method::GET, "env")
        .send()
        .await
        .expect("invoke")
        .json()
        .await
        .expect("json");
    assert_eq!(v["secret"], Value::Null);

    // Reserved and malformed names, empty bodies.
    for body in [
        json!({"FERROBASE_URL": "x"}),
        json!({"1BAD": "x"}),
        json!({}),
        json!({"A-B": "x"}),
    ] {
        expect_error(
            fx.admin(Method::POST, "functions/secrets")
                .json(&body)
                .send()
                .await
                .expect("bad"),
            400,
            "invalid_secret",
        )
        .await;
    }
}

#[tokio::test]
async fn a_function_calls_the_data_api_under_the_callers_rls() {
    let Some(fx) = Fx::new("fn-rls").await else {
        return;
    };
    fx.t.owner_sql(
        &fx.p,
        "create table notes (id int primary key, owner uuid not null, body text);
             alter table notes enable row level security;
             create policy mine on notes for select to authenticated using (owner = auth.uid());
             insert into notes values
               (1, '00000000-0000-4000-8000-00000000000a', 'a1'),
               (2, '00000000-0000-4000-8000-00000000000b', 'b1');",
    )
    .await;
    fx.deploy(
        "notes",
        r#"export default { async fetch(req: Request) {
            const res = await fetch(Deno.env.get("FERROBASE_URL") + "/rest/v1/notes?select=body", {
              headers: { apikey: Deno.env.get("FERROBASE_ANON_KEY")!, Authorization: req.headers.get("Authorization")! },
            });
            return new Response(await res.text(), { status: res.status, headers: { "content-type": "application/json" } });
        } };"#,
    )
    .await;
    for (sub, expected) in [
        (
            "00000000-0000-4000-8000-00000000000a",
            json!([{"body": "a1"}]),
        ),
        (
            "00000000-0000-4000-8000-00000000000b",
            json!([{"body": "b1"}]),
        ),
    ] {
        let token = fx.user_token(sub).await;
        let resp =
            fx.t.http
                .get(format!("{}/functions/v1/notes", fx.p.url))
                .bearer_auth(&token)
                .send()
                .await
                .expect("invoke");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.json::<Value>().await.expect("json"), expected);
    }
    // As anon: nothing.
    let v: Value = fx
        .call(Method::GET, "notes")
        .send()
        .await
        .expect("anon")
        .json()
        .await
        .expect("json");
    assert_eq!(v, json!([]));
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let Some(fx) = Fx::new("fn-stream").await else {
        return;
    };
    fx.deploy(
        "stream",
        r#"export default { async fetch(req: Request) {
            const url = new URL(req.url);
            if (url.pathname.endsWith("/count")) {
              let n = 0;
              for await (const chunk of req.body!) n += chunk.length;
              return Response.json({ bytes: n });
            }
            const enc = new TextEncoder();
            const body = new ReadableStream({
              async start(c) {
                c.enqueue(enc.encode("first\n"));
                await new Promise((r) => setTimeout(r, 700));
                c.enqueue(enc.encode("second\n"));
                c.close();
              },
            });
            return new Response(body, { headers: { "content-type": "text/plain" } });
        } };"#,
    )
    .await;
    // The first chunk arrives long before the second is produced.
    let started = Instant::now();
    let resp = fx.call(Method::GET, "stream").send().await.expect("invoke");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("a chunk").expect("bytes");
    let first_at = started.elapsed();
    assert_eq!(&first[..], b"first\n");
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.expect("bytes"));
    }
    assert_eq!(rest, b"second\n");
    assert!(
        started.elapsed() - first_at >= Duration::from_millis(500),
        "the first chunk was not streamed ahead ({first_at:?} of {:?})",
        started.elapsed()
    );

    // A chunked upload streams in (no Content-Length), counted by the function.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'x'; 64 * 1024])).collect();
    let resp = fx
        .call(Method::POST, "stream/count")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["bytes"],
        8 * 64 * 1024
    );

    // Over FERROBASE_MAX_BODY_BYTES (1 MiB in tests): 413 before the function runs.
    let resp = fx
        .call(Method::POST, "stream/count")
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .expect("too large");
    expect_error(resp, 413, "payload_too_large").await;
}

/// A body still streaming at the function's timeout is cut (the client sees
/// the stream fail instead of waiting forever) and the invocation is
/// recorded with `stream_error`; the next invocations are served as usual
/// (the deadline's timer is only armed for a body that is not complete at
/// once).
#[tokio::test]
async fn a_stream_that_outlives_its_timeout_is_cut_and_recorded() {
    let Some(fx) = Fx::new("fn-stream-timeout").await else {
        return;
    };
    fx.deploy_with(
        "drip",
        json!({ "timeout_ms": 800, "code": r#"export default { fetch(req: Request) {
            if (new URL(req.url).pathname.endsWith("/quick")) return new Response("quick");
            const enc = new TextEncoder();
            return new Response(new ReadableStream({
              start(c) { c.enqueue(enc.encode("first\n")); /* never closes */ },
            }));
        } };"# }),
    )
    .await;
    assert_stream_cut(
        &fx,
        "drip",
        "drip-1",
        "the stream was not cut at the timeout",
    )
    .await;
    for _ in 0..20 {
        let (status, text) = text(&fx, "drip/quick").await;
        assert_eq!((status, text.as_str()), (200, "quick"));
    }
}

/// The server drives each connection to a host from the invocation that uses
/// it and pools it once its response ended: whatever the previous response
/// was (streamed in chunks, of known length, empty, a HEAD, an answer that
/// ignored an upload), the next invocation on the pooled connection gets its
/// own answer, whole. The function allows one invocation at a time, so every
/// invocation takes the one pooled connection (or a fresh one if the host
/// hung up).
#[tokio::test]
async fn a_pooled_connection_serves_the_next_invocation_after_any_response() {
    let Some(fx) = Fx::new("fn-pool").await else {
        return;
    };
    fx.deploy_with(
        "mixed",
        json!({ "concurrency": 1, "code": r#"export default { async fetch(req: Request) {
            const path = new URL(req.url).pathname;
            const enc = new TextEncoder();
            if (path.endsWith("/chunks")) {
              return new Response(new ReadableStream({
                async start(c) {
                  for (const part of ["a", "b", "c"]) {
                    c.enqueue(enc.encode(part));
                    await new Promise((r) => setTimeout(r, 10));
                  }
                  c.close();
                },
              }));
            }
            if (path.endsWith("/empty")) return new Response(null, { status: 204 });
            if (path.endsWith("/ignore")) return new Response("ignored");
            if (path.endsWith("/echo")) return new Response(await req.text());
            return Response.json({ path, method: req.method });
        } };"# }),
    )
    .await;
    let big = "x".repeat(200 * 1024);
    for round in 0..6 {
        let resp = fx
            .call(Method::GET, "mixed/chunks")
            .send()
            .await
            .expect("chunks");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("text"), "abc", "round {round}");

        let resp = fx
            .call(Method::GET, "mixed/json")
            .send()
            .await
            .expect("json");
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.expect("json body");
        assert_eq!(v["path"], "/mixed/json", "round {round}: {v}");

        let resp = fx
            .call(Method::GET, "mixed/empty")
            .send()
            .await
            .expect("empty");
        assert_eq!(resp.status(), 204, "round {round}");
        assert!(resp.bytes().await.expect("empty body").is_empty());

        let resp = fx
            .call(Method::HEAD, "mixed/json")
            .send()
            .await
            .expect("head");
        assert_eq!(resp.status(), 200, "round {round}");

        let resp = fx
            .call(Method::POST, "mixed/ignore")
            .body(big.clone())
            .send()
            .await
            .expect("ignored upload");
        assert_eq!(resp.status(), 200, "round {round}");
        assert_eq!(resp.text().await.expect("text"), "ignored");

        let body = format!("echo {round}");
        let resp = fx
            .call(Method::POST, "mixed/echo")
            .body(body.clone())
            .send()
            .await
            .expect("echo");
        assert_eq!(resp.status(), 200, "round {round}");
        assert_eq!(resp.text().await.expect("text"), body);
    }
}

/// A host that dies while its response streams: the client's stream fails
/// (it neither hangs nor ends as if complete), the invocation is recorded as
/// a stream error, and the next invocation gets a fresh process.
#[tokio::test]
async fn a_host_that_dies_mid_response_fails_the_stream_and_the_next_one_is_served() {
    let Some(fx) = Fx::new("fn-die-mid").await else {
        return;
    };
    fx.deploy(
        "dies",
        r#"export default { fetch(req: Request) {
            if (new URL(req.url).pathname.endsWith("/ok")) return new Response("ok");
            const enc = new TextEncoder();
            return new Response(new ReadableStream({
              start(c) {
                c.enqueue(enc.encode("first\n"));
                setTimeout(() => Deno.exit(9), 100);
              },
            }));
        } };"#,
    )
    .await;
    let (status, body) = text(&fx, "dies/ok").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_stream_cut(&fx, "dies", "dies-1", "the stream hung after its host died").await;
    for _ in 0..3 {
        let (status, body) = text(&fx, "dies/ok").await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
}
