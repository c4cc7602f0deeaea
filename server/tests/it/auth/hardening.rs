//! Account-security attacks replayed over HTTP (issue 8, items 1–3, 5, 6;
//! item 4, OAuth linking, is in `oauth.rs` next to the provider it needs):
//! MFA bypass from an `aal1` session, TOTP guessing, sign-up over an existing
//! unconfirmed account, the redirect allow-list matched on parsed URLs, and
//! secure email change finished through `/resend`.

use ferrobase_server::auth::mfa::{base32_decode, totp};
use reqwest::Method;
use serde_json::{Value, json};

use super::flows::claims;
use super::mail::{fragment, open_link};
use super::{Auth, gotrue_error, link_in};

fn code(secret: &str, offset: i64) -> String {
    let secret = base32_decode(secret).unwrap();
    totp(&secret, chrono::Utc::now().timestamp() / 30 + offset)
}

/// A 6-digit code that is valid at none of the accepted steps.
fn wrong_code(secret: &str) -> String {
    let valid: Vec<String> = (-2..=2).map(|o| code(secret, o)).collect();
    ["000000", "111111", "222222", "333333", "444444", "555555"]
        .into_iter()
        .find(|c| !valid.iter().any(|v| v == c))
        .unwrap()
        .to_owned()
}

async fn json_ok(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// Enrolls a TOTP factor and returns (id, secret).
async fn enroll(a: &Auth, token: &str, name: &str) -> reqwest::Response {
    a.user(Method::POST, "/factors", token)
        .json(&json!({"factor_type": "totp", "friendly_name": name}))
        .send()
        .await
        .unwrap()
}

async fn challenge(a: &Auth, token: &str, factor: &str) -> String {
    let v = json_ok(
        a.user(Method::POST, &format!("/factors/{factor}/challenge"), token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    v["id"].as_str().unwrap().to_owned()
}

async fn verify(
    a: &Auth,
    token: &str,
    factor: &str,
    challenge: &str,
    code: &str,
) -> reqwest::Response {
    a.user(Method::POST, &format!("/factors/{factor}/verify"), token)
        .json(&json!({"challenge_id": challenge, "code": code}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_aal1_session_cannot_enroll_verify_or_remove_factors_once_one_is_verified() {
    let a = Auth::new("sec-mfa-aal", json!({"mailer_autoconfirm": true})).await;
    let s = a.session("victim@example.com", "victim-password").await;
    let t1 = s["access_token"].as_str().unwrap().to_owned();
    // The owner sets up MFA.
    let f = json_ok(enroll(&a, &t1, "phone").await).await;
    let factor = f["id"].as_str().unwrap().to_owned();
    let secret = f["totp"]["secret"].as_str().unwrap().to_owned();
    let c = challenge(&a, &t1, &factor).await;
    let s2 = json_ok(verify(&a, &t1, &factor, &c, &code(&secret, 0)).await).await;
    let t2 = s2["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&t2)["aal"], "aal2");

    // The attacker knows only the password: an aal1 session.
    let stolen = json_ok(a.password("victim@example.com", "victim-password").await).await;
    let t_att = stolen["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&t_att)["aal"], "aal1");
    // It cannot add its own factor (which it would verify to reach aal2) …
    gotrue_error(
        enroll(&a, &t_att, "attacker").await,
        403,
        "insufficient_aal",
    )
    .await;
    // … nor verify a new factor someone else enrolled, …
    let f2 = json_ok(enroll(&a, &t2, "second").await).await;
    let factor2 = f2["id"].as_str().unwrap().to_owned();
    let secret2 = f2["totp"]["secret"].as_str().unwrap().to_owned();
    let c2 = challenge(&a, &t_att, &factor2).await;
    gotrue_error(
        verify(&a, &t_att, &factor2, &c2, &code(&secret2, 0)).await,
        403,
        "insufficient_aal",
    )
    .await;
    // … nor remove any factor, verified or not.
    for id in [&factor, &factor2] {
        let resp = a
            .user(Method::DELETE, &format!("/factors/{id}"), &t_att)
            .send()
            .await
            .unwrap();
        gotrue_error(resp, 403, "insufficient_aal").await;
    }
    // Stepping up with the real factor is still possible from aal1.
    let c3 = challenge(&a, &t_att, &factor).await;
    let next = code(&secret, 1);
    let stepped = verify(&a, &t_att, &factor, &c3, &next).await;
    assert_eq!(stepped.status(), 200);
    // And the aal2 owner manages factors freely.
    let resp = a
        .user(Method::DELETE, &format!("/factors/{factor2}"), &t2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn totp_guessing_burns_the_challenge_and_is_rate_limited_per_factor_and_ip() {
    let a = Auth::new(
        "sec-mfa-guess",
        json!({"mailer_autoconfirm": true, "rate_limit_mfa_verify": 5, "rate_limit_verify": 8}),
    )
    .await;
    let s = a.session("guess@example.com", "guess-password").await;
    let t = s["access_token"].as_str().unwrap().to_owned();
    let f = json_ok(enroll(&a, &t, "phone").await).await;
    let factor = f["id"].as_str().unwrap().to_owned();
    let secret = f["totp"]["secret"].as_str().unwrap().to_owned();
    let wrong = wrong_code(&secret);

    // Three wrong codes burn the challenge: even the right code fails on it.
    let c1 = challenge(&a, &t, &factor).await;
    for _ in 0..3 {
        gotrue_error(
            verify(&a, &t, &factor, &c1, &wrong).await,
            422,
            "mfa_verification_failed",
        )
        .await;
    }
    gotrue_error(
        verify(&a, &t, &factor, &c1, &code(&secret, 0)).await,
        422,
        "mfa_challenge_expired",
    )
    .await;
    // Five attempts per factor per window, right or wrong: the sixth is refused.
    let c2 = challenge(&a, &t, &factor).await;
    gotrue_error(
        verify(&a, &t, &factor, &c2, &wrong).await,
        422,
        "mfa_verification_failed",
    )
    .await;
    let resp = verify(&a, &t, &factor, &c2, &code(&secret, 0)).await;
    assert!(resp.headers().contains_key("retry-after"));
    gotrue_error(resp, 429, "over_request_rate_limit").await;

    // The IP has used 5 of its 8: another user's factor gets 3 more tries.
    let other = a.session("other@example.com", "other-password").await;
    let ot = other["access_token"].as_str().unwrap().to_owned();
    let of = json_ok(enroll(&a, &ot, "phone").await).await;
    let ofactor = of["id"].as_str().unwrap().to_owned();
    let osecret = of["totp"]["secret"].as_str().unwrap().to_owned();
    let oc = challenge(&a, &ot, &ofactor).await;
    let owrong = wrong_code(&osecret);
    for _ in 0..2 {
        gotrue_error(
            verify(&a, &ot, &ofactor, &oc, &owrong).await,
            422,
            "mfa_verification_failed",
        )
        .await;
    }
    let oc2 = challenge(&a, &ot, &ofactor).await;
    gotrue_error(
        verify(&a, &ot, &ofactor, &oc2, &owrong).await,
        422,
        "mfa_verification_failed",
    )
    .await;
    gotrue_error(
        verify(&a, &ot, &ofactor, &oc2, &code(&osecret, 0)).await,
        429,
        "over_request_rate_limit",
    )
    .await;

    // Every wrong code is in the audit log.
    let cfg: tokio_postgres::Config = a.p.db_url.parse().unwrap();
    let db = ferrobase_server::db::connect(&cfg).await.unwrap();
    let n: i64 = db
        .query_one(
            "select count(*) from auth.audit_log_entries where action = 'mfa_verification_failed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 7);
}

#[tokio::test]
async fn signing_up_again_never_changes_an_unconfirmed_account() {
    let a = Auth::new(
        "sec-resignup",
        json!({"mailer_autoconfirm": false, "smtp_max_frequency_secs": 0}),
    )
    .await;
    // An account created by an admin without `email_confirm`.
    let created = json_ok(
        a.admin(Method::POST, "/admin/users")
            .json(
                &json!({"email": "victim@example.com", "password": "admin-set-password",
                          "user_metadata": {"team": "blue"}}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mails_before = a.mail_to("victim@example.com").await.len();

    // The attacker signs up with the same address: the answer looks like a
    // new sign-up, with another id, and nothing changes or is mailed.
    let resp = a
        .req(Method::POST, "/signup")
        .json(
            &json!({"email": "victim@example.com", "password": "attacker-password",
                      "data": {"team": "red"}}),
        )
        .send()
        .await
        .unwrap();
    let body = json_ok(resp).await;
    assert_ne!(body["id"], id.as_str());
    assert!(body.get("access_token").is_none());
    assert_eq!(a.mail_to("victim@example.com").await.len(), mails_before);
    let user = json_ok(
        a.admin(Method::GET, &format!("/admin/users/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(user["user_metadata"]["team"], "blue");

    // With autoconfirm on, a repeated sign-up is refused, never a session.
    a.admin(Method::PUT, "/admin/config")
        .json(&json!({"mailer_autoconfirm": true}))
        .send()
        .await
        .unwrap();
    let resp = a
        .req(Method::POST, "/signup")
        .json(&json!({"email": "victim@example.com", "password": "attacker-password"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 422, "user_already_exists").await;
    // An invited user likewise.
    a.admin(Method::POST, "/invite")
        .json(&json!({"email": "invited@example.com"}))
        .send()
        .await
        .unwrap();
    let resp = a
        .req(Method::POST, "/signup")
        .json(&json!({"email": "invited@example.com", "password": "attacker-password"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 422, "user_already_exists").await;
    // The password is still the one the admin set.
    gotrue_error(
        a.password("victim@example.com", "attacker-password").await,
        400,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        a.password("victim@example.com", "admin-set-password")
            .await
            .status(),
        200
    );
    gotrue_error(
        a.password("invited@example.com", "attacker-password").await,
        400,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn redirect_allow_list_compares_parsed_hosts_not_strings() {
    let a = Auth::new(
        "sec-redirect",
        json!({"site_url": "https://app.test", "uri_allow_list": ["https://*.example.com/**"],
               "smtp_max_frequency_secs": 0}),
    )
    .await;
    let cases = [
        // (redirect_to, where the link may lead)
        ("https://16909060%3F.example.com/", "https://app.test"),
        ("https://16909060%23.example.com/", "https://app.test"),
        ("https://evil.test%5C@x.example.com/", "https://app.test"),
        ("https://x.example.com%40evil.test/", "https://app.test"),
        ("https://x.example.com:8443/", "https://app.test"),
        ("https://pr-1.example.com/cb", "https://pr-1.example.com/cb"),
    ];
    for (i, (redirect_to, expected)) in cases.iter().enumerate() {
        let email = format!("r{i}@example.com");
        let resp = a
            .req(Method::POST, &format!("/signup?redirect_to={redirect_to}"))
            .json(&json!({"email": email, "password": "redirect-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mails = a.mail_to(&email).await;
        let location = open_link(&link_in(&mails[0], "/auth/v1/verify?")).await;
        let target = location.split('#').next().unwrap();
        assert_eq!(
            target.trim_end_matches('/'),
            *expected,
            "redirect_to={redirect_to} led to {location}"
        );
    }
}

#[tokio::test]
async fn secure_email_change_needs_the_old_address_even_after_resend() {
    let a = Auth::new(
        "sec-email-change",
        json!({"mailer_autoconfirm": true, "smtp_max_frequency_secs": 0,
               "secure_email_change_enabled": true}),
    )
    .await;
    // The attacker holds a session of the victim (not the mailbox).
    let s = a.session("old@example.com", "victim-password").await;
    let access = s["access_token"].as_str().unwrap();
    let resp = a
        .user(Method::PUT, "/user", access)
        .json(&json!({"email": "attacker@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let is_partial = |location: &str| {
        fragment(location)["message"]
            .as_str()
            .is_some_and(|m| m.contains("other email"))
    };
    // The new address confirms: half done.
    let to_new = a.mail_to("attacker@example.com").await;
    let first = open_link(&link_in(&to_new[0], "type=email_change")).await;
    assert!(is_partial(&first), "{first}");
    // Resend, and confirm the new address again: still only half done.
    let resp = a
        .req(Method::POST, "/resend")
        .json(&json!({"type": "email_change", "email": "attacker@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let to_new = a.mail_to("attacker@example.com").await;
    assert!(to_new.len() >= 2, "resent");
    let again = open_link(&link_in(&to_new[0], "type=email_change")).await;
    assert!(
        is_partial(&again),
        "the change completed without the old address: {again}"
    );
    let me = json_ok(a.user(Method::GET, "/user", access).send().await.unwrap()).await;
    assert_eq!(me["email"], "old@example.com");
    // Only the old address finishes it.
    let to_old = a.mail_to("old@example.com").await;
    let done = fragment(&open_link(&link_in(&to_old[0], "type=email_change")).await);
    assert_eq!(
        claims(done["access_token"].as_str().unwrap())["email"],
        "attacker@example.com"
    );
}
