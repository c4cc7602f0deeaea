//! Failures stay contained and answer a clear JSON error, never a hang: an
//! exception, a timeout (an infinite loop), a memory bomb, a process exit, a
//! module that does not load, the concurrency cap; and the runtime keeps
//! serving afterwards, this function and others.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Fx, expect_error};

const TROUBLE: &str = r#"
export default { async fetch(req: Request) {
  const path = new URL(req.url).pathname;
  if (path.endsWith("/throw")) throw new Error("kaboom");
  if (path.endsWith("/loop")) { while (true) {} }
  if (path.endsWith("/oom")) {
    const keep: unknown[] = [];
    while (true) keep.push(new Array(1_000_000).fill(Math.random()));
  }
  if (path.endsWith("/exit")) Deno.exit(7);
  if (path.endsWith("/slow")) await new Promise((r) => setTimeout(r, 1500));
  if (path.endsWith("/reject")) { Promise.reject(new Error("nobody awaits me")); }
  return new Response("fine");
} };
"#;

async fn fine(fx: &Fx, slug: &str) {
    let resp = fx.call(Method::GET, slug).send().await.expect("invoke");
    assert_eq!(resp.status(), 200, "{slug} should still answer");
    assert_eq!(resp.text().await.expect("text"), "fine");
}

#[tokio::test]
async fn failures_answer_json_errors_and_the_runtime_recovers() {
    let Some(fx) = Fx::new("fn-limits").await else {
        return;
    };
    fx.deploy_with(
        "trouble",
        json!({ "code": TROUBLE, "timeout_ms": 1000, "memory_mb": 32 }),
    )
    .await;
    fx.deploy(
        "bystander",
        r#"export default { fetch: () => new Response("fine") };"#,
    )
    .await;
    // The memory bomb gets a long timeout: on a loaded machine, V8 may spend
    // seconds in GC before it gives up.
    fx.deploy_with(
        "bomb",
        json!({ "code": TROUBLE, "timeout_ms": 60000, "memory_mb": 32 }),
    )
    .await;
    fine(&fx, "trouble").await;
    fine(&fx, "bystander").await;

    // An exception: 500. Its message may hold internals, so a caller only
    // learns where to look (the logs, by request id); the service role gets
    // the message; the logs have it. The process lives on.
    let resp = fx
        .call(Method::GET, "trouble/throw")
        .send()
        .await
        .expect("throw");
    let rid = resp.headers()["x-request-id"]
        .to_str()
        .expect("request id")
        .to_owned();
    let v = expect_error(resp, 500, "function_error").await;
    assert!(!v.to_string().contains("kaboom"), "{v}");
    assert!(
        v["hint"]
            .as_str()
            .is_some_and(|h| h.contains(&format!("logs?request_id={rid}"))),
        "{v}"
    );
    let v = expect_error(
        fx.t.http
            .get(format!("{}/functions/v1/trouble/throw", fx.p.url))
            .bearer_auth(&fx.p.service)
            .send()
            .await
            .expect("throw as the service role"),
        500,
        "function_error",
    )
    .await;
    assert_eq!(v["message"], "kaboom");
    let logs = fx
        .poll("trouble", "logs", &format!("request_id={rid}"), |v| {
            v.as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert!(logs.to_string().contains("kaboom"), "{logs}");
    fine(&fx, "trouble").await;
    // An unhandled rejection does not take the process down.
    fine(&fx, "trouble/reject").await;
    fine(&fx, "trouble").await;

    // An infinite loop: 504 after the timeout; the process is killed and replaced.
    let started = std::time::Instant::now();
    expect_error(
        fx.call(Method::GET, "trouble/loop")
            .send()
            .await
            .expect("loop"),
        504,
        "function_timeout",
    )
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    fine(&fx, "bystander").await;
    fine(&fx, "trouble").await;

    // A memory bomb: the heap limit aborts that process only.
    expect_error(
        fx.call(Method::GET, "bomb/oom").send().await.expect("oom"),
        502,
        "function_out_of_memory",
    )
    .await;
    fine(&fx, "bystander").await;
    fine(&fx, "bomb").await;

    // Deno.exit: the invocation fails with 502, the next one gets a fresh process.
    expect_error(
        fx.call(Method::GET, "trouble/exit")
            .send()
            .await
            .expect("exit"),
        502,
        "function_crashed",
    )
    .await;
    fine(&fx, "trouble").await;
}

#[tokio::test]
async fn a_module_that_does_not_load_is_a_502_with_the_reason() {
    let Some(fx) = Fx::new("fn-boot").await else {
        return;
    };
    // The reason is for the service role (other callers get a generic
    // message, see `a_crash_or_a_failed_start_shows_its_output_to_the_service_role_and_the_logs_only`).
    let as_service = |slug: &str| {
        fx.t.http
            .get(format!("{}/functions/v1/{slug}", fx.p.url))
            .bearer_auth(&fx.p.service)
            .send()
    };
    fx.deploy("syntax", "export default { fetch( => }").await;
    let v = expect_error(
        as_service("syntax").await.expect("invoke"),
        502,
        "function_boot_failed",
    )
    .await;
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("Failed to load")),
        "{v}"
    );
    fx.deploy("nothing", "export const x = 1;").await;
    let v = expect_error(
        as_service("nothing").await.expect("invoke"),
        502,
        "function_boot_failed",
    )
    .await;
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("Deno.serve")),
        "{v}"
    );
    // A failing import of a file outside the bundle is refused too.
    fx.deploy(
        "escape",
        "import '../../../../etc/passwd.ts'; export default { fetch: () => new Response('no') };",
    )
    .await;
    expect_error(
        fx.call(Method::GET, "escape").send().await.expect("invoke"),
        502,
        "function_boot_failed",
    )
    .await;
}

/// A crash's or a failed start's message carries the process's stderr
/// tail, which may show a secret: the service role gets it, the logs keep
/// it (findable by request id), every other caller gets a generic message
/// with that logs query (it used to be everyone's).
#[tokio::test]
async fn a_crash_or_a_failed_start_shows_its_output_to_the_service_role_and_the_logs_only() {
    let Some(fx) = Fx::new("fn-leak").await else {
        return;
    };
    const SECRET: &str = "sk_live_do_not_leak_42";
    let resp = fx
        .admin(Method::POST, "functions/secrets")
        .json(&json!({ "LEAKY": SECRET }))
        .send()
        .await
        .expect("set secret");
    assert_eq!(resp.status(), 200);
    fx.deploy_with(
        "crash",
        json!({ "verify_jwt": false, "code": r#"
            export default { fetch(req: Request) {
              if (new URL(req.url).pathname.endsWith("/die")) {
                Deno.stderr.writeSync(new TextEncoder().encode(`token=${Deno.env.get("LEAKY")}\n`));
                Deno.exit(1);
              }
              return new Response("fine");
            } };"# }),
    )
    .await;
    fx.deploy_with(
        "boot",
        json!({ "verify_jwt": false,
                "code": r#"throw new Error(`cannot start with ${Deno.env.get("LEAKY")}`);"# }),
    )
    .await;
    let service = |path: &str| {
        fx.t.http
            .get(format!("{}/functions/v1/{path}", fx.p.url))
            .bearer_auth(&fx.p.service)
            .send()
    };
    let anonymous = |path: &str| {
        fx.t.http
            .get(format!("{}/functions/v1/{path}", fx.p.url))
            .send()
    };
    for (slug, path, code) in [
        ("crash", "crash/die", "function_crashed"),
        ("boot", "boot", "function_boot_failed"),
    ] {
        // An anonymous caller (the function has verify_jwt off) and one with
        // the anon key: a generic message and where to look.
        for resp in [
            anonymous(path).await.expect("anonymous"),
            fx.call(Method::GET, path).send().await.expect("anon key"),
        ] {
            let rid = resp.headers()["x-request-id"]
                .to_str()
                .expect("request id")
                .to_owned();
            let v = expect_error(resp, 502, code).await;
            assert!(!v.to_string().contains(SECRET), "{path}: {v}");
            assert!(
                v["hint"].as_str().is_some_and(
                    |h| h.contains(&format!("/functions/{slug}/logs?request_id={rid}"))
                ),
                "{path}: {v}"
            );
            // The logs have the reason under that request id.
            let logs = fx
                .poll(slug, "logs", &format!("request_id={rid}"), |v| {
                    v.to_string().contains(SECRET)
                })
                .await;
            assert!(logs.to_string().contains(SECRET), "{path}: {logs}");
        }
        // The service role gets the reason.
        let v = expect_error(service(path).await.expect("service"), 502, code).await;
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(SECRET)),
            "{path}: {v}"
        );
    }
    // The crashed function serves the next invocation.
    let resp = anonymous("crash").await.expect("after the crash");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_concurrency_cap_answers_429() {
    let Some(fx) = Fx::new("fn-conc").await else {
        return;
    };
    fx.deploy_with("one", json!({ "code": TROUBLE, "concurrency": 1 }))
        .await;
    fine(&fx, "one").await; // warm
    let slow = fx.call(Method::GET, "one/slow").send();
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        fx.call(Method::GET, "one").send().await.expect("second")
    };
    let (slow, second) = tokio::join!(slow, second);
    assert_eq!(slow.expect("slow").status(), 200);
    let v = expect_error(second, 429, "function_concurrency_limit").await;
    assert!(v["message"].as_str().is_some_and(|m| m.contains('1')));
    fine(&fx, "one").await;
}

#[tokio::test]
async fn without_deno_the_server_runs_and_says_how_to_enable_functions() {
    let Some(_) = super::deno() else { return };
    let t = crate::support::TestApp::spawn_with(|c| {
        c.functions.deno_bin = Some("/nonexistent/deno".into());
    })
    .await;
    let p = t.create_project("fn-nodeno").await;
    let resp = t
        .http
        .post(format!("{}/admin/v1/functions", p.url))
        .bearer_auth(&p.service)
        .json(
            &json!({"slug": "hello", "code": "export default { fetch: () => new Response('x') }"}),
        )
        .send()
        .await
        .expect("deploy");
    assert_eq!(resp.status(), 201, "deploying works without a runtime");
    let resp = t
        .http
        .get(format!("{}/functions/v1/hello", p.url))
        .bearer_auth(&p.anon)
        .send()
        .await
        .expect("invoke");
    let v: Value = expect_error(resp, 503, "functions_unavailable").await;
    assert!(
        v["hint"]
            .as_str()
            .is_some_and(|h| h.contains("FERROBASE_DENO_BIN")),
        "{v}"
    );
}

/// When a function's cached deployment expires under load, every waiting
/// invocation used to reload it and each load held one control-plane
/// connection while asking for a second: 50 at once emptied the pool (16)
/// and waited on each other until the acquire timeout, then failed. Now one
/// request reloads and the others wait for it.
#[tokio::test]
async fn many_invocations_when_the_cache_expires_do_not_starve_the_control_plane() {
    let Some(fx) = Fx::new_with("fn-herd", |c| c.functions.functions_cache_ttl_ms = 300).await
    else {
        return;
    };
    fx.deploy_with("herd", json!({ "code": TROUBLE, "concurrency": 1000 }))
        .await;
    fine(&fx, "herd").await; // warm process
    tokio::time::sleep(std::time::Duration::from_millis(400)).await; // cache expired
    let calls = (0..60).map(|_| async {
        let resp = fx.call(Method::GET, "herd").send().await.expect("invoke");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    });
    let results = futures_util::future::join_all(calls).await;
    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of 60 concurrent invocations failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
}

/// Sends `head` and then `body` on a raw connection, half-closes it (the
/// body ends early when `head` declares more) and reads the answer (up to
/// 10 s).
async fn raw_request(addr: &str, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(body).await.expect("body");
    s.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A caller's body that trickles in slower than the function's timeout, one
/// over the size limit (chunked: no Content-Length to refuse it early) and
/// one broken off mid-stream get 408, 413 and 400: the caller's fault, so
/// the warm process serving everyone else is neither killed nor replaced
/// (it used to be: 504, 502 and 502, each with a restart).
#[tokio::test]
async fn slow_oversized_and_broken_request_bodies_are_4xx_and_keep_the_process() {
    let Some(fx) = Fx::new("fn-bodies").await else {
        return;
    };
    fx.deploy_with(
        "bodies",
        json!({ "timeout_ms": 1000, "code": r#"
            const boot = crypto.randomUUID();
            export default { async fetch(req: Request) {
              const bytes = req.body ? (await req.arrayBuffer()).byteLength : 0;
              return Response.json({ boot, bytes });
            } };"# }),
    )
    .await;
    let boot = || async {
        let resp = fx.call(Method::GET, "bodies").send().await.expect("invoke");
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.expect("json")["boot"].clone()
    };
    let first = boot().await;

    // One byte every 200 ms: the function's 1 s passes long before the end.
    let started = std::time::Instant::now();
    let trickle = futures_util::stream::unfold(0, |n| async move {
        if n == 50 {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Some((Ok::<_, std::io::Error>(vec![b'x']), n + 1))
    });
    let resp = fx
        .call(Method::POST, "bodies")
        .body(reqwest::Body::wrap_stream(trickle))
        .send()
        .await
        .expect("trickle");
    expect_error(resp, 408, "request_timeout").await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(boot().await, first, "a slow caller restarted the process");

    // Over FERROBASE_MAX_BODY_BYTES (1 MiB in tests), chunked.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..24).map(|_| Ok(vec![b'x'; 64 * 1024])).collect();
    let resp = fx
        .call(Method::POST, "bodies")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("too large");
    expect_error(resp, 413, "payload_too_large").await;
    assert_eq!(
        boot().await,
        first,
        "an oversized body restarted the process"
    );

    // 10 of 1000 declared bytes, then the caller stops sending.
    let addr = fx.t.url.trim_start_matches("http://").to_owned();
    let path = fx.p.url.trim_start_matches(&fx.t.url).to_owned();
    let head = format!(
        "POST {path}/functions/v1/bodies HTTP/1.1\r\nHost: {addr}\r\n\
         authorization: Bearer {}\r\ncontent-length: 1000\r\n\r\n",
        fx.p.anon
    );
    let answer = raw_request(&addr, &head, b"0123456789").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid_body"), "{answer}");
    assert_eq!(boot().await, first, "a broken body restarted the process");
}

/// Sends `head` on a raw connection, then one byte of body every `pause`
/// (while reading), and returns the answer once it is complete (its JSON
/// envelope ended), at the end of the connection or after 15 s, with how
/// long it took.
async fn trickled_request(
    addr: &str,
    head: &str,
    pause: std::time::Duration,
) -> (String, std::time::Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = s.into_split();
    write.write_all(head.as_bytes()).await.expect("head");
    let started = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(pause).await;
            if write.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
        let text = String::from_utf8_lossy(&answer);
        if text
            .split_once("\r\n\r\n")
            .is_some_and(|(_, body)| body.trim_end().ends_with('}'))
        {
            break;
        }
    }
    let took = started.elapsed();
    writer.abort();
    (String::from_utf8_lossy(&answer).into_owned(), took)
}

/// A function stuck in a loop while its caller trickles the body (pauses
/// well within FERROBASE_BODY_READ_TIMEOUT_MS) is killed at its timeout: the
/// caller gets the 504, and the next invocation a fresh process at once. It
/// used to be a 408 for the caller, the looping process kept, and the next
/// invocation waited out a timeout of its own before anyone was served.
#[tokio::test]
async fn a_looping_function_fed_a_slow_body_is_killed_at_its_timeout() {
    let Some(fx) = Fx::new("fn-slowloop").await else {
        return;
    };
    fx.deploy_with(
        "spin",
        json!({ "timeout_ms": 1000, "code": r#"
            const boot = crypto.randomUUID();
            export default { async fetch(req: Request) {
              if (new URL(req.url).pathname.endsWith("/loop")) { while (true) {} }
              const bytes = req.body ? (await req.arrayBuffer()).byteLength : 0;
              return Response.json({ boot, bytes });
            } };"# }),
    )
    .await;
    let boot = || async {
        let started = std::time::Instant::now();
        let resp = fx.call(Method::GET, "spin").send().await.expect("invoke");
        assert_eq!(resp.status(), 200);
        let boot = resp.json::<Value>().await.expect("json")["boot"].clone();
        (boot, started.elapsed())
    };
    let (first, _) = boot().await;

    let addr = fx.t.url.trim_start_matches("http://").to_owned();
    let path = fx.p.url.trim_start_matches(&fx.t.url).to_owned();
    let head = |what: &str| {
        format!(
            "POST {path}/functions/v1/spin{what} HTTP/1.1\r\nHost: {addr}\r\n\
             authorization: Bearer {}\r\ncontent-length: 1000\r\n\r\n",
            fx.p.anon
        )
    };
    let pause = std::time::Duration::from_millis(150);

    // A healthy function reading a slow body: the caller's fault (408), the
    // process lives on.
    let (answer, _) = trickled_request(&addr, &head(""), pause).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let (same, _) = boot().await;
    assert_eq!(same, first, "a slow caller restarted a healthy process");

    // A looping one: killed at about its timeout, the caller told so.
    let (answer, took) = trickled_request(&addr, &head("/loop"), pause).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("function_timeout"), "{answer}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    // The next invocation gets a fresh process, without a timeout of its own.
    let (fresh, took) = boot().await;
    assert_ne!(fresh, first, "the looping process was kept");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}
