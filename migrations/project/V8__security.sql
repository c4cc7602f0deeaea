-- Security hardening (issue 8).

-- Signed upload URLs are one-shot: the id (`jti`) of a token is claimed when
-- an upload through it starts, released if that upload fails, and kept until
-- the token expires. Not visible to the API roles.
create table storage.used_upload_tokens (
  jti        text primary key,
  expires_at timestamptz not null
);
create index on storage.used_upload_tokens (expires_at);
