//! The per-project storage quota: the bytes of objects a project may store
//! across all its buckets (`FERROBASE_STORAGE_MAX_PROJECT_BYTES`, or the
//! project's own `storage_max_bytes`; 0 = none).
//!
//! The project database keeps the count (`storage.usage`, maintained by
//! triggers on `storage.objects`, migration V11) and enforces it when a row
//! write adds bytes: [`arm`] tells that transaction the quota, and the
//! trigger refuses (SQLSTATE `FBQ01`, answered 413 `QuotaExceeded`) a write
//! that leaves the project above it. Because the trigger's update of the
//! single usage row locks it until commit, concurrent uploads cannot both
//! squeeze under the limit.
//!
//! Before any byte is written, [`remaining`] gives what is left, so an
//! upload that cannot fit is refused at once or cut off as soon as it goes
//! past it, instead of filling the disk first. A resumable upload counts
//! its declared length, with the other unfinished ones, when it is created
//! ([`reserve_resumable`]), so unfinished uploads cannot pile up parts past
//! the quota; its completion is checked like any upload.

use serde::Serialize;

use super::{Ctx, StorageError, StorageResult};

/// SQLSTATE raised by the usage trigger when a write goes over the quota.
pub(crate) const QUOTA_SQLSTATE: &str = "FBQ01";

/// Transaction-local setting the usage trigger reads the quota from.
const QUOTA_SETTING: &str = "ferrobase.storage_quota_bytes";

impl Ctx {
    /// The project's quota in bytes, or `None` when it has none.
    pub(crate) fn quota_bytes(&self) -> Option<u64> {
        let default = self.store().map_or(0, |s| s.max_project_bytes);
        quota_of(self.tenant.project.storage_max_bytes, default)
    }
}

/// The quota that applies: the project's own setting, else the server's
/// default; 0 means none.
pub fn quota_of(project: Option<i64>, default: u64) -> Option<u64> {
    let bytes = project.map_or(default, |n| u64::try_from(n).unwrap_or(0));
    (bytes > 0).then_some(bytes)
}

/// Bytes the project stores now, or `None` when its database does not
/// count them yet (migration V11 still to be applied: the quota then is
/// not enforced until it is).
async fn used(client: &tokio_postgres::Client) -> StorageResult<Option<u64>> {
    match client
        .query_one("select bytes from storage.usage", &[])
        .await
    {
        Ok(row) => Ok(Some(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Bytes declared by the unfinished resumable uploads that have not expired.
async fn pending_bytes(client: &tokio_postgres::Client) -> StorageResult<u64> {
    let row = client
        .query_one(
            "select coalesce(sum(upload_length), 0)::bigint from storage.resumable_uploads \
             where expires_at > now()",
            &[],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// A project's storage against its quota (`GET /admin/v1/storage/usage`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Bytes of the objects stored.
    pub used_bytes: u64,
    /// Bytes reserved by unfinished resumable uploads.
    pub reserved_bytes: u64,
    /// The quota in bytes; `null`: none.
    pub quota_bytes: Option<u64>,
}

/// What project database `client` stores and reserves, against `quota`.
pub async fn usage(client: &tokio_postgres::Client, quota: Option<u64>) -> StorageResult<Usage> {
    let reserved = pending_bytes(client).await?;
    let used = match used(client).await? {
        Some(used) => used,
        // Not counted yet (migration V11 pending): sum the rows.
        None => {
            let row = client
                .query_one(
                    "select coalesce(sum((metadata->>'size')::bigint), 0)::bigint from storage.objects",
                    &[],
                )
                .await?;
            u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)
        }
    };
    Ok(Usage {
        used_bytes: used,
        reserved_bytes: reserved,
        quota_bytes: quota,
    })
}

/// The error of a write that does not fit in `quota`.
pub(crate) fn exceeded(quota: u64) -> StorageError {
    StorageError::QuotaExceeded(format!(
        "The project's storage quota of {quota} bytes is used up: delete objects, \
         or ask the platform admin to raise the quota."
    ))
}

/// Bytes the project may still add under `quota` (`None`: no limit known);
/// an error when nothing is left.
pub(crate) async fn remaining(
    client: &tokio_postgres::Client,
    quota: Option<u64>,
) -> StorageResult<Option<u64>> {
    let Some(quota) = quota else { return Ok(None) };
    let Some(used) = used(client).await? else {
        return Ok(None);
    };
    match quota.checked_sub(used) {
        Some(left) if left > 0 => Ok(Some(left)),
        _ => Err(exceeded(quota)),
    }
}

/// Tells the transaction's usage trigger to refuse a write that leaves the
/// project above `quota`.
pub(crate) async fn arm(
    tx: &tokio_postgres::Transaction<'_>,
    quota: Option<u64>,
) -> StorageResult<()> {
    if let Some(quota) = quota {
        tx.execute(
            "select set_config($1, $2, true)",
            &[&QUOTA_SETTING, &quota.to_string()],
        )
        .await?;
    }
    Ok(())
}

/// Refuses a resumable upload of `length` bytes when the objects stored plus
/// the unfinished resumable uploads plus it would exceed `quota`. Runs in the
/// owner transaction that records the upload, after locking the usage row,
/// so concurrent creations are counted one after the other.
pub(crate) async fn reserve_resumable(
    tx: &tokio_postgres::Transaction<'_>,
    quota: Option<u64>,
    length: u64,
) -> StorageResult<()> {
    let Some(quota) = quota else { return Ok(()) };
    let used = match tx
        .query_one("select bytes from storage.usage for update", &[])
        .await
    {
        Ok(row) => row.get::<_, i64>(0),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let pending = pending_bytes(tx.client()).await?;
    let total = u64::try_from(used)
        .unwrap_or(0)
        .saturating_add(pending)
        .saturating_add(length);
    if total > quota {
        return Err(exceeded(quota));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quota_of;

    #[test]
    fn project_setting_overrides_the_default_and_zero_means_none() {
        assert_eq!(quota_of(None, 0), None);
        assert_eq!(quota_of(None, 100), Some(100));
        assert_eq!(quota_of(Some(5), 100), Some(5));
        assert_eq!(quota_of(Some(0), 100), None);
        assert_eq!(quota_of(Some(-1), 100), None);
    }
}
