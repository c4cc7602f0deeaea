-- Webhooks: which projects the delivery workers look at. Only projects with
-- at least one enabled endpoint have a row with enabled_endpoints > 0, so
-- thousands of projects without webhooks cost the workers nothing. Kept by
-- the admin API (server/src/webhooks) and by the workers when they disable
-- an endpoint; next_due_at is the earliest time a node should look.
create table webhook_projects (
  project_id        uuid primary key references projects (id) on delete cascade,
  enabled_endpoints integer not null default 0 check (enabled_endpoints >= 0),
  next_due_at       timestamptz not null default now()
);
create index webhook_projects_due on webhook_projects (next_due_at) where enabled_endpoints > 0;
