//! `restore --force` and projects from other clusters: a project placed on a
//! second throwaway cluster (B) is backed up; restoring it over itself is
//! refused without `--force` (and a damaged backup with `--force` leaves the
//! project untouched); with `--force` it is replaced, onto the control
//! plane's cluster (A) by default; and a copy goes onto B when B is given.

use ferrobase_server::backup::restore::RestoreOptions;
use ferrobase_server::backup::{self, BackupError};
use ferrobase_server::platform::ProjectRef;
use reqwest::Method;
use serde_json::{Value, json};

use super::items;
use crate::support::{TestApp, private_cluster, temp_dir};

async fn databases(cfg: &tokio_postgres::Config) -> Vec<String> {
    ferrobase_server::db::connect(cfg)
        .await
        .expect("connect")
        .query("select datname from pg_database", &[])
        .await
        .expect("list databases")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn db_name(db_url: &str) -> String {
    let cfg: tokio_postgres::Config = db_url.parse().expect("db_url parses");
    cfg.get_dbname().expect("dbname").to_owned()
}

#[tokio::test]
async fn force_replaces_and_projects_from_another_cluster_restore() {
    let root = temp_dir("fbt-backup-cluster-b");
    let b = private_cluster(&root).await;
    let b_url = format!(
        "host={} port=5432 user=ferrobase password=test-superuser-password dbname=postgres",
        b.socket_dir().display()
    );
    let b_cfg = b.superuser_config("postgres");
    let a_cfg: tokio_postgres::Config = crate::support::cluster_url().parse().expect("url A");
    let t = TestApp::spawn().await;
    let resp = t
        .admin(Method::POST, "/platform/v1/projects")
        .json(&json!({"ref": "bk-on-b", "database_url": b_url}))
        .send()
        .await
        .expect("create on B");
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    let url = created["url"].as_str().expect("url").to_owned();
    let anon = created["anon_key"].as_str().expect("anon").to_owned();
    let db_url = created["db_url"].as_str().expect("db_url").to_owned();
    let owner: tokio_postgres::Config = db_url.parse().expect("db_url");
    ferrobase_server::db::connect(&owner)
        .await
        .expect("owner on B")
        .batch_execute(
            "create table public.items (id int primary key, name text not null);
             insert into public.items values (1, 'one'), (2, 'two');
             grant select on public.items to anon;",
        )
        .await
        .expect("seed on B");
    let on_b = db_name(&db_url);
    assert!(databases(&b_cfg).await.contains(&on_b));

    let r = ProjectRef::parse("bk-on-b").expect("ref");
    let to = temp_dir("backup-b");
    let dir = backup::create::backup_project(&t.app.platform, &r, &to, &backup::Quiet)
        .await
        .expect("backup");
    let control = std::fs::read_to_string(dir.join("control.json")).expect("control");
    assert!(
        !control.contains("test-superuser-password"),
        "B's URL stays sealed"
    );

    // Over the live project: refused without --force, saying so.
    let e = backup::restore::restore_project(
        &t.app.platform,
        &dir,
        &RestoreOptions::default(),
        &backup::Quiet,
    )
    .await
    .expect_err("exists");
    assert!(
        matches!(e, BackupError::Exists(_)) && e.to_string().contains("--force"),
        "{e}"
    );
    // --force with a damaged backup: refused before the project is touched.
    let damaged = temp_dir("backup-b-damaged");
    super::copy_dir(&dir, &damaged);
    std::fs::write(damaged.join("control.json"), b"{}").expect("damage");
    let forced = RestoreOptions {
        force: true,
        ..Default::default()
    };
    let e = backup::restore::restore_project(&t.app.platform, &damaged, &forced, &backup::Quiet)
        .await
        .expect_err("damaged");
    assert!(e.to_string().contains("checksum"), "{e}");
    assert_eq!(items(&url, &anon).await.len(), 2, "untouched");
    // A write after the backup, which --force must undo.
    ferrobase_server::db::connect(&owner)
        .await
        .expect("owner on B")
        .batch_execute("insert into public.items values (3, 'three')")
        .await
        .expect("write");

    // --force: replaced, onto cluster A (no cluster given), same keys.
    let d = backup::restore::restore_project(&t.app.platform, &dir, &forced, &backup::Quiet)
        .await
        .expect("forced restore");
    assert_eq!(d.anon_key, anon);
    assert!(
        databases(&a_cfg).await.contains(&on_b),
        "now on the control plane's cluster"
    );
    assert!(
        !databases(&b_cfg).await.contains(&on_b),
        "the replaced database on B is gone"
    );
    let expected = vec![
        json!({"id": 1, "name": "one"}),
        json!({"id": 2, "name": "two"}),
    ];
    let id = ferrobase_server::platform::projects::load(&t.app.platform, "bk-on-b")
        .await
        .expect("load")
        .expect("exists")
        .id;
    // What a running node does on its own after the cache TTL and idle pool
    // close (the README says so): forget the old location now.
    t.app.projects.invalidate("bk-on-b");
    t.app.pools.remove(id);
    assert_eq!(items(&url, &anon).await, expected);
    assert!(
        ferrobase_server::platform::projects::project_cluster(&t.app.platform, id)
            .await
            .expect("cluster")
            .is_none()
    );

    // A copy onto B, given explicitly.
    let copy = RestoreOptions {
        new_ref: Some(ProjectRef::parse("bk-on-b-copy").expect("ref")),
        database_url: Some(b_url.clone()),
        ..Default::default()
    };
    let c = backup::restore::restore_project(&t.app.platform, &dir, &copy, &backup::Quiet)
        .await
        .expect("copy onto B");
    let copy_db = db_name(&c.db_url);
    assert!(databases(&b_cfg).await.contains(&copy_db));
    assert!(!databases(&a_cfg).await.contains(&copy_db));
    assert_eq!(items(&c.project.url, &c.anon_key).await, expected);
    let detail = t
        .admin(Method::GET, "/platform/v1/projects/bk-on-b-copy")
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(!detail.contains("test-superuser-password"), "{detail}");
    // An unreachable cluster is refused before anything is created.
    let nowhere = RestoreOptions {
        new_ref: Some(ProjectRef::parse("bk-nowhere").expect("ref")),
        database_url: Some(format!(
            "host={} port=1 user=ferrobase password=x",
            root.display()
        )),
        ..Default::default()
    };
    let e = backup::restore::restore_project(&t.app.platform, &dir, &nowhere, &backup::Quiet)
        .await
        .expect_err("unreachable");
    assert!(!e.to_string().contains("password=x"), "{e}");
    assert!(
        ferrobase_server::platform::projects::load(&t.app.platform, "bk-nowhere")
            .await
            .expect("load")
            .is_none()
    );
}
