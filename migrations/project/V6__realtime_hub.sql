-- Realtime hub (server/src/realtime): channels, presence, change capture and
-- the wake-up NOTIFY on the outbox. Runs as the project's owner role.
--
-- Additive to V5 (the realtime/webhooks contract): no V5 column is renamed
-- or dropped. `kind` gains the value 'presence' for presence join/leave/update
-- events, which travel through the outbox like any message so every node
-- sees them.

alter table realtime.messages drop constraint if exists messages_kind_check;
alter table realtime.messages
  add constraint messages_kind_check check (kind in ('broadcast', 'db', 'presence'));

-- Channels the admin defines (POST /admin/v1/realtime/channels). A channel
-- name is matched against `pattern` with LIKE; the longest matching pattern wins.
create table realtime.channels (
  id uuid primary key default gen_random_uuid(),
  pattern text not null unique check (length(pattern) between 1 and 255),
  description text,
  -- Public: any valid key may receive and send. Private: RLS on
  -- realtime.messages decides (SELECT = receive, INSERT = send).
  public boolean not null default false,
  enabled boolean not null default true,
  -- How long messages stay readable through realtime:history.
  retention_hours integer not null default 24 check (retention_hours between 0 and 8760),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- Tables whose changes are captured into realtime.messages (kind 'db').
create table realtime.change_tables (
  schema_name text not null,
  table_name text not null,
  on_insert boolean not null default true,
  on_update boolean not null default true,
  on_delete boolean not null default true,
  created_at timestamptz not null default now(),
  primary key (schema_name, table_name)
);

-- Who is present on which channel. Rows are refreshed by their node's
-- heartbeat (seen_at); rows of dead sockets or dead nodes expire and a
-- presence:leave is published for them by whichever node sweeps first.
create table realtime.presence (
  channel text not null,
  presence_id text not null,
  node_id text not null,
  type text not null,
  user_id text,
  state jsonb not null default '{}',
  joined_at timestamptz not null default now(),
  seen_at timestamptz not null default now(),
  primary key (channel, presence_id)
);
create index presence_node on realtime.presence (node_id);
create index presence_seen_at on realtime.presence (seen_at);

-- One wake-up per statement (identical notifications in a transaction are
-- folded by Postgres). The payload is empty: nodes read new rows by id, so a
-- large row never meets NOTIFY's 8000-byte limit.
create or replace function realtime.wake() returns trigger
language plpgsql
as $$
begin
  perform pg_notify('ferrobase_realtime', '');
  return null;
end $$;

create trigger messages_wake after insert on realtime.messages
  for each statement execute function realtime.wake();

-- Change capture: one outbox row per changed row, in the changing
-- transaction. SECURITY DEFINER so that it writes the outbox whatever the
-- caller's role (the row's visibility is checked per subscriber on delivery).
create or replace function realtime.capture_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into realtime.messages (topic, event, payload, kind, sender_type)
  values (
    'db:' || tg_table_schema || ':' || tg_table_name,
    tg_op,
    jsonb_build_object(
      'schema', tg_table_schema,
      'table', tg_table_name,
      'type', tg_op,
      'record', case when tg_op = 'DELETE' then null else to_jsonb(new) end,
      'old_record', case when tg_op = 'INSERT' then null else to_jsonb(old) end,
      'commit_timestamp', now()
    ),
    'db',
    'system'
  );
  return null;
end $$;
revoke all on function realtime.capture_change() from public;
