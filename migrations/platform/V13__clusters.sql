-- A registered list of Postgres clusters that new projects are placed on
-- (`ferrobase cluster add`, POST /platform/v1/clusters). A project created
-- without an explicit cluster goes to the registered cluster with the most
-- headroom; with none registered, to the control plane's cluster as before.
create table clusters (
  id           uuid primary key default gen_random_uuid(),
  name         text not null unique check (name ~ '^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$'),
  -- Superuser connection string, encrypted with the platform key
  -- (context `cluster:{id}:conn`); never returned by any API.
  conn_enc     text not null,
  -- host:port only (no user, password or database), for listings.
  address      text not null,
  -- NULL: no limit.
  max_projects integer check (max_projects > 0),
  created_at   timestamptz not null default now()
);

-- The registered cluster a project was placed on (NULL: the control plane's
-- cluster, or one given by `--database-url`). Each such project also keeps
-- its own sealed copy of the connection string in `cluster_conn_enc` (V7),
-- which is what serving, migrating and deleting it use.
alter table projects add column cluster_id uuid references clusters (id);
create index projects_cluster_idx on projects (cluster_id) where cluster_id is not null;
