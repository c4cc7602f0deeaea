//! The control plane: projects, platform admins and their tokens, and the
//! start-up sequence that prepares them.
//!
//! [`Platform`] is the handle everything else uses; it is built by
//! [`Platform::open`] (used by the server and by every CLI command) and holds
//! the control-plane pool, the secret box and, in the embedded default, the
//! local Postgres cluster.
//!
//! - [`bootstrap`]: open the control plane, run migrations, first admin, default project.
//! - [`projects`]: create, list, get and delete projects (their databases, roles and keys).
//! - [`admins`]: platform admin accounts and their bearer tokens.
//! - [`clusters`]: registered Postgres clusters and where new projects go.
//! - [`handlers`]: the `/platform/v1` HTTP API.
//! - [`limits`]: rate limit and lockout of admin login.
//! - [`cors`]: the per-project list of allowed browser origins.

pub mod admins;
pub mod bootstrap;
pub mod clusters;
pub mod cors;
pub mod handlers;
pub mod limits;
pub mod projects;

use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::config::Config;
use crate::crypto::{SecretBox, SigningKey};
use crate::db::embedded::EmbeddedPostgres;

pub use bootstrap::{BootstrapReport, PlatformError};
pub use handlers::PlatformAdmin;
pub use projects::{Project, ProjectDetails, ProjectRef};

/// Handle on the control plane. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    control: Pool,
    secrets: SecretBox,
    platform_key: SigningKey,
    /// Where new project databases are created (host/port of the control plane's cluster).
    cluster: tokio_postgres::Config,
    embedded: Option<EmbeddedPostgres>,
}

impl Platform {
    /// The configuration it was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The control-plane connection pool.
    pub fn control(&self) -> &Pool {
        &self.inner.control
    }

    /// Connection settings of the control-plane database, for dedicated
    /// connections outside the pool (the project change listener).
    pub fn control_config(&self) -> tokio_postgres::Config {
        let mut cfg = self.inner.cluster.clone();
        cfg.connect_timeout(std::time::Duration::from_secs(5));
        cfg
    }

    /// Encrypts and decrypts stored secrets.
    pub fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    /// The key signing platform admin tokens.
    pub fn platform_key(&self) -> &SigningKey {
        &self.inner.platform_key
    }

    /// The embedded cluster, when the platform manages one.
    pub fn embedded(&self) -> Option<&EmbeddedPostgres> {
        self.inner.embedded.as_ref()
    }

    /// Closes the control-plane pool and stops the embedded cluster if this
    /// process started it.
    pub async fn shutdown(&self) {
        self.inner.control.close();
        if let Some(pg) = &self.inner.embedded {
            pg.stop_if_owned().await;
        }
    }

    /// Writes an audit-log entry; failures are logged, never fatal.
    pub async fn audit(&self, actor: &str, action: &str, target: &str, details: serde_json::Value) {
        let result = async {
            let client = self.control().get().await.map_err(|e| e.to_string())?;
            client
                .execute(
                    "insert into audit_log (actor, action, target, details) values ($1, $2, $3, $4)",
                    &[&actor, &action, &target, &details],
                )
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, action, "could not write the audit log");
        }
    }
}
