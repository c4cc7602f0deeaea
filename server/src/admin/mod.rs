//! Project administration under `/p/{ref}/admin/v1`: schema management
//! ([`schema`]), guarded admin SQL ([`sql`], checked by [`guard`]) and the
//! storage usage report ([`storage_usage`]).
//!
//! Every route takes [`ProjectAdmin`]: the project's service-role key, or a
//! platform admin token. Everything runs as the project's owner role.

pub mod guard;
pub mod schema;
pub mod sql;
pub mod storage_usage;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};

use crate::error::ApiError;
use crate::platform::admins;
use crate::state::AppState;
use crate::tenant::{ProjectCtx, Tenant, authenticate};

/// Routes of the admin API, relative to a project.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/sql", post(sql::run_sql))
        .route("/admin/v1/schemas", get(schema::handlers::list_schemas))
        .route(
            "/admin/v1/tables",
            get(schema::handlers::list_tables).post(schema::handlers::create_table),
        )
        .route(
            "/admin/v1/tables/{table}",
            get(schema::handlers::get_table)
                .patch(schema::handlers::alter_table)
                .delete(schema::handlers::drop_table),
        )
        .route(
            "/admin/v1/tables/{table}/rls",
            put(schema::handlers::set_rls),
        )
        .route(
            "/admin/v1/tables/{table}/indexes",
            post(schema::handlers::create_index),
        )
        .route(
            "/admin/v1/tables/{table}/policies",
            post(schema::handlers::create_policy),
        )
        .route(
            "/admin/v1/tables/{table}/policies/{policy}",
            delete(schema::handlers::drop_policy),
        )
        .route(
            "/admin/v1/indexes/{index}",
            delete(schema::handlers::drop_index),
        )
        .route("/admin/v1/views", get(schema::handlers::list_views))
        .route(
            "/admin/v1/sql-functions",
            get(schema::handlers::list_functions),
        )
        .route("/admin/v1/triggers", get(schema::handlers::list_triggers))
        .route("/admin/v1/types", get(crate::typegen::get_types))
        .route("/admin/v1/storage/usage", get(storage_usage::storage_usage))
}

/// A caller allowed to administer the project: its service-role key, or a
/// platform admin token. Anything else is 401 (no or bad credentials) or 403
/// (a valid key of a weaker role).
#[derive(Debug, Clone)]
pub struct ProjectAdmin {
    /// The project.
    pub tenant: Arc<Tenant>,
    /// Who, for the audit log: `admin:<email>` or `service_role`.
    pub actor: String,
}

impl FromRequestParts<AppState> for ProjectAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ProjectCtx(tenant) = ProjectCtx::from_request_parts(parts, app).await?;
        let bearer = crate::crypto::bearer_token(&parts.headers).ok().flatten();
        if let Some(token) = bearer
            && let Ok(claims) = admins::verify_token(&app.platform, token)
        {
            return Ok(ProjectAdmin {
                tenant,
                actor: format!("admin:{}", claims.email),
            });
        }
        let caller = authenticate(&tenant, &parts.headers)?;
        if caller.role != "service_role" {
            return Err(ApiError::forbidden(
                "admin_required",
                format!(
                    "The admin API needs the project's service-role key or a platform admin token; \
                     this request was made as {:?}.",
                    caller.role
                ),
            ));
        }
        Ok(ProjectAdmin {
            tenant,
            actor: "service_role".to_owned(),
        })
    }
}
