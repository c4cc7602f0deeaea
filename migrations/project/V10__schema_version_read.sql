-- The data API reads the schema version straight from its sequence in the
-- statement that opens each request's transaction (server/src/db/tx.rs),
-- instead of calling _ferrobase.schema_version(), which as a security definer
-- function with a search_path setting cost a user switch, a search_path save
-- and restore and a fresh plan of its body on every request. That statement's
-- privileges are checked as the connection's login role (the owner), before
-- the role switch; the API roles may read the counter too (they could already
-- read it through the function), so the read never depends on which role
-- ends up executing it.
grant select on sequence _ferrobase.schema_version to anon, authenticated, service_role;
