//! The OpenAPI document (`/openapi.json`), generated from the handlers'
//! annotations, and a readable API reference page (`/docs`) rendered from it
//! on the server, so it works offline.

use axum::Json;
use axum::response::Html;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::admin::schema::handlers as schema;
use crate::app::{health, metrics};
use crate::error::ApiError;
use crate::functions::handlers as fh;
use crate::platform::{admins, handlers, projects};
use crate::realtime as rt;
use crate::storage as st;
use crate::{auth, tenant};

/// The platform's API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferrobase",
        description = "Multi-tenant backend-as-a-service: platform administration and per-project APIs. \
                       Project APIs live under `/p/{ref}` (or `{ref}.{FERROBASE_BASE_DOMAIN}`).",
    ),
    paths(
        health::root, health::live, health::ready, metrics::render,
        handlers::login, handlers::list_projects, handlers::create_project,
        handlers::get_project, handlers::update_project, handlers::delete_project, handlers::rotate_keys,
        handlers::list_clusters, handlers::add_cluster, handlers::remove_cluster,
        handlers::update_cluster,
        crate::logs::handlers::requests, crate::logs::handlers::audit_log,
        crate::backup::handlers::list_schedules, crate::backup::handlers::create_schedule,
        crate::backup::handlers::delete_schedule, crate::backup::handlers::list_runs,
        tenant::jwks,
        auth::signup::signup, auth::token::token, auth::account::get_user,
        auth::account::update_user, auth::account::logout, auth::account::settings,
        auth::links::recover, auth::links::otp, auth::links::magiclink,
        auth::verify::verify_get, auth::verify::verify_post, auth::links::resend,
        auth::admin::list_users, auth::admin::create_user, auth::admin::get_user,
        auth::admin::update_user, auth::admin::delete_user, auth::admin::invite,
        auth::admin::generate_link, auth::admin::get_config, auth::admin::put_config,
        auth::admin::list_mail, auth::admin::put_template, auth::admin::get_template,
        auth::admin::put_smtp, auth::admin::list_sessions, auth::admin::revoke_sessions, auth::admin::revoke_session,
        auth::account::unlink_identity,
        auth::mfa::enroll, auth::mfa::challenge, auth::mfa::verify, auth::mfa::unenroll,
        auth::oauth::authorize, auth::oauth::callback_get, auth::oauth::callback_post,
        auth::oauth::put_provider, auth::oauth::list_providers, auth::oauth::delete_provider,
        crate::admin::sql::run_sql, schema::list_schemas, schema::list_tables, schema::get_table, schema::create_table, schema::alter_table, schema::drop_table, schema::set_rls, schema::create_index, schema::drop_index, schema::create_policy, schema::drop_policy, schema::list_views, schema::list_functions, schema::list_triggers, crate::typegen::get_types,
        crate::admin::storage_usage::storage_usage,
        st::buckets::list, st::buckets::get, st::buckets::create, st::buckets::update,
        st::buckets::empty, st::buckets::delete,
        st::objects::upload, st::objects::download, st::objects::download_public, st::objects::info,
        st::objects::list, st::objects::move_object, st::objects::copy_object,
        st::objects::delete_many, st::objects::delete_one,
        st::signed::sign, st::signed::sign_many, st::signed::download_signed,
        st::signed::sign_upload, st::signed::upload_signed,
        st::tus::create, st::tus::patch, st::tus::head, st::tus::terminate,
        crate::webhooks::handlers::create_endpoint, crate::webhooks::handlers::list_endpoints,
        crate::webhooks::handlers::get_endpoint, crate::webhooks::handlers::update_endpoint,
        crate::webhooks::handlers::delete_endpoint, crate::webhooks::handlers::rotate_secret,
        crate::webhooks::handlers::list_deliveries, crate::webhooks::handlers::get_delivery,
        crate::webhooks::handlers::replay_delivery, crate::webhooks::handlers::replay_failed,
        st::transform::render_authenticated, st::transform::render_public, st::transform::render_signed,
        crate::ai::handlers::chat_completions, crate::ai::handlers::embeddings,
        crate::ai::handlers::images_generations, crate::ai::handlers::models,
        crate::ai::admin::get_settings, crate::ai::admin::put_settings, crate::ai::admin::list_providers,
        crate::ai::admin::create_provider, crate::ai::admin::update_provider,
        crate::ai::admin::delete_provider, crate::ai::admin::usage,
        rt::http::publish, rt::http::list_channels, rt::http::create_channel, rt::http::get_channel,
        rt::http::update_channel, rt::http::delete_channel, rt::http::list_changes, rt::http::put_change,
        rt::http::delete_change,
        fh::list_functions,
        fh::create_function,
        fh::get_function,
        fh::update_function,
        fh::delete_function,
        fh::get_version,
        fh::activate_version,
        fh::function_logs,
        fh::function_invocations,
        fh::function_invocation_counts,
        fh::list_secrets,
        fh::set_secrets,
        fh::delete_secret,
        fh::list_schedules,
        fh::create_schedule,
        fh::update_schedule,
        fh::delete_schedule,
        fh::schedule_runs, crate::functions::invoke::invoke_root,
    ),
    components(schemas(
        ApiError, crate::backup::schedule::ScheduleRequest, crate::backup::schedule::ScheduleInfo,
        crate::backup::schedule::RunInfo, crate::logs::RequestEntry, crate::logs::audit::AuditEntry, admins::LoginResponse, admins::AdminInfo, handlers::LoginRequest,
        handlers::CreateProject, projects::ProjectChanges, projects::Project, auth::settings::AuthSettings, projects::ProjectDetails, projects::RotatedKeys, health::Health, crate::typegen::Lang,
        crate::platform::clusters::Cluster, crate::platform::clusters::NewCluster,
        crate::platform::clusters::ClusterChanges,
        st::buckets::Bucket, st::buckets::CreateBucket, st::buckets::UpdateBucket,
        st::buckets::SizeLimit, st::buckets::Created, st::Message, st::objects::Uploaded, st::quota::Usage,
        st::objects::ListBody, st::objects::SortBy, st::objects::MoveBody, st::objects::DeleteMany,
        crate::webhooks::handlers::CreateEndpoint, crate::webhooks::handlers::UpdateEndpoint,
        crate::webhooks::handlers::CreatedEndpoint, crate::webhooks::handlers::RotateSecret,
        crate::webhooks::handlers::RotatedSecret, crate::webhooks::handlers::ReplayFailed,
        crate::webhooks::handlers::Replayed, crate::webhooks::store::Endpoint,
        crate::webhooks::store::Delivery, crate::webhooks::store::Attempt,
        st::signed::SignBody, st::signed::SignManyBody, st::transform::Transform,
        crate::ai::settings::AiSettings, crate::ai::settings::ProviderView, crate::ai::settings::ProviderInput,
        rt::PublishInput, rt::store::ChannelDef, rt::store::ChannelInput, rt::store::ChangeTable,
        rt::http::ChangeOps,
        fh::DeployRequest, fh::SetSecrets, fh::SecretPair, crate::functions::bundle::Source,
        crate::functions::logs::LogEntry, crate::functions::logs::InvocationEntry, crate::functions::logs::InvocationCount, crate::functions::Settings,
        crate::functions::schedule::ScheduleRequest, crate::functions::schedule::ScheduleInfo,
        crate::functions::schedule::RunInfo, crate::functions::store::FunctionInfo,
        crate::functions::store::VersionInfo, crate::functions::store::SettingsPatch, crate::functions::store::SecretInfo,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "platform", description = "Projects and platform admins (`/platform/v1`)"),
        (name = "project", description = "Per-project endpoints (`/p/{ref}/…`)"),
        (name = "storage", description = "Supabase Storage-compatible buckets and objects (`/p/{ref}/storage/v1`)"),
        (name = "operations", description = "Health and metrics"),
        (name = "auth", description = "GoTrue-compatible auth (`/p/{ref}/auth/v1`)"),
        (name = "webhooks", description = "Webhook endpoints, deliveries and replay (`/p/{ref}/admin/v1/webhooks`)"),
        (name = "auth-admin", description = "Auth administration with the service-role key"),
        (name = "ai", description = "OpenAI-compatible AI gateway (`/p/{ref}/ai/v1`); errors in OpenAI's shape"),
        (name = "ai-admin", description = "AI gateway settings, providers and usage (service-role key)"),
        (name = "functions", description = "Edge functions: invoke (`/p/{ref}/functions/v1/{slug}`), deploy, versions, secrets, logs, schedules (`/p/{ref}/admin/v1/functions`)"),
        (name = "realtime", description = "Realtime hub: HTTP publish and channel/change administration (Socket.IO at `/p/{ref}/realtime/v1/socket.io/`)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "admin_token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some("Token from POST /platform/v1/auth/login"))
                        .build(),
                ),
            );
        }
    }
}

/// `GET /openapi.json`.
pub async fn spec() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The OpenAPI document as pretty JSON (`ferrobase openapi`).
pub fn document_json() -> serde_json::Result<String> {
    serde_json::to_string_pretty(&ApiDoc::openapi())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /docs`: the API reference as one self-contained HTML page.
pub async fn page() -> Html<String> {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let mut body = String::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            let Some(ops) = ops.as_object() else { continue };
            for (method, op) in ops {
                let summary = op["summary"].as_str().unwrap_or("");
                let description = op["description"].as_str().unwrap_or("");
                let responses = op["responses"]
                    .as_object()
                    .map(|r| r.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                body.push_str(&format!(
                    "<section><h3><span class=m>{}</span> <code>{}</code></h3><p>{}</p><p>{}</p><p class=r>Responses: {}</p></section>\n",
                    escape(&method.to_uppercase()),
                    escape(path),
                    escape(summary),
                    escape(description),
                    escape(&responses)
                ));
            }
        }
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Ferrobase API reference</title>\
         <style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         section{{border-top:1px solid #ddd;padding:.5rem 0}}.m{{background:#234;color:#fff;padding:0 .4rem;border-radius:3px;font-size:.8rem}}\
         .r{{color:#666;font-size:.85rem}}code{{font-size:1rem}}</style></head><body>\
         <h1>Ferrobase API reference</h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. \
         Errors always have the shape <code>{{\"code\", \"message\", \"details\"?, \"hint\"?}}</code>.</p>{body}</body></html>",
        escape(doc["info"]["description"].as_str().unwrap_or(""))
    ))
}
