-- Scheduled backups (`/platform/v1/backups`). A schedule backs up one
-- project (`project_ref`) or every ready project (null) to a directory or an
-- s3:// prefix, each run into its own `{target}/{run stamp}/`, and prunes
-- its older successful runs beyond `keep_last` / `keep_days`.
-- No `project_id` column on purpose: a project's backup copies the
-- control-plane rows of every table that has one.
create table backup_schedules (
  id           uuid primary key default gen_random_uuid(),
  name         text not null unique check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  cron         text not null,
  target       text not null,
  project_ref  text,
  keep_last    integer check (keep_last between 1 and 10000),
  keep_days    integer check (keep_days between 1 and 36500),
  enabled      boolean not null default true,
  next_run_at  timestamptz not null,
  created_by   text not null,
  created_at   timestamptz not null default now()
);
create index on backup_schedules (next_run_at) where enabled;

-- One row per tick: the unique (schedule_id, tick_at) is the lease that makes
-- a tick run once across all nodes (see server/src/db/cron.rs).
create table backup_runs (
  id           uuid primary key default gen_random_uuid(),
  schedule_id  uuid not null references backup_schedules (id) on delete cascade,
  tick_at      timestamptz not null,
  node         text not null,
  status       text not null default 'running'
               check (status in ('running', 'succeeded', 'failed', 'pruned')),
  location     text,
  projects     integer,
  bytes        bigint,
  error        text,
  started_at   timestamptz not null default now(),
  finished_at  timestamptz,
  unique (schedule_id, tick_at)
);
create index on backup_runs (started_at desc);
