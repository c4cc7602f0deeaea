//! OAuth / OpenID Connect with PKCE against a real provider (panva's
//! `oidc-provider`, PEERS.md), driven by an HTTP client that follows the
//! redirects and submits the provider's login and consent forms.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use super::flows::claims;
use super::{Auth, gotrue_error, params};
use crate::support::TestApp;

/// A PKCE `(verifier, S256 challenge)` pair.
pub(crate) fn pkce_pair() -> (String, String) {
    use base64::Engine as _;
    let verifier = ferrobase_server::crypto::random_token(48);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (
        verifier,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
    )
}

/// A browser: no automatic redirects, a cookie jar for the provider.
pub(crate) struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    pub(crate) fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    pub(crate) async fn send(
        &mut self,
        method: Method,
        url: &str,
        form: Option<String>,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, url);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", jar.join("; "));
        }
        if let Some(form) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form);
        }
        let resp = req.send().await.unwrap();
        for c in resp.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            if let Some((kv, _)) = c.split_once(';').or(Some((c, "")))
                && let Some((k, v)) = kv.split_once('=')
            {
                self.cookies
                    .insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        resp
    }

    /// From a provider URL, logs in as `login` and consents, until the
    /// provider redirects to `stop_at`; returns that URL.
    pub(crate) async fn login(&mut self, start: &str, login: &str, stop_at: &str) -> String {
        let mut url = start.to_owned();
        let mut form: Option<String> = None;
        for _ in 0..20 {
            let method = if form.is_some() {
                Method::POST
            } else {
                Method::GET
            };
            let resp = self.send(method, &url, form.take()).await;
            let base = reqwest::Url::parse(&url).unwrap();
            if resp.status().is_redirection() {
                let next = resp.headers()["location"].to_str().unwrap().to_owned();
                let next = base.join(&next).unwrap().to_string();
                if next.starts_with(stop_at) {
                    return next;
                }
                url = next;
                continue;
            }
            let status = resp.status();
            let html = resp.text().await.unwrap();
            assert!(status.is_success(), "provider page {url}: {status} {html}");
            let action = html
                .split("action=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_else(|| panic!("no form in {html}"));
            url = base.join(action).unwrap().to_string();
            form = Some(if html.contains("name=\"login\"") {
                format!("prompt=login&login={login}&password=any")
            } else {
                "prompt=consent".to_owned()
            });
        }
        panic!("the provider never redirected to {stop_at}");
    }
}

/// A running oidc-provider.
pub(crate) struct Provider {
    _child: tokio::process::Child,
    /// Its issuer URL.
    pub(crate) issuer: String,
}

/// Starts oidc-provider with one client redirecting to `redirect_uri`.
pub(crate) async fn start_provider(modules: &Path, redirect_uri: &str) -> Provider {
    start_provider_with(modules, redirect_uri, false).await
}

async fn start_provider_with(
    modules: &Path,
    redirect_uri: &str,
    id_token_claims: bool,
) -> Provider {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/auth/peers/oidc_provider.mjs");
    let child = tokio::process::Command::new(super::node_bin())
        .arg(script)
        .env("NODE_MODULES", modules)
        .env("PORT", port.to_string())
        .env("REDIRECT_URI", redirect_uri)
        .env("ID_TOKEN_CLAIMS", if id_token_claims { "1" } else { "0" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start oidc-provider");
    let issuer = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return Provider {
                _child: child,
                issuer,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("oidc-provider did not start");
}

#[tokio::test]
async fn oidc_pkce_login_linking_and_attacks() {
    let Some(modules) = super::node_modules_with("oidc-provider") else {
        super::missing_peer("oidc-provider");
        return;
    };
    // The provider runs on loopback: allowed only by this setting.
    let t = TestApp::spawn_with(|c| c.outbound_allow_private = true).await;
    let p = t.create_project("auth-oidc").await;
    let a = Auth { t, p };
    let callback = format!("{}/auth/v1/callback", a.p.url);
    let idp = start_provider(&modules, &callback).await;
    let resp = a
        .admin(Method::PUT, "/admin/config")
        .json(&json!({"site_url": "http://app.test", "uri_allow_list": ["http://app.test/**"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Config: bad kinds and names are refused; the secret is never returned.
    let resp = a
        .admin(Method::PUT, "/admin/providers/myidp")
        .json(&json!({"kind": "oidc", "client_id": "x"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = a
        .admin(Method::PUT, "/admin/providers/Bad!")
        .json(&json!({"kind": "google", "client_id": "x"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = a
        .admin(Method::PUT, "/admin/providers/myidp")
        .json(&json!({"kind": "oidc", "issuer": idp.issuer, "client_id": "ferrobase", "client_secret": "ferrobase-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let listed: Value = a
        .admin(Method::GET, "/admin/providers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["providers"][0]["has_secret"], true);
    assert!(!listed.to_string().contains("ferrobase-secret"));
    let s: Value = a
        .req(Method::GET, "/settings")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["external"]["myidp"], true);

    let mut browser = Browser::new();
    let authorize = |challenge: &str| {
        format!(
            "{}/auth/v1/authorize?provider=myidp&redirect_to=http://app.test/cb&code_challenge={challenge}&code_challenge_method=s256",
            a.p.url
        )
    };
    // 1. A full PKCE login.
    let (verifier, challenge) = pkce_pair();
    let resp = browser
        .send(Method::GET, &authorize(&challenge), None)
        .await;
    assert_eq!(resp.status(), 302);
    let to_idp = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_idp.starts_with(&idp.issuer), "{to_idp}");
    let q = params(to_idp.split_once('?').unwrap().1);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["nonce"].as_str().is_some_and(|n| n.len() > 20));
    assert!(q["state"].as_str().is_some_and(|n| n.len() > 20));
    let back = browser.login(&to_idp, "alice", &callback).await;
    let resp = browser.send(Method::GET, &back, None).await;
    assert_eq!(resp.status(), 302);
    let app = resp.headers()["location"].to_str().unwrap().to_owned();
    let code = app
        .strip_prefix("http://app.test/cb?code=")
        .unwrap_or_else(|| panic!("{app}"))
        .to_owned();
    // Replaying the provider's callback (same state) is refused.
    gotrue_error(
        browser.send(Method::GET, &back, None).await,
        400,
        "bad_oauth_state",
    )
    .await;
    let exchange = |code: String, verifier: String| {
        a.req(Method::POST, "/token?grant_type=pkce")
            .json(&json!({"auth_code": code, "code_verifier": verifier}))
            .send()
    };
    let resp = exchange(code.clone(), verifier.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let session: Value = resp.json().await.unwrap();
    assert_eq!(session["user"]["email"], "alice@oidc.test");
    assert!(session["user"]["email_confirmed_at"].is_string());
    assert_eq!(session["user"]["app_metadata"]["provider"], "myidp");
    assert_eq!(session["user"]["identities"][0]["provider"], "myidp");
    assert_eq!(session["user"]["identities"][0]["id"], "alice");
    assert!(session["provider_token"].is_string());
    assert_eq!(
        claims(session["access_token"].as_str().unwrap())["amr"][0]["method"],
        "oauth"
    );
    // Replayed code.
    gotrue_error(
        exchange(code, verifier).await.unwrap(),
        404,
        "flow_state_not_found",
    )
    .await;

    // 2. Wrong verifier.
    let (_, challenge) = pkce_pair();
    let resp = browser
        .send(Method::GET, &authorize(&challenge), None)
        .await;
    let to_idp = resp.headers()["location"].to_str().unwrap().to_owned();
    let back = browser.login(&to_idp, "alice", &callback).await;
    // Tampered state first: refused, and the real one still works after.
    let tampered = back.replace("state=", "state=x");
    gotrue_error(
        browser.send(Method::GET, &tampered, None).await,
        400,
        "bad_oauth_state",
    )
    .await;
    let resp = browser.send(Method::GET, &back, None).await;
    let app = resp.headers()["location"].to_str().unwrap().to_owned();
    let code = app.split("code=").nth(1).unwrap().to_owned();
    let (wrong, _) = pkce_pair();
    gotrue_error(
        exchange(code, wrong).await.unwrap(),
        400,
        "bad_code_verifier",
    )
    .await;

    // 3. Wrong nonce: the ID token no longer matches the flow.
    let (_, challenge) = pkce_pair();
    let resp = browser
        .send(Method::GET, &authorize(&challenge), None)
        .await;
    let to_idp = resp.headers()["location"].to_str().unwrap().to_owned();
    let back = browser.login(&to_idp, "alice", &callback).await;
    a.t.owner_sql(
        &a.p,
        "update auth.flow_state set nonce = 'forged-nonce' where state_hash is not null",
    )
    .await;
    let resp = browser.send(Method::GET, &back, None).await;
    let app = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        app.starts_with("http://app.test/cb?error=access_denied&error_code=bad_oauth_callback"),
        "{app}"
    );
    assert!(app.to_lowercase().contains("nonce"), "{app}");

    // 4. Linking by verified email: bob already signed up with a password.
    a.admin(Method::POST, "/admin/users")
        .json(&json!({"email": "bob@oidc.test", "password": "bob-password", "email_confirm": true}))
        .send()
        .await
        .unwrap();
    let mut bob = Browser::new();
    let (verifier, challenge) = pkce_pair();
    let resp = bob.send(Method::GET, &authorize(&challenge), None).await;
    let to_idp = resp.headers()["location"].to_str().unwrap().to_owned();
    let back = bob.login(&to_idp, "bob", &callback).await;
    let app = bob.send(Method::GET, &back, None).await.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let code = app.split("code=").nth(1).unwrap().to_owned();
    let session: Value = exchange(code, verifier)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let providers = session["user"]["app_metadata"]["providers"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        providers.contains(&json!("email")) && providers.contains(&json!("myidp")),
        "{providers:?}"
    );
    assert_eq!(session["user"]["identities"].as_array().unwrap().len(), 2);
    assert_eq!(
        a.password("bob@oidc.test", "bob-password").await.status(),
        200
    );
    // Bob unlinks the provider identity; his password identity stays.
    let bob_token = session["access_token"].as_str().unwrap().to_owned();
    let idp_identity = session["user"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["provider"] == "myidp")
        .unwrap()["identity_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = a
        .user(
            Method::DELETE,
            &format!("/user/identities/{idp_identity}"),
            &bob_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let me: Value = a
        .user(Method::GET, "/user", &bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["identities"].as_array().unwrap().len(), 1);
    assert_eq!(me["app_metadata"]["providers"], json!(["email"]));

    // 5. Implicit flow (no challenge): the session lands in the fragment.
    let resp = browser
        .send(
            Method::GET,
            &format!(
                "{}/auth/v1/authorize?provider=myidp&redirect_to=http://app.test/cb",
                a.p.url
            ),
            None,
        )
        .await;
    let to_idp = resp.headers()["location"].to_str().unwrap().to_owned();
    let back = browser.login(&to_idp, "alice", &callback).await;
    let app = browser.send(Method::GET, &back, None).await.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let fragment = params(app.split_once('#').unwrap().1);
    assert_eq!(
        claims(fragment["access_token"].as_str().unwrap())["email"],
        "alice@oidc.test"
    );
    assert!(
        fragment["provider_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    // Unknown or disabled providers.
    let resp =
        a.t.http
            .get(format!("{}/auth/v1/authorize?provider=nope", a.p.url))
            .send()
            .await
            .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    a.admin(Method::PUT, "/admin/providers/myidp")
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    let resp = Browser::new()
        .send(Method::GET, &authorize("a".repeat(43).as_str()), None)
        .await;
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = a
        .admin(Method::DELETE, "/admin/providers/myidp")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Pre-account takeover (issue 8, item 4): the attacker registers the
/// victim's address first, with a password of its own, and keeps a session.
/// When the victim signs in with a provider that has verified the address,
/// the account is linked and confirmed; the attacker's password and sessions
/// must not survive that.
#[tokio::test]
async fn oauth_linking_an_unconfirmed_account_clears_the_squatters_password_and_sessions() {
    let Some(modules) = super::node_modules_with("oidc-provider") else {
        super::missing_peer("oidc-provider");
        return;
    };
    // The provider runs on loopback: allowed only by this setting.
    let t = TestApp::spawn_with(|c| c.outbound_allow_private = true).await;
    let p = t.create_project("sec-oidc-squat").await;
    let a = Auth { t, p };
    let callback = format!("{}/auth/v1/callback", a.p.url);
    let idp = start_provider(&modules, &callback).await;
    let resp = a
        .admin(Method::PUT, "/admin/config")
        .json(
            &json!({"site_url": "http://app.test", "uri_allow_list": ["http://app.test/**"],
                      "mailer_autoconfirm": false}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = a
        .admin(Method::PUT, "/admin/providers/myidp")
        .json(&json!({"kind": "oidc", "issuer": idp.issuer, "client_id": "ferrobase", "client_secret": "ferrobase-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The squatter signs up with the victim's address (never confirmed) …
    let resp = a.signup("carol@oidc.test", "squatter-password").await;
    assert_eq!(resp.status(), 200);
    // … and holds a session once the project turns confirmations off.
    a.admin(Method::PUT, "/admin/config")
        .json(&json!({"mailer_autoconfirm": true}))
        .send()
        .await
        .unwrap();
    let squat = a.password("carol@oidc.test", "squatter-password").await;
    assert_eq!(squat.status(), 200);
    let squat: Value = squat.json().await.unwrap();
    let squat_access = squat["access_token"].as_str().unwrap().to_owned();
    let squat_refresh = squat["refresh_token"].as_str().unwrap().to_owned();

    // The victim signs in with the provider (which verified carol@oidc.test).
    let mut browser = Browser::new();
    let (verifier, challenge) = pkce_pair();
    let resp = browser
        .send(
            Method::GET,
            &format!(
                "{}/auth/v1/authorize?provider=myidp&redirect_to=http://app.test/cb&code_challenge={challenge}&code_challenge_method=s256",
                a.p.url
            ),
            None,
        )
        .await;
    let to_idp = resp.headers()["location"].to_str().unwrap().to_owned();
    let back = browser.login(&to_idp, "carol", &callback).await;
    let app = browser.send(Method::GET, &back, None).await.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let code = app.split("code=").nth(1).unwrap().to_owned();
    let resp = a
        .req(Method::POST, "/token?grant_type=pkce")
        .json(&json!({"auth_code": code, "code_verifier": verifier}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let victim: Value = resp.json().await.unwrap();
    assert!(victim["user"]["email_confirmed_at"].is_string());

    // The squatter's password and session are gone; the victim's session works.
    gotrue_error(
        a.password("carol@oidc.test", "squatter-password").await,
        400,
        "invalid_credentials",
    )
    .await;
    gotrue_error(
        a.user(Method::GET, "/user", &squat_access)
            .send()
            .await
            .unwrap(),
        403,
        "session_not_found",
    )
    .await;
    assert_eq!(a.refresh(&squat_refresh).await.status(), 400);
    let me = a
        .user(
            Method::GET,
            "/user",
            victim["access_token"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn id_token_grant_with_a_real_providers_token() {
    let Some(modules) = super::node_modules_with("oidc-provider") else {
        super::missing_peer("oidc-provider");
        return;
    };
    // The provider runs on loopback: allowed only by this setting.
    let t = TestApp::spawn_with(|c| c.outbound_allow_private = true).await;
    let p = t.create_project("auth-idtoken").await;
    let a = Auth { t, p };
    let callback = format!("{}/auth/v1/callback", a.p.url);
    let idp = start_provider_with(&modules, &callback, true).await;
    a.admin(Method::PUT, "/admin/providers/myidp")
        .json(&json!({"kind": "oidc", "issuer": idp.issuer, "client_id": "ferrobase", "client_secret": "ferrobase-secret"}))
        .send()
        .await
        .unwrap();
    // The app signs in at the provider itself (as a native SDK would) with a
    // hashed nonce, and gets an ID token.
    let raw_nonce = ferrobase_server::crypto::random_token(16);
    let hashed: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw_nonce.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let (verifier, challenge) = pkce_pair();
    let mut browser = Browser::new();
    let start = format!(
        "{}/auth?client_id=ferrobase&response_type=code&scope=openid%20email%20profile&state=app-state\
         &redirect_uri={}&nonce={hashed}&code_challenge={challenge}&code_challenge_method=S256",
        idp.issuer,
        url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>()
    );
    let back = browser.login(&start, "carla", &callback).await;
    let code = params(back.split_once('?').unwrap().1)["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let form = format!(
        "grant_type=authorization_code&code={code}&code_verifier={verifier}&redirect_uri={}",
        url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>()
    );
    let token: Value = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .basic_auth("ferrobase", Some("ferrobase-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = token["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{token}"))
        .to_owned();
    let grant = |body: Value| {
        a.req(Method::POST, "/token?grant_type=id_token")
            .json(&body)
            .send()
    };

    gotrue_error(
        grant(json!({"provider": "myidp", "id_token": id_token, "nonce": "wrong"}))
            .await
            .unwrap(),
        400,
        "bad_jwt",
    )
    .await;
    gotrue_error(
        grant(json!({"provider": "myidp", "id_token": id_token}))
            .await
            .unwrap(),
        400,
        "bad_jwt",
    )
    .await;
    // Flip a character well inside the signature (not in its padding bits).
    let mut tampered = id_token.clone().into_bytes();
    let i = tampered.len() - 20;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    gotrue_error(
        grant(json!({"provider": "myidp", "id_token": tampered, "nonce": raw_nonce}))
            .await
            .unwrap(),
        400,
        "bad_jwt",
    )
    .await;
    gotrue_error(
        grant(json!({"provider": "myidp", "id_token": "not.a.jwt", "nonce": raw_nonce}))
            .await
            .unwrap(),
        400,
        "bad_jwt",
    )
    .await;
    gotrue_error(
        grant(json!({"provider": "nope", "id_token": id_token}))
            .await
            .unwrap(),
        400,
        "validation_failed",
    )
    .await;
    gotrue_error(
        grant(json!({"provider": "myidp"})).await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
    let resp = grant(json!({"provider": "myidp", "id_token": id_token, "nonce": raw_nonce}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(s["user"]["email"], "carla@oidc.test");
    assert_eq!(s["user"]["identities"][0]["provider"], "myidp");
    assert_eq!(
        claims(s["access_token"].as_str().unwrap())["amr"][0]["method"],
        "id_token"
    );
}

#[tokio::test]
async fn builtin_provider_configuration_is_checked() {
    // The provider runs on loopback: allowed only by this setting.
    let t = TestApp::spawn_with(|c| c.outbound_allow_private = true).await;
    let p = t.create_project("auth-builtins").await;
    let a = Auth { t, p };
    let put = |name: &str, body: Value| {
        a.admin(Method::PUT, &format!("/admin/providers/{name}"))
            .json(&body)
            .send()
    };
    // Apple needs its team and key ids and a P-256 .p8 key.
    gotrue_error(
        put("apple", json!({"client_id": "com.x"})).await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
    let bad = json!({"client_id": "com.x", "client_secret": "nope", "options": {"team_id": "T", "key_id": "K"}});
    gotrue_error(put("apple", bad).await.unwrap(), 400, "validation_failed").await;
    let key = ferrobase_server::crypto::SigningKey::generate().unwrap();
    use base64::Engine as _;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(key.pkcs8())
    );
    let ok = json!({"client_id": "com.x", "client_secret": pem, "options": {"team_id": "T", "key_id": "K"}});
    assert_eq!(put("apple", ok).await.unwrap().status(), 200);
    // GitHub (OAuth 2): the authorize redirect follows GitHub's documented contract.
    assert_eq!(
        put(
            "github",
            json!({"client_id": "gh-id", "client_secret": "gh-secret"})
        )
        .await
        .unwrap()
        .status(),
        200
    );
    let resp = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{}/auth/v1/authorize?provider=github&redirect_to=http://x.test",
            a.p.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://github.com/login/oauth/authorize?"),
        "{location}"
    );
    let q = params(location.split_once('?').unwrap().1);
    assert_eq!(q["client_id"], "gh-id");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], format!("{}/auth/v1/callback", a.p.url));
    assert!(q["scope"].as_str().unwrap().contains("user:email"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["state"].as_str().unwrap().len() > 30);
    assert!(!location.contains("gh-secret"));
    // Unknown kinds.
    gotrue_error(
        put("myspace", json!({"client_id": "x"})).await.unwrap(),
        400,
        "validation_failed",
    )
    .await;
}
