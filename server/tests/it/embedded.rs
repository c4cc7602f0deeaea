//! The embedded default: no DATABASE_URL, a private cluster under the data
//! dir, same keys on the next start, stale postmaster recovery.

use ferrobase_server::{Config, Platform};

use crate::support::temp_dir;

fn embedded_config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_tests(String::new(), dir.to_path_buf());
    c.database_url = None;
    c.encryption_key = None;
    c.admin_password = None;
    c.default_project = "default".into();
    c
}

#[tokio::test]
async fn embedded_cluster_starts_persists_and_recovers_a_stale_pid() {
    let dir = temp_dir("fbt-embedded");
    let platform = Platform::open(embedded_config(&dir))
        .await
        .expect("first start");
    let first = platform.ensure_defaults().await.unwrap();
    let password = first
        .generated_admin_password
        .clone()
        .expect("password generated on first start");
    let project = first.default_project.clone().expect("default project");
    assert!(first.banner().contains(&project.anon_key));
    assert!(dir.join("postgres/PG_VERSION").is_file());
    assert!(
        dir.join("run/.s.PGSQL.5432").exists(),
        "unix socket inside the data dir"
    );
    let pg_running = platform.embedded().unwrap().is_running().await;
    assert!(pg_running);
    platform.shutdown().await;

    // Simulate a crash that left a postmaster.pid naming a live, unrelated process.
    std::fs::write(dir.join("postgres/postmaster.pid"), "1\n").unwrap();

    let platform = Platform::open(embedded_config(&dir))
        .await
        .expect("second start");
    let second = platform.ensure_defaults().await.unwrap();
    assert_eq!(
        second.generated_admin_password, None,
        "the password is only shown once"
    );
    let again = second.default_project.unwrap();
    assert_eq!(again.anon_key, project.anon_key);
    assert_eq!(again.service_role_key, project.service_role_key);
    let login = ferrobase_server::platform::admins::login(
        &platform,
        "admin@ferrobase.test",
        &password,
        None,
    )
    .await;
    assert!(login.is_ok(), "generated password logs in");
    let pg = platform.embedded().unwrap();
    platform.shutdown().await;
    assert!(
        !pg.is_running().await,
        "shutdown stops the cluster it started"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn production_refuses_default_or_missing_secrets() {
    use ferrobase_server::config::Environment;
    let dir = temp_dir("fbt-prod");
    let base = || {
        let mut c = embedded_config(&dir);
        c.env = Environment::Production;
        c.encryption_key = Some(ferrobase_server::crypto::SecretBox::generate_key_text().into());
        c.admin_password = Some("a long and unguessable passphrase".into());
        c
    };
    type Case = (Box<dyn Fn(&mut Config)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            Box::new(|c| c.encryption_key = None),
            "FERROBASE_ENCRYPTION_KEY",
        ),
        (
            Box::new(|c| {
                c.encryption_key = Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into())
            }),
            "FERROBASE_ENCRYPTION_KEY",
        ),
        (
            Box::new(|c| c.encryption_key = Some("short".into())),
            "FERROBASE_ENCRYPTION_KEY",
        ),
        (
            Box::new(|c| c.admin_password = None),
            "FERROBASE_ADMIN_PASSWORD",
        ),
        (
            Box::new(|c| c.admin_password = Some("changeme".into())),
            "FERROBASE_ADMIN_PASSWORD",
        ),
    ];
    for (adjust, variable) in cases {
        let mut c = base();
        adjust(&mut c);
        let err = Platform::open(c)
            .await
            .err()
            .expect("production must refuse");
        assert!(err.to_string().contains(variable), "{err}");
    }
    assert!(!dir.join("postgres").exists(), "nothing was started");
    let _ = std::fs::remove_dir_all(&dir);
}
