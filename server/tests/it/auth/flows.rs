//! Sign-up, sign-in, refresh, user, logout, settings, admin users, app roles
//! and RLS through `/rest/v1` with user tokens.

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Auth, gotrue_error};

pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("jwt payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims json")
}

#[tokio::test]
async fn signup_signin_refresh_update_and_logout() {
    let a = Auth::new("auth-flow", json!({"mailer_autoconfirm": true})).await;
    let s = a.session("Alice@Example.com", "secret-pw-1").await;
    assert_eq!(s["token_type"], "bearer");
    assert_eq!(s["expires_in"], 3600);
    assert!(s["expires_at"].as_i64().unwrap() > chrono::Utc::now().timestamp());
    assert!(s["refresh_token"].as_str().unwrap().len() >= 20);
    let user = &s["user"];
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["aud"], "authenticated");
    assert_eq!(user["role"], "authenticated");
    assert!(user["email_confirmed_at"].is_string());
    assert_eq!(
        user["app_metadata"],
        json!({"provider": "email", "providers": ["email"]})
    );
    assert_eq!(user["identities"][0]["provider"], "email");
    assert_eq!(user["is_anonymous"], false);

    let c = claims(s["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], user["id"]);
    assert_eq!(c["ref"], "auth-flow");
    assert_eq!(c["role"], "authenticated");
    assert_eq!(c["aud"], "authenticated");
    assert_eq!(c["aal"], "aal1");
    assert_eq!(c["amr"][0]["method"], "password");
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["is_anonymous"], false);
    assert!(c["session_id"].is_string());
    assert!(c["iss"].as_str().unwrap().ends_with("/p/auth-flow/auth/v1"));
    assert_eq!(c["app_metadata"]["provider"], "email");

    // Duplicate sign-up with autoconfirm on: user_already_exists.
    gotrue_error(
        a.signup("alice@example.com", "another-pw").await,
        422,
        "user_already_exists",
    )
    .await;

    // Password sign-in.
    let resp = a.password("alice@example.com", "secret-pw-1").await;
    assert_eq!(resp.status(), 200);
    let s2: Value = resp.json().await.unwrap();
    let access = s2["access_token"].as_str().unwrap().to_owned();
    assert_ne!(claims(&access)["session_id"], c["session_id"]);
    gotrue_error(
        a.password("alice@example.com", "wrong").await,
        400,
        "invalid_credentials",
    )
    .await;
    gotrue_error(
        a.password("nobody@example.com", "wrong").await,
        400,
        "invalid_credentials",
    )
    .await;

    // GET /user.
    let me: Value = a
        .user(Method::GET, "/user", &access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], user["id"]);

    // PUT /user: metadata merge, password change.
    let resp = a
        .user(Method::PUT, "/user", &access)
        .json(&json!({"data": {"name": "Alice", "theme": "dark"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = a
        .user(Method::PUT, "/user", &access)
        .json(&json!({"data": {"theme": null}, "password": "new-secret-2"}))
        .send()
        .await
        .unwrap();
    let me: Value = resp.json().await.unwrap();
    assert_eq!(me["user_metadata"], json!({"name": "Alice"}));
    gotrue_error(
        a.user(Method::PUT, "/user", &access)
            .json(&json!({"password": "new-secret-2"}))
            .send()
            .await
            .unwrap(),
        422,
        "same_password",
    )
    .await;
    gotrue_error(
        a.user(Method::PUT, "/user", &access)
            .json(&json!({"password": "x"}))
            .send()
            .await
            .unwrap(),
        422,
        "weak_password",
    )
    .await;
    gotrue_error(
        a.password("alice@example.com", "secret-pw-1").await,
        400,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        a.password("alice@example.com", "new-secret-2")
            .await
            .status(),
        200
    );

    // Refresh: rotates, new access token carries the new metadata.
    let rt = s2["refresh_token"].as_str().unwrap();
    let resp = a.refresh(rt).await;
    assert_eq!(resp.status(), 200);
    let s3: Value = resp.json().await.unwrap();
    assert_ne!(s3["refresh_token"], s2["refresh_token"]);
    assert_eq!(
        claims(s3["access_token"].as_str().unwrap())["user_metadata"]["name"],
        "Alice"
    );
    assert_eq!(
        claims(s3["access_token"].as_str().unwrap())["session_id"],
        claims(&access)["session_id"]
    );
    gotrue_error(
        a.refresh("no-such-token").await,
        400,
        "refresh_token_not_found",
    )
    .await;

    // Logout (local): the session is gone; its refresh token too.
    let access3 = s3["access_token"].as_str().unwrap();
    let resp = a
        .user(Method::POST, "/logout?scope=local", access3)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    gotrue_error(
        a.user(Method::GET, "/user", access3).send().await.unwrap(),
        403,
        "session_not_found",
    )
    .await;
    gotrue_error(
        a.refresh(s3["refresh_token"].as_str().unwrap()).await,
        400,
        "refresh_token_not_found",
    )
    .await;
    // The first session is untouched by a local logout.
    let first = s["access_token"].as_str().unwrap();
    assert_eq!(
        a.user(Method::GET, "/user", first)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn logout_scopes() {
    let a = Auth::new("auth-logout", json!({"mailer_autoconfirm": true})).await;
    let s1 = a.session("bob@example.com", "bob-password").await;
    let sign_in = || async {
        let v: Value = a
            .password("bob@example.com", "bob-password")
            .await
            .json()
            .await
            .unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    };
    let (t2, t3) = (sign_in().await, sign_in().await);
    let t1 = s1["access_token"].as_str().unwrap();
    let get = |t: String| {
        let req = a.user(Method::GET, "/user", &t);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let resp = a
        .user(Method::POST, "/logout?scope=others", &t2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(get(t1.into()).await, 403);
    assert_eq!(get(t3.clone()).await, 403);
    assert_eq!(get(t2.clone()).await, 200);
    let t4 = sign_in().await;
    gotrue_error(
        a.user(Method::POST, "/logout?scope=bogus", &t4)
            .send()
            .await
            .unwrap(),
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(
        a.user(Method::POST, "/logout", &t4)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(get(t2).await, 403);
    assert_eq!(get(t4).await, 403);
}

#[tokio::test]
async fn bad_input_is_4xx_in_gotrue_shape() {
    let a = Auth::new("auth-input", json!({"mailer_autoconfirm": true})).await;
    let post = |path: &str, body: &'static str| {
        a.req(Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    gotrue_error(post("/signup", "{not json").await.unwrap(), 400, "bad_json").await;
    gotrue_error(
        post("/signup", r#"{"email": 5}"#).await.unwrap(),
        400,
        "bad_json",
    )
    .await;
    gotrue_error(post("/signup", r#"[1,2]"#).await.unwrap(), 400, "bad_json").await;
    gotrue_error(
        post("/signup", r#"{"email":"x@y.z"}"#).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    gotrue_error(
        post("/signup", r#"{"password":"abcdefg"}"#).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    gotrue_error(
        post(
            "/signup",
            r#"{"email":"not-an-email","password":"abcdefg"}"#,
        )
        .await
        .unwrap(),
        400,
        "email_address_invalid",
    )
    .await;
    gotrue_error(
        post(
            "/signup",
            r#"{"email":"a'; drop table auth.users; --@x.com","password":"abcdefg"}"#,
        )
        .await
        .unwrap(),
        400,
        "email_address_invalid",
    )
    .await;
    let weak = gotrue_error(
        post("/signup", r#"{"email":"w@example.com","password":"123"}"#)
            .await
            .unwrap(),
        422,
        "weak_password",
    )
    .await;
    assert_eq!(weak["weak_password"]["reasons"], json!(["length"]));
    gotrue_error(
        post("/token?grant_type=magic", "{}").await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
    gotrue_error(
        post("/token", "{}").await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
    gotrue_error(
        post("/token?grant_type=refresh_token", "{}").await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
    gotrue_error(
        post("/token?grant_type=password", r#"{"password":"x"}"#)
            .await
            .unwrap(),
        400,
        "validation_failed",
    )
    .await;
    let huge = format!(r#"{{"refresh_token":"{}"}}"#, "a".repeat(5000));
    let resp = a
        .req(Method::POST, "/token?grant_type=refresh_token")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "refresh_token_not_found").await;
    let oversized = "x".repeat(2 * 1024 * 1024);
    let resp = a
        .req(Method::POST, "/signup")
        .body(oversized)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // No / bad bearer token.
    gotrue_error(
        a.req(Method::GET, "/user").send().await.unwrap(),
        401,
        "no_authorization",
    )
    .await;
    gotrue_error(
        a.user(Method::GET, "/user", "garbage")
            .send()
            .await
            .unwrap(),
        403,
        "bad_jwt",
    )
    .await;
    // The anon key is not a user.
    gotrue_error(
        a.user(Method::GET, "/user", &a.p.anon)
            .send()
            .await
            .unwrap(),
        403,
        "bad_jwt",
    )
    .await;
    // No API key at all.
    let resp =
        a.t.http
            .get(format!("{}/auth/v1/settings", a.p.url))
            .send()
            .await
            .unwrap();
    gotrue_error(resp, 401, "no_api_key").await;
    let resp =
        a.t.http
            .get(format!("{}/auth/v1/settings", a.p.url))
            .header("apikey", "nope")
            .send()
            .await
            .unwrap();
    gotrue_error(resp, 401, "invalid_api_key").await;
    // `GET /user` skips the auth settings (one round trip) but not the API
    // key check: a bad `apikey` is refused before any token is looked at.
    let resp =
        a.t.http
            .get(format!("{}/auth/v1/user", a.p.url))
            .header("apikey", "nope")
            .bearer_auth("garbage")
            .send()
            .await
            .unwrap();
    gotrue_error(resp, 401, "invalid_api_key").await;
    // Admin endpoints refuse the anon key and users.
    let resp = a
        .req(Method::GET, "/admin/users")
        .bearer_auth(&a.p.anon)
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 403, "not_admin").await;
    let resp = a
        .admin(Method::GET, "/admin/users/not-a-uuid")
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 404, "user_not_found").await;

    // The dated API version answers {code, message} and echoes the header.
    let resp = a
        .req(Method::POST, "/signup")
        .header("X-Supabase-Api-Version", "2024-01-01")
        .json(&json!({"email": "w@example.com", "password": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert_eq!(resp.headers()["x-supabase-api-version"], "2024-01-01");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "weak_password");
    assert!(body["message"].is_string());
    assert_eq!(body["weak_password"]["reasons"], json!(["length"]));
}

#[tokio::test]
async fn settings_and_signup_switches() {
    let a = Auth::new("auth-settings", json!({})).await;
    let s: Value = a
        .req(Method::GET, "/settings")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["external"]["email"], true);
    assert_eq!(s["disable_signup"], false);
    assert_eq!(s["mailer_autoconfirm"], false);
    // Bad settings are refused and change nothing.
    let resp = a
        .admin(Method::PUT, "/admin/config")
        .json(&json!({"jwt_exp": "soon"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = a
        .admin(Method::PUT, "/admin/config")
        .json(&json!({"no_such_setting": 1}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = a
        .admin(Method::PUT, "/admin/config")
        .json(&json!({"disable_signup": true, "jwt_exp": 120, "password_min_length": 10}))
        .send()
        .await
        .unwrap();
    let cfg: Value = resp.json().await.unwrap();
    assert_eq!(cfg["jwt_exp"], 120);
    gotrue_error(
        a.signup("x@example.com", "0123456789").await,
        422,
        "signup_disabled",
    )
    .await;
    let resp = a
        .admin(Method::PUT, "/admin/config")
        .json(&json!({"disable_signup": null, "mailer_autoconfirm": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gotrue_error(
        a.signup("x@example.com", "012345678").await,
        422,
        "weak_password",
    )
    .await;
    let s = a.session("x@example.com", "0123456789").await;
    assert_eq!(s["expires_in"], 120);
    let c = super::flows::claims(s["access_token"].as_str().unwrap());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
}

#[tokio::test]
async fn admin_users_crud_and_app_roles_reach_rls() {
    let a = Auth::new("auth-admin", json!({})).await;
    // Create, confirmed, with app roles.
    let resp = a
        .admin(Method::POST, "/admin/users")
        .json(
            &json!({"email": "Carol@Example.com", "password": "carol-pass", "email_confirm": true,
                      "user_metadata": {"name": "Carol"}, "app_metadata": {"roles": ["editor"]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let carol: Value = resp.json().await.unwrap();
    assert_eq!(carol["email"], "carol@example.com");
    assert_eq!(carol["app_metadata"]["roles"], json!(["editor"]));
    assert_eq!(carol["app_metadata"]["provider"], "email");
    let id = carol["id"].as_str().unwrap().to_owned();
    let resp = a
        .admin(Method::POST, "/admin/users")
        .json(&json!({"email": "carol@example.com"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 422, "email_exists").await;
    for i in 0..3 {
        let resp = a
            .admin(Method::POST, "/admin/users")
            .json(&json!({"email": format!("u{i}@example.com")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // List with paging headers.
    let resp = a
        .admin(Method::GET, "/admin/users?page=1&per_page=2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-total-count"], "4");
    assert!(
        resp.headers()["link"]
            .to_str()
            .unwrap()
            .contains("rel=\"next\"")
    );
    let list: Value = resp.json().await.unwrap();
    assert_eq!(list["users"].as_array().unwrap().len(), 2);
    assert_eq!(list["aud"], "authenticated");
    // Get, update (metadata merged, roles replaced), ban.
    let got: Value = a
        .admin(Method::GET, &format!("/admin/users/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["user_metadata"]["name"], "Carol");
    let resp = a
        .admin(Method::PUT, &format!("/admin/users/{id}"))
        .json(&json!({"app_metadata": {"roles": ["editor", "admin"]}, "user_metadata": {"team": "x"}}))
        .send()
        .await
        .unwrap();
    let upd: Value = resp.json().await.unwrap();
    assert_eq!(upd["app_metadata"]["roles"], json!(["editor", "admin"]));
    assert_eq!(upd["user_metadata"], json!({"name": "Carol", "team": "x"}));

    // Roles are in the JWT and RLS policies can use them.
    a.t.owner_sql(
        &a.p,
        "create table docs (id serial primary key, body text);
         alter table docs enable row level security;
         create policy admins_read on docs for select to authenticated
           using (auth.jwt() -> 'app_metadata' -> 'roles' ? 'admin');
         insert into docs (body) values ('classified');",
    )
    .await;
    let s: Value = a
        .password("carol@example.com", "carol-pass")
        .await
        .json()
        .await
        .unwrap();
    let token = s["access_token"].as_str().unwrap();
    assert_eq!(
        super::flows::claims(token)["app_metadata"]["roles"],
        json!(["editor", "admin"])
    );
    let rows: Value =
        a.t.http
            .get(format!("{}/rest/v1/docs?select=body", a.p.url))
            .header("apikey", &a.p.anon)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(rows, json!([{"body": "classified"}]));

    // Ban: sign-in refused; unban restores it.
    let resp = a
        .admin(Method::PUT, &format!("/admin/users/{id}"))
        .json(&json!({"ban_duration": "1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gotrue_error(
        a.password("carol@example.com", "carol-pass").await,
        400,
        "user_banned",
    )
    .await;
    gotrue_error(
        a.refresh(s["refresh_token"].as_str().unwrap()).await,
        400,
        "user_banned",
    )
    .await;
    let resp = a
        .admin(Method::PUT, &format!("/admin/users/{id}"))
        .json(&json!({"ban_duration": "1 week"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    a.admin(Method::PUT, &format!("/admin/users/{id}"))
        .json(&json!({"ban_duration": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        a.password("carol@example.com", "carol-pass").await.status(),
        200
    );

    // Delete.
    let resp = a
        .admin(Method::DELETE, &format!("/admin/users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gotrue_error(
        a.admin(Method::GET, &format!("/admin/users/{id}"))
            .send()
            .await
            .unwrap(),
        404,
        "user_not_found",
    )
    .await;
    gotrue_error(
        a.admin(Method::DELETE, &format!("/admin/users/{id}"))
            .send()
            .await
            .unwrap(),
        404,
        "user_not_found",
    )
    .await;
    gotrue_error(
        a.user(Method::GET, "/user", token).send().await.unwrap(),
        403,
        "user_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_user_sees_only_their_own_rows_through_rest() {
    let a = Auth::new("auth-rls", json!({"mailer_autoconfirm": true})).await;
    a.t.owner_sql(
        &a.p,
        "create table todos (id serial primary key, owner uuid not null default auth.uid()
            references auth.users (id) on delete cascade, title text not null);
         alter table todos enable row level security;
         create policy own on todos for all to authenticated
           using (owner = auth.uid()) with check (owner = auth.uid());",
    )
    .await;
    let u1 = a.session("one@example.com", "password-1").await;
    let u2 = a.session("two@example.com", "password-2").await;
    let rest = |m: Method, path: &str, token: &str| {
        a.t.http
            .request(m, format!("{}/rest/v1{path}", a.p.url))
            .header("apikey", &a.p.anon)
            .bearer_auth(token.to_owned())
    };
    let t1 = u1["access_token"].as_str().unwrap();
    let t2 = u2["access_token"].as_str().unwrap();
    for (t, title) in [(t1, "one's"), (t2, "two's")] {
        let resp = rest(Method::POST, "/todos", t)
            .json(&json!({"title": title}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }
    // Writing a row for someone else is refused by the policy.
    let resp = rest(Method::POST, "/todos", t1)
        .json(&json!({"title": "forged", "owner": u2["user"]["id"]}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
    let rows: Value = rest(Method::GET, "/todos?select=title", t1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows, json!([{"title": "one's"}]));
    let rows: Value = rest(Method::GET, "/todos?select=title", t2)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows, json!([{"title": "two's"}]));
    let rows: Value = rest(Method::GET, "/todos?select=title", &a.p.anon)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows, json!([]));
    // The auth tables are not reachable through the data API.
    for token in [t1, a.p.anon.as_str()] {
        let resp =
            a.t.http
                .get(format!("{}/rest/v1/users", a.p.url))
                .header("apikey", &a.p.anon)
                .header("Accept-Profile", "auth")
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
        assert!(
            resp.status().is_client_error(),
            "auth.users exposed: {}",
            resp.status()
        );
    }
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_and_identities_unlinked() {
    let a = Auth::new("auth-sessions", json!({"mailer_autoconfirm": true})).await;
    let s1 = a.session("sam@example.com", "sam-password").await;
    let s2: Value = a
        .password("sam@example.com", "sam-password")
        .await
        .json()
        .await
        .unwrap();
    let id = s1["user"]["id"].as_str().unwrap();
    let list: Value = a
        .admin(Method::GET, &format!("/admin/users/{id}/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);
    let sid = claims(s1["access_token"].as_str().unwrap())["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = a
        .admin(Method::DELETE, &format!("/admin/users/{id}/sessions/{sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let t1 = s1["access_token"].as_str().unwrap();
    let t2 = s2["access_token"].as_str().unwrap();
    gotrue_error(
        a.user(Method::GET, "/user", t1).send().await.unwrap(),
        403,
        "session_not_found",
    )
    .await;
    assert_eq!(
        a.user(Method::GET, "/user", t2)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    gotrue_error(
        a.admin(Method::DELETE, &format!("/admin/users/{id}/sessions/{sid}"))
            .send()
            .await
            .unwrap(),
        404,
        "session_not_found",
    )
    .await;
    let resp = a
        .admin(Method::DELETE, &format!("/admin/users/{id}/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["revoked"], 1);
    gotrue_error(
        a.user(Method::GET, "/user", t2).send().await.unwrap(),
        403,
        "session_not_found",
    )
    .await;
    gotrue_error(
        a.refresh(s2["refresh_token"].as_str().unwrap()).await,
        400,
        "refresh_token_not_found",
    )
    .await;

    // The only identity cannot be unlinked.
    let s3: Value = a
        .password("sam@example.com", "sam-password")
        .await
        .json()
        .await
        .unwrap();
    let t3 = s3["access_token"].as_str().unwrap();
    let identity = s3["user"]["identities"][0]["identity_id"].as_str().unwrap();
    gotrue_error(
        a.user(Method::DELETE, &format!("/user/identities/{identity}"), t3)
            .send()
            .await
            .unwrap(),
        422,
        "single_identity_not_deletable",
    )
    .await;
    gotrue_error(
        a.user(
            Method::DELETE,
            &format!("/user/identities/{}", uuid::Uuid::new_v4()),
            t3,
        )
        .send()
        .await
        .unwrap(),
        404,
        "identity_not_found",
    )
    .await;
}

#[tokio::test]
async fn admin_users_search_by_prefix_on_the_server() {
    let a = Auth::new("auth-search", json!({})).await;
    let mut ids = Vec::new();
    for email in [
        "ada@example.com",
        "Adam@Example.com",
        "grace@example.com",
        "a_b@example.com",
        "a%c@example.com",
        "back\\slash@example.com",
    ] {
        let resp = a
            .admin(Method::POST, "/admin/users")
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{email}");
        let u: Value = resp.json().await.unwrap();
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let search = |q: &str, extra: &str| {
        let q = url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
        a.admin(Method::GET, &format!("/admin/users?search={q}{extra}"))
            .send()
    };
    let emails = |v: &Value| -> Vec<String> {
        let mut e: Vec<String> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["email"].as_str().unwrap_or_default().to_owned())
            .collect();
        e.sort();
        e
    };
    // Case-insensitive prefix, counted and paged on the server.
    let resp = search("AD", "&per_page=1").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-total-count"], "2");
    let link = resp.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("search=AD") && link.contains("rel=\"next\""),
        "{link}"
    );
    assert_eq!(
        resp.json::<Value>().await.unwrap()["users"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let page2: Value = search("ad", "&per_page=1&page=2")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page2["users"].as_array().unwrap().len(), 1);
    let both: Value = search("ad", "").await.unwrap().json().await.unwrap();
    assert_eq!(emails(&both), ["ada@example.com", "adam@example.com"]);
    // A prefix, not a substring.
    let none: Value = search("example", "").await.unwrap().json().await.unwrap();
    assert!(emails(&none).is_empty());
    // By id prefix.
    let by_id: Value = search(&ids[2][..8], "")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(emails(&by_id), ["grace@example.com"]);
    // LIKE wildcards and quotes are plain text: `_` and `%` match only themselves.
    let underscore: Value = search("a_", "").await.unwrap().json().await.unwrap();
    assert_eq!(emails(&underscore), ["a_b@example.com"]);
    let percent: Value = search("a%", "").await.unwrap().json().await.unwrap();
    assert_eq!(emails(&percent), ["a%c@example.com"]);
    let everything: Value = search("%", "").await.unwrap().json().await.unwrap();
    assert!(emails(&everything).is_empty(), "{everything}");
    let backslash: Value = search("back\\", "").await.unwrap().json().await.unwrap();
    assert_eq!(emails(&backslash), ["back\\slash@example.com"]);
    for hostile in [
        "' or 1=1 --",
        "'; drop table auth.users; --",
        "\\",
        "$1",
        "ada' union select * from auth.users --",
        "😀",
    ] {
        let resp = search(hostile, "").await.unwrap();
        assert_eq!(resp.status(), 200, "{hostile}");
        assert_eq!(resp.headers()["x-total-count"], "0", "{hostile}");
    }
    // Blank searches list everyone.
    let all = search("  ", "").await.unwrap();
    assert_eq!(all.headers()["x-total-count"], "6");
    // Too long, or a NUL: refused in GoTrue's error shape, never a 500.
    gotrue_error(
        search(&"a".repeat(257), "").await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
    gotrue_error(search("ad\0", "").await.unwrap(), 400, "validation_failed").await;
    // The table is intact, and only the service role may search.
    let all: Value = a
        .admin(Method::GET, "/admin/users")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["users"].as_array().unwrap().len(), 6);
    let resp = a
        .req(Method::GET, "/admin/users?search=ad")
        .bearer_auth(&a.p.anon)
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 403, "not_admin").await;
}

/// `GET /auth/v1/user` reads the user, identities, factors and session with
/// its own pipelined statements (`users::with_session`); the admin view reads
/// them with the shared loaders. Both must give the same JSON, identities and
/// factors in creation order; a user without factors gets no `factors`.
#[tokio::test]
async fn user_endpoint_matches_the_admin_view() {
    // It writes straight to the database, behind the server's back: with
    // the `GET /user` cache off, the next answer shows that at once.
    let a = Auth::on(
        crate::support::TestApp::spawn_with(|c| c.auth_user_cache_ms = 0).await,
        "auth-user-view",
        json!({"mailer_autoconfirm": true}),
    )
    .await;
    let s = a.session("dora@example.com", "secret-pw-1").await;
    let access = s["access_token"].as_str().unwrap();
    let id = s["user"]["id"].as_str().unwrap().to_owned();
    let me = |access: String| {
        let a = &a;
        async move {
            let resp = a.user(Method::GET, "/user", &access).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let alone = me(access.to_owned()).await;
    assert_eq!(alone["identities"].as_array().unwrap().len(), 1);
    assert!(
        alone.get("factors").is_none(),
        "no factors, no list: {alone}"
    );

    a.t.owner_sql(
        &a.p,
        &format!(
            "insert into auth.identities (provider_id, user_id, identity_data, provider, created_at, last_sign_in_at)
               values ('gh-7', '{id}', '{{\"email\": \"Dora@GH.example\", \"name\": \"Dora\"}}', 'github', now() + interval '1 second', null);
             insert into auth.mfa_factors (user_id, friendly_name, factor_type, status, secret_enc, created_at)
               values ('{id}', 'phone app', 'totp', 'verified', 'x', now()),
                      ('{id}', null, 'totp', 'unverified', 'y', now() + interval '1 second');"
        ),
    )
    .await;
    let mine = me(access.to_owned()).await;
    let admin: Value = a
        .admin(Method::GET, &format!("/admin/users/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["identities"], admin["identities"]);
    assert_eq!(mine["factors"], admin["factors"]);
    let providers: Vec<&str> = mine["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["email", "github"]);
    assert_eq!(mine["identities"][1]["email"], "dora@gh.example");
    assert_eq!(mine["identities"][1]["last_sign_in_at"], Value::Null);
    assert_eq!(mine["factors"][0]["friendly_name"], "phone app");
    assert_eq!(mine["factors"][1]["friendly_name"], "");
    assert_eq!(mine["factors"][1]["status"], "unverified");
}
