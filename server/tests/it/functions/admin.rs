//! The admin API refuses bad input and the wrong callers with 4xx JSON
//! errors (one line per case), and the SQL functions listing moved to
//! `/admin/v1/sql-functions`.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Fx, expect_error};

#[tokio::test]
async fn admin_api_attacker_cases() {
    let Some(fx) = Fx::new("fn-admin").await else {
        return;
    };
    fx.deploy(
        "exists",
        "export default { fetch: () => new Response('x') }",
    )
    .await;
    let other = fx.t.create_project("fn-admin-other").await;
    let big = "x".repeat(6 * 1024 * 1024);
    let files: serde_json::Map<String, Value> =
        (0..201).map(|i| (format!("f{i}.ts"), json!("x"))).collect();

    // (name, method, path, body, status, code)
    let cases: Vec<(&str, Method, &str, Value, u16, &str)> = vec![
        (
            "bad slug",
            Method::POST,
            "functions",
            json!({"slug": "Bad Slug", "code": "x"}),
            400,
            "invalid_function",
        ),
        (
            "reserved slug",
            Method::POST,
            "functions",
            json!({"slug": "secrets", "code": "x"}),
            400,
            "invalid_function",
        ),
        (
            "no code",
            Method::POST,
            "functions",
            json!({"slug": "a"}),
            400,
            "invalid_function",
        ),
        (
            "code and files",
            Method::POST,
            "functions",
            json!({"slug": "a", "code": "x", "files": {"index.ts": "x"}}),
            400,
            "invalid_function",
        ),
        (
            "traversal",
            Method::POST,
            "functions",
            json!({"slug": "a", "files": {"../../x.ts": "x"}, "entrypoint": "../../x.ts"}),
            400,
            "invalid_function",
        ),
        (
            "absolute path",
            Method::POST,
            "functions",
            json!({"slug": "a", "files": {"/etc/x.ts": "x", "index.ts": "x"}}),
            400,
            "invalid_function",
        ),
        (
            "missing entrypoint",
            Method::POST,
            "functions",
            json!({"slug": "a", "files": {"a.ts": "x"}, "entrypoint": "b.ts"}),
            400,
            "invalid_function",
        ),
        (
            "non-module entrypoint",
            Method::POST,
            "functions",
            json!({"slug": "a", "files": {"a.sh": "x"}, "entrypoint": "a.sh"}),
            400,
            "invalid_function",
        ),
        (
            "bad import map",
            Method::POST,
            "functions",
            json!({"slug": "a", "files": {"index.ts": "x", "deno.json": "{"}}),
            400,
            "invalid_function",
        ),
        (
            "too many files",
            Method::POST,
            "functions",
            json!({"slug": "a", "files": files, "entrypoint": "f0.ts"}),
            400,
            "invalid_function",
        ),
        (
            "timeout out of range",
            Method::POST,
            "functions",
            json!({"slug": "a", "code": "x", "timeout_ms": 1}),
            400,
            "invalid_function",
        ),
        (
            "memory out of range",
            Method::POST,
            "functions",
            json!({"slug": "a", "code": "x", "memory_mb": 100000}),
            400,
            "invalid_function",
        ),
        (
            "concurrency out of range",
            Method::POST,
            "functions",
            json!({"slug": "a", "code": "x", "concurrency": 0}),
            400,
            "invalid_function",
        ),
        (
            "wrong types",
            Method::POST,
            "functions",
            json!({"slug": 5, "code": ["x"]}),
            422,
            "invalid_body",
        ),
        (
            "duplicate",
            Method::POST,
            "functions",
            json!({"slug": "exists", "code": "x"}),
            409,
            "function_exists",
        ),
        (
            "rename by PUT",
            Method::PUT,
            "functions/exists",
            json!({"slug": "other", "code": "x"}),
            400,
            "invalid_function",
        ),
        (
            "settings of a missing function",
            Method::PUT,
            "functions/missing",
            json!({"timeout_ms": 1000}),
            404,
            "function_not_found",
        ),
        (
            "missing function",
            Method::GET,
            "functions/missing",
            Value::Null,
            404,
            "function_not_found",
        ),
        (
            "missing version",
            Method::GET,
            "functions/exists/versions/9",
            Value::Null,
            404,
            "function_not_found",
        ),
        (
            "non-numeric version",
            Method::GET,
            "functions/exists/versions/abc",
            Value::Null,
            404,
            "function_not_found",
        ),
        (
            "activate missing version",
            Method::POST,
            "functions/exists/versions/9/activate",
            Value::Null,
            404,
            "function_not_found",
        ),
        (
            "delete missing",
            Method::DELETE,
            "functions/missing",
            Value::Null,
            404,
            "function_not_found",
        ),
        (
            "delete missing secret",
            Method::DELETE,
            "functions/secrets/NOPE",
            Value::Null,
            404,
            "function_not_found",
        ),
        (
            "bad cron",
            Method::POST,
            "functions/exists/schedules",
            json!({"name": "s", "cron": "every day"}),
            400,
            "invalid_function",
        ),
        (
            "schedule without name",
            Method::POST,
            "functions/exists/schedules",
            json!({"cron": "* * * * *"}),
            400,
            "invalid_function",
        ),
        // A NUL (Postgres text and jsonb cannot hold one) is a 400, not a 500.
        (
            "NUL in code",
            Method::POST,
            "functions",
            json!({"slug": "a", "code": "export default 1;\u{0}"}),
            400,
            "invalid_function",
        ),
        (
            "NUL in schedule body",
            Method::POST,
            "functions/exists/schedules",
            json!({"name": "s", "cron": "* * * * *", "body": {"a\u{0}": "\u{0}"}}),
            400,
            "invalid_function",
        ),
        (
            "NUL in cron",
            Method::POST,
            "functions/exists/schedules",
            json!({"name": "s", "cron": "* * * * *\u{0}"}),
            400,
            "invalid_function",
        ),
        (
            "NUL in schedule name",
            Method::PUT,
            "functions/exists/schedules/a%00b",
            json!({"cron": "* * * * *"}),
            400,
            "invalid_function",
        ),
        (
            "NUL in schedule name to delete",
            Method::DELETE,
            "functions/exists/schedules/a%00b",
            Value::Null,
            400,
            "invalid_function",
        ),
        (
            "NUL in schedule name of runs",
            Method::GET,
            "functions/exists/schedules/a%00b/runs",
            Value::Null,
            400,
            "invalid_function",
        ),
        (
            "NUL in secret name to delete",
            Method::DELETE,
            "functions/secrets/A%00B",
            Value::Null,
            400,
            "invalid_secret",
        ),
        (
            "NUL in log search",
            Method::GET,
            "functions/exists/logs?search=a%00b",
            Value::Null,
            400,
            "invalid_query",
        ),
        (
            "NUL in log request id",
            Method::GET,
            "functions/exists/logs?request_id=%00",
            Value::Null,
            400,
            "invalid_query",
        ),
        (
            "NUL in invocations request id",
            Method::GET,
            "functions/exists/invocations?request_id=%00",
            Value::Null,
            400,
            "invalid_query",
        ),
        (
            "schedule of missing function",
            Method::POST,
            "functions/missing/schedules",
            json!({"name": "s", "cron": "* * * * *"}),
            404,
            "function_not_found",
        ),
    ];
    for (name, method, path, body, status, code) in cases {
        let mut req = fx.admin(method, path);
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = resp.status().as_u16();
        let text = resp.text().await.expect("text");
        assert_eq!(got, status, "{name}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: not JSON: {text}"));
        assert_eq!(v["code"], code, "{name}: {text}");
    }

    // An oversized bundle is refused (by the body limit or the bundle limit), never a 500.
    let resp = fx
        .admin(Method::POST, "functions")
        .json(&json!({"slug": "huge", "code": big}))
        .send()
        .await
        .expect("huge");
    assert!(
        resp.status() == 413 || resp.status() == 400,
        "{}",
        resp.status()
    );

    // Callers: none, anon, a user, another project's service key → refused.
    let url = format!("{}/admin/v1/functions", fx.p.url);
    expect_error(
        fx.t.http.get(&url).send().await.expect("none"),
        401,
        "missing_api_key",
    )
    .await;
    expect_error(
        fx.t.http
            .get(&url)
            .bearer_auth(&fx.p.anon)
            .send()
            .await
            .expect("anon"),
        403,
        "admin_required",
    )
    .await;
    let user = fx.user_token("00000000-0000-4000-8000-000000000009").await;
    expect_error(
        fx.t.http
            .get(&url)
            .bearer_auth(&user)
            .send()
            .await
            .expect("user"),
        403,
        "admin_required",
    )
    .await;
    expect_error(
        fx.t.http
            .get(&url)
            .bearer_auth(&other.service)
            .send()
            .await
            .expect("other"),
        401,
        "invalid_token",
    )
    .await;
    // …and another project's admin cannot see or touch this one's functions.
    let resp =
        fx.t.http
            .get(format!("{}/admin/v1/functions/exists", other.url))
            .bearer_auth(&other.service)
            .send()
            .await
            .expect("cross");
    expect_error(resp, 404, "function_not_found").await;
    let resp =
        fx.t.http
            .get(format!("{}/functions/v1/exists", other.url))
            .bearer_auth(&other.anon)
            .send()
            .await
            .expect("cross invoke");
    expect_error(resp, 404, "function_not_found").await;
    // A platform admin token works.
    let resp =
        fx.t.http
            .get(&url)
            .bearer_auth(&fx.t.admin_token)
            .send()
            .await
            .expect("platform admin");
    assert_eq!(resp.status(), 200);

    // Invocation of bad slugs is a 404, not a 500.
    for path in ["UPPER", "a%2F..%2Fb", "-x", "secrets"] {
        let resp = fx.call(Method::GET, path).send().await.expect("bad slug");
        assert_eq!(resp.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn sql_functions_moved_to_sql_functions() {
    let Some(fx) = Fx::new("fn-sqlfns").await else {
        return;
    };
    fx.t.owner_sql(
        &fx.p,
        "create function add_one(i int) returns int language sql as 'select i + 1';",
    )
    .await;
    let v: Value = fx
        .admin(Method::GET, "sql-functions")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(v.to_string().contains("add_one"), "{v}");
    // `/admin/v1/functions` now lists edge functions.
    let v: Value = fx
        .admin(Method::GET, "functions")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(v, json!([]));
}

/// Every deploy is a version holding the whole code: a deploy keeps the
/// newest `FERROBASE_FUNCTIONS_MAX_VERSIONS` versions and the active one,
/// and deletes the rest (a rollback to one of those is a 404).
#[tokio::test]
async fn a_deploy_prunes_old_versions_but_keeps_the_active_one() {
    let Some(fx) = Fx::new_with("fn-versions", |c| c.functions.functions_max_versions = 3).await
    else {
        return;
    };
    let code = |n: u32| format!("export default {{ fetch: () => new Response('v{n}') }}");
    fx.deploy("v", &code(1)).await;
    let put = async |n: u32, activate: bool| -> Value {
        let resp = fx
            .admin(Method::PUT, "functions/v")
            .json(&json!({ "code": code(n), "activate": activate }))
            .send()
            .await
            .expect("update");
        assert_eq!(resp.status(), 200, "deploy v{n}");
        resp.json().await.expect("json")
    };
    let versions = |f: &Value| -> Vec<i64> {
        f["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .filter_map(|v| v["version"].as_i64())
            .collect()
    };
    // Versions 2 to 6 are stored without being activated: 1 still runs.
    let mut shown = Value::Null;
    for n in 2..=6 {
        shown = put(n, false).await;
    }
    assert_eq!(shown["active_version"], 1);
    assert_eq!(
        versions(&shown),
        [6, 5, 4, 1],
        "the newest 3 and the active one"
    );
    let resp = fx
        .admin(Method::POST, "functions/v/versions/2/activate")
        .send()
        .await
        .expect("activate");
    expect_error(resp, 404, "function_not_found").await;

    // Once another version is active, the old active one goes too.
    let shown = put(7, true).await;
    assert_eq!(shown["active_version"], 7);
    assert_eq!(versions(&shown), [7, 6, 5]);
}

/// The version directories under `{data_dir}/functions/projects/{project}/{slug}`
/// (`v{version}-…`), as version numbers, sorted.
fn materialized(data_dir: &std::path::Path, project: uuid::Uuid, slug: &str) -> Vec<i32> {
    let dir = data_dir
        .join("functions/projects")
        .join(project.to_string())
        .join(slug);
    let mut versions: Vec<i32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix('v')?.split_once('-')?.0.parse().ok()
        })
        .collect();
    versions.sort_unstable();
    versions
}

/// A pruned version's files go too: at once on the node that deployed, at
/// the next sweep on every other node that ran it (they stayed until the
/// function was deleted, and on other nodes for ever); a function deleted
/// on one node leaves no files on the others either.
#[tokio::test]
async fn pruned_versions_and_deleted_functions_leave_no_files_on_any_node() {
    let adjust = |c: &mut ferrobase_server::Config| {
        c.functions.functions_max_versions = 2;
        c.functions.functions_cache_ttl_ms = 100;
        c.functions.functions_sweep_interval_ms = 200;
        c.functions.functions_idle_secs = 1;
    };
    let Some(fx) = Fx::new_with("fn-sweep", adjust).await else {
        return;
    };
    // A second node: same control plane, its own data dir and processes.
    let mut config = fx.t.config.clone();
    config.data_dir = crate::support::temp_dir("fbt-sweep2");
    let node2 = crate::support::TestApp::start(config).await;
    let project = ferrobase_server::platform::projects::load(&fx.t.app.platform, &fx.project_ref)
        .await
        .expect("load project")
        .expect("project exists")
        .id;
    let (dir1, dir2) = (fx.t.config.data_dir.clone(), node2.config.data_dir.clone());
    let url2 = format!("{}/p/{}", node2.url, fx.project_ref);
    let code = |n: i32| format!("export default {{ fetch: () => new Response('v{n}') }}");
    // Invokes on both nodes until each answers version `n` (so each has run it).
    let run_everywhere = async |n: i32| {
        for base in [&fx.p.url, &url2] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let resp =
                    fx.t.http
                        .get(format!("{base}/functions/v1/old"))
                        .bearer_auth(&fx.p.anon)
                        .send()
                        .await
                        .expect("invoke");
                let text = resp.text().await.expect("text");
                if text == format!("v{n}") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "v{n} on {base}: {text}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    fx.deploy("old", &code(1)).await;
    run_everywhere(1).await;
    for n in 2..=4 {
        let resp = fx
            .admin(Method::PUT, "functions/old")
            .json(&json!({ "code": code(n) }))
            .send()
            .await
            .expect("deploy");
        assert_eq!(resp.status(), 200, "deploy v{n}");
        // The deploying node keeps only the versions that still exist.
        let kept: Vec<i32> = ((n - 1).max(1)..=n).collect();
        assert_eq!(
            materialized(&dir1, project, "old"),
            kept,
            "node 1 after v{n}"
        );
        run_everywhere(n).await;
    }
    // Node 2 ran versions 1 to 4; 1 and 2 were pruned.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while materialized(&dir2, project, "old") != [3, 4] {
        assert!(
            std::time::Instant::now() < deadline,
            "node 2 still has {:?}",
            materialized(&dir2, project, "old")
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(materialized(&dir1, project, "old"), [3, 4]);

    // Deleted through node 1: node 2's files go at its next sweep once its
    // warm process stopped (idle after 1 s here).
    let resp = fx
        .admin(Method::DELETE, "functions/old")
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    let function_dir = |d: &std::path::Path| {
        d.join("functions/projects")
            .join(project.to_string())
            .join("old")
    };
    assert!(!function_dir(&dir1).exists());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while function_dir(&dir2).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "node 2 still has {:?}",
            materialized(&dir2, project, "old")
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
