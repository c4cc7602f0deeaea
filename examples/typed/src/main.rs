//! Generated Rust types with the SDK's query builder.
//!
//! ```sh
//! FERROBASE_URL=http://127.0.0.1:8080/p/default FERROBASE_SERVICE_ROLE_KEY=… \
//!   cargo run --manifest-path examples/Cargo.toml -p typed
//! ```
//!
//! `src/types.rs` is what `ferrobase gen types --project REF --lang rust`
//! prints for `schema.sql` (the test suite regenerates it and fails when it
//! differs). The program (re)creates that schema with admin SQL, then
//! inserts, updates, reads and calls functions with the generated structs:
//! a renamed or retyped column is a compile error, not a runtime surprise.

mod types;

use ferrobase::{Client, Order};
use types::public::functions::{AddNumbers, AddNumbersReturns, NotesByMood, NotesByMoodReturns};
use types::public::{Mood, Notes, NotesInsert, NotesUpdate, PinnedNotes};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn setting(name: &str) -> AnyResult<String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/README.md)").into())
}

fn check(ok: bool, what: &str) -> AnyResult<()> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

/// A new note: only `title` is required; the rest has defaults or may be
/// NULL. (Rows inserted together should set the same columns: the data API
/// inserts the union of their keys, NULL where a row leaves one out.)
fn note(title: &str, mood: Mood, tags: &[&str]) -> NotesInsert {
    NotesInsert {
        id: None,
        title: title.to_owned(),
        body: None,
        pinned: None,
        rating: None,
        score: Some(4.5),
        created_at: None,
        meta: Some(serde_json::json!({"source": "typed example"})),
        tags: Some(tags.iter().map(|t| (*t).to_owned()).collect()),
        mood: Some(mood),
        moods: None,
        created_by: None,
        r#type: Some("memo".to_owned()),
    }
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let url = setting("FERROBASE_URL")?;
    let db = Client::new(&url, setting("FERROBASE_SERVICE_ROLE_KEY")?)?;
    db.admin_sql(include_str!("../schema.sql"), &[]).await?;
    println!("schema ready (notes, comments, pinned_notes, add_numbers, notes_by_mood)");

    let inserted: Vec<Notes> = db
        .from(Notes::TABLE)
        .insert(vec![
            note("groceries", Mood::Happy, &["home"]),
            note("rainy day", Mood::Sad, &[]),
            note("so-so", Mood::InBetween, &["misc", "later"]),
        ])
        .fetch()
        .await?;
    for n in &inserted {
        println!(
            "note #{} {:?} mood={:?} tags={:?} title_length={:?}",
            n.id, n.title, n.mood, n.tags, n.title_length
        );
    }
    check(
        inserted.len() == 3
            && inserted[0].mood == Mood::Happy
            && inserted[2].mood == Mood::InBetween
            && inserted[0].title_length == Some(9),
        "inserted rows decode into Notes (defaults, enums, generated column)",
    )?;

    // Update: `Some(None)` sets a nullable column to NULL, `None` leaves it.
    let first = inserted[0].id;
    let changes = NotesUpdate {
        pinned: Some(true),
        body: Some(Some("milk, eggs".to_owned())),
        score: Some(None),
        ..NotesUpdate::default()
    };
    let updated: Vec<Notes> = db
        .from(Notes::TABLE)
        .update(&changes)
        .eq("id", first)
        .fetch()
        .await?;
    check(
        updated.len() == 1
            && updated[0].pinned
            && updated[0].body.as_deref() == Some("milk, eggs")
            && updated[0].score.is_none()
            && updated[0].r#type.as_deref() == Some("memo"),
        "NotesUpdate changed only the fields it set",
    )?;

    let pinned: Vec<PinnedNotes> = db
        .from(PinnedNotes::TABLE)
        .select("*")
        .order("id", Order::asc())
        .fetch()
        .await?;
    check(
        pinned.len() == 1 && pinned[0].title.as_deref() == Some("groceries"),
        "the view's rows decode into PinnedNotes",
    )?;

    let sum: AddNumbersReturns = db
        .rpc(
            AddNumbers::NAME,
            AddNumbers {
                a: Some(40),
                b: Some(2),
            },
        )
        .fetch()
        .await?;
    check(sum == 42, "rpc add_numbers(40, 2) = 42")?;
    let sad: NotesByMoodReturns = db
        .rpc(NotesByMood::NAME, NotesByMood { m: Some(Mood::Sad) })
        .fetch()
        .await?;
    check(
        sad.len() == 1 && sad[0].title == "rainy day",
        "rpc notes_by_mood('sad') returns Notes rows",
    )?;

    println!("typed example finished");
    Ok(())
}
