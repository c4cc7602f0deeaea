//! Type generation (`ferrobase gen types`, `GET /p/{ref}/admin/v1/types`):
//! TypeScript or Rust types for the tables, views, functions and enums of a
//! project's exposed schemas, read from the same catalog queries as the data
//! API's schema cache ([`crate::rest::schema::SchemaCache`]).
//!
//! - [`model`]: what is generated from: the schema cache plus the enums.
//! - [`typescript`]: the `Database` type in the shape `postgrest-js` and
//!   `supabase-js` take as their generic parameter.
//! - [`rust`]: one module per schema with serde structs (`Row`, `Insert`,
//!   `Update`), enums and RPC argument structs, for the SDK's query builder.
//!
//! Output is deterministic (sorted by name), so it can be checked in and
//! diffed.

pub mod model;
pub mod rust;
pub mod typescript;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::admin::ProjectAdmin;
use crate::error::{ApiError, ApiResult};
use crate::platform::{Platform, ProjectRef, projects};
use crate::state::AppState;

pub use model::Model;

/// Output language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// A `Database` type for postgrest-js / supabase-js.
    #[serde(alias = "ts")]
    #[value(alias = "ts")]
    Typescript,
    /// serde structs for the Rust SDK.
    #[serde(alias = "rs")]
    #[value(alias = "rs")]
    Rust,
}

/// Renders `model` in `lang`.
pub fn render(model: &Model, lang: Lang) -> String {
    match lang {
        Lang::Typescript => typescript::render(model),
        Lang::Rust => rust::render(model),
    }
}

/// What can go wrong generating types from the command line.
#[derive(Debug, thiserror::Error)]
pub enum TypesError {
    /// No such ready project.
    #[error("No ready project with ref {0:?}.")]
    NotFound(String),
    /// Control-plane problem (bad ref, decryption).
    #[error(transparent)]
    Project(#[from] projects::ProjectError),
    /// The project's database refused a catalog query.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The schema cache could not be loaded.
    #[error("could not read the schema: {0}")]
    Schema(String),
}

/// Types of project `r` (for `ferrobase gen types`): connects to its
/// database as the owner and reads the exposed schemas.
pub async fn for_project(
    platform: &Platform,
    r: &ProjectRef,
    lang: Lang,
) -> Result<String, TypesError> {
    let project = projects::load(platform, r.as_str())
        .await?
        .ok_or_else(|| TypesError::NotFound(r.as_str().to_owned()))?;
    let client = crate::db::connect(&project.db_config).await?;
    let model = Model::load(&client, &project.exposed_schemas).await?;
    Ok(render(&model, lang))
}

/// `?lang=` of `GET /admin/v1/types`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TypesQuery {
    /// `typescript` (default) or `rust`.
    pub lang: Option<Lang>,
}

/// Generated types of the project's exposed schemas, as text
/// (`application/typescript` or `text/x-rust`).
#[utoipa::path(get, path = "/p/{ref}/admin/v1/types", tag = "project",
    params(("ref" = String, Path, description = "Project ref"), TypesQuery),
    responses((status = 200, description = "Source code of the types", content_type = "text/plain"),
              (status = 400, description = "Unknown language")))]
pub async fn get_types(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    query: Result<Query<TypesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|_| {
        ApiError::bad_request("invalid_lang", "lang must be `typescript` or `rust`")
    })?;
    let lang = q.lang.unwrap_or(Lang::Typescript);
    let client = app.project_pool(&admin.tenant).get().await?;
    let model = Model::load(&**client, &admin.tenant.project.exposed_schemas)
        .await
        .map_err(|e| match e {
            TypesError::Db(e) => ApiError::from(e),
            other => ApiError::internal(&other),
        })?;
    let content_type = match lang {
        Lang::Typescript => "application/typescript; charset=utf-8",
        Lang::Rust => "text/x-rust; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], render(&model, lang)).into_response())
}
