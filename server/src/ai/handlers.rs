//! HTTP glue of `/p/{ref}/ai/v1`: authenticate, read the JSON body, hand the
//! call to [`super::gateway`], turn its answer into a response. Every error
//! is in OpenAI's shape ([`AiError`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::error::{AiError, AiResult};
use super::gateway::{Call, ChatAnswer};
use super::meter::{self, Subject};
use super::settings;
use crate::state::AppState;
use crate::tenant::{ProjectCtx, Tenant, authenticate};

/// Authenticates the caller and gathers what a call needs.
async fn prepare(app: &AppState, tenant: &Arc<Tenant>, headers: &HeaderMap) -> AiResult<Call> {
    let caller = authenticate(tenant, headers)?;
    let platform = &app.platform;
    let settings = settings::load_settings(platform, tenant.project.id).await?;
    if caller.role == "anon" && !settings.allow_anon {
        return Err(AiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "anon_not_allowed",
            "The AI gateway of this project needs a signed-in user's access token or the \
             service-role key; the anon key is refused (an admin can set `allow_anon`).",
        ));
    }
    let user_id = (caller.role == "authenticated")
        .then(|| caller.claims["sub"].as_str().map(str::to_owned))
        .flatten();
    let upstreams =
        settings::upstreams(platform, platform.config(), tenant.project.id, &settings).await?;
    let pool = app.project_pool(tenant);
    if app.ai.prune_due(tenant.project.id) {
        tokio::spawn(meter::prune(pool.clone(), app.ai.usage_retention_days));
    }
    Ok(Call {
        pool,
        who: Subject {
            user_id,
            role: caller.role,
        },
        settings,
        upstreams,
    })
}

/// Reads a JSON object body (413 when too large, 400 when not JSON or not an object).
fn json_object(body: Result<Bytes, BytesRejection>) -> AiResult<Map<String, Value>> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "payload_too_large",
                "The request body is larger than the server accepts.",
            )
        } else {
            AiError::invalid("invalid_body", "The request body could not be read.")
        }
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AiError::invalid(
            "invalid_body",
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(AiError::invalid(
            "invalid_json",
            format!("We could not parse the JSON body of your request: {e}."),
        )),
    }
}

/// `POST /p/{ref}/ai/v1/chat/completions`: OpenAI chat completions, streaming (SSE) or not.
#[utoipa::path(post, path = "/p/{ref}/ai/v1/chat/completions", tag = "ai",
    params(("ref" = String, Path, description = "Project ref")),
    request_body(content = Object, description = "OpenAI chat completion request (passed through)"),
    responses(
        (status = 200, description = "Chat completion, or `text/event-stream` of chunks when `stream: true`"),
        (status = 400, description = "Bad request (OpenAI error shape)"),
        (status = 401, description = "Missing or invalid token"),
        (status = 403, description = "Anon key refused"),
        (status = 404, description = "Model not allowed"),
        (status = 413, description = "Body too large"),
        (status = 429, description = "Quota or upstream rate limit (Retry-After)"),
        (status = 502, description = "Upstream failed"),
        (status = 503, description = "No AI provider configured"),
        (status = 504, description = "Upstream timed out")))]
pub async fn chat_completions(
    State(app): State<AppState>,
    ProjectCtx(tenant): ProjectCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let call = prepare(&app, &tenant, &headers).await?;
        let body = json_object(body)?;
        app.ai.chat(call, body).await
    }
    .await;
    match result {
        Ok(ChatAnswer::Json(v)) => Json(v).into_response(),
        Ok(ChatAnswer::Stream(s)) => {
            let mut resp = Response::new(Body::from_stream(s));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // Tell buffering proxies (nginx) to pass events on at once.
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /p/{ref}/ai/v1/embeddings`: OpenAI embeddings.
#[utoipa::path(post, path = "/p/{ref}/ai/v1/embeddings", tag = "ai",
    params(("ref" = String, Path, description = "Project ref")),
    request_body(content = Object, description = "OpenAI embeddings request (passed through)"),
    responses((status = 200, description = "Embeddings"), (status = 400, description = "Bad request"),
        (status = 401, description = "Missing or invalid token"), (status = 429, description = "Quota"),
        (status = 503, description = "No AI provider configured")))]
pub async fn embeddings(
    State(app): State<AppState>,
    ProjectCtx(tenant): ProjectCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let call = prepare(&app, &tenant, &headers).await?;
        app.ai.embeddings(call, json_object(body)?).await
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /p/{ref}/ai/v1/images/generations`: OpenAI image generation.
#[utoipa::path(post, path = "/p/{ref}/ai/v1/images/generations", tag = "ai",
    params(("ref" = String, Path, description = "Project ref")),
    request_body(content = Object, description = "OpenAI image generation request (passed through)"),
    responses((status = 200, description = "Images"), (status = 400, description = "Bad request"),
        (status = 401, description = "Missing or invalid token"), (status = 429, description = "Quota"),
        (status = 503, description = "No AI provider configured")))]
pub async fn images_generations(
    State(app): State<AppState>,
    ProjectCtx(tenant): ProjectCtx,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let call = prepare(&app, &tenant, &headers).await?;
        app.ai.images(call, json_object(body)?).await
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /p/{ref}/ai/v1/models`: models the project may use (allow-list or upstream list, plus aliases).
#[utoipa::path(get, path = "/p/{ref}/ai/v1/models", tag = "ai",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "OpenAI model list"),
        (status = 401, description = "Missing or invalid token"),
        (status = 503, description = "No AI provider configured")))]
pub async fn models(
    State(app): State<AppState>,
    ProjectCtx(tenant): ProjectCtx,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let call = prepare(&app, &tenant, &headers).await?;
        app.ai.models(call).await
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Anything else under `/ai/v1`: 404 in OpenAI's shape.
pub async fn not_found(uri: axum::http::Uri) -> AiError {
    AiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "unknown_url",
        format!("Unrecognized request URL ({}).", uri.path()),
    )
}
