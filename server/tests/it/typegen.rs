//! `ferrobase gen types` / `GET /admin/v1/types` against a real project
//! with `examples/typed/schema.sql` (text, integers, floats, booleans,
//! timestamptz, jsonb, arrays, an enum, nullable and defaulted, identity and
//! generated columns, a foreign key, a view, functions):
//!
//! - TypeScript: type-checked by `tsc` together with a program using
//!   `@supabase/postgrest-js` typed by it, including `@ts-expect-error`
//!   lines that must fail (a required column left out, an unknown column, a
//!   generated column written, a wrong enum label);
//! - Rust: must equal `examples/typed/src/types.rs`, which the `typed`
//!   example compiles and runs with the SDK against the project
//!   (`FERROBASE_BLESS=1` rewrites that file);
//! - the endpoint's refusals (no key, anon key, unknown language).

use std::path::{Path, PathBuf};

use crate::auth::{missing_peer, node_bin, node_modules_with};
use crate::support::{TestApp, TestProject, expect_error, temp_dir};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema_sql() -> String {
    std::fs::read_to_string(repo_root().join("examples/typed/schema.sql")).expect("schema.sql")
}

async fn typed_project(t: &TestApp, r: &str) -> TestProject {
    let p = t.create_project(r).await;
    t.owner_sql(&p, &schema_sql()).await;
    p
}

async fn types(t: &TestApp, p: &TestProject, lang: &str) -> String {
    let resp = t
        .http
        .get(format!("{}/admin/v1/types?lang={lang}", p.url))
        .bearer_auth(&p.service)
        .header("apikey", &p.service)
        .send()
        .await
        .expect("types");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("body")
}

/// A program using postgrest-js typed by the generated `Database`. Each
/// `@ts-expect-error` line must be an error, or tsc fails the check.
const USE_TS: &str = r#"
import { PostgrestClient } from '@supabase/postgrest-js'
import type { Database } from './database'

const db = new PostgrestClient<Database>('http://127.0.0.1:1/rest/v1')

export async function demo(): Promise<void> {
  const { data } = await db.from('notes').select('id, title, body, mood, tags, meta, created_at')
  if (data && data.length > 0) {
    const id: number = data[0].id
    const title: string = data[0].title
    const body: string | null = data[0].body
    const mood: 'happy' | 'sad' | 'in between' = data[0].mood
    const tags: string[] = data[0].tags
    const at: string = data[0].created_at
    console.log(id, title, body, mood, tags, at, data[0].meta)
    // @ts-expect-error body may be null
    const notNull: string = data[0].body
    console.log(notNull)
  }
  await db.from('notes').insert({ title: 'only the required column' })
  await db.from('notes').insert({ title: 't', mood: 'in between', tags: ['a'], meta: { k: [1, 'x'] }, body: null })
  // @ts-expect-error title is required
  await db.from('notes').insert({ body: 'no title' })
  // @ts-expect-error no such column
  await db.from('notes').insert({ title: 't', nope: 1 })
  // @ts-expect-error a generated column cannot be written
  await db.from('notes').insert({ title: 't', title_length: 3 })
  // @ts-expect-error not a label of mood
  await db.from('notes').insert({ title: 't', mood: 'angry' })
  await db.from('notes').update({ pinned: true }).eq('id', 1)
  await db.from('comments').insert({ note_id: 1, text: 'hi' })
  const pinned = await db.from('pinned_notes').select('*')
  if (pinned.data) {
    const t: string | null = pinned.data[0].title
    console.log(t)
  }
  const sum = await db.rpc('add_numbers', { a: 1 })
  if (sum.data !== null) {
    const n: number = sum.data
    console.log(n)
  }
  // @ts-expect-error a is required
  await db.rpc('add_numbers', { b: 2 })
  const sad = await db.rpc('notes_by_mood', { m: 'sad' })
  if (sad.data) {
    const first: string = sad.data[0].title
    console.log(first)
  }
}
"#;

#[tokio::test]
async fn typescript_types_typecheck_with_postgrest_js() {
    let t = TestApp::spawn().await;
    let p = typed_project(&t, "types-ts").await;
    let ts = types(&t, &p, "typescript").await;
    for line in [
        "export type Database = {",
        "  public: {",
        "      notes: {",
        "          title: string\n",
        "          body: string | null\n",
        "          tags: string[]\n",
        "          meta: Json\n",
        "          created_at: string\n",
        "          mood: Database[\"public\"][\"Enums\"][\"mood\"]\n",
        "          moods: Database[\"public\"][\"Enums\"][\"mood\"][] | null\n",
        "          id?: number\n",
        "          created_at?: string\n",
        "          title_length?: never\n",
        "          createdBy: string | null\n",
        "      mood: \"happy\" | \"sad\" | \"in between\"\n",
        "            referencedRelation: \"notes\"\n",
        "          b?: number\n",
        "        Returns: Database[\"public\"][\"Tables\"][\"notes\"][\"Row\"][]\n",
    ] {
        assert!(ts.contains(line), "missing {line:?} in:\n{ts}");
    }
    // Internal schemas are not exposed, so not generated.
    assert!(!ts.contains("  auth: {") && !ts.contains("_ferrobase"));

    let Some(modules) = node_modules_with("typescript") else {
        return missing_peer("typescript (npm)");
    };
    if node_modules_with("@supabase/postgrest-js").is_none() {
        return missing_peer("@supabase/postgrest-js (npm)");
    }
    let dir = temp_dir("typegen-ts");
    std::fs::write(dir.join("database.ts"), &ts).expect("write types");
    std::fs::write(dir.join("use.ts"), USE_TS).expect("write program");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).expect("link node_modules");
    let out = tokio::process::Command::new(node_bin())
        .arg(modules.join("typescript/bin/tsc"))
        .args([
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            "--skipLibCheck",
            "database.ts",
            "use.ts",
        ])
        .current_dir(&dir)
        .output()
        .await
        .expect("run tsc");
    assert!(
        out.status.success(),
        "tsc refused the generated types:\n{}\n{}\n--- database.ts\n{ts}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The same check must fail on a wrong use (the check can fail).
    std::fs::write(
        dir.join("use.ts"),
        format!("{USE_TS}\nexport const wrong: Database['public']['Tables']['notes']['Row']['title'] = 1\n"),
    )
    .expect("write program");
    let bad = tokio::process::Command::new(node_bin())
        .arg(modules.join("typescript/bin/tsc"))
        .args([
            "--noEmit",
            "--strict",
            "--skipLibCheck",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            "database.ts",
            "use.ts",
        ])
        .current_dir(&dir)
        .output()
        .await
        .expect("run tsc");
    assert!(
        !bad.status.success(),
        "tsc accepted a number for a text column"
    );
}

#[tokio::test]
async fn rust_types_match_the_typed_example_which_runs() {
    let t = TestApp::spawn().await;
    let p = typed_project(&t, "types-rs").await;
    let rust = types(&t, &p, "rust").await;
    // The command line prints the same.
    let r = ferrobase_server::platform::ProjectRef::parse("types-rs").expect("ref");
    let cli = ferrobase_server::typegen::for_project(
        &t.app.platform,
        &r,
        ferrobase_server::typegen::Lang::Rust,
    )
    .await
    .expect("gen types");
    assert_eq!(cli, rust);
    for line in [
        "pub mod public {",
        "    pub struct Notes {",
        "        pub id: i64,",
        "        pub body: Option<String>,",
        "        pub tags: Vec<String>,",
        "        pub mood: super::public::Mood,",
        "        #[serde(rename = \"createdBy\")]\n        pub created_by: Option<String>,",
        "        pub r#type: Option<String>,",
        "    pub struct NotesInsert {",
        "        #[serde(rename = \"in between\")]\n        InBetween,",
        "        pub type AddNumbersReturns = i32;",
        "        pub type NotesByMoodReturns = Vec<super::super::public::Notes>;",
    ] {
        assert!(rust.contains(line), "missing {line:?} in:\n{rust}");
    }

    let checked_in = repo_root().join("examples/typed/src/types.rs");
    if std::env::var_os("FERROBASE_BLESS").is_some() {
        std::fs::write(&checked_in, &rust).expect("bless types.rs");
    }
    let current = std::fs::read_to_string(&checked_in).expect("types.rs");
    assert_eq!(
        current, rust,
        "examples/typed/src/types.rs is not what gen types prints for examples/typed/schema.sql \
         (FERROBASE_BLESS=1 rewrites it)"
    );
    // The example compiles against it and runs with the SDK.
    let out = crate::examples::run_example("typed", &p.url, None, Some(&p.service)).await;
    assert!(
        out.status.success(),
        "typed example: {}",
        crate::examples::describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "ok: inserted rows decode into Notes (defaults, enums, generated column)",
        "ok: NotesUpdate changed only the fields it set",
        "ok: the view's rows decode into PinnedNotes",
        "ok: rpc add_numbers(40, 2) = 42",
        "ok: rpc notes_by_mood('sad') returns Notes rows",
        "typed example finished",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[tokio::test]
async fn types_endpoint_refusals() {
    let t = TestApp::spawn().await;
    let p = typed_project(&t, "types-no").await;
    let url = format!("{}/admin/v1/types", p.url);
    // No key, the anon key, a user-ish bad token: refused.
    let resp = t.http.get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    let resp = t
        .http
        .get(&url)
        .bearer_auth(&p.anon)
        .header("apikey", &p.anon)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    let resp = t
        .http
        .get(&url)
        .bearer_auth("not.a.token")
        .header("apikey", &p.anon)
        .send()
        .await
        .expect("send");
    assert!(
        resp.status() == 401 || resp.status() == 403,
        "{}",
        resp.status()
    );
    // An unknown language is a 400 in the error envelope, not a 500.
    let resp = t
        .http
        .get(format!("{url}?lang=cobol"))
        .bearer_auth(&p.service)
        .header("apikey", &p.service)
        .send()
        .await
        .expect("send");
    expect_error(resp, 400, "invalid_lang").await;
    // Another project's service key does not read this project's types.
    let other = t.create_project("types-other").await;
    let resp = t
        .http
        .get(&url)
        .bearer_auth(&other.service)
        .header("apikey", &other.service)
        .send()
        .await
        .expect("send");
    assert!(
        resp.status() == 401 || resp.status() == 403,
        "{}",
        resp.status()
    );
    // The default language is TypeScript.
    let resp = t
        .http
        .get(&url)
        .bearer_auth(&p.service)
        .header("apikey", &p.service)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .expect("body")
            .contains("export type Database")
    );
}
