-- Storage: buckets and object metadata (bytes live in the object store).
-- Runs as the project's owner role. Shapes follow Supabase Storage so its
-- policies carry over: storage.buckets, storage.objects, storage.foldername(),
-- storage.filename(), storage.extension().
--
-- Row Level Security decides what anon and authenticated callers may do with
-- objects and buckets; no policy exists by default, so only the service role
-- (BYPASSRLS) can do anything until the project adds policies.

create schema if not exists storage;
grant usage on schema storage to anon, authenticated, service_role;

create table storage.buckets (
  id text primary key,
  name text not null unique,
  owner uuid,
  public boolean not null default false,
  file_size_limit bigint check (file_size_limit is null or file_size_limit >= 0),
  allowed_mime_types text[],
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table storage.objects (
  id uuid primary key default gen_random_uuid(),
  bucket_id text not null references storage.buckets (id),
  -- "C" collation: prefix scans and byte-wise ordering, like S3 listings.
  name text collate "C" not null,
  owner uuid,
  -- {size, mimetype, eTag, cacheControl, lastModified, contentLength, httpStatusCode}
  metadata jsonb,
  user_metadata jsonb,
  -- The generation of the bytes: the backend key is derived from it, a new
  -- upload gets a new version, so readers never see half-written bytes.
  version text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  last_accessed_at timestamptz not null default now(),
  path_tokens text[] generated always as (string_to_array(name, '/')) stored,
  unique (bucket_id, name)
);
create index objects_bucket_version on storage.objects (bucket_id, version);

alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;
grant select, insert, update, delete on storage.buckets, storage.objects
  to anon, authenticated, service_role;

-- Bytes that no row references (replaced or deleted objects) or may not
-- reference (uploads in flight). The server deletes them right after the
-- change commits; a reaper finishes the job after a crash. Not visible to
-- the API roles.
create table storage.orphans (
  bucket_id text not null,
  version text not null,
  name text not null,
  -- 'replaced': no row references it any more; 'upload': in flight.
  reason text not null check (reason in ('replaced', 'upload')),
  created_at timestamptz not null default now(),
  primary key (bucket_id, version)
);

create function storage.record_orphan() returns trigger
language plpgsql security definer set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    insert into storage.orphans (bucket_id, version, name, reason)
      values (old.bucket_id, old.version, old.name, 'replaced')
      on conflict (bucket_id, version) do update set reason = 'replaced';
    return old;
  end if;
  if old.bucket_id is distinct from new.bucket_id or old.version is distinct from new.version then
    insert into storage.orphans (bucket_id, version, name, reason)
      values (old.bucket_id, old.version, old.name, 'replaced')
      on conflict (bucket_id, version) do update set reason = 'replaced';
  end if;
  return new;
end
$$;
revoke all on function storage.record_orphan() from public;

create trigger objects_record_orphan
  after update or delete on storage.objects
  for each row execute function storage.record_orphan();

-- TUS resumable uploads in progress (bytes are parts in the object store).
create table storage.resumable_uploads (
  id text primary key,
  bucket_id text not null references storage.buckets (id) on delete cascade,
  name text collate "C" not null,
  -- The caller that created it: later requests must come from the same
  -- subject, and the final row is written with these claims.
  role text not null,
  claims jsonb not null,
  upload_length bigint not null check (upload_length >= 0),
  upload_offset bigint not null default 0,
  parts integer not null default 0,
  content_type text not null,
  cache_control text not null,
  user_metadata jsonb,
  upsert boolean not null default false,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null
);

-- Helpers for policies, as in Supabase.
create function storage.foldername(name text) returns text[]
language sql immutable
as $$
  select (string_to_array(name, '/'))[1:coalesce(array_length(string_to_array(name, '/'), 1), 1) - 1]
$$;

create function storage.filename(name text) returns text
language sql immutable
as $$
  select (string_to_array(name, '/'))[array_length(string_to_array(name, '/'), 1)]
$$;

create function storage.extension(name text) returns text
language sql immutable
as $$
  select reverse(split_part(reverse(storage.filename(name)), '.', 1))
$$;

grant execute on function storage.foldername(text), storage.filename(text), storage.extension(text)
  to anon, authenticated, service_role;
