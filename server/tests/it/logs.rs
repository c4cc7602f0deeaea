//! `/platform/v1/logs`: the recent-requests ring and the audit log, over
//! HTTP. Both need the platform admin token, and neither ever carries a key,
//! token or secret.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, expect_error};

async fn list(t: &TestApp, path: &str) -> (String, Vec<Value>) {
    let resp = t.admin(Method::GET, path).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let text = resp.text().await.unwrap();
    let rows: Vec<Value> = serde_json::from_str(&text).unwrap();
    (text, rows)
}

#[tokio::test]
async fn recent_requests_are_listed_without_secrets() {
    let t = TestApp::spawn().await;
    let p = t.create_project("logs-req").await;
    // A request with keys in the query string and the headers.
    let resp = t
        .http
        .get(format!(
            "{}/rest/v1/no_such_table?apikey=QUERYSECRET123&select=*",
            p.url
        ))
        .header("apikey", &p.anon)
        .bearer_auth(&p.service)
        .header("x-request-id", "logs-test-req-1")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(status >= 400, "{status}");

    let (text, rows) = list(&t, "/platform/v1/logs/requests?request_id=logs-test-req-1").await;
    assert_eq!(rows.len(), 1, "{text}");
    let e = &rows[0];
    assert_eq!(e["method"], "GET");
    assert_eq!(e["path"], "/p/logs-req/rest/v1/no_such_table");
    assert_eq!(e["project"], "logs-req");
    assert_eq!(e["status"], status);
    assert!(e["latency_ms"].as_f64().is_some_and(|l| l >= 0.0), "{e}");

    // Nothing secret anywhere in the listing (which includes the login and
    // project creation, whose bodies and answers carry passwords and keys).
    let (all, rows) = list(&t, "/platform/v1/logs/requests?limit=1000").await;
    assert!(rows.len() >= 3, "{all}");
    for secret in [
        "QUERYSECRET123",
        "apikey",
        p.anon.as_str(),
        p.service.as_str(),
        t.admin_token.as_str(),
        ferrobase_server::config::exposed(&t.config.admin_password).unwrap_or("unset password"),
    ] {
        assert!(!all.contains(secret), "the request log leaks {secret}");
    }
    // Newest first, every entry with a request id.
    let seqs: Vec<u64> = rows.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    assert!(
        rows.iter()
            .all(|r| r["request_id"].as_str().is_some_and(|s| !s.is_empty()))
    );

    // Filters.
    let (_, rows) = list(&t, "/platform/v1/logs/requests?project=logs-req").await;
    assert!(!rows.is_empty() && rows.iter().all(|r| r["project"] == "logs-req"));
    let (_, rows) = list(&t, "/platform/v1/logs/requests?status=4xx&method=get").await;
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| {
        r["status"]
            .as_u64()
            .is_some_and(|s| (400..500).contains(&s))
            && r["method"] == "GET"
    }));
    let (_, rows) = list(&t, "/platform/v1/logs/requests?status=teapot").await;
    assert!(rows.is_empty());
    let (_, rows) = list(&t, "/platform/v1/logs/requests?limit=1").await;
    assert_eq!(rows.len(), 1);
    let first = rows[0]["seq"].as_u64().unwrap();
    let (_, rows) = list(
        &t,
        &format!("/platform/v1/logs/requests?limit=1&before={first}"),
    )
    .await;
    assert!(rows[0]["seq"].as_u64().unwrap() < first);

    // Bad input is a 400 in the envelope.
    let resp = t
        .admin(Method::GET, "/platform/v1/logs/requests?before=yesterday")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "invalid_query").await;
}

#[tokio::test]
async fn logs_need_a_platform_admin() {
    let t = TestApp::spawn().await;
    let p = t.create_project("logs-auth").await;
    for path in ["/platform/v1/logs/requests", "/platform/v1/logs/audit"] {
        let url = format!("{}{path}", t.url);
        let resp = t.http.get(&url).send().await.unwrap();
        expect_error(resp, 401, "missing_token").await;
        // Project keys are not platform admin tokens.
        for token in [&p.anon, &p.service, &"not.a.jwt".to_owned()] {
            let resp = t.http.get(&url).bearer_auth(token).send().await.unwrap();
            expect_error(resp, 401, "invalid_token").await;
        }
        // Nor on the project's own prefix.
        let resp = t
            .http
            .get(format!("{}{path}", p.url))
            .bearer_auth(&p.service)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path} under a project");
    }
}

#[tokio::test]
async fn audit_log_lists_admin_changes_with_filters() {
    let t = TestApp::spawn().await;
    t.create_project("audit-a").await;
    t.create_project("audit-b").await;
    let legacy = "legacy-secret-that-must-never-be-listed-0123456789";
    let resp = t
        .admin(Method::PATCH, "/platform/v1/projects/audit-a")
        .json(&json!({"name": "Audit A", "legacy_jwt_secret": legacy}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = t
        .admin(Method::DELETE, "/platform/v1/projects/audit-b")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    // Admin SQL inside a project is audited under `audit-a`.
    let resp = t
        .admin(Method::POST, "/p/audit-a/admin/v1/sql")
        .json(&json!({"query": "create table audited (id int)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let (text, rows) = list(&t, "/platform/v1/logs/audit?project=audit-a").await;
    let actions: Vec<&str> = rows.iter().filter_map(|r| r["action"].as_str()).collect();
    for a in ["project.create", "project.update", "sql.execute"] {
        assert!(actions.contains(&a), "{a} in {text}");
    }
    assert!(rows.iter().all(|r| r["target"] == "audit-a"), "{text}");
    let update = rows
        .iter()
        .find(|r| r["action"] == "project.update")
        .unwrap();
    assert_eq!(update["actor"], t.config.admin_email.as_str());
    assert_eq!(update["details"]["legacy_jwt_secret"], "set");
    let ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let (all, _) = list(&t, "/platform/v1/logs/audit?limit=500").await;
    assert!(
        !all.contains(legacy),
        "the audit log leaks the legacy secret"
    );
    assert!(!all.contains(&t.admin_token));

    let (text, rows) = list(&t, "/platform/v1/logs/audit?action=project.delete").await;
    assert!(
        rows.iter().all(|r| r["action"] == "project.delete"),
        "{text}"
    );
    assert!(rows.iter().any(|r| r["target"] == "audit-b"), "{text}");
    let (_, rows) = list(
        &t,
        &format!("/platform/v1/logs/audit?actor={}", t.config.admin_email),
    )
    .await;
    assert!(rows.len() >= 4);
    // LIKE wildcards in a filter are literal.
    let (_, rows) = list(&t, "/platform/v1/logs/audit?action=%25").await;
    assert!(rows.is_empty());
    let (_, rows) = list(&t, "/platform/v1/logs/audit?project=audit_a").await;
    assert!(rows.is_empty());
    // Paging back.
    let (_, rows) = list(&t, "/platform/v1/logs/audit?limit=1").await;
    assert_eq!(rows.len(), 1);
    let top = rows[0]["id"].as_i64().unwrap();
    let (_, rows) = list(&t, &format!("/platform/v1/logs/audit?limit=1&before={top}")).await;
    assert!(rows[0]["id"].as_i64().unwrap() < top);

    // Bad filters are 400s in the envelope.
    let long = "a".repeat(300);
    let resp = t
        .admin(
            Method::GET,
            &format!("/platform/v1/logs/audit?project={long}"),
        )
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "invalid_filter").await;
    let resp = t
        .admin(Method::GET, "/platform/v1/logs/audit?limit=lots")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "invalid_query").await;
}
