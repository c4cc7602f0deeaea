-- Per-second counts of successful invocations that were not recorded one by
-- one (server/src/functions/logs.rs): beyond FERROBASE_FUNCTIONS_RECORD_EACH_PER_SEC
-- invocations of a function per second and node, a successful (status < 400,
-- no error code) invocation that printed no log line adds to its second's row
-- here instead of getting its own row in function_invocations. Errors,
-- invocations with log lines and schedule runs always get their own row.
create table function_invocation_counts (
  project_id uuid not null references projects (id) on delete cascade,
  slug       text not null,
  version    integer not null,
  second     timestamptz not null,
  status     integer not null,
  count      bigint not null,
  total_ms   bigint not null,
  max_ms     integer not null,
  primary key (project_id, slug, second, version, status)
);
-- Retention by age (`prune`).
create index function_invocation_counts_second_idx on function_invocation_counts (second);
