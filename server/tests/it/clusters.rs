//! Projects on more than one Postgres cluster: a project placed on cluster B
//! (through the admin API with `database_url`) is served end to end, its data
//! lives on B only, its connection string is stored encrypted and never shown,
//! and deleting it drops its database on B.

use serde_json::{Value, json};

use crate::support::{TestApp, expect_error, private_cluster, temp_dir};

async fn databases(cfg: &tokio_postgres::Config) -> Vec<String> {
    let client = ferrobase_server::db::connect(cfg).await.expect("connect");
    client
        .query("select datname from pg_database", &[])
        .await
        .expect("list databases")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_project_on_a_second_cluster_is_served_and_dropped_there() {
    // Cluster A: the shared test cluster (control plane). Cluster B: private.
    let root = temp_dir("fbt-cluster-b");
    let b = private_cluster(&root).await;
    let secret = "test-superuser-password";
    let b_url = format!(
        "host={} port=5432 user=ferrobase password={secret} dbname=postgres",
        b.socket_dir().display()
    );
    let t = TestApp::spawn().await;
    let a_cfg: tokio_postgres::Config = crate::support::cluster_url().parse().expect("url A");

    let resp = t
        .admin(reqwest::Method::POST, "/platform/v1/projects")
        .json(&json!({"ref": "on-b", "database_url": b_url}))
        .send()
        .await
        .expect("create on B");
    assert_eq!(resp.status(), 201);
    let text = resp.text().await.expect("body");
    // The project's own owner connection string is shown once; the cluster's
    // superuser password never is.
    assert!(!text.contains(secret), "cluster password leaked: {text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    let url = body["url"].as_str().expect("url");
    let service = body["service_role_key"].as_str().expect("service key");
    let db_url = body["db_url"].as_str().expect("db_url");
    assert!(
        db_url.contains(&b.socket_dir().display().to_string().replace('/', "%2F"))
            || db_url.contains(&b.socket_dir().display().to_string()),
        "owner URL points at cluster B: {db_url}"
    );

    // The database lives on B, not on A.
    let db_name = {
        let cfg: tokio_postgres::Config = db_url.parse().expect("db_url parses");
        cfg.get_dbname().expect("dbname").to_owned()
    };
    assert!(
        databases(&b.superuser_config("postgres"))
            .await
            .contains(&db_name)
    );
    assert!(!databases(&a_cfg).await.contains(&db_name));

    // End to end through the data API: write, read.
    let owner_cfg: tokio_postgres::Config = db_url.parse().expect("db_url parses");
    ferrobase_server::db::connect(&owner_cfg)
        .await
        .expect("owner connects to B")
        .batch_execute("create table items (id serial primary key, name text not null)")
        .await
        .expect("create table on B");
    // The schema cache picks up the new table (DDL trigger on B).
    let mut status = 0;
    for _ in 0..50 {
        let resp = t
            .http
            .post(format!("{url}/rest/v1/items"))
            .header("apikey", service)
            .header("Prefer", "return=representation")
            .json(&json!({"name": "on cluster b"}))
            .send()
            .await
            .expect("insert");
        status = resp.status().as_u16();
        if status == 201 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 201);
    let rows: Value = t
        .http
        .get(format!("{url}/rest/v1/items?select=name"))
        .header("apikey", service)
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(rows, json!([{"name": "on cluster b"}]));

    // Stored encrypted: the control plane holds no plaintext of B's URL.
    let control = ferrobase_server::db::connect(
        &t.config
            .database_url
            .as_deref()
            .expect("control url")
            .parse()
            .expect("control url parses"),
    )
    .await
    .expect("control");
    let enc: String = control
        .query_one(
            "select cluster_conn_enc from projects where ref = 'on-b'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert!(!enc.is_empty() && !enc.contains(secret) && !enc.contains("host="));

    // Delete drops the database on B.
    let resp = t
        .admin(reqwest::Method::DELETE, "/platform/v1/projects/on-b")
        .send()
        .await
        .expect("delete");
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(
        !databases(&b.superuser_config("postgres"))
            .await
            .contains(&db_name)
    );

    b.stop().await.expect("stop B");
}

#[tokio::test]
async fn a_bad_cluster_url_is_a_clear_400_that_never_echoes_it() {
    let t = TestApp::spawn().await;
    for (url, code) in [
        ("not a url = = =", "invalid_database_url"),
        ("postgres://", "invalid_database_url"),
        (
            "host=127.0.0.1 port=1 user=x password=hunter2-secret connect_timeout=2",
            "database_unreachable",
        ),
    ] {
        let resp = t
            .admin(reqwest::Method::POST, "/platform/v1/projects")
            .json(&json!({"ref": "bad-cluster", "database_url": url}))
            .send()
            .await
            .expect("create");
        let body = expect_error(resp, 400, code).await;
        assert!(!body.to_string().contains("hunter2"), "{body}");
    }
    // Nothing was left behind.
    let resp = t
        .admin(reqwest::Method::GET, "/platform/v1/projects/bad-cluster")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
}
