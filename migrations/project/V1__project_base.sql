-- Base of every project database. Runs as the project's owner role.
-- The API switches to anon / authenticated / service_role per request
-- (SET LOCAL ROLE) and sets request.jwt.claims; the helpers below read them.

create schema if not exists auth;
create schema if not exists extensions;

grant usage on schema public, auth, extensions to anon, authenticated, service_role;

-- The claims of the verified token, as jsonb (empty object when none).
create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;

-- The user id (`sub` claim), or null for the anon and service-role keys.
create or replace function auth.uid() returns uuid
language sql stable
as $$
  select nullif(auth.jwt() ->> 'sub', '')::uuid
$$;

-- The role of the caller (`role` claim).
create or replace function auth.role() returns text
language sql stable
as $$
  select nullif(auth.jwt() ->> 'role', '')::text
$$;

-- The email claim, when present.
create or replace function auth.email() returns text
language sql stable
as $$
  select nullif(auth.jwt() ->> 'email', '')::text
$$;

grant execute on all functions in schema auth to anon, authenticated, service_role;

-- As in Supabase: the API roles get table privileges on the exposed schema,
-- also for objects created later, so Row Level Security policies decide.
grant all on all tables in schema public to anon, authenticated, service_role;
grant all on all sequences in schema public to anon, authenticated, service_role;
grant execute on all functions in schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant execute on functions to anon, authenticated, service_role;
