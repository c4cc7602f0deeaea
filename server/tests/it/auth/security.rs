//! Security: refresh-token reuse, lockout, rate limits, forged tokens.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use super::flows::claims;
use super::{Auth, gotrue_error};
use crate::support::TestApp;

#[tokio::test]
async fn refresh_reuse_within_interval_is_idempotent_and_after_it_revokes_the_session() {
    let a = Auth::new(
        "auth-reuse",
        json!({"mailer_autoconfirm": true, "refresh_token_reuse_interval": 1}),
    )
    .await;
    let s = a.session("reuse@example.com", "reuse-password").await;
    let r0 = s["refresh_token"].as_str().unwrap().to_owned();

    // Two concurrent tabs refresh with the same token: both get the same successor.
    let (x, y) = tokio::join!(a.refresh(&r0), a.refresh(&r0));
    assert_eq!(x.status(), 200);
    assert_eq!(y.status(), 200);
    let x: Value = x.json().await.unwrap();
    let y: Value = y.json().await.unwrap();
    assert_eq!(x["refresh_token"], y["refresh_token"]);
    let r1 = x["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r0);
    let access = x["access_token"].as_str().unwrap().to_owned();

    // After the interval, the old token is a replay: the whole session is revoked.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    gotrue_error(a.refresh(&r0).await, 400, "refresh_token_already_used").await;
    gotrue_error(a.refresh(&r1).await, 400, "refresh_token_not_found").await;
    gotrue_error(
        a.user(Method::GET, "/user", &access).send().await.unwrap(),
        403,
        "session_not_found",
    )
    .await;
    // Another session of the same user is not affected.
    assert_eq!(
        a.password("reuse@example.com", "reuse-password")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn lockout_after_failures_and_unlock_after_the_window() {
    let a = Auth::new(
        "auth-lockout",
        json!({"mailer_autoconfirm": true, "lockout_max_attempts": 3, "lockout_duration_secs": 2}),
    )
    .await;
    a.session("lock@example.com", "right-password").await;
    for _ in 0..3 {
        gotrue_error(
            a.password("lock@example.com", "wrong").await,
            400,
            "invalid_credentials",
        )
        .await;
    }
    // Locked: even the right password is refused, with Retry-After.
    let resp = a.password("lock@example.com", "right-password").await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    gotrue_error(resp, 429, "over_request_rate_limit").await;
    // An unknown address locks the same way (the lockout reveals nothing).
    for _ in 0..3 {
        gotrue_error(
            a.password("ghost@example.com", "wrong").await,
            400,
            "invalid_credentials",
        )
        .await;
    }
    gotrue_error(
        a.password("ghost@example.com", "x").await,
        429,
        "over_request_rate_limit",
    )
    .await;
    // After the window the account works again, and success resets the count.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        a.password("lock@example.com", "right-password")
            .await
            .status(),
        200
    );
    for _ in 0..2 {
        gotrue_error(
            a.password("lock@example.com", "wrong").await,
            400,
            "invalid_credentials",
        )
        .await;
    }
    assert_eq!(
        a.password("lock@example.com", "right-password")
            .await
            .status(),
        200
    );
    gotrue_error(
        a.password("lock@example.com", "wrong").await,
        400,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        a.password("lock@example.com", "right-password")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn rate_limits_per_ip_and_per_account() {
    let t = TestApp::spawn_with(|c| c.trust_forwarded_for = true).await;
    let p = t.create_project("auth-rate").await;
    let a = Auth { t, p };
    let resp = a
        .admin(Method::PUT, "/admin/config")
        .json(
            &json!({"mailer_autoconfirm": true, "rate_limit_sign_in_sign_ups": 3,
                      "rate_limit_per_account": 4, "rate_limit_window_secs": 60}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sign_in = |ip: &str, email: &str| {
        a.req(Method::POST, "/token?grant_type=password")
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": "whatever"}))
            .send()
    };
    for i in 0..3 {
        let resp = sign_in("10.0.0.1", &format!("a{i}@example.com"))
            .await
            .unwrap();
        gotrue_error(resp, 400, "invalid_credentials").await;
    }
    let resp = sign_in("10.0.0.1", "a9@example.com").await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    gotrue_error(resp, 429, "over_request_rate_limit").await;
    // Another IP is not affected.
    gotrue_error(
        sign_in("10.0.0.2", "b@example.com").await.unwrap(),
        400,
        "invalid_credentials",
    )
    .await;
    // Per account: the 5th attempt on one account from fresh IPs is refused.
    for i in 0..3 {
        let resp = sign_in(&format!("10.1.0.{i}"), "target@example.com")
            .await
            .unwrap();
        gotrue_error(resp, 400, "invalid_credentials").await;
    }
    gotrue_error(
        sign_in("10.1.0.9", "target@example.com").await.unwrap(),
        400,
        "invalid_credentials",
    )
    .await;
    gotrue_error(
        sign_in("10.1.0.10", "target@example.com").await.unwrap(),
        429,
        "over_request_rate_limit",
    )
    .await;
    // Sign-ups share the per-IP budget of their own action.
    let signup = |ip: &str, i: usize| {
        a.req(Method::POST, "/signup")
            .header("x-forwarded-for", ip)
            .json(&json!({"email": format!("s{i}@example.com"), "password": "signup-pass"}))
            .send()
    };
    for i in 0..3 {
        assert_eq!(signup("10.2.0.1", i).await.unwrap().status(), 200);
    }
    gotrue_error(
        signup("10.2.0.1", 3).await.unwrap(),
        429,
        "over_request_rate_limit",
    )
    .await;
}

fn forge(header: Value, claims: &Value, sig: &str) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{sig}", enc(&header), enc(claims))
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_refused() {
    let a = Auth::new("auth-forge", json!({"mailer_autoconfirm": true})).await;
    let other = a.t.create_project("auth-forge-b").await;
    let s = a.session("victim@example.com", "victim-password").await;
    let good = s["access_token"].as_str().unwrap();
    let c = claims(good);
    let kid = {
        let h = good.split('.').next().unwrap();
        let h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        h["kid"].as_str().unwrap().to_owned()
    };
    let key_a = ferrobase_server::platform::projects::load(&a.t.app.platform, "auth-forge")
        .await
        .unwrap()
        .unwrap()
        .keys[0]
        .clone();
    let key_b = ferrobase_server::platform::projects::load(&a.t.app.platform, "auth-forge-b")
        .await
        .unwrap()
        .unwrap()
        .keys[0]
        .clone();
    let now = chrono::Utc::now().timestamp();
    let mut expired = c.clone();
    expired["exp"] = json!(now - 3600);
    let mut foreign = c.clone();
    foreign["ref"] = json!("auth-forge-b");
    // HS256 signed with the public JWK as the secret (algorithm confusion).
    let hs = {
        use aws_lc_rs::hmac;
        let jwk = serde_json::to_vec(key_a.public_jwk()).unwrap();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT", "kid": kid}).to_string()),
            URL_SAFE_NO_PAD.encode(c.to_string())
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &jwk),
            signing_input.as_bytes(),
        );
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    let sig = good.split('.').nth(2).unwrap();
    let tampered = {
        let mut c2 = c.clone();
        c2["role"] = json!("service_role");
        forge(json!({"alg": "ES256", "typ": "JWT", "kid": kid}), &c2, sig)
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", key_a.sign(&expired).unwrap()),
        ("signed by another project", key_b.sign(&c).unwrap()),
        ("other project's ref", key_a.sign(&foreign).unwrap()),
        (
            "unknown kid",
            forge(json!({"alg": "ES256", "kid": "nope"}), &c, sig),
        ),
        (
            "alg none",
            forge(json!({"alg": "none", "kid": kid}), &c, ""),
        ),
        ("HS256 confusion", hs),
        (
            "RS256 header",
            forge(json!({"alg": "RS256", "kid": kid}), &c, sig),
        ),
        ("tampered claims", tampered),
    ];
    for (what, token) in &cases {
        let resp = a.user(Method::GET, "/user", token).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{what} on /user");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error_code"], "bad_jwt", "{what}: {body}");
        let resp =
            a.t.http
                .get(format!("{}/rest/v1/", a.p.url))
                .header("apikey", &a.p.anon)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status(), 401, "{what} on /rest/v1");
    }
    // A valid user token of project A is refused by project B.
    let resp =
        a.t.http
            .get(format!("{}/auth/v1/user", other.url))
            .header("apikey", &other.anon)
            .bearer_auth(good)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 403);
    // The real token still works, and verifies against the published JWKS.
    assert_eq!(
        a.user(Method::GET, "/user", good)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let jwks: Value =
        a.t.http
            .get(format!("{}/auth/v1/.well-known/jwks.json", a.p.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str())
    );
}
