-- A counter bumped by every DDL statement (through an event trigger that the
-- platform installs as superuser, see platform::projects::install_ddl_trigger).
-- The data API reads it in the statement that opens each request's
-- transaction, so a schema change made through any path (admin API, admin
-- SQL, a direct connection) is seen by the next request on every node.

create sequence _ferrobase.schema_version;

create function _ferrobase.schema_version() returns bigint
language sql stable security definer set search_path = ''
as $$ select last_value from _ferrobase.schema_version $$;

create function _ferrobase.bump_schema_version() returns event_trigger
language plpgsql security definer set search_path = ''
as $$
begin
  perform nextval('_ferrobase.schema_version');
  perform pg_notify('ferrobase_schema', current_database());
end
$$;

revoke all on function _ferrobase.bump_schema_version() from public;
grant usage on schema _ferrobase to anon, authenticated, service_role;
grant execute on function _ferrobase.schema_version() to anon, authenticated, service_role;
