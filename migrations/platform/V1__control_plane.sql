-- Control plane: platform admins, projects, their keys and encrypted secrets, audit log.
-- Secrets (`*_enc`) are AES-256-GCM ciphertexts under FERROBASE_ENCRYPTION_KEY.

-- Project owner roles must never reach the control plane.
do $$ begin
  execute format('revoke connect, temporary on database %I from public', current_database());
end $$;

create table platform_admins (
  id            uuid primary key default gen_random_uuid(),
  email         text not null unique check (email = lower(email) and position('@' in email) > 1),
  password_hash text not null,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);

-- Platform-wide secrets, e.g. the key that signs platform admin tokens.
create table platform_secrets (
  name       text primary key,
  value_enc  text not null,
  created_at timestamptz not null default now()
);

create table projects (
  id          uuid primary key default gen_random_uuid(),
  ref         text not null unique check (ref ~ '^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$'),
  name        text not null,
  -- 'creating' while provisioning; only 'ready' projects are routed.
  status      text not null default 'creating' check (status in ('creating', 'ready', 'deleting')),
  db_name     text not null unique,
  db_role     text not null unique,
  -- Connection string of the owner role (may point at another cluster).
  db_conn_enc text not null,
  created_at  timestamptz not null default now()
);

-- Asymmetric keys that sign the project's API keys and user sessions.
create table project_signing_keys (
  kid             text primary key,
  project_id      uuid not null references projects (id) on delete cascade,
  algorithm       text not null default 'ES256',
  private_key_enc text not null,
  public_jwk      jsonb not null,
  active          boolean not null default true,
  created_at      timestamptz not null default now()
);
create index on project_signing_keys (project_id);

-- Named per-project secrets (anon_key, service_role_key, …).
create table project_secrets (
  project_id uuid not null references projects (id) on delete cascade,
  name       text not null,
  value_enc  text not null,
  created_at timestamptz not null default now(),
  primary key (project_id, name)
);

create table audit_log (
  id         bigint generated always as identity primary key,
  at         timestamptz not null default now(),
  actor      text not null,
  action     text not null,
  target     text,
  details    jsonb not null default '{}'
);
create index on audit_log (at);
