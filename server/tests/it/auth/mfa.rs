//! MFA (TOTP): enroll, challenge, verify to aal2, RLS requiring aal2, unenroll.

use ferrobase_server::auth::mfa::{base32_decode, totp};
use reqwest::Method;
use serde_json::{Value, json};

use super::flows::claims;
use super::{Auth, gotrue_error};

fn code(secret: &str, offset: i64) -> String {
    let secret = base32_decode(secret).unwrap();
    totp(&secret, chrono::Utc::now().timestamp() / 30 + offset)
}

#[tokio::test]
async fn totp_raises_the_session_to_aal2() {
    let a = Auth::new("auth-mfa", json!({"mailer_autoconfirm": true})).await;
    a.t.owner_sql(
        &a.p,
        "create table vault (id int, secret text);
         alter table vault enable row level security;
         create policy mfa_only on vault for select to authenticated using ((auth.jwt() ->> 'aal') = 'aal2');
         insert into vault values (1, 'gold');",
    )
    .await;
    let s = a.session("mfa@example.com", "mfa-password").await;
    let t1 = s["access_token"].as_str().unwrap().to_owned();
    let vault = |token: String| {
        let req =
            a.t.http
                .get(format!("{}/rest/v1/vault?select=secret", a.p.url))
                .header("apikey", &a.p.anon)
                .bearer_auth(token);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(vault(t1.clone()).await, json!([]));

    let resp = a
        .user(Method::POST, "/factors", &t1)
        .json(&json!({"factor_type": "sms"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = a
        .user(Method::POST, "/factors", &t1)
        .json(&json!({"factor_type": "totp", "friendly_name": "phone", "issuer": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let f: Value = resp.json().await.unwrap();
    let factor = f["id"].as_str().unwrap().to_owned();
    let secret = f["totp"]["secret"].as_str().unwrap().to_owned();
    assert!(
        f["totp"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Acme:mfa%40example.com?secret=")
    );
    let qr = f["totp"]["qr_code"].as_str().unwrap();
    assert!(qr.starts_with("data:image/svg+xml;utf-8,<?xml"), "{qr:.80}");
    assert!(
        qr.contains("<svg") && qr.contains("<path"),
        "a drawn QR code"
    );

    let challenge = |token: String| {
        let req = a.user(
            Method::POST,
            &format!("/factors/{factor}/challenge"),
            &token,
        );
        async move {
            let v: Value = req.send().await.unwrap().json().await.unwrap();
            v["id"].as_str().unwrap().to_owned()
        }
    };
    let verify = |token: String, challenge: String, code: String| {
        a.user(Method::POST, &format!("/factors/{factor}/verify"), &token)
            .json(&json!({"challenge_id": challenge, "code": code}))
            .send()
    };
    let c1 = challenge(t1.clone()).await;
    let wrong = if code(&secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    gotrue_error(
        verify(t1.clone(), c1.clone(), wrong.into()).await.unwrap(),
        422,
        "mfa_verification_failed",
    )
    .await;
    let used = code(&secret, 0);
    let resp = verify(t1.clone(), c1.clone(), used.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let s2: Value = resp.json().await.unwrap();
    let t2 = s2["access_token"].as_str().unwrap().to_owned();
    let c = claims(&t2);
    assert_eq!(c["aal"], "aal2");
    assert_eq!(c["amr"][0]["method"], "totp");
    assert_eq!(c["amr"][1]["method"], "password");
    assert_eq!(vault(t2.clone()).await, json!([{"secret": "gold"}]));
    // The challenge is spent, and the same code is never accepted twice.
    gotrue_error(
        verify(t2.clone(), c1, used.clone()).await.unwrap(),
        422,
        "mfa_challenge_expired",
    )
    .await;
    let c2 = challenge(t2.clone()).await;
    gotrue_error(
        verify(t2.clone(), c2, used).await.unwrap(),
        422,
        "mfa_verification_failed",
    )
    .await;
    // The pre-MFA refresh token was retired; the new one keeps aal2.
    assert_eq!(
        a.refresh(s["refresh_token"].as_str().unwrap())
            .await
            .status(),
        400
    );
    let s3: Value = a
        .refresh(s2["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(claims(s3["access_token"].as_str().unwrap())["aal"], "aal2");
    // The user lists the verified factor.
    let me: Value = a
        .user(Method::GET, "/user", &t2)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["factors"][0]["status"], "verified");
    assert_eq!(me["factors"][0]["factor_type"], "totp");

    // A new password sign-in is aal1 again, and cannot remove the factor.
    let s4: Value = a
        .password("mfa@example.com", "mfa-password")
        .await
        .json()
        .await
        .unwrap();
    let t4 = s4["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&t4)["aal"], "aal1");
    assert_eq!(vault(t4.clone()).await, json!([]));
    let resp = a
        .user(Method::DELETE, &format!("/factors/{factor}"), &t4)
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 403, "insufficient_aal").await;
    // Another user cannot see or use the factor.
    let other = a.session("other@example.com", "other-password").await;
    let ot = other["access_token"].as_str().unwrap();
    let resp = a
        .user(Method::POST, &format!("/factors/{factor}/challenge"), ot)
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 404, "mfa_factor_not_found").await;
    let resp = a
        .user(Method::DELETE, "/factors/not-a-uuid", ot)
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 404, "mfa_factor_not_found").await;
    // From aal2 the factor can be removed.
    let resp = a
        .user(Method::DELETE, &format!("/factors/{factor}"), &t2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let me: Value = a
        .user(Method::GET, "/user", &t2)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(me.get("factors").is_none());
}
