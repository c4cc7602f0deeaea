//! Email flows, following the links and codes in captured mail: confirmation,
//! recovery, OTP / magic link, email change on both addresses, invite,
//! generate_link, resend, redirect allow-list, templates, mail frequency.

use reqwest::Method;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use super::flows::claims;
use super::{Auth, code_in, gotrue_error, link_in, params};

/// Follows a verify link without following the redirect; returns the Location.
pub(super) async fn open_link(link: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let resp = http.get(link).send().await.unwrap();
    assert_eq!(resp.status(), 303, "verify link {link}");
    resp.headers()["location"].to_str().unwrap().to_owned()
}

pub(super) fn fragment(location: &str) -> Value {
    params(location.split_once('#').map_or("", |(_, f)| f))
}

#[tokio::test]
async fn signup_confirmation_link_and_code() {
    let a = Auth::new(
        "auth-confirm",
        json!({"site_url": "http://app.test", "uri_allow_list": ["http://app.test/**", "myapp://*"],
               "smtp_max_frequency_secs": 0}),
    )
    .await;
    let resp = a
        .req(Method::POST, "/signup?redirect_to=http://app.test/welcome")
        .json(&json!({"email": "dora@example.com", "password": "dora-password", "data": {"plan": "free"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let user: Value = resp.json().await.unwrap();
    assert!(user.get("access_token").is_none());
    assert!(user["confirmation_sent_at"].is_string());
    assert!(user.get("email_confirmed_at").is_none());
    assert_eq!(user["user_metadata"]["plan"], "free");
    gotrue_error(
        a.password("dora@example.com", "dora-password").await,
        400,
        "email_not_confirmed",
    )
    .await;

    // Signing up again with a confirmed address (below) looks like a new sign-up.
    let mails = a.mail_to("dora@example.com").await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["kind"], "confirmation");
    assert_eq!(mails[0]["status"], "captured");
    assert_eq!(mails[0]["subject"], "Confirm Your Signup");
    let link = link_in(&mails[0], "/auth/v1/verify?");
    assert!(link.contains("type=signup"));
    let location = open_link(&link).await;
    assert!(
        location.starts_with("http://app.test/welcome#"),
        "{location}"
    );
    let f = fragment(&location);
    assert_eq!(f["token_type"], "bearer");
    assert_eq!(f["type"], "signup");
    assert_eq!(
        claims(f["access_token"].as_str().unwrap())["email"],
        "dora@example.com"
    );
    assert_eq!(
        claims(f["access_token"].as_str().unwrap())["amr"][0]["method"],
        "otp"
    );
    // The refresh token from the fragment works.
    assert_eq!(
        a.refresh(f["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // The link is single-use: a second click lands with an error.
    let again = open_link(&link).await;
    assert!(
        again.starts_with("http://app.test/welcome#error=access_denied"),
        "{again}"
    );
    assert_eq!(fragment(&again)["error_code"], "otp_expired");
    assert_eq!(
        a.password("dora@example.com", "dora-password")
            .await
            .status(),
        200
    );

    let resp = a.signup("dora@example.com", "other-password").await;
    assert_eq!(resp.status(), 200);
    let fake: Value = resp.json().await.unwrap();
    assert_ne!(fake["id"], user["id"]);
    assert_eq!(
        a.mail_to("dora@example.com").await.len(),
        1,
        "no mail for the obfuscated sign-up"
    );

    // Confirmation by code: POST /verify {type: signup, email, token}.
    a.signup("eve@example.com", "eve-password").await;
    let mails = a.mail_to("eve@example.com").await;
    let code = code_in(&mails[0]);
    let resp = a
        .req(Method::POST, "/verify")
        .json(&json!({"type": "signup", "email": "eve@example.com", "token": "000000"}))
        .send()
        .await
        .unwrap();
    if code != "000000" {
        gotrue_error(resp, 403, "otp_expired").await;
    }
    let resp = a
        .req(Method::POST, "/verify")
        .json(&json!({"type": "signup", "email": "eve@example.com", "token": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert!(s["user"]["email_confirmed_at"].is_string());
    // Resending for a confirmed address sends nothing and reveals nothing.
    let resp = a
        .req(Method::POST, "/resend")
        .json(&json!({"type": "signup", "email": "eve@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(a.mail_to("eve@example.com").await.len(), 1);

    // A redirect outside the allow-list falls back to site_url.
    a.req(Method::POST, "/signup?redirect_to=https://evil.test/steal")
        .json(&json!({"email": "fay@example.com", "password": "fay-password"}))
        .send()
        .await
        .unwrap();
    let link = link_in(&a.mail_to("fay@example.com").await[0], "/auth/v1/verify?");
    assert!(!link.contains("evil"), "{link}");
    let location = open_link(&link).await;
    assert!(
        location.starts_with("http://app.test#access_token="),
        "{location}"
    );
    // Tampering the redirect on the link does not help either.
    a.req(Method::POST, "/resend")
        .json(&json!({"type": "signup", "email": "gus@example.com"}))
        .send()
        .await
        .unwrap();
    a.signup("gus@example.com", "gus-password").await;
    let link = link_in(&a.mail_to("gus@example.com").await[0], "/auth/v1/verify?");
    let location = open_link(&format!("{link}&redirect_to=https://evil.test/")).await;
    assert!(!location.contains("evil.test"), "{location}");
}

#[tokio::test]
async fn recovery_magic_link_and_otp() {
    let a = Auth::new(
        "auth-recover",
        json!({"mailer_autoconfirm": true, "smtp_max_frequency_secs": 0}),
    )
    .await;
    a.session("hal@example.com", "old-password").await;
    // Unknown addresses get the same answer and no mail.
    for email in ["hal@example.com", "nobody@example.com"] {
        let resp = a
            .req(Method::POST, "/recover")
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    }
    assert!(a.mail_to("nobody@example.com").await.is_empty());
    let mail = &a.mail_to("hal@example.com").await[0];
    assert_eq!(mail["kind"], "recovery");
    let f = fragment(&open_link(&link_in(mail, "type=recovery")).await);
    assert_eq!(f["type"], "recovery");
    let access = f["access_token"].as_str().unwrap();
    let resp = a
        .user(Method::PUT, "/user", access)
        .json(&json!({"password": "new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        a.password("hal@example.com", "new-password").await.status(),
        200
    );

    // Magic link for an existing user.
    let resp = a
        .req(Method::POST, "/otp")
        .json(&json!({"email": "hal@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mail = &a.mail_to("hal@example.com").await[0];
    assert_eq!(mail["kind"], "magic_link");
    let f = fragment(&open_link(&link_in(mail, "type=magiclink")).await);
    assert_eq!(
        claims(f["access_token"].as_str().unwrap())["amr"][0]["method"],
        "magiclink"
    );

    // OTP code with type=email, creating the user.
    let resp = a
        .req(Method::POST, "/otp")
        .json(&json!({"email": "ivy@example.com", "data": {"src": "otp"}, "create_user": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let code = code_in(&a.mail_to("ivy@example.com").await[0]);
    let resp = a
        .req(Method::POST, "/verify")
        .json(&json!({"type": "email", "email": "ivy@example.com", "token": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(s["user"]["user_metadata"]["src"], "otp");
    // Codes are single-use.
    let resp = a
        .req(Method::POST, "/verify")
        .json(&json!({"type": "email", "email": "ivy@example.com", "token": code}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 403, "otp_expired").await;
    // create_user = false for an unknown address: same answer, no user, no mail.
    let resp = a
        .req(Method::POST, "/otp")
        .json(&json!({"email": "jay@example.com", "create_user": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(a.mail_to("jay@example.com").await.is_empty());
    // Legacy /magiclink.
    let resp = a
        .req(Method::POST, "/magiclink")
        .json(&json!({"email": "kim@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(a.mail_to("kim@example.com").await.len(), 1);
    // Bad verify input.
    let resp = a
        .req(Method::POST, "/verify")
        .json(&json!({"type": "bogus", "token_hash": "x"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = a
        .req(Method::POST, "/verify")
        .json(&json!({"type": "email"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = a
        .req(Method::POST, "/verify")
        .json(&json!({"type": "magiclink", "token_hash": "forged"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 403, "otp_expired").await;
}

#[tokio::test]
async fn email_change_is_confirmed_on_both_addresses() {
    let a = Auth::new(
        "auth-change",
        json!({"mailer_autoconfirm": true, "smtp_max_frequency_secs": 0}),
    )
    .await;
    let s = a.session("old@example.com", "change-password").await;
    let access = s["access_token"].as_str().unwrap();
    a.session("taken@example.com", "taken-password").await;
    let resp = a
        .user(Method::PUT, "/user", access)
        .json(&json!({"email": "taken@example.com"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 422, "email_exists").await;
    let resp = a
        .user(Method::PUT, "/user", access)
        .json(&json!({"email": "New@Example.com"}))
        .send()
        .await
        .unwrap();
    let user: Value = resp.json().await.unwrap();
    assert_eq!(user["email"], "old@example.com");
    assert_eq!(user["new_email"], "new@example.com");
    let to_old = a.mail_to("old@example.com").await;
    let to_new = a.mail_to("new@example.com").await;
    assert_eq!(to_old[0]["kind"], "email_change");
    assert_eq!(to_new[0]["kind"], "email_change");
    // First link: accepted, still the old address.
    let first = open_link(&link_in(&to_old[0], "type=email_change")).await;
    assert!(
        fragment(&first)["message"]
            .as_str()
            .unwrap()
            .contains("other email"),
        "{first}"
    );
    let me: Value = a
        .user(Method::GET, "/user", access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "old@example.com");
    // Second link: the change is applied.
    let second = fragment(&open_link(&link_in(&to_new[0], "type=email_change")).await);
    assert_eq!(
        claims(second["access_token"].as_str().unwrap())["email"],
        "new@example.com"
    );
    let me: Value = a
        .user(Method::GET, "/user", access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "new@example.com");
    assert!(me.get("new_email").is_none());
    assert_eq!(
        me["identities"][0]["identity_data"]["email"],
        "new@example.com"
    );
    assert_eq!(
        a.password("new@example.com", "change-password")
            .await
            .status(),
        200
    );
    gotrue_error(
        a.password("old@example.com", "change-password").await,
        400,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn invite_generate_link_templates_and_mail_frequency() {
    let a = Auth::new("auth-invite", json!({})).await;
    // Template override (HTML escaped, text template used for the text part).
    let resp = a
        .admin(Method::PUT, "/admin/templates/invite")
        .json(&json!({"subject": "Join {{ SiteURL }}", "html": "<p>Hi {{ Data.name }}</p><a href=\"{{ ConfirmationURL }}\">join</a>",
                      "text": "Hi {{ Data.name }}: {{ ConfirmationURL }} code: {{ Token }}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = a
        .admin(Method::PUT, "/admin/templates/invite")
        .json(&json!({"html": "{% if %}"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = a
        .admin(Method::PUT, "/admin/templates/nope")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = a
        .req(Method::POST, "/invite")
        .json(&json!({"email": "x@example.com"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 401, "no_authorization").await;
    let resp = a
        .admin(Method::POST, "/invite")
        .json(&json!({"email": "liz@example.com", "data": {"name": "<Liz>"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let invited: Value = resp.json().await.unwrap();
    assert!(invited["invited_at"].is_string());
    let mail = &a.mail_to("liz@example.com").await[0];
    assert!(mail["subject"].as_str().unwrap().starts_with("Join http"));
    assert!(mail["html"].as_str().unwrap().contains("Hi &lt;Liz&gt;"));
    assert!(mail["text"].as_str().unwrap().starts_with("Hi <Liz>: "));
    let f = fragment(&open_link(&link_in(mail, "type=invite")).await);
    assert_eq!(f["type"], "invite");
    let access = f["access_token"].as_str().unwrap();
    let resp = a
        .user(Method::PUT, "/user", access)
        .json(&json!({"password": "liz-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        a.password("liz@example.com", "liz-password").await.status(),
        200
    );
    let resp = a
        .admin(Method::POST, "/invite")
        .json(&json!({"email": "liz@example.com"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 422, "email_exists").await;

    // generate_link: no mail is sent; the link and code work.
    let before = a.mail_to("liz@example.com").await.len();
    let resp = a
        .admin(Method::POST, "/admin/generate_link")
        .json(&json!({"type": "magiclink", "email": "liz@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let g: Value = resp.json().await.unwrap();
    assert_eq!(g["verification_type"], "magiclink");
    assert_eq!(g["email"], "liz@example.com");
    assert_eq!(g["email_otp"].as_str().unwrap().len(), 6);
    assert_eq!(a.mail_to("liz@example.com").await.len(), before);
    let resp = a
        .req(Method::POST, "/verify")
        .json(&json!({"type": "magiclink", "token_hash": g["hashed_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let g2: Value = a
        .admin(Method::POST, "/admin/generate_link")
        .json(&json!({"type": "recovery", "email": "liz@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let f = fragment(&open_link(g2["action_link"].as_str().unwrap()).await);
    assert_eq!(f["type"], "recovery");
    let resp = a
        .admin(Method::POST, "/admin/generate_link")
        .json(&json!({"type": "signup", "email": "max@example.com", "password": "max-password"}))
        .send()
        .await
        .unwrap();
    let g3: Value = resp.json().await.unwrap();
    assert_eq!(g3["verification_type"], "signup");
    let resp = a
        .admin(Method::POST, "/admin/generate_link")
        .json(&json!({"type": "weird", "email": "a@b.co"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 422, "validation_failed").await;
    let resp = a
        .admin(Method::POST, "/admin/generate_link")
        .json(&json!({"type": "recovery", "email": "none@b.co"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 404, "user_not_found").await;

    // Mail frequency: a second recovery mail within a minute is refused,
    // for registered and unknown addresses alike.
    for email in ["liz@example.com", "unknown@example.com"] {
        let ok = a
            .req(Method::POST, "/recover")
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let resp = a
            .req(Method::POST, "/recover")
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert!(resp.headers().contains_key("retry-after"));
        gotrue_error(resp, 429, "over_email_send_rate_limit").await;
    }
}

fn pkce_pair() -> (String, String) {
    use base64::Engine as _;
    let verifier = ferrobase_server::crypto::random_token(48);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    (verifier, challenge)
}

#[tokio::test]
async fn pkce_email_flows_return_a_code_for_the_app_to_exchange() {
    let a = Auth::new(
        "auth-pkce",
        json!({"site_url": "http://app.test", "smtp_max_frequency_secs": 0}),
    )
    .await;
    let exchange = |code: String, verifier: String| {
        a.req(Method::POST, "/token?grant_type=pkce")
            .json(&json!({"auth_code": code, "code_verifier": verifier}))
            .send()
    };
    // Sign-up with a challenge: the link lands on the app with ?code=.
    let (verifier, challenge) = pkce_pair();
    let resp = a
        .req(Method::POST, "/signup?redirect_to=http://app.test/cb")
        .json(
            &json!({"email": "pk@example.com", "password": "pkce-password",
                      "code_challenge": challenge, "code_challenge_method": "s256"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let link = link_in(&a.mail_to("pk@example.com").await[0], "type=signup");
    let location = open_link(&link).await;
    let code = location
        .strip_prefix("http://app.test/cb?code=")
        .unwrap_or_else(|| panic!("{location}"))
        .to_owned();
    // A wrong verifier is refused and burns the code (no second try).
    let (wrong, _) = pkce_pair();
    gotrue_error(
        exchange(code.clone(), wrong).await.unwrap(),
        400,
        "bad_code_verifier",
    )
    .await;
    gotrue_error(
        exchange(code, verifier.clone()).await.unwrap(),
        404,
        "flow_state_not_found",
    )
    .await;
    // The sign-up itself was confirmed; a magic link with PKCE completes.
    let (verifier, challenge) = pkce_pair();
    a.req(Method::POST, "/otp?redirect_to=http://app.test/cb")
        .json(&json!({"email": "pk@example.com", "code_challenge": challenge, "code_challenge_method": "s256"}))
        .send()
        .await
        .unwrap();
    let link = link_in(&a.mail_to("pk@example.com").await[0], "type=magiclink");
    let location = open_link(&link).await;
    let code = location.split("code=").nth(1).unwrap().to_owned();
    let resp = exchange(code.clone(), verifier.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(s["user"]["email"], "pk@example.com");
    assert_eq!(
        claims(s["access_token"].as_str().unwrap())["amr"][0]["method"],
        "magiclink"
    );
    // Replayed code.
    gotrue_error(
        exchange(code, verifier).await.unwrap(),
        404,
        "flow_state_not_found",
    )
    .await;
    // Bad input.
    gotrue_error(
        exchange(String::new(), String::new()).await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
    gotrue_error(
        exchange("x".into(), "short".into()).await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
    let resp = a
        .req(Method::POST, "/signup")
        .json(&json!({"email": "pk2@example.com", "password": "pkce-password", "code_challenge": "abc"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
}

#[tokio::test]
async fn anonymous_sign_in_and_conversion_to_a_permanent_user() {
    let a = Auth::new("auth-anon", json!({"smtp_max_frequency_secs": 0})).await;
    let resp = a
        .req(Method::POST, "/signup")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 422, "anonymous_provider_disabled").await;
    a.admin(Method::PUT, "/admin/config")
        .json(&json!({"external_anonymous_users_enabled": true}))
        .send()
        .await
        .unwrap();
    let resp = a
        .req(Method::POST, "/signup")
        .json(&json!({"data": {"cart": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(s["user"]["is_anonymous"], true);
    assert_eq!(s["user"]["email"], "");
    let access = s["access_token"].as_str().unwrap();
    let c = claims(access);
    assert_eq!(c["is_anonymous"], true);
    assert_eq!(c["role"], "authenticated");
    assert_eq!(c["amr"][0]["method"], "anonymous");
    // Convert: set an email (one confirmation, to the new address) and a password.
    let resp = a
        .user(Method::PUT, "/user", access)
        .json(&json!({"email": "anon@example.com", "password": "now-permanent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mails = a.mail_to("anon@example.com").await;
    assert_eq!(mails.len(), 1);
    let f = fragment(&open_link(&link_in(&mails[0], "type=email_change")).await);
    let c = claims(f["access_token"].as_str().unwrap());
    assert_eq!(c["is_anonymous"], false);
    assert_eq!(c["email"], "anon@example.com");
    assert_eq!(c["user_metadata"]["cart"], 3);
    assert_eq!(c["app_metadata"]["provider"], "email");
    let me: Value = a
        .user(Method::GET, "/user", f["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["identities"][0]["provider"], "email");
    assert_eq!(
        me["identities"][0]["identity_data"]["email"],
        "anon@example.com"
    );
    assert_eq!(
        a.password("anon@example.com", "now-permanent")
            .await
            .status(),
        200
    );
}
