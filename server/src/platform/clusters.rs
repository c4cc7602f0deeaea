//! Registered Postgres clusters and project placement.
//!
//! An operator registers the clusters project databases may live on
//! (`ferrobase cluster add NAME --database-url … [--max-projects N]`, or
//! `POST /platform/v1/clusters`). The superuser connection string is sealed
//! with the platform key and never returned; listings show the name, the
//! `host:port`, the limit and how many projects each cluster holds.
//!
//! A project created without `--database-url` or `--cluster` is placed by
//! [`choose`]: with no registered cluster, on the control plane's cluster (as
//! before clusters existed); otherwise on the registered cluster with the most
//! headroom (`max_projects − projects`; a cluster without a limit has
//! unbounded headroom, ties go to the one holding fewer projects, then by
//! name). When every registered cluster is full, creation is refused
//! (`no_cluster_capacity`) rather than silently overloading the control
//! plane's cluster. The limit is checked again under a row lock when the
//! project is claimed ([`claim_slot`]), so concurrent creations on two nodes
//! never overfill a cluster.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::config::Host;
use uuid::Uuid;

use super::Platform;
use crate::crypto::CryptoError;
use crate::error::ApiError;

/// How long connecting to a cluster may take when it is registered or used.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a new project's database goes.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    /// The registered cluster with the most headroom, or the control plane's
    /// cluster when none is registered.
    Auto,
    /// This superuser connection string (`--database-url`).
    Url(&'a str),
    /// The registered cluster with this name (`--cluster`).
    Named(&'a str),
}

impl<'a> Placement<'a> {
    /// From the optional `database_url` and `cluster` of a request; both at
    /// once is an error.
    pub fn from_options(
        database_url: Option<&'a str>,
        cluster: Option<&'a str>,
    ) -> Result<Self, ClusterError> {
        let url = database_url.map(str::trim).filter(|u| !u.is_empty());
        let cluster = cluster.map(str::trim).filter(|c| !c.is_empty());
        match (url, cluster) {
            (Some(_), Some(_)) => Err(ClusterError::Conflicting),
            (Some(u), None) => Ok(Placement::Url(u)),
            (None, Some(c)) => Ok(Placement::Named(c)),
            (None, None) => Ok(Placement::Auto),
        }
    }
}

/// A registered cluster chosen for a new project.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Its id (`projects.cluster_id`).
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its superuser connection string (decrypted; never log it).
    pub url: String,
}

/// Errors of cluster management and placement. Messages never contain a
/// connection string.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The name is not valid.
    #[error("{0}")]
    InvalidName(String),
    /// `max_projects` is out of range or missing.
    #[error("max_projects must be null (no limit) or between 1 and 1000000.")]
    InvalidMaxProjects,
    /// Not a Postgres connection string.
    #[error("The database URL is not a valid Postgres connection string.")]
    InvalidUrl,
    /// The cluster refused or did not answer.
    #[error("The database cluster could not be used: {0}")]
    Unreachable(String),
    /// The connection string's role is not a superuser.
    #[error(
        "The database URL's role is not a superuser of that cluster (projects need their own roles, databases and an event trigger)."
    )]
    NotSuperuser,
    /// Both `database_url` and `cluster` were given.
    #[error("Give either database_url or cluster, not both.")]
    Conflicting,
    /// A cluster with that name exists.
    #[error("A cluster named {0:?} is already registered.")]
    Exists(String),
    /// No cluster with that name.
    #[error("No registered cluster named {0:?}.")]
    NotFound(String),
    /// Projects still live on the cluster.
    #[error("Cluster {0:?} still holds {1} project(s); delete or move them first.")]
    InUse(String, i64),
    /// The named cluster has no room left.
    #[error("Cluster {0:?} already holds its max_projects.")]
    Full(String),
    /// Every registered cluster is full.
    #[error("Every registered cluster holds its max_projects.")]
    NoCapacity,
    /// A database statement failed.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No control-plane connection could be had.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A stored connection string could not be decrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let m = e.to_string();
        match e {
            ClusterError::InvalidName(_) => ApiError::bad_request("invalid_cluster_name", m)
                .with_hint("Use 3-40 lowercase letters, digits or '-', e.g. \"db2\"."),
            ClusterError::InvalidMaxProjects => ApiError::bad_request("invalid_settings", m),
            ClusterError::InvalidUrl => ApiError::bad_request("invalid_database_url", m)
                .with_hint(
                    "Give a superuser connection string of the cluster, e.g. \
                     postgres://postgres:…@db2.internal:5432/postgres.",
                ),
            ClusterError::Unreachable(_) => ApiError::bad_request("database_unreachable", m),
            ClusterError::NotSuperuser => ApiError::bad_request("cluster_not_superuser", m),
            ClusterError::Conflicting => ApiError::bad_request("invalid_placement", m),
            ClusterError::Exists(_) => ApiError::conflict("cluster_exists", m),
            ClusterError::NotFound(_) => ApiError::not_found("cluster_not_found", m),
            ClusterError::InUse(..) => ApiError::conflict("cluster_in_use", m),
            ClusterError::Full(_) => ApiError::conflict("cluster_full", m)
                .with_hint("Raise its max_projects or place the project on another cluster."),
            ClusterError::NoCapacity => ApiError::conflict("no_cluster_capacity", m).with_hint(
                "Register another cluster (ferrobase cluster add) or raise a cluster's max_projects.",
            ),
            ClusterError::Db(db) => db.into(),
            ClusterError::Pool(p) => p.into(),
            ClusterError::Crypto(c) => ApiError::internal(&c),
        }
    }
}

/// A registered cluster as listed to admins (no credentials).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Cluster {
    /// Its name.
    pub name: String,
    /// `host:port` (or the socket directory) only.
    pub address: String,
    /// Most projects placed on it automatically or by name (`null`: no limit).
    pub max_projects: Option<i32>,
    /// Projects living on it now.
    pub projects: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// Registration body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCluster {
    /// 3–40 lowercase letters, digits and `-`.
    pub name: String,
    /// Superuser connection string. Stored encrypted, never returned.
    pub database_url: String,
    /// Most projects to place on it (default: no limit).
    pub max_projects: Option<i64>,
}

/// Changes to a cluster.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterChanges {
    /// New limit of projects placed on it (`null`: no limit). Required.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub max_projects: Option<Option<i64>>,
}

/// A field that is present (`Some`), possibly `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// Validates a cluster name (the rules of project refs).
pub fn parse_name(s: &str) -> Result<String, ClusterError> {
    super::ProjectRef::parse(s)
        .map(|r| r.as_str().to_owned())
        .map_err(|_| {
            ClusterError::InvalidName(format!(
                "Cluster name {s:?} must be 3 to 40 lowercase letters, digits or '-', \
                 not starting or ending with '-'."
            ))
        })
}

fn conn_context(id: Uuid) -> String {
    format!("cluster:{id}:conn")
}

/// `host:port` of a connection string, without credentials.
fn address(cfg: &tokio_postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Parses a superuser connection string and connects to its `postgres`
/// database (or the one it names). Errors never repeat the string.
pub async fn connect_admin(
    url: &str,
) -> Result<(tokio_postgres::Config, tokio_postgres::Client), ClusterError> {
    let cfg: tokio_postgres::Config = url.parse().map_err(|_| ClusterError::InvalidUrl)?;
    if cfg.get_hosts().is_empty() {
        return Err(ClusterError::InvalidUrl);
    }
    let mut admin = cfg.clone();
    if admin.get_dbname().is_none() {
        admin.dbname("postgres");
    }
    admin.connect_timeout(CONNECT_TIMEOUT);
    let client = crate::db::connect(&admin).await.map_err(|e| {
        ClusterError::Unreachable(e.as_db_error().map_or_else(
            || "connection failed".to_owned(),
            |d| d.message().to_owned(),
        ))
    })?;
    Ok((cfg, client))
}

fn check_max(max_projects: Option<i64>) -> Result<Option<i32>, ClusterError> {
    max_projects
        .map(|m| {
            i32::try_from(m)
                .ok()
                .filter(|m| (1..=1_000_000).contains(m))
                .ok_or(ClusterError::InvalidMaxProjects)
        })
        .transpose()
}

/// Registers a cluster after checking that its connection string reaches a
/// superuser.
pub async fn add(
    platform: &Platform,
    new: &NewCluster,
    actor: &str,
) -> Result<Cluster, ClusterError> {
    let name = parse_name(&new.name)?;
    let max_projects = check_max(new.max_projects)?;
    let (cfg, client) = connect_admin(new.database_url.trim()).await?;
    let superuser: bool = client
        .query_one(
            "select rolsuper from pg_roles where rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    if !superuser {
        return Err(ClusterError::NotSuperuser);
    }
    let id = Uuid::new_v4();
    let sealed = platform
        .secrets()
        .encrypt_str(&conn_context(id), new.database_url.trim());
    let address = address(&cfg);
    let control = platform.control().get().await?;
    let row = control
        .query_opt(
            "insert into clusters (id, name, conn_enc, address, max_projects) \
             values ($1, $2, $3, $4, $5) on conflict (name) do nothing returning created_at",
            &[&id, &name, &sealed, &address, &max_projects],
        )
        .await?
        .ok_or_else(|| ClusterError::Exists(name.clone()))?;
    platform
        .audit(
            actor,
            "cluster.add",
            &name,
            serde_json::json!({ "address": address, "max_projects": max_projects }),
        )
        .await;
    Ok(Cluster {
        name,
        address,
        max_projects,
        projects: 0,
        created_at: row.get(0),
    })
}

/// Every registered cluster with its project count, by name.
pub async fn list(platform: &Platform) -> Result<Vec<Cluster>, ClusterError> {
    let control = platform.control().get().await?;
    let rows = control
        .query(
            "select c.name, c.address, c.max_projects, c.created_at, count(p.id) \
             from clusters c left join projects p on p.cluster_id = c.id \
             group by c.id order by c.name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Cluster {
            name: r.get(0),
            address: r.get(1),
            max_projects: r.get(2),
            created_at: r.get(3),
            projects: r.get(4),
        })
        .collect())
}

/// Changes a cluster's limit (`None`: no limit). Lowering it below the
/// projects it holds is allowed: it only stops new placements.
pub async fn set_max_projects(
    platform: &Platform,
    name: &str,
    max_projects: Option<i64>,
    actor: &str,
) -> Result<(), ClusterError> {
    let max_projects = check_max(max_projects)?;
    let control = platform.control().get().await?;
    let n = control
        .execute(
            "update clusters set max_projects = $2 where name = $1",
            &[&name, &max_projects],
        )
        .await?;
    if n == 0 {
        return Err(ClusterError::NotFound(name.to_owned()));
    }
    platform
        .audit(
            actor,
            "cluster.update",
            name,
            serde_json::json!({ "max_projects": max_projects }),
        )
        .await;
    Ok(())
}

/// Unregisters a cluster that holds no project.
pub async fn remove(platform: &Platform, name: &str, actor: &str) -> Result<(), ClusterError> {
    let mut control = platform.control().get().await?;
    let tx = control.transaction().await?;
    let row = tx
        .query_opt(
            "select id from clusters where name = $1 for update",
            &[&name],
        )
        .await?
        .ok_or_else(|| ClusterError::NotFound(name.to_owned()))?;
    let id: Uuid = row.get(0);
    let n: i64 = tx
        .query_one(
            "select count(*) from projects where cluster_id = $1",
            &[&id],
        )
        .await?
        .get(0);
    if n > 0 {
        return Err(ClusterError::InUse(name.to_owned(), n));
    }
    tx.execute("delete from clusters where id = $1", &[&id])
        .await?;
    tx.commit().await?;
    platform
        .audit(actor, "cluster.remove", name, serde_json::json!({}))
        .await;
    Ok(())
}

/// Headroom ordering: `None` (no limit) is unbounded.
fn headroom(max_projects: Option<i32>, projects: i64) -> Option<i64> {
    max_projects.map(|m| i64::from(m) - projects)
}

/// Picks, among `(name, max_projects, projects)`, the index of the cluster
/// with the most headroom; `None` when every one is full.
pub fn pick(candidates: &[(String, Option<i32>, i64)]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, (_, max, n))| headroom(*max, *n).is_none_or(|h| h > 0))
        .max_by(|(_, a), (_, b)| {
            // Most headroom (no limit first), then fewer projects, then name.
            let ha = headroom(a.1, a.2).unwrap_or(i64::MAX);
            let hb = headroom(b.1, b.2).unwrap_or(i64::MAX);
            ha.cmp(&hb).then(b.2.cmp(&a.2)).then_with(|| b.0.cmp(&a.0))
        })
        .map(|(i, _)| i)
}

/// The registered cluster a new project goes to under `placement`
/// (`Ok(None)`: the control plane's cluster; `Url` is handled by the caller).
pub async fn choose(
    platform: &Platform,
    placement: Placement<'_>,
) -> Result<Option<Chosen>, ClusterError> {
    if let Placement::Url(_) = placement {
        return Ok(None);
    }
    let control = platform.control().get().await?;
    let rows = control
        .query(
            "select c.id, c.name, c.conn_enc, c.max_projects, count(p.id) \
             from clusters c left join projects p on p.cluster_id = c.id group by c.id",
            &[],
        )
        .await?;
    let row = match placement {
        Placement::Url(_) => return Ok(None),
        Placement::Named(name) => {
            let row = rows
                .iter()
                .find(|r| r.get::<_, &str>(1) == name)
                .ok_or_else(|| ClusterError::NotFound(name.to_owned()))?;
            if headroom(row.get(3), row.get(4)).is_some_and(|h| h <= 0) {
                return Err(ClusterError::Full(name.to_owned()));
            }
            row
        }
        Placement::Auto if rows.is_empty() => return Ok(None),
        Placement::Auto => {
            let candidates: Vec<(String, Option<i32>, i64)> = rows
                .iter()
                .map(|r| (r.get(1), r.get(3), r.get(4)))
                .collect();
            let i = pick(&candidates).ok_or(ClusterError::NoCapacity)?;
            &rows[i]
        }
    };
    let id: Uuid = row.get(0);
    let url = platform
        .secrets()
        .decrypt_str(&conn_context(id), row.get(2))?;
    Ok(Some(Chosen {
        id,
        name: row.get(1),
        url,
    }))
}

/// Inside the transaction that claims a project row: locks the cluster's
/// row and checks its limit again, so concurrent creations (on any node)
/// cannot overfill it.
pub async fn claim_slot(
    tx: &tokio_postgres::Transaction<'_>,
    chosen: &Chosen,
) -> Result<(), ClusterError> {
    let row = tx
        .query_opt(
            "select max_projects from clusters where id = $1 for update",
            &[&chosen.id],
        )
        .await?
        .ok_or_else(|| ClusterError::NotFound(chosen.name.clone()))?;
    let max: Option<i32> = row.get(0);
    let n: i64 = tx
        .query_one(
            "select count(*) from projects where cluster_id = $1",
            &[&chosen.id],
        )
        .await?
        .get(0);
    if headroom(max, n).is_some_and(|h| h <= 0) {
        return Err(ClusterError::Full(chosen.name.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, max: Option<i32>, n: i64) -> (String, Option<i32>, i64) {
        (name.to_owned(), max, n)
    }

    #[test]
    fn most_headroom_wins() {
        assert_eq!(pick(&[c("a", Some(10), 9), c("b", Some(10), 2)]), Some(1));
        assert_eq!(pick(&[c("a", Some(100), 50), c("b", Some(10), 2)]), Some(0));
        // No limit beats any limit; among unlimited, fewer projects; then name.
        assert_eq!(pick(&[c("a", Some(1000), 0), c("b", None, 500)]), Some(1));
        assert_eq!(pick(&[c("a", None, 5), c("b", None, 3)]), Some(1));
        assert_eq!(pick(&[c("b", None, 3), c("a", None, 3)]), Some(1));
        // Full ones are skipped; all full: none.
        assert_eq!(pick(&[c("a", Some(2), 2), c("b", Some(3), 2)]), Some(1));
        assert_eq!(pick(&[c("a", Some(2), 2), c("b", Some(1), 5)]), None);
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn placement_options() {
        assert!(matches!(
            Placement::from_options(None, Some(" ")),
            Ok(Placement::Auto)
        ));
        assert!(matches!(
            Placement::from_options(Some("u"), Some("c")),
            Err(ClusterError::Conflicting)
        ));
        assert!(matches!(
            Placement::from_options(None, Some("db2")),
            Ok(Placement::Named("db2"))
        ));
    }

    #[test]
    fn address_has_no_credentials() {
        let cfg: tokio_postgres::Config = "postgres://u:secret@db2.internal:6543/postgres"
            .parse()
            .expect("parses");
        assert_eq!(address(&cfg), "db2.internal:6543");
        assert!(check_max(Some(0)).is_err());
        assert!(check_max(Some(-1)).is_err());
        assert!(check_max(Some(i64::MAX)).is_err());
        assert_eq!(check_max(Some(5)).ok(), Some(Some(5)));
    }
}
