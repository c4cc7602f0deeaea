-- Platform admin login: rate limits and lockout, kept here (not in process
-- memory) so they hold across server nodes. Same shape as the per-project
-- `auth.rate_limits` / `auth.lockouts`.

-- Fixed-window counters: one row per key (`login:ip:1.2.3.4`).
create table platform_rate_limits (
  key          text primary key,
  window_start timestamptz not null default now(),
  hits         integer not null default 0
);

-- Failed logins per (normalised) email, whether or not such an admin exists,
-- so the lockout reveals nothing.
create table platform_lockouts (
  account         text primary key,
  failures        integer not null default 0,
  last_failure_at timestamptz not null default now(),
  locked_until    timestamptz
);

-- Legacy HS256 secrets: a keyed fingerprint (HMAC under the encryption key)
-- so the platform can tell whether two projects share one. A ref-less
-- legacy token is accepted only by the one project its secret belongs to.
alter table projects add column legacy_jwt_fingerprint text;
create index on projects (legacy_jwt_fingerprint) where legacy_jwt_fingerprint is not null;
