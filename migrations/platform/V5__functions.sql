-- Edge functions (server/src/functions): code and versions, per-project
-- secrets, invocation records and logs, cron schedules with their runs.
-- Everything belongs to a project and goes with it (on delete cascade).

create table functions (
  id             uuid primary key default gen_random_uuid(),
  project_id     uuid not null references projects (id) on delete cascade,
  slug           text not null check (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  -- The version invocations run (null only between create and first version).
  active_version integer,
  verify_jwt     boolean not null default true,
  timeout_ms     integer not null default 10000 check (timeout_ms between 100 and 900000),
  memory_mb      integer not null default 256 check (memory_mb between 16 and 4096),
  concurrency    integer not null default 64 check (concurrency between 1 and 10000),
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  unique (project_id, slug)
);

-- Every deploy is an immutable version: files as {path: text}, the
-- entrypoint among them, and a SHA-256 of the canonical bundle.
create table function_versions (
  function_id uuid not null references functions (id) on delete cascade,
  version     integer not null check (version > 0),
  entrypoint  text not null,
  import_map  text,
  files       jsonb not null,
  checksum    text not null,
  size_bytes  integer not null,
  created_by  text not null,
  created_at  timestamptz not null default now(),
  primary key (function_id, version)
);

-- Secrets injected as environment variables; AES-256-GCM under
-- FERROBASE_ENCRYPTION_KEY, bound to `function-secret:{project}:{name}`.
create table function_secrets (
  project_id uuid not null references projects (id) on delete cascade,
  name       text not null check (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'),
  value_enc  text not null,
  digest     text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (project_id, name)
);

-- One row per invocation (HTTP or schedule).
create table function_invocations (
  id          uuid primary key,
  project_id  uuid not null references projects (id) on delete cascade,
  slug        text not null,
  version     integer,
  request_id  text,
  trigger     text not null default 'http' check (trigger in ('http', 'schedule')),
  method      text not null,
  path        text not null,
  status      integer not null,
  error       text,
  duration_ms integer not null,
  started_at  timestamptz not null
);
create index on function_invocations (project_id, slug, started_at desc);
create index on function_invocations (request_id);

-- stdout/stderr lines and uncaught errors; `invocation_id` is null for output
-- of the process outside any invocation (start-up, crash).
create table function_logs (
  id            bigint generated always as identity primary key,
  project_id    uuid not null references projects (id) on delete cascade,
  slug          text not null,
  version       integer,
  invocation_id uuid,
  level         text not null,
  message       text not null,
  at            timestamptz not null default now()
);
create index on function_logs (project_id, slug, id desc);
create index on function_logs (invocation_id);

create table function_schedules (
  id          uuid primary key default gen_random_uuid(),
  project_id  uuid not null references projects (id) on delete cascade,
  function_id uuid not null references functions (id) on delete cascade,
  name        text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  cron        text not null,
  body        jsonb,
  enabled     boolean not null default true,
  next_run_at timestamptz not null,
  created_at  timestamptz not null default now(),
  unique (function_id, name)
);
create index on function_schedules (next_run_at) where enabled;

-- One row per tick: the primary key is the lease that makes a tick run once
-- across all nodes.
create table function_schedule_runs (
  schedule_id   uuid not null references function_schedules (id) on delete cascade,
  tick_at       timestamptz not null,
  node          text not null,
  invocation_id uuid,
  status        integer,
  error         text,
  started_at    timestamptz not null default now(),
  finished_at   timestamptz,
  primary key (schedule_id, tick_at)
);
