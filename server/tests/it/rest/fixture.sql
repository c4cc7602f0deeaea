-- The conformance fixture (run as the project owner in a fresh project).
-- `public` is the exposed schema; `api2` and `private` are not exposed.
create schema api2;
create schema private;

create type mood as enum ('happy', 'sad');
create table users (id int primary key, name text not null, email text unique, data jsonb,
  created_at timestamptz default '2024-01-01T00:00:00Z');
comment on table users is 'App users';
create table todos (
  id bigserial primary key,
  title text not null,
  done boolean not null default false,
  owner_id int references users(id),
  reviewer_id int constraint todos_reviewer_fk references users(id),
  priority numeric(10,2),
  tags text[],
  during int4range,
  title_upper text generated always as (upper(title)) stored,
  tsv tsvector generated always as (to_tsvector('english', title)) stored
);
create table tags (id int primary key, name text not null);
create table todo_tags (todo_id bigint references todos(id) on delete cascade, tag_id int references tags(id),
  primary key (todo_id, tag_id));
create table profiles (user_id int primary key references users(id), bio text);
create table people (id int primary key, name text, manager_id int references people(id));
create table kinds (id int primary key, big bigint, num numeric, m mood, b bytea, u uuid, j json, jb jsonb,
  ts timestamptz, tsl timestamp, d date, arr int[], tarr text[], "weird ""col""" text,
  twice int generated always as (id * 2) stored);
create table readonly_t (id int primary key);
create view todo_titles as select id, title, owner_id from todos;
create materialized view todo_counts as select owner_id, count(*)::int as n from todos group by owner_id;
create table api2.things (id int primary key, label text);
create table private.hidden (id int primary key);

insert into users values
  (1, 'Alice', 'alice@x.io', '{"age": 30, "address": {"city": "Paris"}, "pets": ["cat"]}'),
  (2, 'Bob', 'bob@x.io', '{"age": 25, "address": {"city": "Berlin"}}'),
  (3, 'Carol', null, null);
insert into todos (id, title, done, owner_id, reviewer_id, priority, tags, during) values
  (1, 'Buy milk', false, 1, 2, 1.50, '{shop,food}', '[1,5)'),
  (2, 'Write report', true, 1, null, 12345678.99, '{work}', '[10,20)'),
  (3, 'Walk the dog', false, 2, 1, null, '{}', null),
  (4, 'Cook dinner', false, null, null, 3.00, '{food}', '[3,8)');
select setval('todos_id_seq', 100);
refresh materialized view todo_counts;
insert into tags values (1, 'urgent'), (2, 'home'), (3, 'later');
insert into todo_tags values (1, 1), (1, 2), (3, 2);
insert into profiles values (1, 'likes cats');
insert into people values (1, 'Boss', null), (2, 'Mid', 1), (3, 'Junior', 2);
insert into kinds (id, big, num, m, b, u, j, jb, ts, tsl, d, arr, tarr, "weird ""col""") values
  (1, 9007199254740993, 123456789012345678901234567890.123456789, 'happy', '\xdeadbeef',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2.50]}', '{"a": {"b": [1, "x"]}}',
   '2024-05-06T07:08:09.123456Z', '2024-05-06T07:08:09', '2024-05-06', '{1,2,3}', '{"a b","c,d",null}', 'w');
insert into api2.things values (1, 'api2 thing');

create function add(a int, b int default 10) returns int language sql immutable as 'select a + b';
create function todos_of(uid int) returns setof todos language sql stable
  as 'select * from todos where owner_id = uid order by id';
create function echo(jsonb) returns jsonb language sql immutable as 'select $1';
create function nums(n int) returns setof int language sql immutable as 'select generate_series(1, n)';
create function add_tag(tid int, tname text) returns void language sql volatile
  as 'insert into tags values (tid, tname)';
create function whoami() returns text language sql stable as $$ select auth.jwt() ->> 'sub' $$;
create function fail_it() returns void language plpgsql
  as $$ begin raise exception 'boom' using detail = 'det', hint = 'hin'; end $$;
create function pairs() returns table(a int, b text) language sql stable as $$ values (1, 'x'), (2, 'y'), (3, 'z') $$;
create function user_one(uid int) returns users language sql stable as 'select * from users where id = uid';
create function sum_arr(xs int[]) returns int language sql immutable as 'select sum(x)::int from unnest(xs) x';
create function over(a int) returns text language sql immutable as $$ select 'int' $$;
create function over(b text) returns text language sql immutable as $$ select 'text' $$;
create function big_num() returns numeric language sql immutable as $$ select 123456789012345678901234567890.5 $$;

revoke all on readonly_t from anon, authenticated;
grant select on readonly_t to authenticated;
create function echo_named(payload jsonb) returns jsonb language sql immutable as 'select payload';
