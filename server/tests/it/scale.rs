//! Scale on one node: many projects share one connection budget. A cluster
//! with a small `max_connections` serves more projects × concurrent requests
//! than it has connections, without a 503, and an operator can still connect.

use std::sync::Arc;
use std::time::Duration;

use ferrobase_server::Config;

use crate::support::{TestApp, TestProject, private_cluster, temp_dir};

/// Projects created; each is driven with [`CONCURRENCY`] requests at once.
const PROJECTS: usize = 40;
const CONCURRENCY: usize = 3;
const ROUNDS: usize = 4;
/// The cluster's `max_connections`: far below `PROJECTS × CONCURRENCY`.
const MAX_CONNECTIONS: usize = 40;

/// Each request holds its connection for a while, so the demand is real.
const SLOW: &str = "
create function slow() returns int language sql as 'select pg_sleep(0.03); select 1';
grant execute on function slow() to anon;";

/// A private cluster with `max_connections = MAX_CONNECTIONS` and a control
/// database; returns the cluster (kept alive by the caller) and a server config.
async fn small_cluster(
    name: &str,
) -> (
    Arc<ferrobase_server::db::embedded::EmbeddedPostgres>,
    Config,
) {
    let root = temp_dir(name);
    let pg = private_cluster(&root).await;
    let admin = ferrobase_server::db::connect(&pg.superuser_config("postgres"))
        .await
        .expect("connect as superuser");
    // ALTER SYSTEM cannot run in the implicit transaction of a multi-statement batch.
    for sql in [
        format!("alter system set max_connections = {MAX_CONNECTIONS}"),
        "create database control".to_owned(),
    ] {
        admin.batch_execute(&sql).await.expect("configure cluster");
    }
    drop(admin);
    pg.stop().await.expect("stop");
    pg.start()
        .await
        .expect("restart with the small max_connections");
    let url = format!(
        "host={} port=5432 user=ferrobase password=test-superuser-password dbname=control",
        pg.socket_dir().display()
    );
    let mut config = Config::for_tests(url, root.join("data"));
    // Queueing rather than failing is the point: on a loaded machine (CI's two
    // cores also build and run other tests) opening backends one after
    // another can take seconds (seen: a full queue of 120 requests needing
    // over a minute while the suite ran beside it), so give the queue room;
    // a failure is still a request the budget could not serve.
    config.pool_acquire_timeout_ms = 180_000;
    config.db_reserved_connections = 6;
    (pg, config)
}

#[tokio::test]
async fn many_projects_share_one_connection_budget_without_503() {
    // The server's warnings (why a connection could not be had) go to the
    // test's output, which is shown when it fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let (pg, config) = small_cluster("fbt-budget").await;
    let t = Arc::new(TestApp::start(config).await);

    // Budget = max_connections − 3 superuser slots − 6 reserved − 16 control pool.
    let budget = MAX_CONNECTIONS - 3 - 6 - 16;
    assert_eq!(t.app.pools.totals().budget, budget);

    let mut projects: Vec<TestProject> = Vec::new();
    for chunk in (0..PROJECTS).collect::<Vec<_>>().chunks(4) {
        let created = futures_util::future::join_all(chunk.iter().map(|i| {
            let t = t.clone();
            async move {
                let p = t.create_project(&format!("budget{i}")).await;
                t.owner_sql(&p, SLOW).await;
                p
            }
        }))
        .await;
        projects.extend(created);
    }

    // PROJECTS × CONCURRENCY requests in flight, for ROUNDS rounds.
    let load = {
        let t = t.clone();
        let projects = projects.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..ROUNDS {
                let round = projects.iter().flat_map(|p| {
                    let t = t.clone();
                    (0..CONCURRENCY).map(move |_| {
                        let t = t.clone();
                        async move {
                            let resp = t
                                .http
                                .post(format!("{}/rest/v1/rpc/slow", p.url))
                                .header("apikey", &p.anon)
                                .json(&serde_json::json!({}))
                                .send()
                                .await
                                .expect("request");
                            let status = resp.status().as_u16();
                            let body = resp.text().await.unwrap_or_default();
                            (status, body)
                        }
                    })
                });
                statuses.extend(futures_util::future::join_all(round).await);
            }
            statuses
        })
    };

    // Meanwhile an operator (a plain, non-superuser role) still gets in, and
    // the node stays within its budget.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut peak = 0;
    for p in projects.iter().take(3) {
        let cfg: tokio_postgres::Config = p.db_url.parse().expect("db_url parses");
        let client = ferrobase_server::db::connect(&cfg)
            .await
            .expect("an operator connection is accepted during the load");
        let one: i32 = client
            .query_one("select 1", &[])
            .await
            .expect("operator query")
            .get(0);
        assert_eq!(one, 1);
        let totals = t.app.pools.totals();
        peak = peak.max(totals.connections);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let superuser = ferrobase_server::db::connect(&pg.superuser_config("postgres"))
        .await
        .expect("a superuser connection is accepted during the load");
    drop(superuser);

    let statuses = load.await.expect("load task");
    assert_eq!(statuses.len(), PROJECTS * CONCURRENCY * ROUNDS);
    let failed: Vec<&(u16, String)> = statuses.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        statuses.len(),
        failed.first()
    );
    assert!(
        peak <= budget,
        "{peak} project connections over the budget of {budget}"
    );
    let totals = t.app.pools.totals();
    assert!(totals.connections <= budget);
    assert!(
        totals.reclaimed > 0,
        "idle connections were reclaimed across projects"
    );

    // The gauges are exported.
    let metrics = t.metrics().await;
    assert!(
        metrics.contains(&format!("ferrobase_db_connection_budget {budget}")),
        "{metrics}"
    );
    assert!(metrics.contains("ferrobase_db_connections_waiting"));
    assert!(metrics.contains("ferrobase_db_budget_reclaimed_total"));

    // Control: the same load with the budget lifted (per-project pools only,
    // as before the budget existed) exhausts Postgres and answers 503s.
    t.app.pools.close_all();
    t.app.pools.set_budget(100_000);
    let lifted = futures_util::future::join_all(projects.iter().flat_map(|p| {
        let t = t.clone();
        (0..CONCURRENCY).map(move |_| {
            let t = t.clone();
            async move {
                t.http
                    .post(format!("{}/rest/v1/rpc/slow", p.url))
                    .header("apikey", &p.anon)
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
    }))
    .await;
    let unavailable = lifted.iter().filter(|s| **s == 503).count();
    assert!(
        unavailable > 0,
        "without the budget the cluster should run out of connections: {lifted:?}"
    );
    drop(t);
    pg.stop().await.expect("stop cluster");
}

/// A first request to a project while every control-plane connection is
/// busy (a burst of first requests to many projects loads each of them from
/// there at once) waits for one, as requests wait for their project's pool,
/// instead of failing after a fixed 5 s.
#[tokio::test]
async fn a_busy_control_plane_makes_requests_wait_not_fail() {
    let t = TestApp::spawn_with(|c| c.pool_acquire_timeout_ms = 30_000).await;
    let p = t.create_project("busy-control").await;
    t.app.projects.invalidate("busy-control");
    let control = t.app.platform.control();
    let mut held = Vec::new();
    while control.status().available > 0 || held.len() < control.status().max_size {
        held.push(control.get().await.expect("a control connection"));
    }
    let request = tokio::spawn({
        let http = t.http.clone();
        let url = format!("{}/rest/v1/", p.url);
        let anon = p.anon.clone();
        async move {
            http.get(url)
                .header("apikey", anon)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    });
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        !request.is_finished(),
        "the request waits for the control plane"
    );
    drop(held);
    assert_eq!(request.await.expect("request task"), 200);
}
