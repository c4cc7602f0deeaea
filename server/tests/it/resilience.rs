//! Postgres going away and coming back: readiness and project requests say
//! 503 meanwhile, and recover without a restart.

use std::time::{Duration, Instant};

use ferrobase_server::Config;

use crate::support::{TestApp, expect_error, private_cluster, temp_dir};

#[tokio::test]
async fn database_outage_is_503_and_recovers_without_restart() {
    let root = temp_dir("fbt-outage");
    let pg = private_cluster(&root).await;
    let admin = ferrobase_server::db::connect(&pg.superuser_config("postgres"))
        .await
        .unwrap();
    admin
        .batch_execute("create database control")
        .await
        .unwrap();
    drop(admin);
    let url = format!(
        "host={} port=5432 user=ferrobase password=test-superuser-password dbname=control",
        pg.socket_dir().display()
    );
    let t = TestApp::start(Config::for_tests(url, root.join("data"))).await;
    let p = t.create_project("outage").await;
    t.owner_sql(&p, "create table t (id int); insert into t values (1);")
        .await;
    let get = || {
        t.http
            .get(format!("{}/rest/v1/t", p.url))
            .header("apikey", &p.anon)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);

    pg.stop().await.unwrap();
    let ready = t
        .http
        .get(format!("{}/health/ready", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    expect_error(get().await.unwrap(), 503, "service_unavailable").await;
    // Other endpoints keep answering.
    assert_eq!(
        t.http
            .get(format!("{}/health/live", t.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    pg.start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = t
            .http
            .get(format!("{}/health/ready", t.url))
            .send()
            .await
            .unwrap()
            .status();
        let data = get().await.unwrap().status();
        if ready == 200 && data == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: ready={ready} data={data}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    t.stop().await;
    pg.stop_if_owned().await;
    let _ = std::fs::remove_dir_all(&root);
}
