//! stdout/stderr and uncaught errors per invocation, invocation records,
//! and their filters (by invocation id, request id, level, status).

use reqwest::Method;
use serde_json::Value;

use super::Fx;

#[tokio::test]
async fn logs_are_kept_per_invocation_and_findable_by_request_id() {
    let Some(fx) = Fx::new("fn-logs").await else {
        return;
    };
    fx.deploy(
        "chatty",
        r#"export default { async fetch(req: Request) {
            const who = new URL(req.url).searchParams.get("who");
            console.log("hello", who, { n: 1 });
            await new Promise((r) => setTimeout(r, 20));
            console.error("careful", who);
            if (who === "bad") throw new Error("bad input " + who);
            return new Response("ok " + who);
        } };"#,
    )
    .await;
    // Two concurrent invocations keep their own lines.
    let (a, b) = tokio::join!(
        fx.call(Method::GET, "chatty?who=alice")
            .header("x-request-id", "req-alice")
            .send(),
        fx.call(Method::GET, "chatty?who=bob")
            .header("x-request-id", "req-bob")
            .send(),
    );
    let a = a.expect("alice");
    let b = b.expect("bob");
    let a_id = a.headers()["x-ferrobase-invocation-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let b_id = b.headers()["x-ferrobase-invocation-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(a.text().await.expect("text"), "ok alice");
    assert_eq!(b.text().await.expect("text"), "ok bob");

    let logs = fx
        .poll("chatty", "logs", &format!("invocation_id={a_id}"), |v| {
            v.as_array().is_some_and(|a| a.len() >= 2)
        })
        .await;
    let lines: Vec<(String, String)> = logs
        .as_array()
        .expect("array")
        .iter()
        .map(|l| {
            (
                l["level"].as_str().unwrap_or_default().to_owned(),
                l["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("error".to_owned(), "careful alice".to_owned()),
            ("log".to_owned(), "hello alice { n: 1 }".to_owned())
        ],
        "{logs}"
    );

    // By request id: bob's lines only.
    let logs = fx
        .poll("chatty", "logs", "request_id=req-bob", |v| {
            v.as_array().is_some_and(|a| a.len() >= 2)
        })
        .await;
    let all = logs.as_array().expect("array");
    assert_eq!(all.len(), 2, "{logs}");
    assert!(all.iter().all(|l| l["invocation_id"] == b_id.as_str()
        && l["message"].as_str().is_some_and(|m| m.contains("bob"))));

    // The invocation records: status, version, duration, request id.
    let inv = fx
        .poll("chatty", "invocations", "request_id=req-alice", |v| {
            v.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let rec = &inv[0];
    assert_eq!(rec["id"], a_id.as_str());
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["version"], 1);
    assert_eq!(rec["trigger"], "http");
    assert_eq!(rec["path"], "/chatty");
    assert!(
        rec["duration_ms"].as_i64().is_some_and(|d| d >= 20),
        "{rec}"
    );

    // An uncaught error: logged with the stack, recorded as a 500 with an error code.
    let resp = fx
        .call(Method::GET, "chatty?who=bad")
        .header("x-request-id", "req-bad")
        .send()
        .await
        .expect("bad");
    assert_eq!(resp.status(), 500);
    let inv = fx
        .poll("chatty", "invocations", "status=500", |v| {
            v.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(inv[0]["error"], "uncaught");
    assert_eq!(inv[0]["request_id"], "req-bad");
    let errors = fx
        .poll("chatty", "logs", "level=error&search=bad%20input", |v| {
            v.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert!(
        errors[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Uncaught error") && m.contains("bad input bad")),
        "{errors}"
    );

    // Bad filters are 400s, not 500s; another project's admin sees nothing of these logs.
    let resp = fx
        .admin(Method::GET, "functions/chatty/logs?invocation_id=nope")
        .send()
        .await
        .expect("bad filter");
    assert_eq!(resp.status(), 400);
    let resp = fx
        .admin(Method::GET, "functions/chatty/logs?limit=abc")
        .send()
        .await
        .expect("bad limit");
    assert_eq!(resp.status(), 400);
    let other = fx.t.create_project("fn-logs-other").await;
    let resp =
        fx.t.http
            .get(format!("{}/admin/v1/functions/chatty/logs", other.url))
            .bearer_auth(&other.service)
            .send()
            .await
            .expect("other");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v, serde_json::json!([]));
}
