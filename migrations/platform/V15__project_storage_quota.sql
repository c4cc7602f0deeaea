-- Per-project storage quota: the bytes of objects the project may store
-- across all its buckets. NULL means the server-wide
-- FERROBASE_STORAGE_MAX_PROJECT_BYTES applies; 0 means no limit.
alter table projects add column storage_max_bytes bigint
  check (storage_max_bytes is null or storage_max_bytes >= 0);
