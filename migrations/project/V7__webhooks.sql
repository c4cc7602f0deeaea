-- Webhooks: endpoints, the durable delivery outbox and the delivery log.
-- Runs as the project's owner role. The server (server/src/webhooks) reads
-- and writes these tables as the owner; the API roles get nothing here.
--
-- Deliveries are written by a statement-level trigger on realtime.messages
-- (the event outbox, V5) in the transaction that wrote the event, so an
-- event and its deliveries commit or roll back together. Anything else that
-- wants to emit an event calls webhooks.emit(type, data) in its transaction.
--
-- Workers on every node claim due deliveries with FOR UPDATE SKIP LOCKED and
-- push next_attempt_at forward by a lease before calling the receiver: a
-- node that dies mid-call leaves a delivery that becomes due again when the
-- lease runs out (at-least-once; receivers dedupe by webhook-id).

create schema if not exists webhooks;
revoke all on schema webhooks from public;

create table webhooks.endpoints (
  id uuid primary key default gen_random_uuid(),
  url text not null check (length(url) between 1 and 2048),
  -- Globs ('*' = any run of characters) on a message's topic ('room:*',
  -- 'db:public:orders', 'db:public:*') or an emitted event's type
  -- ('auth.user.created', 'auth.*').
  events text[] not null check (cardinality(events) between 1 and 64),
  enabled boolean not null default true,
  description text not null default '' check (length(description) <= 1024),
  -- 'whsec_…' sealed with the platform key (AES-256-GCM, bound to the row id).
  secret_enc text not null,
  -- The previous secret after a rotation, signed with too until it expires.
  previous_secret_enc text,
  previous_secret_expires_at timestamptz,
  -- Failed deliveries (retries exhausted) in a row; reset by a success.
  consecutive_failures integer not null default 0,
  -- Why the endpoint was disabled by the system ('gone': the receiver
  -- answered 410; 'failing': too many failures in a row), null otherwise.
  disabled_reason text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table webhooks.deliveries (
  id uuid primary key default gen_random_uuid(),
  endpoint_id uuid not null references webhooks.endpoints (id) on delete cascade,
  -- The realtime.messages row it came from (null for webhooks.emit()).
  message_id bigint,
  -- The body's `type` (realtime.message, db.insert, auth.user.created, …).
  event_type text not null,
  -- The request body: {type, timestamp, data}.
  body jsonb not null,
  -- pending → succeeded | failed (retries exhausted, or endpoint gone).
  status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
  attempts integer not null default 0,
  -- `attempts` when the current run started (a replay starts a new run, so
  -- the retry schedule restarts while attempt numbers keep counting).
  schedule_base integer not null default 0,
  -- When a worker may next claim it (also the lease of the current attempt).
  next_attempt_at timestamptz not null default now(),
  last_status integer,
  last_error text,
  created_at timestamptz not null default now(),
  finished_at timestamptz
);
create index deliveries_due on webhooks.deliveries (next_attempt_at) where status = 'pending';
create index deliveries_endpoint on webhooks.deliveries (endpoint_id, created_at desc);
create index deliveries_failed on webhooks.deliveries (created_at) where status = 'failed';

-- One row per HTTP attempt: the delivery log.
create table webhooks.attempts (
  id bigint generated always as identity primary key,
  delivery_id uuid not null references webhooks.deliveries (id) on delete cascade,
  endpoint_id uuid not null,
  attempt integer not null,
  -- Who made it (node id) and when.
  node text not null,
  started_at timestamptz not null default now(),
  status_code integer,
  latency_ms integer not null,
  -- The first bytes of the answer, or why there was none.
  response_excerpt text,
  error text,
  unique (delivery_id, attempt)
);
create index attempts_delivery on webhooks.attempts (delivery_id, attempt);

-- '*' globs to LIKE patterns (other LIKE metacharacters taken literally).
create function webhooks.glob_to_like(glob text) returns text
language sql immutable strict
as $$
  select replace(replace(replace(replace(glob, '\', '\\'), '%', '\%'), '_', '\_'), '*', '%')
$$;

-- Writes one delivery per enabled endpoint whose patterns match `match_key`.
-- Called by the trigger below and by anything emitting its own events.
create function webhooks.enqueue(match_key text, event_type text, body jsonb, message_id bigint default null)
returns integer
language plpgsql
security definer set search_path = ''
as $$
declare
  n integer;
begin
  insert into webhooks.deliveries (endpoint_id, message_id, event_type, body)
  select e.id, message_id, event_type, body
  from webhooks.endpoints e
  where e.enabled
    and exists (select 1 from unnest(e.events) p where match_key like webhooks.glob_to_like(p));
  get diagnostics n = row_count;
  if n > 0 then
    perform pg_notify('ferrobase_webhooks', '');
  end if;
  return n;
end
$$;

-- Emits an application event (e.g. 'auth.user.created') to the endpoints
-- subscribed to its type, in the caller's transaction.
create function webhooks.emit(event_type text, data jsonb)
returns integer
language sql
security definer set search_path = ''
as $$
  select webhooks.enqueue(
    event_type, event_type,
    jsonb_build_object(
      'type', event_type,
      'timestamp', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      'data', data))
$$;

-- realtime.messages → deliveries, one statement at a time (a bulk insert of
-- change events costs one INSERT … SELECT, not one per row).
-- SECURITY DEFINER: the inserting role (anon, authenticated, …) has no
-- rights on the webhooks schema, and needs none.
create function webhooks.enqueue_messages() returns trigger
language plpgsql
security definer set search_path = ''
as $$
declare
  n integer;
begin
  -- Nothing to do (and nothing to scan) while no endpoint is enabled.
  if not exists (select 1 from webhooks.endpoints where enabled) then
    return null;
  end if;
  insert into webhooks.deliveries (endpoint_id, message_id, event_type, body)
  select e.id, m.id, b.type, jsonb_build_object(
           'type', b.type,
           'timestamp', to_char(m.created_at at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'data', b.data)
  from new_messages m
  cross join lateral (
    select
      case when m.kind = 'db' then 'db.' || lower(m.event) else 'realtime.message' end as type,
      case when m.kind = 'db' then m.payload
           else jsonb_build_object('messageId', m.id, 'channel', m.topic,
                                   'event', m.event, 'payload', m.payload) end as data
  ) b
  join webhooks.endpoints e
    on e.enabled
   and exists (select 1 from unnest(e.events) p where m.topic like webhooks.glob_to_like(p))
  -- Presence join/leave rows (V6) are socket bookkeeping, and realtime's
  -- authorization probe is a system row that is always rolled back.
  where m.kind in ('broadcast', 'db') and m.event <> 'realtime:authorize';
  get diagnostics n = row_count;
  if n > 0 then
    perform pg_notify('ferrobase_webhooks', '');
  end if;
  return null;
end
$$;

create trigger webhooks_enqueue
  after insert on realtime.messages
  referencing new table as new_messages
  for each statement execute function webhooks.enqueue_messages();

-- Functions are executable by PUBLIC by default: only the owner (the server)
-- and the trigger use these.
revoke execute on all functions in schema webhooks from public;
