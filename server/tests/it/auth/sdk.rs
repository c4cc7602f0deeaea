//! The Rust SDK's auth client against the real server.

use std::sync::Arc;

use ferrobase::{AdminUserAttributes, MemoryStore, SessionStore, SignOutScope, SignUp, UserUpdate};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Auth, code_in};

#[tokio::test]
async fn sdk_signs_up_refreshes_acts_as_the_user_and_signs_out() {
    // Short-lived access tokens, so `session()` refreshes on its own.
    let a = Auth::new(
        "auth-sdk",
        json!({"mailer_autoconfirm": true, "jwt_exp": 30, "smtp_max_frequency_secs": 0}),
    )
    .await;
    a.t.owner_sql(
        &a.p,
        "create table notes (id serial primary key, owner uuid not null default auth.uid(), body text);
         alter table notes enable row level security;
         create policy own on notes for all to authenticated using (owner = auth.uid()) with check (owner = auth.uid());
         insert into notes (owner, body) values (gen_random_uuid(), 'someone else''s');",
    )
    .await;
    let client = ferrobase::Client::new(&a.p.url, &a.p.anon).unwrap();
    let store = Arc::new(MemoryStore::default());
    let auth = ferrobase::AuthClient::new(client.clone(), store.clone());

    let SignUp::Session(first) = auth
        .sign_up("sdk@example.com", "sdk-password", Some(json!({"n": 1})))
        .await
        .unwrap()
    else {
        panic!("autoconfirm: a session is expected");
    };
    assert_eq!(first.user.email, "sdk@example.com");
    assert_eq!(first.user.user_metadata["n"], 1);
    let err = auth
        .sign_in_with_password("sdk@example.com", "nope")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid_credentials"));
    assert_eq!(err.status(), Some(400));

    // The session expires within the margin: session() refreshes it.
    let refreshed = auth.session().await.unwrap().unwrap();
    assert_ne!(refreshed.refresh_token, first.refresh_token);
    assert_eq!(store.load().unwrap().refresh_token, refreshed.refresh_token);

    // Acting as the user: RLS applies.
    let me = auth.client().await.unwrap();
    me.from("notes")
        .insert(json!({"body": "mine"}))
        .execute::<Value>()
        .await
        .unwrap();
    let rows: Vec<Value> = me.from("notes").select("body").fetch().await.unwrap();
    assert_eq!(rows, vec![json!({"body": "mine"})]);

    let user = auth
        .update_user(&UserUpdate {
            data: Some(json!({"n": 2})),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(user.user_metadata["n"], 2);
    assert_eq!(auth.get_user().await.unwrap().user_metadata["n"], 2);

    auth.sign_out(SignOutScope::Global).await.unwrap();
    assert!(store.load().is_none());
    assert_eq!(
        auth.get_user().await.unwrap_err().code(),
        Some("session_missing")
    );
    // The old refresh token is dead on the server too.
    assert_eq!(a.refresh(&refreshed.refresh_token).await.status(), 400);

    // Email OTP.
    auth.sign_in_with_otp("sdk@example.com", false)
        .await
        .unwrap();
    let code = code_in(&a.mail_to("sdk@example.com").await[0]);
    let s = auth
        .verify_otp("sdk@example.com", &code, "email")
        .await
        .unwrap();
    assert_eq!(s.user.email, "sdk@example.com");
    auth.reset_password_for_email("sdk@example.com", None)
        .await
        .unwrap();

    // Admin calls with the service-role key.
    let admin = ferrobase::Client::new(&a.p.url, &a.p.service)
        .unwrap()
        .auth()
        .admin();
    let created = admin
        .create_user(&AdminUserAttributes {
            email: Some("made@example.com".into()),
            password: Some("made-password".into()),
            email_confirm: Some(true),
            app_metadata: Some(json!({"roles": ["editor"]})),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.app_metadata["roles"], json!(["editor"]));
    assert_eq!(admin.list_users(1, 50).await.unwrap().len(), 2);
    let link = admin
        .generate_link("magiclink", "made@example.com", None, None)
        .await
        .unwrap();
    assert_eq!(link.verification_type, "magiclink");
    let upd = admin
        .update_user_by_id(
            &created.id,
            &AdminUserAttributes {
                ban_duration: Some("1h".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(upd.extra.contains_key("banned_until"));
    admin.delete_user(&created.id).await.unwrap();
    assert_eq!(
        admin
            .get_user_by_id(&created.id)
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    // An anon-key client is not an admin.
    let err = client.auth().admin().list_users(1, 10).await.unwrap_err();
    assert_eq!(err.code(), Some("not_admin"));
    let _ = a.admin(Method::GET, "/admin/users").send().await.unwrap();
}
