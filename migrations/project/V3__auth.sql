-- Auth (GoTrue-compatible): users, identities, sessions, refresh tokens,
-- one-time tokens, OAuth flow state, MFA, rate limits and lockout, captured
-- mail, per-project settings and mail templates. Runs as the project owner.
--
-- These tables are reached only through the auth API (which connects as the
-- owner): the API roles get no privileges on them. Public tables may still
-- reference auth.users(id), and policies use auth.uid() / auth.jwt().

create table auth.users (
  id                   uuid primary key default gen_random_uuid(),
  aud                  text not null default 'authenticated',
  role                 text not null default 'authenticated',
  email                text check (email is null or (email = lower(email) and position('@' in email) > 1)),
  encrypted_password   text,
  email_confirmed_at   timestamptz,
  invited_at           timestamptz,
  confirmation_sent_at timestamptz,
  recovery_sent_at     timestamptz,
  -- Pending email change (confirmed on both addresses when secure change is on).
  email_change         text,
  email_change_sent_at timestamptz,
  email_change_confirm_status smallint not null default 0,
  phone                text,
  phone_confirmed_at   timestamptz,
  last_sign_in_at      timestamptz,
  raw_app_meta_data    jsonb not null default '{}',
  raw_user_meta_data   jsonb not null default '{}',
  banned_until         timestamptz,
  is_anonymous         boolean not null default false,
  created_at           timestamptz not null default now(),
  updated_at           timestamptz not null default now()
);
create unique index users_email_key on auth.users (email) where email is not null;
create unique index users_phone_key on auth.users (phone) where phone is not null;

create table auth.identities (
  id              uuid primary key default gen_random_uuid(),
  provider_id     text not null,
  user_id         uuid not null references auth.users (id) on delete cascade,
  identity_data   jsonb not null default '{}',
  provider        text not null,
  last_sign_in_at timestamptz,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  email           text generated always as (lower(identity_data ->> 'email')) stored,
  unique (provider_id, provider)
);
create index on auth.identities (user_id);
create index on auth.identities (email);

create table auth.sessions (
  id           uuid primary key default gen_random_uuid(),
  user_id      uuid not null references auth.users (id) on delete cascade,
  aal          text not null default 'aal1' check (aal in ('aal1', 'aal2', 'aal3')),
  -- Authentication methods: [{"method": "password", "timestamp": 1700000000}, …]
  amr          jsonb not null default '[]',
  factor_id    uuid,
  not_after    timestamptz,
  refreshed_at timestamptz,
  user_agent   text,
  ip           text,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);
create index on auth.sessions (user_id);

-- Opaque refresh tokens, stored as SHA-256 hashes. Each use revokes the token
-- and issues its successor (parent = the revoked one).
create table auth.refresh_tokens (
  id          bigint generated always as identity primary key,
  token_hash  text not null unique,
  parent_hash text,
  session_id  uuid not null references auth.sessions (id) on delete cascade,
  user_id     uuid not null references auth.users (id) on delete cascade,
  revoked     boolean not null default false,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create index on auth.refresh_tokens (session_id);
create index on auth.refresh_tokens (parent_hash);

-- OAuth / PKCE flow state (server-side, so any node can finish a flow).
create table auth.flow_state (
  id                     uuid primary key default gen_random_uuid(),
  user_id                uuid references auth.users (id) on delete cascade,
  auth_code_hash         text unique,
  code_challenge_method  text,
  code_challenge         text,
  provider_type          text not null,
  provider_access_token  text,
  provider_refresh_token text,
  authentication_method  text not null,
  -- Provider side of an OAuth flow.
  state_hash             text unique,
  nonce                  text,
  provider_pkce_verifier text,
  redirect_to            text,
  auth_code_issued_at    timestamptz,
  expires_at             timestamptz not null,
  created_at             timestamptz not null default now(),
  updated_at             timestamptz not null default now()
);

-- Links and codes sent by mail (confirmation, recovery, magic link, invite,
-- email change), stored hashed.
create table auth.one_time_tokens (
  id          uuid primary key default gen_random_uuid(),
  user_id     uuid references auth.users (id) on delete cascade,
  token_type  text not null check (token_type in ('confirmation', 'recovery', 'magiclink', 'invite',
                'email_change_current', 'email_change_new', 'reauthentication')),
  token_hash  text not null unique,
  otp_hash    text,
  relates_to  text not null,
  redirect_to text,
  -- Set when the flow uses PKCE: verifying yields an auth code, not a session.
  flow_state_id uuid references auth.flow_state (id) on delete cascade,
  expires_at  timestamptz not null,
  created_at  timestamptz not null default now()
);
create index on auth.one_time_tokens (user_id, token_type);
create index on auth.one_time_tokens (relates_to, token_type);

create table auth.mfa_factors (
  id                 uuid primary key default gen_random_uuid(),
  user_id            uuid not null references auth.users (id) on delete cascade,
  friendly_name      text,
  factor_type        text not null check (factor_type in ('totp', 'phone', 'webauthn')),
  status             text not null default 'unverified' check (status in ('unverified', 'verified')),
  secret_enc         text not null,
  -- The last TOTP time step accepted (a code is never accepted twice).
  last_totp_step     bigint,
  last_challenged_at timestamptz,
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now()
);
create index on auth.mfa_factors (user_id);
create unique index mfa_factors_name_key on auth.mfa_factors (user_id, friendly_name) where friendly_name <> '';

create table auth.mfa_challenges (
  id          uuid primary key default gen_random_uuid(),
  factor_id   uuid not null references auth.mfa_factors (id) on delete cascade,
  ip_address  text,
  verified_at timestamptz,
  expires_at  timestamptz not null default now() + interval '5 minutes',
  created_at  timestamptz not null default now()
);

-- Fixed-window request counters (per IP, per account), shared by every node.
create table auth.rate_limits (
  key          text primary key,
  window_start timestamptz not null,
  hits         integer not null
);

-- Failed sign-in attempts per account (keyed by the normalised identifier,
-- whether or not such a user exists, so lockout reveals nothing).
create table auth.lockouts (
  account         text primary key,
  failures        integer not null default 0,
  last_failure_at timestamptz not null default now(),
  locked_until    timestamptz
);

create table auth.audit_log_entries (
  id         bigint generated always as identity primary key,
  action     text not null,
  actor_id   uuid,
  payload    jsonb not null default '{}',
  ip_address text,
  created_at timestamptz not null default now()
);
create index on auth.audit_log_entries (created_at);

-- Every mail the auth service produced; in the embedded default (no SMTP) this
-- is where it goes ("captured"), listed through the admin API.
create table auth.mail (
  id         bigint generated always as identity primary key,
  kind       text not null,
  to_address text not null,
  subject    text not null,
  body_html  text not null,
  body_text  text not null,
  -- 'captured', 'sent' or 'failed'.
  status     text not null,
  error      text,
  created_at timestamptz not null default now()
);
create index on auth.mail (to_address);

-- Per-project settings (overrides of the server defaults), one row.
create table auth.config (
  id         boolean primary key default true check (id),
  settings   jsonb not null default '{}',
  -- The project's own SMTP server (overrides FERROBASE_SMTP_URL); the URL
  -- holds credentials, so it is stored encrypted by the server.
  smtp_url_enc text,
  smtp_from    text,
  updated_at timestamptz not null default now()
);
insert into auth.config default values;

-- External identity providers (OAuth 2 / OpenID Connect), configured per
-- project through the admin API. The client secret is encrypted by the server
-- (AES-256-GCM under FERROBASE_ENCRYPTION_KEY) before it is stored.
create table auth.providers (
  name              text primary key check (name ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
  -- 'oidc' (any issuer, by discovery) or a built-in: google, azure,
  -- linkedin_oidc, github, discord, facebook, x.
  kind              text not null,
  client_id         text not null,
  client_secret_enc text,
  issuer            text,
  scopes            text not null default '',
  enabled           boolean not null default true,
  -- Endpoint overrides and switches (authorize_url, token_url, userinfo_url, link_by_email).
  options           jsonb not null default '{}',
  created_at        timestamptz not null default now(),
  updated_at        timestamptz not null default now()
);

-- Per-project mail template overrides.
create table auth.mail_templates (
  kind       text primary key check (kind in ('confirmation', 'recovery', 'magic_link', 'invite', 'email_change', 'reauthentication')),
  subject    text,
  body_html  text,
  body_text  text,
  updated_at timestamptz not null default now()
);

revoke all on all tables in schema auth from public, anon, authenticated, service_role;
revoke all on all sequences in schema auth from public, anon, authenticated, service_role;
