//! `GET /auth/v1/user` answers from a short-lived per-node cache
//! (`FERROBASE_AUTH_USER_CACHE_MS`): what this node's writes change shows at
//! once, what changes elsewhere shows within the cache time, and the token
//! is verified before any cached answer.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::{Auth, gotrue_error};
use crate::support::TestApp;

/// `GET /user` with `access`: status and body.
async fn me(a: &Auth, access: &str) -> (u16, Value) {
    let resp = a.user(Method::GET, "/user", access).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Polls `GET /user` until `done` holds (or fails after 10 s).
async fn eventually(a: &Auth, access: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = me(a, access).await;
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "still {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn token(s: &Value) -> String {
    s["access_token"].as_str().unwrap().to_owned()
}

/// `GET /user` with `access` must be GoTrue's 403 `code`.
async fn refused(a: &Auth, access: &str, code: &str) {
    gotrue_error(
        a.user(Method::GET, "/user", access).send().await.unwrap(),
        403,
        code,
    )
    .await;
}

/// Signs in with a password: a new session's access token, already answered
/// (and so cached) by `GET /user`.
async fn signed_in(a: &Auth, email: &str, password: &str) -> String {
    let s: Value = a.password(email, password).await.json().await.unwrap();
    let access = token(&s);
    assert_eq!(me(a, &access).await.0, 200);
    access
}

#[tokio::test]
async fn answers_never_predate_this_nodes_writes() {
    // A long cache time: any answer that survives a write would show.
    let t = TestApp::spawn_with(|c| c.auth_user_cache_ms = 60_000).await;
    let a = Auth::on(t, "ucache-writes", json!({"mailer_autoconfirm": true})).await;
    let s = a.session("carol@example.com", "carol-password").await;
    let access = token(&s);
    let id = s["user"]["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, body) = me(&a, &access).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user_metadata"], json!({}));
    }

    // The user's own update.
    let resp = a
        .user(Method::PUT, "/user", &access)
        .json(&json!({"data": {"plan": "pro"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(me(&a, &access).await.1["user_metadata"]["plan"], "pro");

    // An admin update through the auth admin API.
    let resp = a
        .admin(Method::PUT, &format!("/admin/users/{id}"))
        .json(&json!({"user_metadata": {"plan": "team"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(me(&a, &access).await.1["user_metadata"]["plan"], "team");

    // Admin SQL on this node. It refuses writes to `auth`, but a function
    // the project owner made (here by migration, straight in the database)
    // may make them.
    a.t.owner_sql(
        &a.p,
        "create function public.set_plan(uid uuid) returns void language sql security definer \
         as $$ update auth.users set raw_user_meta_data = '{\"plan\": \"sql\"}' where id = uid $$",
    )
    .await;
    let admin_sql = |query: &'static str| {
        let a = &a;
        let id = id.clone();
        async move {
            let resp =
                a.t.http
                    .post(format!("{}/admin/v1/sql", a.p.url))
                    .bearer_auth(&a.p.service)
                    .json(&json!({"query": query, "params": [id]}))
                    .send()
                    .await
                    .unwrap();
            assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        }
    };
    admin_sql("select public.set_plan($1::uuid)").await;
    assert_eq!(me(&a, &access).await.1["user_metadata"]["plan"], "sql");

    // An admin revoking the user's sessions.
    let resp = a
        .admin(Method::DELETE, &format!("/admin/users/{id}/sessions"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    refused(&a, &access, "session_not_found").await;

    // The user logging out of a new session.
    let access2 = signed_in(&a, "carol@example.com", "carol-password").await;
    let resp = a
        .user(Method::POST, "/logout", &access2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    refused(&a, &access2, "session_not_found").await;

    // The admin deleting the user.
    let access3 = signed_in(&a, "carol@example.com", "carol-password").await;
    let resp = a
        .admin(Method::DELETE, &format!("/admin/users/{id}"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    refused(&a, &access3, "user_not_found").await;
}

#[tokio::test]
async fn the_token_is_verified_before_any_cached_answer() {
    let a = Auth::new("ucache-token", json!({"mailer_autoconfirm": true})).await;
    let s = a.session("dave@example.com", "dave-password").await;
    let access = token(&s);
    assert_eq!(me(&a, &access).await.0, 200);
    // Same user and session, broken signature.
    let mut forged = access.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    refused(&a, &forged, "bad_jwt").await;
    // No API key, or another project's: refused before the cache too.
    let resp =
        a.t.http
            .get(format!("{}/auth/v1/user", a.p.url))
            .bearer_auth(&access)
            .header("apikey", "not-a-key")
            .send()
            .await
            .unwrap();
    gotrue_error(resp, 401, "invalid_api_key").await;
    let other = a.t.create_project("ucache-other").await;
    let resp =
        a.t.http
            .get(format!("{}/auth/v1/user", other.url))
            .header("apikey", &other.anon)
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 403, "another project's token");
}

#[tokio::test]
async fn changes_made_elsewhere_show_within_the_cache_time_and_sessions_end_on_time() {
    let t = TestApp::spawn_with(|c| c.auth_user_cache_ms = 300).await;
    let a = Auth::on(t, "ucache-elsewhere", json!({"mailer_autoconfirm": true})).await;
    let s = a.session("erin@example.com", "erin-password").await;
    let access = token(&s);
    let id = s["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(me(&a, &access).await.0, 200);
    // Straight in the database (as another node or a script would).
    a.t.owner_sql(
        &a.p,
        &format!(
            "update auth.users set raw_user_meta_data = '{{\"seen\": true}}' where id = '{id}'"
        ),
    )
    .await;
    eventually(&a, &access, |st, b| {
        st == 200 && b["user_metadata"]["seen"] == true
    })
    .await;
    a.t.owner_sql(
        &a.p,
        &format!("delete from auth.sessions where user_id = '{id}'"),
    )
    .await;
    let body = eventually(&a, &access, |st, _| st == 403).await;
    assert_eq!(body["error_code"], "session_not_found");

    // A session that ends sooner than the cache time is not answered past its end.
    let t = TestApp::spawn_with(|c| c.auth_user_cache_ms = 60_000).await;
    let a = Auth::on(t, "ucache-ends", json!({"mailer_autoconfirm": true})).await;
    let s = a.session("fay@example.com", "fay-password").await;
    let access = token(&s);
    a.t.owner_sql(
        &a.p,
        "update auth.sessions set not_after = now() + interval '1 second'",
    )
    .await;
    assert_eq!(me(&a, &access).await.0, 200);
    // Kept for the cache time (a minute), this would stay 200 past the poll's 10 s.
    let body = eventually(&a, &access, |st, _| st == 403).await;
    assert_eq!(body["error_code"], "session_not_found");

    // With the cache off, a change elsewhere shows on the next request.
    let t = TestApp::spawn_with(|c| c.auth_user_cache_ms = 0).await;
    let a = Auth::on(t, "ucache-off", json!({"mailer_autoconfirm": true})).await;
    let s = a.session("gus@example.com", "gus-password").await;
    let access = token(&s);
    assert_eq!(me(&a, &access).await.0, 200);
    a.t.owner_sql(&a.p, "delete from auth.sessions").await;
    refused(&a, &access, "session_not_found").await;
}
