//! `ferrobase backup` / `restore` through the library calls the commands
//! make, against a real cluster (real `pg_dump` / `pg_restore`) and the
//! server's storage backend: a project with rows under RLS, a user and a
//! file is backed up, deleted, restored under its ref (the same keys, the
//! same user, the same rows and bytes), and restored again under a new ref
//! side by side (new keys; data, users and files equal); damaged and
//! incomplete backups are refused before anything is created. Submodules:
//! S3 destinations, scheduled backups, `--force` and other clusters.

mod clusters;
mod s3;
mod schedules;

use std::sync::Mutex;

use ferrobase::{BucketOptions, Client, FileOptions};
use ferrobase_server::backup::restore::RestoreOptions;
use ferrobase_server::backup::{self, BackupError, Progress};
use ferrobase_server::platform::ProjectRef;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, TestProject, temp_dir};

/// Collects progress lines.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Progress for Lines {
    fn step(&self, line: &str) {
        self.0.lock().expect("lock").push(line.to_owned());
    }
}

const SCHEMA: &str = "
create table public.notes (
    id bigint generated always as identity primary key,
    owner uuid not null default auth.uid(),
    body text not null,
    tags text[] not null default '{}'
);
alter table public.notes enable row level security;
create policy own on public.notes for all to authenticated
    using (owner = auth.uid()) with check (owner = auth.uid());
grant select, insert, update, delete on public.notes to authenticated;
";

pub(crate) const FILE: &[u8] = b"the quarterly report \x00\x01\x02 with binary bytes";

/// A user's client after signing in (signing up first when `new`).
pub(crate) async fn user(p_url: &str, anon: &str, service: &str, new: bool) -> Client {
    let anon_client = Client::new(p_url, anon).expect("client");
    let auth = anon_client.auth();
    if new {
        let signed = auth
            .sign_up("ada@example.com", "correct horse battery", None)
            .await
            .expect("sign up");
        if let ferrobase::SignUp::User(u) = signed {
            Client::new(p_url, service)
                .expect("service")
                .auth()
                .admin()
                .update_user_by_id(
                    &u.id,
                    &ferrobase::AdminUserAttributes {
                        email_confirm: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .expect("confirm");
        }
    }
    auth.sign_in_with_password("ada@example.com", "correct horse battery")
        .await
        .expect("sign in");
    auth.client().await.expect("user client")
}

pub(crate) async fn notes(c: &Client) -> Vec<Value> {
    c.from("notes")
        .select("body, tags")
        .order("id", ferrobase::Order::asc())
        .fetch()
        .await
        .expect("notes")
}

pub(crate) async fn seed(t: &TestApp, p: &TestProject) {
    t.owner_sql(p, SCHEMA).await;
    let ada = user(&p.url, &p.anon, &p.service, true).await;
    let _: Vec<Value> = ada
        .from("notes")
        .insert(vec![
            json!({"body": "first", "tags": ["a", "b"]}),
            json!({"body": "second", "tags": []}),
        ])
        .fetch()
        .await
        .expect("insert");
    let service = Client::new(&p.url, &p.service).expect("service");
    service
        .storage()
        .create_bucket(
            "docs",
            BucketOptions {
                public: false,
                file_size_limit: None,
                allowed_mime_types: None,
            },
        )
        .await
        .expect("bucket");
    service
        .storage()
        .from("docs")
        .upload(
            "2026/q3.bin",
            FILE.to_vec(),
            FileOptions::content_type("application/octet-stream"),
        )
        .await
        .expect("upload");
}

#[tokio::test]
async fn backup_delete_restore_and_restore_under_a_new_ref() {
    let t = TestApp::spawn().await;
    let p = t.create_project("bk-orig").await;
    seed(&t, &p).await;
    let r = ProjectRef::parse("bk-orig").expect("ref");
    let to = temp_dir("backup");
    let lines = Lines::default();
    let dir = backup::create::backup_project(&t.app.platform, &r, &to, &lines)
        .await
        .expect("backup");
    assert_eq!(dir, to.join("bk-orig"));
    let manifest = backup::verify(&dir).expect("manifest verifies");
    assert!(
        manifest
            .files
            .iter()
            .any(|f| f.path == "database.dump" && f.bytes > 0)
    );
    assert_eq!(
        manifest
            .files
            .iter()
            .filter(|f| f.path.starts_with("storage/"))
            .count(),
        1,
        "{:?}",
        manifest.files
    );
    let control = std::fs::read_to_string(dir.join("control.json")).expect("control.json");
    assert!(
        !control.contains(&p.service) && !control.contains(&p.anon),
        "keys stay sealed"
    );
    assert!(
        !control.contains("postgresql://"),
        "the connection string stays sealed"
    );
    let progress = lines.0.lock().expect("lock").join("\n");
    assert!(
        progress.contains("[1/4] database") && progress.contains("[4/4] done"),
        "{progress}"
    );
    // A second backup into the same place is refused, not overwritten.
    let again = backup::create::backup_project(&t.app.platform, &r, &to, &backup::Quiet).await;
    assert!(matches!(again, Err(BackupError::Invalid(_))), "{again:?}");

    // Restoring over a live project is refused, saying how to replace it.
    let over = backup::restore::restore_project(
        &t.app.platform,
        &dir,
        &RestoreOptions::default(),
        &backup::Quiet,
    )
    .await;
    assert!(matches!(over, Err(BackupError::Exists(_))), "{over:?}");
    assert!(
        over.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("--force")),
        "{over:?}"
    );

    // Delete it (database, files, control plane), then restore it.
    let resp = t
        .admin(Method::DELETE, "/platform/v1/projects/bk-orig")
        .send()
        .await
        .expect("delete");
    assert!(resp.status().is_success(), "{}", resp.status());
    let d = backup::restore::restore_project(
        &t.app.platform,
        &dir,
        &RestoreOptions::default(),
        &backup::Quiet,
    )
    .await
    .expect("restore");
    assert_eq!(d.anon_key, p.anon, "same ref: the same keys");
    let ada = user(&p.url, &p.anon, &p.service, false).await;
    let rows = notes(&ada).await;
    assert_eq!(
        rows,
        vec![
            json!({"body": "first", "tags": ["a", "b"]}),
            json!({"body": "second", "tags": []})
        ]
    );
    // RLS came back with the table: the anon key alone sees nothing.
    let anon = Client::new(&p.url, &p.anon).expect("anon");
    assert!(notes(&anon).await.is_empty());
    let service = Client::new(&p.url, &p.service).expect("service");
    let bytes = service
        .storage()
        .from("docs")
        .download("2026/q3.bin")
        .await
        .expect("download restored file");
    assert_eq!(bytes, FILE);
    // Still writable, and schema changes still reach the data API.
    let _: Vec<Value> = ada
        .from("notes")
        .insert(json!({"body": "after restore"}))
        .fetch()
        .await
        .expect("insert after restore");

    // The same backup under a new ref, side by side.
    let copy = ProjectRef::parse("bk-copy").expect("ref");
    let c = backup::restore::restore_project(
        &t.app.platform,
        &dir,
        &RestoreOptions {
            new_ref: Some(copy),
            ..Default::default()
        },
        &backup::Quiet,
    )
    .await
    .expect("restore as a copy");
    assert_ne!(c.anon_key, p.anon, "a new ref gets its own keys");
    assert_ne!(c.db_url, d.db_url);
    let copy_url = c.project.url.clone();
    let ada_copy = user(&copy_url, &c.anon_key, &c.service_role_key, false).await;
    assert_eq!(
        notes(&ada_copy).await.len(),
        2,
        "the copy has the backed-up rows"
    );
    assert_eq!(notes(&ada).await.len(), 3, "the original keeps its own");
    let copied = Client::new(&copy_url, &c.service_role_key)
        .expect("service")
        .storage()
        .from("docs")
        .download("2026/q3.bin")
        .await
        .expect("download from the copy");
    assert_eq!(copied, FILE);
    // The original's keys do not open the copy.
    let cross = Client::new(&copy_url, &p.service)
        .expect("client")
        .from("notes")
        .select("body")
        .fetch::<Vec<Value>>()
        .await;
    assert!(cross.is_err(), "another project's key is refused");
}

/// A project that forces Row Level Security on its tables (so that even its
/// owner, and the functions it owns, obey the policies) is backed up whole
/// and restored whole: the backup must not lose the rows its policies hide,
/// nor fail on them.
#[tokio::test]
async fn tables_with_forced_row_level_security_back_up_and_restore_whole() {
    let t = TestApp::spawn().await;
    let p = t.create_project("bk-force").await;
    t.owner_sql(
        &p,
        "create table public.secrets (id int primary key, body text not null);
         insert into public.secrets select g, 'row ' || g from generate_series(1, 5) g;
         alter table public.secrets enable row level security;
         alter table public.secrets force row level security;
         create policy only_even on public.secrets for select using (id % 2 = 0);",
    )
    .await;
    let r = ProjectRef::parse("bk-force").expect("ref");
    let to = temp_dir("backup-force");
    let dir = backup::create::backup_project(&t.app.platform, &r, &to, &backup::Quiet)
        .await
        .expect("a project that forces RLS backs up");
    let copy = ProjectRef::parse("bk-force-copy").expect("ref");
    let c = backup::restore::restore_project(
        &t.app.platform,
        &dir,
        &RestoreOptions {
            new_ref: Some(copy),
            ..Default::default()
        },
        &backup::Quiet,
    )
    .await
    .expect("restore as a copy");
    let cfg: tokio_postgres::Config = c.db_url.parse().expect("db url");
    let owner = ferrobase_server::db::connect(&cfg).await.expect("connect");
    let row = owner
        .query_one(
            "select relforcerowsecurity, relrowsecurity from pg_class where oid = 'public.secrets'::regclass",
            &[],
        )
        .await
        .expect("flags");
    assert!(
        row.get::<_, bool>(0) && row.get::<_, bool>(1),
        "RLS stays enabled and forced"
    );
    // The owner obeys the policy again; turned off, every row is there.
    let visible: i64 = owner
        .query_one("select count(*) from public.secrets", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(visible, 2, "the policy still applies to the owner");
    owner
        .batch_execute("alter table public.secrets no force row level security")
        .await
        .expect("no force");
    let all: Vec<String> = owner
        .query("select body from public.secrets order by id", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(all, ["row 1", "row 2", "row 3", "row 4", "row 5"]);
}

#[tokio::test]
async fn damaged_or_incomplete_backups_are_refused() {
    let t = TestApp::spawn().await;
    let p = t.create_project("bk-bad").await;
    t.owner_sql(
        &p,
        "create table public.t (id int primary key); insert into public.t values (1);",
    )
    .await;
    let r = ProjectRef::parse("bk-bad").expect("ref");
    let to = temp_dir("backup-bad");
    let dir = backup::create::backup_project(&t.app.platform, &r, &to, &backup::Quiet)
        .await
        .expect("backup");
    let target = ProjectRef::parse("bk-bad-copy").expect("ref");
    let restore = |d: std::path::PathBuf| {
        let platform = t.app.platform.clone();
        let target = target.clone();
        async move {
            let options = RestoreOptions {
                new_ref: Some(target),
                ..Default::default()
            };
            backup::restore::restore_project(&platform, &d, &options, &backup::Quiet).await
        }
    };

    // A changed byte in the dump.
    let bad = temp_dir("backup-corrupt");
    copy_dir(&dir, &bad);
    let dump = bad.join("database.dump");
    let mut bytes = std::fs::read(&dump).expect("dump");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&dump, bytes).expect("write");
    let e = restore(bad.clone()).await.expect_err("corrupt dump");
    assert!(
        e.to_string()
            .contains("database.dump does not match its checksum"),
        "{e}"
    );

    // No manifest; a manifest that is not JSON; a missing file.
    let none = temp_dir("backup-none");
    copy_dir(&dir, &none);
    std::fs::remove_file(none.join("manifest.json")).expect("rm");
    let e = restore(none).await.expect_err("no manifest");
    assert!(e.to_string().contains("cannot read manifest.json"), "{e}");
    let junk = temp_dir("backup-junk");
    copy_dir(&dir, &junk);
    std::fs::write(junk.join("manifest.json"), "{not json").expect("write");
    let e = restore(junk).await.expect_err("junk manifest");
    assert!(e.to_string().contains("manifest.json is damaged"), "{e}");
    let missing = temp_dir("backup-missing");
    copy_dir(&dir, &missing);
    std::fs::remove_file(missing.join("control.json")).expect("rm");
    let e = restore(missing).await.expect_err("missing file");
    assert!(e.to_string().contains("control.json is missing"), "{e}");
    // A manifest pointing outside the backup.
    let escape = temp_dir("backup-escape");
    copy_dir(&dir, &escape);
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(escape.join("manifest.json")).expect("m"))
            .expect("json");
    if let Some(files) = m["files"].as_array_mut() {
        files.push(json!({"path": "../../etc/passwd", "bytes": 0, "sha256": ""}));
    }
    std::fs::write(escape.join("manifest.json"), m.to_string()).expect("write");
    let e = restore(escape).await.expect_err("escape");
    assert!(e.to_string().contains("unsafe path"), "{e}");

    // Nothing was left behind by the refusals: the ref is free, and the
    // intact backup restores.
    let listed: Value = t
        .admin(Method::GET, "/platform/v1/projects")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(!listed.to_string().contains("bk-bad-copy"));
    restore(dir).await.expect("the intact backup restores");
    // A backup of a project that does not exist.
    let ghost = ProjectRef::parse("bk-ghost").expect("ref");
    let e = backup::create::backup_project(&t.app.platform, &ghost, &to, &backup::Quiet)
        .await
        .expect_err("no such project");
    assert!(matches!(e, BackupError::NotFound(_)), "{e}");
}

/// The `items` rows (`id, name`, by id), as a restore test reads them back.
pub(crate) async fn items(url: &str, key: &str) -> Vec<Value> {
    ferrobase::Client::new(url, key)
        .expect("client")
        .from("items")
        .select("id, name")
        .order("id", ferrobase::Order::asc())
        .fetch()
        .await
        .expect("items")
}

pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The commands themselves: `backup --to`, `restore` refused without
/// `--force` (exit status and message), replaced with it, and bad targets.
#[tokio::test]
async fn the_cli_backs_up_and_restores_with_force() {
    use crate::cli::ferrobase;
    let db = crate::support::fresh_database().await;
    let data = temp_dir("fbt-cli-backup");
    let data = data.to_string_lossy().into_owned();
    let key = ferrobase_server::crypto::SecretBox::generate_key_text();
    let env = [
        ("DATABASE_URL", db.as_str()),
        ("FERROBASE_DATA_DIR", data.as_str()),
        ("FERROBASE_ENCRYPTION_KEY", key.as_str()),
    ];
    let (ok, _, err) = ferrobase(&env, &["project", "create", "bk-cli"]).await;
    assert!(ok, "{err}");
    let to = temp_dir("backup-cli");
    let to = to.to_string_lossy().into_owned();
    let (ok, out, err) = ferrobase(&env, &["backup", "bk-cli", "--to", &to]).await;
    assert!(ok, "{err}");
    let location = out.trim().to_owned();
    assert_eq!(location, format!("{to}/bk-cli"));
    assert!(err.contains("[4/4] done"), "progress on stderr: {err}");

    let (ok, _, err) = ferrobase(&env, &["restore", &location]).await;
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, out, err) = ferrobase(&env, &["restore", &location, "--force", "--json"]).await;
    assert!(ok, "{err}");
    let restored: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(restored["ref"], "bk-cli");
    assert!(err.contains("was deleted"), "{err}");

    for (bad, why) in [
        ("../elsewhere", "contains '..'"),
        ("ftp://host/x", "only directories and s3://"),
        ("s3://No_Such/x", "not an S3 bucket name"),
    ] {
        let (ok, _, err) = ferrobase(&env, &["backup", "bk-cli", "--to", bad]).await;
        assert!(!ok && err.contains(why), "{bad}: {err}");
    }
    let (ok, _, err) = ferrobase(&env, &["restore", "/nonexistent/backup"]).await;
    assert!(!ok && err.contains("is not a project backup"), "{err}");
}
