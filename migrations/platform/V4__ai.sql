-- AI gateway configuration per project (server/src/ai). Kept in the control
-- plane because provider keys are secrets: they are sealed with the platform
-- SecretBox (AES-256-GCM under FERROBASE_ENCRYPTION_KEY), bound by associated
-- data to 'project:<id>:ai_provider:<name>:…', like every other per-project secret.

-- Allow-list, aliases, anon access, platform fallback and quotas (one JSON
-- object of overrides; the server fills in defaults).
create table ai_settings (
  project_id uuid primary key references projects (id) on delete cascade,
  settings   jsonb not null default '{}',
  updated_at timestamptz not null default now()
);

-- Upstreams of a project, tried in ascending `priority` (the fallback order).
create table ai_providers (
  project_id  uuid not null references projects (id) on delete cascade,
  name        text not null check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  base_url    text not null,
  api_key_enc text,
  -- Extra request headers, a sealed JSON object (they may carry credentials too).
  headers_enc text,
  priority    integer not null default 100,
  enabled     boolean not null default true,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  primary key (project_id, name)
);
