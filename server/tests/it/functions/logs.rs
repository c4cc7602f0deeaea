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

/// Under load (here more than 3 invocations of one function per second),
/// successful invocations that printed nothing are counted per second
/// instead of recorded one by one; every failure and every invocation with
/// log lines keeps its own record, findable by request id. A caller cannot
/// use this to hide failures: forged `x-ferrobase-*` headers change nothing.
#[tokio::test]
async fn under_load_silent_successes_are_counted_and_failures_and_logs_kept() {
    let Some(fx) = Fx::new_with("fn-counts", |c| {
        c.functions.functions_record_each_per_sec = 3;
    })
    .await
    else {
        return;
    };
    fx.deploy_with(
        "busy",
        serde_json::json!({ "concurrency": 1000, "code": r#"export default { fetch(req: Request) {
            const u = new URL(req.url);
            const what = u.searchParams.get("what");
            if (what === "log") console.log("noted", u.searchParams.get("n"));
            if (what === "fail") return new Response("no", { status: 503 });
            if (what === "throw") throw new Error("boom " + u.searchParams.get("n"));
            return new Response("ok");
        } };"# }),
    )
    .await;
    let kind = |i: usize| match i % 10 {
        3 => "log",
        5 => "fail",
        7 => "throw",
        _ => "ok",
    };
    let calls = (0..60).map(|i| {
        let req = fx
            .call(Method::GET, &format!("busy?what={}&n={i}", kind(i)))
            .header("x-request-id", format!("load-{i}"))
            // Forged by the caller: stripped, so they neither hide the failure nor its record.
            .header("x-ferrobase-error", "none")
            .header(
                "x-ferrobase-invocation-id",
                "00000000-0000-0000-0000-000000000000",
            );
        async move {
            let resp = req.send().await.expect("invoke");
            (i, resp.status().as_u16())
        }
    });
    let answered = futures_util::future::join_all(calls).await;
    for (i, status) in &answered {
        let want = match kind(*i) {
            "fail" => 503,
            "throw" => 500,
            _ => 200,
        };
        assert_eq!(*status, want, "call {i}");
    }
    let successes = answered.iter().filter(|(_, s)| *s == 200).count() as i64;

    // Every failure has its own record.
    for (status, n) in [(503, 6), (500, 6)] {
        let inv = fx
            .poll("busy", "invocations", &format!("status={status}"), |v| {
                v.as_array().is_some_and(|a| a.len() >= n)
            })
            .await;
        assert_eq!(inv.as_array().map(Vec::len), Some(n), "{status}: {inv}");
        assert!(
            inv.as_array().is_some_and(|a| a.iter().all(|r| r["id"]
                != "00000000-0000-0000-0000-000000000000"
                && r["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("load-")))),
            "{inv}"
        );
    }
    // Every invocation that printed a line: its record and its lines, by request id.
    for i in (0..60).filter(|i| kind(*i) == "log") {
        let rid = format!("load-{i}");
        let inv = fx
            .poll("busy", "invocations", &format!("request_id={rid}"), |v| {
                v.as_array().is_some_and(|a| !a.is_empty())
            })
            .await;
        assert_eq!(inv[0]["status"], 200, "{rid}: {inv}");
        let logs = fx
            .poll("busy", "logs", &format!("request_id={rid}"), |v| {
                v.as_array().is_some_and(|a| !a.is_empty())
            })
            .await;
        assert_eq!(logs[0]["message"], format!("noted {i}"), "{logs}");
    }
    // The silent successes: recorded one by one or counted, none lost, and
    // most counted (60 calls take well under the 10 s it would need at 3/s).
    let total = |fx_counts: &Value, records: &Value| {
        let counted: i64 = fx_counts
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["count"].as_i64()).sum())
            .unwrap_or_default();
        let recorded = records.as_array().map_or(0, Vec::len) as i64;
        (counted, recorded)
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let (counted, recorded) = loop {
        let counts = fx
            .poll("busy", "invocation-counts", "limit=1000", |_| true)
            .await;
        let records = fx
            .poll("busy", "invocations", "status=200&limit=1000", |_| true)
            .await;
        let (counted, recorded) = total(&counts, &records);
        if counted + recorded >= successes || tokio::time::Instant::now() > deadline {
            if let Some(c) = counts.as_array().and_then(|a| a.first()) {
                assert_eq!(c["status"], 200, "{counts}");
                assert_eq!(c["version"], 1, "{counts}");
                assert!(c["max_ms"].as_i64().is_some_and(|m| m >= 0), "{counts}");
            }
            break (counted, recorded);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        counted + recorded,
        successes,
        "counted {counted}, recorded {recorded}"
    );
    assert!(counted > 0, "nothing was counted: {recorded} records");

    // Bad filters are 400s; another project's admin sees nothing; the anon key is refused.
    let resp = fx
        .admin(Method::GET, "functions/busy/invocation-counts?status=abc")
        .send()
        .await
        .expect("bad filter");
    assert_eq!(resp.status(), 400);
    let other = fx.t.create_project("fn-counts-other").await;
    let v: Value =
        fx.t.http
            .get(format!(
                "{}/admin/v1/functions/busy/invocation-counts",
                other.url
            ))
            .bearer_auth(&other.service)
            .send()
            .await
            .expect("other")
            .json()
            .await
            .expect("json");
    assert_eq!(v, serde_json::json!([]));
    let resp =
        fx.t.http
            .get(format!(
                "{}/admin/v1/functions/busy/invocation-counts",
                fx.p.url
            ))
            .bearer_auth(&fx.p.anon)
            .send()
            .await
            .expect("anon");
    assert!(
        resp.status() == 401 || resp.status() == 403,
        "{}",
        resp.status()
    );
}
