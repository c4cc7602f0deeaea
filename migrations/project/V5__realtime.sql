-- Realtime: the message outbox every realtime event passes through, and the
-- contract between realtime (server/src/realtime) and webhooks
-- (server/src/webhooks). Runs as the project's owner role.
--
-- Every channel message and every captured database change is one row here,
-- written in the transaction that produced it. Nodes are woken by NOTIFY
-- (carrying only the id) and read new rows by id, so a lost notification or
-- a large payload loses nothing. Webhooks enqueue their deliveries from a
-- trigger on this table, in the same transaction.
--
-- Row Level Security on this table decides who may receive (SELECT) and who
-- may send (INSERT) on private channels; policies read the channel name
-- with realtime.topic(), as in Supabase.

create schema if not exists realtime;
grant usage on schema realtime to anon, authenticated, service_role;

create table realtime.messages (
  id bigint generated always as identity primary key,
  -- The channel name: 'room:1', or 'db:{schema}:{table}' for change events.
  topic text not null check (length(topic) between 1 and 255),
  -- The event name: chosen by the publisher, or INSERT / UPDATE / DELETE.
  event text not null check (length(event) between 1 and 255),
  -- A channel message's payload, or for a change
  -- {schema, table, type, record, old_record, commit_timestamp}.
  payload jsonb not null default '{}',
  -- 'broadcast' (published by a client or over HTTP) or 'db' (a change).
  kind text not null default 'broadcast' check (kind in ('broadcast', 'db')),
  -- Who sent it: 'user' (sender_id = the user id), 'anon', 'service' or 'system'.
  sender_type text not null default 'system',
  sender_id text,
  created_at timestamptz not null default now()
);
create index messages_topic_id on realtime.messages (topic, id);
create index messages_created_at on realtime.messages (created_at);

alter table realtime.messages enable row level security;
grant select, insert on realtime.messages to anon, authenticated, service_role;

-- The channel being authorized, for use in policies on realtime.messages
-- (set per statement by the server as the `realtime.topic` setting).
create or replace function realtime.topic() returns text
language sql stable
as $$
  select nullif(current_setting('realtime.topic', true), '')
$$;
grant execute on function realtime.topic() to anon, authenticated, service_role;
