//! A streaming AI chat through the project's OpenAI-compatible gateway.
//!
//! ```sh
//! FERROBASE_URL=… FERROBASE_ANON_KEY=… FERROBASE_SERVICE_ROLE_KEY=… \
//! AI_BASE_URL=https://api.openai.com/v1 AI_API_KEY=sk-… AI_MODEL=gpt-4o-mini \
//!   cargo run --manifest-path examples/Cargo.toml -p ai-chat -- "Why is the sky blue?"
//! ```
//!
//! Set-up (the service-role key): the upstream provider and a model alias.
//! Then a signed-in user streams an answer; the anon key alone is refused.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use ferrobase::{AdminUserAttributes, Client, SignUp};
use futures_util::StreamExt as _;
use serde_json::json;

/// The provider name this example registers (and updates on later runs).
const PROVIDER: &str = "example-upstream";

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn setting(name: &str) -> AnyResult<String> {
    std::env::var(name).map_err(|_| format!("set {name} (see examples/ai-chat/README.md)").into())
}

fn check(ok: bool, what: &str) -> AnyResult<()> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}").into())
    }
}

/// Registers (or updates) the upstream and points the alias `assistant` at
/// `model`.
async fn configure(service: &Client, base_url: &str, api_key: &str, model: &str) -> AnyResult<()> {
    let admin = service.ai().admin();
    let exists = admin
        .providers()
        .await?
        .iter()
        .any(|p| p["name"] == PROVIDER);
    if exists {
        admin
            .update_provider(PROVIDER, json!({"base_url": base_url, "api_key": api_key}))
            .await?;
    } else {
        let created = admin
            .create_provider(json!({"name": PROVIDER, "base_url": base_url, "api_key": api_key}))
            .await?;
        // The key is stored encrypted and never shown again.
        check(
            created.get("api_key").is_none() && created["has_api_key"] == true,
            "the provider's key is stored, not echoed",
        )?;
    }
    admin
        .update_settings(json!({"aliases": {"assistant": model}}))
        .await?;
    println!("provider {PROVIDER} ready; alias assistant -> {model}");
    Ok(())
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let url = setting("FERROBASE_URL")?;
    let anon = Client::new(&url, setting("FERROBASE_ANON_KEY")?)?;
    let service = Client::new(&url, setting("FERROBASE_SERVICE_ROLE_KEY")?)?;
    let base_url = setting("AI_BASE_URL")?;
    let api_key = setting("AI_API_KEY")?;
    let model = std::env::var("AI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Say hello in two words.".into());

    configure(&service, &base_url, &api_key, &model).await?;

    // A signed-in user (confirmed with the admin API when the project
    // requires email confirmation).
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let email = format!("ai-{run}@example.com");
    let password = "correct horse battery staple";
    let auth = anon.auth();
    if let SignUp::User(user) = auth.sign_up(&email, password, None).await? {
        let confirm = AdminUserAttributes {
            email_confirm: Some(true),
            ..AdminUserAttributes::default()
        };
        service
            .auth()
            .admin()
            .update_user_by_id(&user.id, &confirm)
            .await?;
        auth.sign_in_with_password(&email, password).await?;
    }
    let user = auth.client().await?;
    println!("signed in as {email}");

    let request = json!({
        "model": "assistant",
        "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": question},
        ],
        "stream_options": {"include_usage": true},
    });
    println!("you: {question}");
    print!("assistant: ");
    std::io::stdout().flush()?;
    let mut stream = user.ai().chat_stream(request.clone()).await?;
    let (mut answer, mut chunks, mut usage) = (String::new(), 0, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str() {
            print!("{delta}");
            std::io::stdout().flush()?;
            answer.push_str(delta);
            chunks += 1;
        }
        if chunk["usage"].is_object() {
            usage = Some(chunk["usage"].clone());
        }
    }
    println!();
    println!("streamed {chunks} chunks, {} characters", answer.len());
    check(!answer.is_empty(), "the answer streamed in")?;
    if let Some(u) = usage {
        println!(
            "usage: {} prompt + {} completion tokens",
            u["prompt_tokens"], u["completion_tokens"]
        );
    }

    // Without a user, the gateway refuses: the anon key ships in apps.
    let refused = anon.ai().chat_stream(request).await;
    check(
        matches!(&refused, Err(e) if e.code() == Some("anon_not_allowed")),
        "the anon key alone is refused (anon_not_allowed)",
    )?;

    println!("ai-chat example finished");
    Ok(())
}
