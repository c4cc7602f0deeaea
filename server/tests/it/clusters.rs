//! Projects on more than one Postgres cluster: a project placed on cluster B
//! (through the admin API with `database_url`) is served end to end, its data
//! lives on B only, its connection string is stored encrypted and never shown,
//! and deleting it drops its database on B. Registered clusters (V13):
//! placement by headroom, limits, bad input, the CLI.

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

/// The superuser connection string of a private cluster.
fn superuser_url(pg: &ferrobase_server::db::embedded::EmbeddedPostgres) -> String {
    format!(
        "host={} port=5432 user=ferrobase password=test-superuser-password dbname=postgres",
        pg.socket_dir().display()
    )
}

/// Creates project `r` (optionally with extra body fields) and returns the
/// name of its database, or the error response.
async fn create(t: &TestApp, r: &str, extra: Value) -> Result<String, reqwest::Response> {
    let mut body = json!({ "ref": r });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let resp = t
        .admin(reqwest::Method::POST, "/platform/v1/projects")
        .json(&body)
        .send()
        .await
        .expect("create project");
    if resp.status() != 201 {
        return Err(resp);
    }
    let body: Value = resp.json().await.expect("json");
    let cfg: tokio_postgres::Config = body["db_url"]
        .as_str()
        .expect("db_url")
        .parse()
        .expect("db_url parses");
    Ok(cfg.get_dbname().expect("dbname").to_owned())
}

async fn listed(t: &TestApp) -> Value {
    let resp = t
        .admin(reqwest::Method::GET, "/platform/v1/clusters")
        .send()
        .await
        .expect("list clusters");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(
        !text.contains("test-superuser-password"),
        "listing leaks a password: {text}"
    );
    serde_json::from_str(&text).expect("json")
}

fn count_of(list: &Value, name: &str) -> i64 {
    list.as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .and_then(|c| c["projects"].as_i64())
        .unwrap_or(-1)
}

#[tokio::test]
async fn registered_clusters_place_projects_by_headroom() {
    let (rb, rc) = (temp_dir("fbt-cl-b"), temp_dir("fbt-cl-c"));
    let (b, c) = tokio::join!(private_cluster(&rb), private_cluster(&rc));
    let t = TestApp::spawn().await;
    let a_cfg: tokio_postgres::Config = crate::support::cluster_url().parse().expect("url A");

    // Nothing registered: the control plane's cluster, as before.
    let db = create(&t, "pl-home", json!({})).await.expect("created");
    assert!(databases(&a_cfg).await.contains(&db));
    assert_eq!(listed(&t).await, json!([]));

    // Register B (room for 1) and C (room for 3).
    for (name, pg, max) in [("bee", &b, 1), ("cee", &c, 3)] {
        let resp = t
            .admin(reqwest::Method::POST, "/platform/v1/clusters")
            .json(&json!({"name": name, "database_url": superuser_url(pg), "max_projects": max}))
            .send()
            .await
            .expect("add cluster");
        assert_eq!(resp.status(), 201, "add {name}");
        let text = resp.text().await.expect("body");
        assert!(!text.contains("test-superuser-password"), "{text}");
        let body: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["max_projects"], max);
        assert!(
            body["address"]
                .as_str()
                .is_some_and(|a| a.ends_with(":5432")),
            "{body}"
        );
    }

    // Most headroom first: C (3 free), C (2 free), then B and C both have 1
    // free and B holds fewer, then C; then both are full.
    let mut on = std::collections::HashMap::new();
    for r in ["pl-one", "pl-two", "pl-three", "pl-four"] {
        on.insert(r, create(&t, r, json!({})).await.expect("placed"));
    }
    let (on_b, on_c) = (
        databases(&b.superuser_config("postgres")).await,
        databases(&c.superuser_config("postgres")).await,
    );
    for (r, cluster) in [
        ("pl-one", &on_c),
        ("pl-two", &on_c),
        ("pl-three", &on_b),
        ("pl-four", &on_c),
    ] {
        assert!(cluster.contains(&on[r]), "{r} on the expected cluster");
        assert!(!databases(&a_cfg).await.contains(&on[r]), "{r} not on A");
    }
    let list = listed(&t).await;
    assert_eq!((count_of(&list, "bee"), count_of(&list, "cee")), (1, 3));
    let full = create(&t, "pl-five", json!({}))
        .await
        .expect_err("all full");
    expect_error(full, 409, "no_cluster_capacity").await;
    let named = create(&t, "pl-five", json!({"cluster": "bee"}))
        .await
        .expect_err("bee is full");
    expect_error(named, 409, "cluster_full").await;
    let unknown = create(&t, "pl-five", json!({"cluster": "nope"}))
        .await
        .expect_err("unknown");
    expect_error(unknown, 404, "cluster_not_found").await;
    let both = create(
        &t,
        "pl-five",
        json!({"cluster": "bee", "database_url": superuser_url(&b)}),
    )
    .await
    .expect_err("both");
    expect_error(both, 400, "invalid_placement").await;

    // Lift B's limit: unlimited headroom wins from then on.
    let resp = t
        .admin(reqwest::Method::PATCH, "/platform/v1/clusters/bee")
        .json(&json!({"max_projects": null}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert!(body["max_projects"].is_null(), "{body}");
    let db = create(&t, "pl-five", json!({})).await.expect("placed on B");
    assert!(
        databases(&b.superuser_config("postgres"))
            .await
            .contains(&db)
    );
    let resp = t
        .admin(reqwest::Method::PATCH, "/platform/v1/clusters/bee")
        .json(&json!({}))
        .send()
        .await
        .expect("patch without a value");
    expect_error(resp, 400, "invalid_settings").await;

    // A project placed automatically is served end to end on its cluster.
    let details: Value = t
        .admin(reqwest::Method::GET, "/platform/v1/projects/pl-five")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let owner_cfg: tokio_postgres::Config = details["db_url"]
        .as_str()
        .expect("db_url")
        .parse()
        .expect("parses");
    ferrobase_server::db::connect(&owner_cfg)
        .await
        .expect("owner on B")
        .batch_execute("create table notes (id serial primary key, body text)")
        .await
        .expect("ddl on B");
    let service = details["service_role_key"].as_str().expect("key");
    let mut status = 0;
    for _ in 0..50 {
        let resp = t
            .http
            .post(format!(
                "{}/rest/v1/notes",
                details["url"].as_str().expect("url")
            ))
            .header("apikey", service)
            .json(&json!({"body": "placed"}))
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

    // Sealed at rest: neither the cluster rows, the project rows nor the
    // audit log hold the password or the connection string.
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
    let dump: String = control
        .query_one(
            "select (select string_agg(c::text, ' ') from clusters c) || \
                    (select string_agg(p::text, ' ') from projects p) || \
                    (select string_agg(l::text, ' ') from audit_log l)",
            &[],
        )
        .await
        .expect("dump")
        .get(0);
    assert!(!dump.contains("test-superuser-password") && !dump.contains("user=ferrobase"));

    // A cluster holding projects cannot be removed; an empty one can.
    let resp = t
        .admin(reqwest::Method::DELETE, "/platform/v1/clusters/bee")
        .send()
        .await
        .expect("remove");
    expect_error(resp, 409, "cluster_in_use").await;
    for r in ["pl-three", "pl-five"] {
        let resp = t
            .admin(
                reqwest::Method::DELETE,
                &format!("/platform/v1/projects/{r}"),
            )
            .send()
            .await
            .expect("delete project");
        assert!(resp.status().is_success());
    }
    let resp = t
        .admin(reqwest::Method::DELETE, "/platform/v1/clusters/bee")
        .send()
        .await
        .expect("remove");
    assert_eq!(resp.status(), 204);
    let list = listed(&t).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    let (sb, sc) = tokio::join!(b.stop(), c.stop());
    sb.expect("stop B");
    sc.expect("stop C");
}

#[tokio::test]
async fn cluster_registration_refuses_bad_input_and_never_echoes_urls_and_limits_hold_under_races()
{
    let root = temp_dir("fbt-cl-bad");
    let b = private_cluster(&root).await;
    ferrobase_server::db::connect(&b.superuser_config("postgres"))
        .await
        .expect("connect B")
        .batch_execute("create role plain login password 'plain-secret-pw'")
        .await
        .expect("plain role");
    let t = TestApp::spawn().await;
    let plain = format!(
        "host={} port=5432 user=plain password=plain-secret-pw dbname=postgres",
        b.socket_dir().display()
    );
    let good = superuser_url(&b);
    let cases = [
        (
            json!({"name": "Bad!", "database_url": good}),
            400,
            "invalid_cluster_name",
        ),
        (
            json!({"name": "ok-name", "database_url": good, "max_projects": 0}),
            400,
            "invalid_settings",
        ),
        (
            json!({"name": "ok-name", "database_url": good, "max_projects": 99_999_999_999_i64}),
            400,
            "invalid_settings",
        ),
        (
            json!({"name": "ok-name", "database_url": "not a url = = ="}),
            400,
            "invalid_database_url",
        ),
        (
            json!({"name": "ok-name", "database_url": "host=127.0.0.1 port=1 user=x password=hunter2-secret connect_timeout=2"}),
            400,
            "database_unreachable",
        ),
        (
            json!({"name": "ok-name", "database_url": plain}),
            400,
            "cluster_not_superuser",
        ),
        (
            json!({"name": "ok-name", "database_url": good, "extra": 1}),
            422,
            "",
        ),
    ];
    for (body, status, code) in cases {
        let resp = t
            .admin(reqwest::Method::POST, "/platform/v1/clusters")
            .json(&body)
            .send()
            .await
            .expect("add");
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let text = resp.text().await.expect("body");
        for secret in ["hunter2", "plain-secret-pw", "test-superuser-password"] {
            assert!(!text.contains(secret), "{text}");
        }
        let v: Value = serde_json::from_str(&text).expect("JSON error");
        if !code.is_empty() {
            assert_eq!(v["code"], code, "{text}");
        }
    }
    // Without an admin token: 401.
    let resp = t
        .http
        .post(format!("{}/platform/v1/clusters", t.url))
        .json(&json!({"name": "sneaky", "database_url": good}))
        .send()
        .await
        .expect("anonymous add");
    expect_error(resp, 401, "missing_token").await;
    // Twice the same name: 409; unknown names: 404.
    for expected in [201, 409] {
        let resp = t
            .admin(reqwest::Method::POST, "/platform/v1/clusters")
            .json(&json!({"name": "twice", "database_url": good}))
            .send()
            .await
            .expect("add");
        assert_eq!(resp.status().as_u16(), expected);
    }
    let resp = t
        .admin(reqwest::Method::DELETE, "/platform/v1/clusters/ghost")
        .send()
        .await
        .expect("remove");
    expect_error(resp, 404, "cluster_not_found").await;

    // Five creations at once on a cluster with room for two: the limit is
    // checked again under the cluster's row lock, so exactly two land.
    let resp = t
        .admin(reqwest::Method::PATCH, "/platform/v1/clusters/twice")
        .json(&json!({"max_projects": 2}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let refs: Vec<String> = (0..5).map(|i| format!("race-{i}")).collect();
    let attempts = refs.iter().map(|r| create(&t, r, json!({})));
    let results = futures_util::future::join_all(attempts).await;
    let mut created = 0;
    for r in results {
        match r {
            Ok(_) => created += 1,
            Err(resp) => {
                assert_eq!(resp.status(), 409);
                let v: Value = resp.json().await.expect("json");
                assert!(
                    v["code"] == "no_cluster_capacity" || v["code"] == "cluster_full",
                    "{v}"
                );
            }
        }
    }
    assert_eq!(created, 2, "the cluster's limit holds under concurrency");
    assert_eq!(count_of(&listed(&t).await, "twice"), 2);
    b.stop().await.expect("stop B");
}

#[tokio::test]
async fn cli_cluster_add_list_and_placement() {
    let root = temp_dir("fbt-cl-cli");
    let b = private_cluster(&root).await;
    let db = crate::support::fresh_database().await;
    let data = temp_dir("fbt-cl-cli-data");
    let data = data.to_string_lossy().into_owned();
    let key = ferrobase_server::crypto::SecretBox::generate_key_text();
    let env = [
        ("DATABASE_URL", db.as_str()),
        ("FERROBASE_DATA_DIR", data.as_str()),
        ("FERROBASE_ENCRYPTION_KEY", key.as_str()),
    ];
    let url = superuser_url(&b);
    let (ok, out, err) = crate::cli::ferrobase(
        &env,
        &[
            "cluster",
            "add",
            "db-two",
            "--database-url",
            &url,
            "--max-projects",
            "5",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("db-two") && !out.contains("test-superuser-password"));
    let (ok, _, err) =
        crate::cli::ferrobase(&env, &["cluster", "add", "db-two", "--database-url", &url]).await;
    assert!(!ok && err.contains("already registered"), "{err}");
    assert!(!err.contains("test-superuser-password"), "{err}");

    let (ok, out, err) =
        crate::cli::ferrobase(&env, &["project", "create", "cli-placed", "--json"]).await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).expect("json");
    let cfg: tokio_postgres::Config = created["db_url"]
        .as_str()
        .expect("db_url")
        .parse()
        .expect("parses");
    let name = cfg.get_dbname().expect("dbname").to_owned();
    assert!(
        databases(&b.superuser_config("postgres"))
            .await
            .contains(&name),
        "placed on the only registered cluster"
    );
    let (ok, out, err) = crate::cli::ferrobase(&env, &["cluster", "list", "--json"]).await;
    assert!(ok, "{err}");
    assert!(!out.contains("test-superuser-password"), "{out}");
    let list: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(list[0]["name"], "db-two");
    assert_eq!(list[0]["projects"], 1);
    assert_eq!(list[0]["max_projects"], 5);
    let (ok, out, err) = crate::cli::ferrobase(&env, &["cluster", "list"]).await;
    assert!(ok && out.contains("db-two"), "{err}");
    // Full at 1: the next project has nowhere to go; lifting the limit helps.
    let (ok, _, err) =
        crate::cli::ferrobase(&env, &["cluster", "set", "db-two", "--max-projects", "1"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = crate::cli::ferrobase(&env, &["project", "create", "cli-full"]).await;
    assert!(!ok && err.contains("holds its max_projects"), "{err}");
    let (ok, _, err) =
        crate::cli::ferrobase(&env, &["cluster", "set", "db-two", "--no-limit"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = crate::cli::ferrobase(&env, &["project", "create", "cli-full"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = crate::cli::ferrobase(&env, &["project", "delete", "cli-full"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = crate::cli::ferrobase(&env, &["cluster", "remove", "db-two"]).await;
    assert!(!ok && err.contains("still holds 1"), "{err}");
    let (ok, _, err) = crate::cli::ferrobase(&env, &["project", "delete", "cli-placed"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = crate::cli::ferrobase(&env, &["cluster", "remove", "db-two"]).await;
    assert!(ok, "{err}");
    b.stop().await.expect("stop B");
    let _ = std::fs::remove_dir_all(&data);
}
