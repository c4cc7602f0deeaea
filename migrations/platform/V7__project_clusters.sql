-- Projects on more than one Postgres cluster: the admin connection string of
-- the cluster a project's database lives on, encrypted with the platform key
-- (context `project:{id}:cluster_conn`). NULL: the control plane's cluster.
alter table projects add column cluster_conn_enc text;
