//! The Rust SDK's `client.ai()` against a real server and an OpenAI-contract upstream.

use futures_util::StreamExt as _;
use serde_json::json;

use super::{Ai, Mode, Stub};

#[tokio::test]
async fn sdk_chat_stream_embeddings_images_models_and_admin() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-sdk", None).await;
    let service = ferrobase::Client::new(&ai.p.url, &ai.p.service).unwrap();
    let admin = service.ai().admin();
    let created = admin
        .create_provider(
            json!({"name": "stub", "base_url": up.url, "api_key": "sk-sdk-000000000000"}),
        )
        .await
        .unwrap();
    assert_eq!(created["has_api_key"], true);
    assert!(created.get("api_key").is_none());
    admin
        .update_settings(json!({"aliases": {"fast": "stub-model"}}))
        .await
        .unwrap();
    assert_eq!(
        admin.settings().await.unwrap()["aliases"]["fast"],
        "stub-model"
    );
    assert_eq!(admin.providers().await.unwrap().len(), 1);

    let (token, user_id) = ai.user("sdk@example.com").await;
    let client = ferrobase::Client::new(&ai.p.url, &ai.p.anon)
        .unwrap()
        .with_access_token(token);
    let ai_client = client.ai();
    let hello = json!({"model": "fast", "messages": [{"role": "user", "content": "hello"}]});
    let answer = ai_client.chat(hello.clone()).await.unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "Hello from stub"
    );
    let mut stream = ai_client.chat_stream(hello.clone()).await.unwrap();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        text.push_str(
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or(""),
        );
    }
    assert_eq!(text, "Hello world");
    let e = ai_client
        .embeddings(json!({"model": "stub-embed", "input": "x"}))
        .await
        .unwrap();
    assert_eq!(e["data"][0]["embedding"], json!([0.25, -0.5, 1.0]));
    let img = ai_client
        .images(json!({"model": "stub-image", "prompt": "fox"}))
        .await
        .unwrap();
    assert!(img["data"][0]["b64_json"].is_string());
    let models = ai_client.models().await.unwrap();
    assert!(models.contains(&"fast".to_owned()), "{models:?}");

    // Errors carry OpenAI's code.
    admin
        .update_settings(json!({"models": ["stub-model"]}))
        .await
        .unwrap();
    let err = ai_client
        .chat(json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), Some("model_not_found"))
    );
    let anon = ferrobase::Client::new(&ai.p.url, &ai.p.anon).unwrap();
    let err = anon.ai().chat_stream(hello).await.err().unwrap();
    assert_eq!(err.code(), Some("anon_not_allowed"));

    ai.wait_usage(4).await;
    let usage = admin
        .usage(&ferrobase::UsageQuery {
            group_by: Some("user".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        usage.totals.requests, 4,
        "chat, stream, embeddings, images; refusals cost nothing"
    );
    assert_eq!(usage.groups[0].key.as_deref(), Some(user_id.as_str()));
    admin.delete_provider("stub").await.unwrap();
    assert!(admin.providers().await.unwrap().is_empty());
}
