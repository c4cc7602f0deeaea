//! The `ferrobase` command line against a control plane (DATABASE_URL mode).

use serde_json::Value;

use crate::support::{fresh_database, temp_dir};

async fn ferrobase(env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferrobase"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("FERROBASE_ADMIN_PASSWORD")
        .output()
        .await
        .expect("run ferrobase");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn project_and_admin_commands() {
    let db = fresh_database().await;
    let data = temp_dir("fbt-cli");
    let data = data.to_string_lossy().into_owned();
    let key = ferrobase_server::crypto::SecretBox::generate_key_text();
    let env = [
        ("DATABASE_URL", db.as_str()),
        ("FERROBASE_DATA_DIR", data.as_str()),
        ("FERROBASE_ENCRYPTION_KEY", key.as_str()),
        ("FERROBASE_PUBLIC_URL", "https://api.example.test"),
    ];
    let (ok, out, err) = ferrobase(&env, &["project", "create", "from-cli", "--json"]).await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(created["ref"], "from-cli");
    assert_eq!(created["url"], "https://api.example.test/p/from-cli");
    for field in ["anon_key", "service_role_key", "db_url"] {
        assert!(
            created[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    let cfg: tokio_postgres::Config = created["db_url"].as_str().unwrap().parse().unwrap();
    assert!(
        ferrobase_server::db::connect(&cfg).await.is_ok(),
        "db_url connects"
    );

    let (ok, out, _) = ferrobase(&env, &["project", "list", "--json"]).await;
    assert!(ok);
    let list: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list.len(), 1);

    let (ok, _, err) = ferrobase(&env, &["project", "create", "from-cli"]).await;
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = ferrobase(&env, &["project", "create", "Bad_Ref"]).await;
    assert!(!ok && err.contains("lowercase"), "{err}");

    let (ok, out, err) = ferrobase(&env, &["admin", "create", "ops@example.test"]).await;
    assert!(ok, "{err}");
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("generated password printed");
    let (ok, _, _) = ferrobase(
        &env,
        &[
            "admin",
            "reset-password",
            "ops@example.test",
            "--password",
            "a new long password",
        ],
    )
    .await;
    assert!(ok);
    assert_ne!(password, "a new long password");
    let (ok, _, err) = ferrobase(&env, &["admin", "reset-password", "ghost@example.test"]).await;
    assert!(!ok && err.contains("No admin"), "{err}");

    let (ok, _, err) = ferrobase(&env, &["migrate"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = ferrobase(&env, &["project", "delete", "from-cli"]).await;
    assert!(ok, "{err}");
    assert!(ferrobase_server::db::connect(&cfg).await.is_err());
    let _ = std::fs::remove_dir_all(&data);
}
