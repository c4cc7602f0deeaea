-- The schema of the `typed` example (and of the type generation tests in
-- server/tests/it/typegen.rs). Re-running it starts over.
drop view if exists public.pinned_notes;
drop function if exists public.add_numbers(integer, integer);
drop function if exists public.notes_by_mood(public.mood);
drop table if exists public.comments, public.notes cascade;
drop type if exists public.mood cascade;

create type public.mood as enum ('happy', 'sad', 'in between');

create table public.notes (
    id bigint generated always as identity primary key,
    title text not null,
    body text,
    pinned boolean not null default false,
    rating integer,
    score double precision,
    created_at timestamptz not null default now(),
    meta jsonb not null default '{}',
    tags text[] not null default '{}',
    mood public.mood not null default 'happy',
    moods public.mood[],
    "createdBy" uuid,
    "type" text,
    title_length integer generated always as (length(title)) stored
);

create table public.comments (
    id bigserial primary key,
    note_id bigint not null references public.notes (id) on delete cascade,
    text text not null
);

create view public.pinned_notes as
    select id, title, mood from public.notes where pinned;

create function public.add_numbers(a integer, b integer default 1)
    returns integer language sql immutable as 'select a + b';

create function public.notes_by_mood(m public.mood)
    returns setof public.notes language sql stable
    as 'select * from public.notes where mood = m order by id';
