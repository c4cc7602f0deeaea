//! Mail through a real SMTP server (aiosmtpd, see PEERS.md): it arrives, its
//! link works; a delivery failure is an error the caller sees.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Auth, gotrue_error, link_in};
use crate::support::{TestApp, temp_dir};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Decodes quoted-printable text (soft line breaks and `=XX` escapes).
fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn mailbox_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("new")) {
        for e in entries.flatten() {
            out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

#[tokio::test]
async fn mail_arrives_at_a_real_smtp_server_and_its_link_works() {
    let Some(python) = super::python_with("aiosmtpd") else {
        super::missing_peer("aiosmtpd");
        return;
    };
    let port = free_port();
    // aiosmtpd's Mailbox handler creates the maildir (it must not exist yet).
    let maildir = temp_dir("fbt-maildir").join("box");
    let mut server = tokio::process::Command::new(&python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .kill_on_drop(true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "aiosmtpd did not start");

    let t = TestApp::spawn_with(|c| c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"))).await;
    let p = t.create_project("auth-smtp").await;
    let a = Auth { t, p };
    let resp = a.signup("mia@example.com", "mia-password").await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let recorded = a.mail_to("mia@example.com").await;
    assert_eq!(recorded[0]["status"], "sent");
    let mut received = Vec::new();
    for _ in 0..50 {
        received = mailbox_files(&maildir).await;
        if !received.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(received.len(), 1, "one message in the mailbox");
    let raw = &received[0];
    assert!(raw.contains("Subject: Confirm Your Signup"), "{raw}");
    assert!(raw.contains("mia@example.com"));
    assert!(raw.contains("multipart/alternative"));
    // The link in the message that arrived confirms the account.
    let link = link_in(&json!({"text": decode_qp(raw)}), "/auth/v1/verify?token=");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("#access_token="),
        "{link} -> {location}\n{raw}"
    );
    assert_eq!(
        a.password("mia@example.com", "mia-password").await.status(),
        200
    );

    // A project's own SMTP server (no server-wide SMTP), with its own sender.
    // The SMTP server runs on loopback: allowed only by this setting.
    let t2 = TestApp::spawn_with(|c| c.outbound_allow_private = true).await;
    let p2 = t2.create_project("auth-smtp-own").await;
    let b = Auth { t: t2, p: p2 };
    let resp = b
        .admin(Method::PUT, "/admin/smtp")
        .json(&json!({"url": "ftp://nope"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 400, "validation_failed").await;
    let resp = b
        .admin(Method::PUT, "/admin/smtp")
        .json(&json!({"url": format!("smtp://127.0.0.1:{port}"), "from": "Acme <hello@acme.test>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cfg: Value = b
        .admin(Method::GET, "/admin/config")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !cfg.to_string().contains("smtp://"),
        "the SMTP URL is never returned"
    );
    assert_eq!(
        b.signup("own@example.com", "own-password").await.status(),
        200
    );
    assert_eq!(b.mail_to("own@example.com").await[0]["status"], "sent");
    let mut found = false;
    for _ in 0..50 {
        if mailbox_files(&maildir)
            .await
            .iter()
            .any(|m| m.contains("own@example.com") && m.contains("hello@acme.test"))
        {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "mail through the project's SMTP server arrived");
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(maildir.parent().unwrap_or(&maildir));
}

#[tokio::test]
async fn a_failed_delivery_is_an_error_and_leaves_nothing_behind() {
    // Nothing listens on this port.
    let port = free_port();
    let t = TestApp::spawn_with(|c| c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"))).await;
    let p = t.create_project("auth-smtp-down").await;
    let a = Auth { t, p };
    let body = gotrue_error(
        a.signup("ned@example.com", "ned-password").await,
        500,
        "unexpected_failure",
    )
    .await;
    assert!(
        body["msg"].as_str().unwrap().contains("confirmation"),
        "{body}"
    );
    let users: Value = a
        .admin(Method::GET, "/admin/users")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users["users"], json!([]), "the sign-up was rolled back");
    // Recovery mail for an existing user fails visibly too.
    a.admin(Method::POST, "/admin/users")
        .json(
            &json!({"email": "ned@example.com", "password": "ned-password", "email_confirm": true}),
        )
        .send()
        .await
        .unwrap();
    let resp = a
        .req(Method::POST, "/recover")
        .json(&json!({"email": "ned@example.com"}))
        .send()
        .await
        .unwrap();
    gotrue_error(resp, 500, "unexpected_failure").await;
}
