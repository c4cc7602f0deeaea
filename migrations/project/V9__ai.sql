-- AI gateway metering and quotas (server/src/ai). Runs as the project's owner.
-- Nothing here is granted to anon/authenticated/service_role: the gateway
-- writes and the admin API reads as the owner.

create schema if not exists ai;
revoke all on schema ai from public;

-- One row per gateway call, streamed ones included.
create table ai.usage (
  id                bigint generated always as identity primary key,
  at                timestamptz not null default now(),
  -- auth.uid() of the caller, null for the service-role or anon key.
  user_id           text,
  role              text not null,
  endpoint          text not null,
  model             text not null,
  -- Provider name that answered (or was tried last).
  upstream          text,
  prompt_tokens     bigint not null default 0,
  completion_tokens bigint not null default 0,
  total_tokens      bigint not null default 0,
  -- True when the upstream reported no usage and the gateway counted tokens itself.
  estimated         boolean not null default false,
  latency_ms        integer not null default 0,
  ttft_ms           integer,
  -- HTTP status answered to the client (499: the client went away mid-stream).
  status            integer not null,
  error             text
);
create index on ai.usage (at);
create index on ai.usage (user_id, at);

-- Fixed-window counters for quotas, shared by every node: requests per minute
-- and tokens per day, per project ('project') and per user ('user:<id>').
create table ai.quota_counters (
  subject      text not null,
  kind         text not null check (kind in ('rpm', 'tpd')),
  window_start timestamptz not null,
  value        bigint not null default 0,
  primary key (subject, kind, window_start)
);
