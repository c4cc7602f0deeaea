-- Messages written by the API roles carry who they are, whatever the
-- statement says. The server publishes as the caller (so RLS on
-- realtime.messages decides who may send on a private channel) and records
-- the sender itself; a project's own SQL function running as anon or a
-- signed-in user could otherwise insert a message posing as the service, as
-- another user, or as a database change ('db', which webhooks deliver as a
-- signed change event). For every role but the owner, service_role and
-- superusers, the kind is forced to 'broadcast' and the sender to the caller
-- as the server records it: 'user' with the token's subject for
-- authenticated, 'anon' for anon and any other role. The server's own
-- writes (as the owner, or through the security definer change capture)
-- and the service role's are unchanged.
-- Runs as the project's owner role.

create function realtime.stamp_sender() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  me pg_catalog.pg_roles;
begin
  select * into me from pg_catalog.pg_roles where rolname = current_user;
  if current_user = 'service_role' or me.rolsuper or me.oid = (
       select relowner from pg_catalog.pg_class where oid = 'realtime.messages'::pg_catalog.regclass) then
    return new;
  end if;
  new.kind := 'broadcast';
  if current_user = 'authenticated' then
    new.sender_type := 'user';
    new.sender_id := nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub';
  else
    new.sender_type := 'anon';
    new.sender_id := null;
  end if;
  return new;
end
$$;

create trigger messages_stamp_sender before insert on realtime.messages
  for each row execute function realtime.stamp_sender();
