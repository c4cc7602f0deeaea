-- Retention of function logs (server/src/functions/logs.rs, `prune`): rows
-- older than FERROBASE_FUNCTIONS_LOG_RETENTION_DAYS are deleted by time,
-- which these indexes make a range scan instead of a full one. The caps per
-- function use the existing (project_id, slug, …) indexes and the runs'
-- primary key.
create index if not exists function_logs_at_idx on function_logs (at);
create index if not exists function_invocations_started_at_idx on function_invocations (started_at);
create index if not exists function_schedule_runs_started_at_idx on function_schedule_runs (started_at);
