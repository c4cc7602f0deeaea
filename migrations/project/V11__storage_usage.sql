-- Storage usage per project, for the per-project storage quota
-- (FERROBASE_STORAGE_MAX_PROJECT_BYTES, or the project's storage_max_bytes).
-- Runs as the project's owner role.
--
-- storage.usage holds one row: the bytes of every object (metadata.size),
-- kept by statement triggers on storage.objects, whatever writes them (the
-- storage API, admin SQL, a cascade). Only a change that adds bytes updates
-- the row, and the update's row lock serialises such writes until they
-- commit, so the check below is exact under concurrency.
--
-- The storage API arms the check for its own writes with the transaction-
-- local setting ferrobase.storage_quota_bytes; a write that leaves the
-- project over it fails with SQLSTATE FBQ01 (answered 413 QuotaExceeded).
-- Writes that free bytes always pass, so a project over a lowered quota can
-- delete its way back under it. Not visible to the API roles.

create table storage.usage (
  singleton boolean primary key default true check (singleton),
  bytes bigint not null default 0
);

create function storage.object_bytes(metadata jsonb) returns bigint
language sql immutable
as $$
  select case when jsonb_typeof(metadata -> 'size') = 'number'
              then least(greatest((metadata ->> 'size')::numeric, 0), 9223372036854775807)::bigint else 0 end
$$;

insert into storage.usage (bytes)
  select coalesce(sum(storage.object_bytes(metadata)), 0) from storage.objects;

create function storage.track_usage() returns trigger
language plpgsql security definer set search_path = ''
as $$
declare
  added bigint := 0;
  removed bigint := 0;
  total bigint;
  quota bigint;
begin
  if tg_op in ('INSERT', 'UPDATE') then
    select coalesce(sum(storage.object_bytes(n.metadata)), 0) into added from new_rows n;
  end if;
  if tg_op in ('UPDATE', 'DELETE') then
    select coalesce(sum(storage.object_bytes(o.metadata)), 0) into removed from old_rows o;
  end if;
  if added = removed then
    return null;
  end if;
  update storage.usage set bytes = bytes + added - removed returning bytes into total;
  quota := nullif(current_setting('ferrobase.storage_quota_bytes', true), '')::bigint;
  if added > removed and quota is not null and total > quota then
    raise exception using
      errcode = 'FBQ01',
      message = format('The project''s storage quota of %s bytes is used up: delete objects, '
                       'or ask the platform admin to raise the quota.', quota);
  end if;
  return null;
end
$$;
revoke all on function storage.track_usage() from public;

create trigger objects_usage_insert after insert on storage.objects
  referencing new table as new_rows
  for each statement execute function storage.track_usage();
create trigger objects_usage_update after update on storage.objects
  referencing old table as old_rows new table as new_rows
  for each statement execute function storage.track_usage();
create trigger objects_usage_delete after delete on storage.objects
  referencing old table as old_rows
  for each statement execute function storage.track_usage();
