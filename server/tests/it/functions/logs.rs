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

/// The stored log lines, oldest first, as (level, message).
async fn all_lines(fx: &Fx, slug: &str, until: &str) -> Vec<(String, String)> {
    let logs = fx
        .poll(slug, "logs", "limit=1000", |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|l| l["message"] == until))
        })
        .await;
    let mut lines: Vec<(String, String)> = logs
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
    lines.reverse();
    lines
}

/// Output Postgres text cannot hold or that is too long: a NUL (which
/// made the whole batch's insert fail), bytes that are not UTF-8 (which
/// stopped the reader, so the process blocked or failed on its next write)
/// and a line over 64 KiB (cut with a marker saying how much; a console
/// message is cut at 16 Ki characters by the host, with the same marker).
#[tokio::test]
async fn nul_invalid_utf8_and_long_lines_are_stored_cleaned_and_cut() {
    let Some(fx) = Fx::new("fn-odd-output").await else {
        return;
    };
    fx.deploy(
        "odd",
        r#"export default { fetch() {
            const enc = new TextEncoder();
            console.log("nul:\u0000:end");
            Deno.stdout.writeSync(new Uint8Array([0x62, 0x61, 0x64, 0xff, 0xfe, 0x21, 0x0a]));
            Deno.stdout.writeSync(enc.encode("long:" + "y".repeat(100 * 1024) + "\n"));
            Deno.stderr.writeSync(enc.encode("err\u0000nul\n"));
            console.log("c".repeat(20000));
            console.log("after");
            return new Response("ok");
        } };"#,
    )
    .await;
    for _ in 0..2 {
        let resp = fx.call(Method::GET, "odd").send().await.expect("invoke");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("text"), "ok");
    }
    let lines = all_lines(&fx, "odd", "after").await;
    let has = |level: &str, message: &str| {
        lines
            .iter()
            .filter(|(l, m)| l == level && m == message)
            .count()
    };
    assert_eq!(has("log", "nul:\u{FFFD}:end"), 2, "{lines:?}");
    assert_eq!(has("log", "bad\u{FFFD}\u{FFFD}!"), 2, "{lines:?}");
    assert_eq!(has("error", "err\u{FFFD}nul"), 2, "{lines:?}");
    assert_eq!(has("log", "after"), 2, "{lines:?}");
    // A console message is cut by the host, in characters.
    let console = format!("{}… [truncated 3616 characters]", "c".repeat(16 * 1024));
    assert_eq!(has("log", &console), 2, "{lines:?}");
    let long: Vec<&String> = lines
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.starts_with("long:"))
        .collect();
    assert_eq!(long.len(), 2, "{lines:?}");
    let kept = 64 * 1024;
    let cut = 5 + 100 * 1024 - kept;
    let expected = format!(
        "long:{}… [truncated {cut} bytes]",
        "y".repeat(kept - "long:".len())
    );
    assert!(
        long.iter().all(|m| **m == expected),
        "{:?}",
        &long[0][kept - 10..]
    );
}

/// Lines waiting to be stored are capped in bytes
/// (`FERROBASE_FUNCTIONS_LOG_QUEUE_BYTES`, 256 KiB here): a function that
/// prints 12 MB at once gets most of it dropped and counted
/// (`ferrobase_function_log_dropped_total`) instead of held in memory, and
/// the lines of later invocations are stored again.
#[tokio::test]
async fn a_flood_of_output_is_dropped_and_counted_beyond_the_queue_cap() {
    let Some(fx) = Fx::new_with("fn-log-flood", |c| {
        c.functions.functions_log_queue_bytes = 256 * 1024;
    })
    .await
    else {
        return;
    };
    fx.deploy(
        "flood",
        r#"export default { fetch(req: Request) {
            if (new URL(req.url).searchParams.has("flood")) {
              const line = new TextEncoder().encode("z".repeat(60 * 1024) + "\n");
              for (let i = 0; i < 200; i++) Deno.stdout.writeSync(line);
            }
            console.log("done");
            return new Response("ok");
        } };"#,
    )
    .await;
    let resp = fx
        .call(Method::GET, "flood?flood")
        .send()
        .await
        .expect("flood");
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let resp = fx.call(Method::GET, "flood").send().await.expect("later");
    assert_eq!(resp.status(), 200);
    let later = resp.headers()["x-ferrobase-invocation-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let logs = fx
        .poll("flood", "logs", &format!("invocation_id={later}"), |v| {
            v.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(logs[0]["message"], "done", "{logs}");
    let stored = fx
        .poll("flood", "logs", "limit=1000", |_| true)
        .await
        .as_array()
        .map_or(0, |a| a.iter().filter(|l| l["message"] != "done").count());
    assert!(stored < 100, "{stored} of 200 flood lines were queued");
    let metrics = fx.t.metrics().await;
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferrobase_function_log_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(dropped >= 100, "dropped {dropped}: {metrics}");
}

/// A flood of log lines fills the queue (`FERROBASE_FUNCTIONS_LOG_QUEUE_BYTES`,
/// 256 KiB here) without costing the invocation records: records have room
/// of their own, so every invocation made during the flood (of another
/// function, and the flooding one) is still recorded. They used to be
/// dropped with the lines.
#[tokio::test]
async fn a_flood_of_log_lines_does_not_drop_invocation_records() {
    let Some(fx) = Fx::new_with("fn-log-records", |c| {
        c.functions.functions_log_queue_bytes = 256 * 1024;
    })
    .await
    else {
        return;
    };
    fx.deploy(
        "flood",
        r#"export default { fetch() {
            // Small lines: the queue fills to within a record's size of its cap.
            const line = new TextEncoder().encode("y".repeat(150) + "\n");
            const end = Date.now() + 2500;
            while (Date.now() < end) Deno.stdout.writeSync(line);
            return new Response("flooded");
        } };"#,
    )
    .await;
    fx.deploy(
        "quiet",
        r#"export default { fetch: () => new Response("ok") };"#,
    )
    .await;
    let id = |resp: &reqwest::Response| {
        resp.headers()["x-ferrobase-invocation-id"]
            .to_str()
            .expect("id")
            .to_owned()
    };
    // Warm, so the invocations below all fall within the flood.
    assert_eq!(
        fx.call(Method::GET, "quiet")
            .send()
            .await
            .expect("warm")
            .status(),
        200
    );
    let flood = tokio::spawn(fx.call(Method::GET, "flood").send());
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let mut quiet = Vec::new();
    for _ in 0..20 {
        let resp = fx.call(Method::GET, "quiet").send().await.expect("quiet");
        assert_eq!(resp.status(), 200);
        quiet.push(id(&resp));
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    let resp = flood.await.expect("join").expect("flood");
    assert_eq!(resp.status(), 200);
    let flooded = id(&resp);

    let recorded = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    };
    let v = fx
        .poll("quiet", "invocations", "limit=100", |v| {
            quiet.iter().all(|q| recorded(v).contains(q))
        })
        .await;
    let missing: Vec<&String> = quiet.iter().filter(|q| !recorded(&v).contains(q)).collect();
    assert!(
        missing.is_empty(),
        "{} of 20 records made during the flood are missing",
        missing.len()
    );
    let v = fx
        .poll("flood", "invocations", "", |v| {
            recorded(v).contains(&flooded)
        })
        .await;
    assert!(
        recorded(&v).contains(&flooded),
        "the flood's own record: {v}"
    );
    // The flood's lines were dropped and counted meanwhile.
    let metrics = fx.t.metrics().await;
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferrobase_function_log_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(dropped > 0, "nothing was dropped: not a flood");
}
