//! Catalog queries behind the schema listings. Each answers one JSON value
//! built by Postgres (`jsonb_build_object`), so a listing is one round-trip.

use serde_json::Value;
use tokio_postgres::GenericClient;

/// Schemas that are never listed.
const SYSTEM_SCHEMAS: &str = "n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') \
     and n.nspname not like 'pg\\_temp\\_%' and n.nspname not like 'pg\\_toast\\_temp\\_%'";

async fn one_json(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Value, tokio_postgres::Error> {
    let row = client.query_one(sql, params).await?;
    Ok(row
        .get::<_, Option<Value>>(0)
        .unwrap_or(Value::Array(vec![])))
}

/// Schemas of the project, with whether the platform owns them.
pub async fn schemas(client: &impl GenericClient) -> Result<Value, tokio_postgres::Error> {
    let sql = format!(
        "select coalesce(jsonb_agg(jsonb_build_object('name', n.nspname, 'owner', pg_get_userbyid(n.nspowner), \
         'platform_owned', n.nspname = any($1)) order by n.nspname), '[]') from pg_namespace n where {SYSTEM_SCHEMAS}"
    );
    let protected: Vec<&str> = crate::admin::guard::PROTECTED_SCHEMAS.to_vec();
    one_json(client, &sql, &[&protected]).await
}

/// Tables (optionally of one schema, optionally one table) with columns,
/// primary key, foreign keys, indexes, RLS flags, policies and row estimate.
pub async fn tables(
    client: &impl GenericClient,
    schema: Option<&str>,
    table: Option<&str>,
) -> Result<Value, tokio_postgres::Error> {
    let sql = format!(
        r#"select coalesce(jsonb_agg(t order by t->>'schema', t->>'name'), '[]') from (
  select jsonb_build_object(
    'schema', n.nspname, 'name', c.relname,
    'kind', case c.relkind when 'p' then 'partitioned_table' else 'table' end,
    'comment', obj_description(c.oid, 'pg_class'),
    'rls_enabled', c.relrowsecurity, 'rls_forced', c.relforcerowsecurity,
    'row_estimate', greatest(c.reltuples, 0)::bigint,
    'columns', (select coalesce(jsonb_agg(jsonb_build_object(
        'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod), 'nullable', not a.attnotnull,
        'default', pg_get_expr(d.adbin, d.adrelid), 'position', a.attnum,
        'identity', a.attidentity <> '', 'generated', a.attgenerated <> '',
        'comment', col_description(c.oid, a.attnum)) order by a.attnum), '[]')
      from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped),
    'primary_key', (select coalesce(jsonb_agg(a.attname order by k.ord), '[]')
      from pg_constraint p cross join unnest(p.conkey) with ordinality k(attnum, ord)
      join pg_attribute a on a.attrelid = p.conrelid and a.attnum = k.attnum
      where p.conrelid = c.oid and p.contype = 'p'),
    'foreign_keys', (select coalesce(jsonb_agg(jsonb_build_object(
        'name', f.conname,
        'columns', (select jsonb_agg(a.attname order by k.ord) from unnest(f.conkey) with ordinality k(attnum, ord)
                    join pg_attribute a on a.attrelid = f.conrelid and a.attnum = k.attnum),
        'target_schema', tn.nspname, 'target_table', tc.relname,
        'target_columns', (select jsonb_agg(a.attname order by k.ord) from unnest(f.confkey) with ordinality k(attnum, ord)
                    join pg_attribute a on a.attrelid = f.confrelid and a.attnum = k.attnum),
        'on_delete', case f.confdeltype when 'c' then 'cascade' when 'n' then 'set_null' when 'd' then 'set_default' when 'r' then 'restrict' else 'no_action' end,
        'on_update', case f.confupdtype when 'c' then 'cascade' when 'n' then 'set_null' when 'd' then 'set_default' when 'r' then 'restrict' else 'no_action' end,
        'definition', pg_get_constraintdef(f.oid)) order by f.conname), '[]')
      from pg_constraint f join pg_class tc on tc.oid = f.confrelid join pg_namespace tn on tn.oid = tc.relnamespace
      where f.conrelid = c.oid and f.contype = 'f'),
    'indexes', (select coalesce(jsonb_agg(jsonb_build_object(
        'name', ic.relname, 'unique', i.indisunique, 'primary', i.indisprimary, 'method', am.amname,
        'columns', (select jsonb_agg(pg_get_indexdef(i.indexrelid, k, true) order by k) from generate_series(1, i.indnkeyatts) k),
        'definition', pg_get_indexdef(i.indexrelid)) order by ic.relname), '[]')
      from pg_index i join pg_class ic on ic.oid = i.indexrelid join pg_am am on am.oid = ic.relam
      where i.indrelid = c.oid),
    'policies', (select coalesce(jsonb_agg(jsonb_build_object(
        'name', pol.polname,
        'command', case pol.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update' when 'd' then 'delete' else 'all' end,
        'permissive', pol.polpermissive,
        'roles', (select coalesce(jsonb_agg(case when r = 0 then 'public' else pg_get_userbyid(r)::text end), '[]') from unnest(pol.polroles) r),
        'using', pg_get_expr(pol.polqual, pol.polrelid),
        'with_check', pg_get_expr(pol.polwithcheck, pol.polrelid)) order by pol.polname), '[]')
      from pg_policy pol where pol.polrelid = c.oid)
  ) as t
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where c.relkind in ('r', 'p') and {SYSTEM_SCHEMAS}
    and ($1::text is null or n.nspname = $1) and ($2::text is null or c.relname = $2)
) s"#
    );
    one_json(client, &sql, &[&schema, &table]).await
}

/// Views and materialized views with their columns and definitions.
pub async fn views(
    client: &impl GenericClient,
    schema: Option<&str>,
) -> Result<Value, tokio_postgres::Error> {
    let sql = format!(
        r#"select coalesce(jsonb_agg(jsonb_build_object(
    'schema', n.nspname, 'name', c.relname, 'materialized', c.relkind = 'm',
    'definition', pg_get_viewdef(c.oid, true), 'comment', obj_description(c.oid, 'pg_class'),
    'columns', (select coalesce(jsonb_agg(jsonb_build_object('name', a.attname,
        'type', format_type(a.atttypid, a.atttypmod)) order by a.attnum), '[]')
      from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)
  ) order by n.nspname, c.relname), '[]')
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where c.relkind in ('v', 'm') and {SYSTEM_SCHEMAS} and ($1::text is null or n.nspname = $1)"#
    );
    one_json(client, &sql, &[&schema]).await
}

/// Functions and procedures (not those of extensions).
pub async fn functions(
    client: &impl GenericClient,
    schema: Option<&str>,
) -> Result<Value, tokio_postgres::Error> {
    let sql = format!(
        r#"select coalesce(jsonb_agg(jsonb_build_object(
    'schema', n.nspname, 'name', p.proname,
    'arguments', pg_get_function_arguments(p.oid), 'returns', pg_get_function_result(p.oid),
    'language', l.lanname,
    'kind', case p.prokind when 'p' then 'procedure' when 'a' then 'aggregate' when 'w' then 'window' else 'function' end,
    'volatility', case p.provolatile when 'i' then 'immutable' when 's' then 'stable' else 'volatile' end,
    'security_definer', p.prosecdef, 'comment', obj_description(p.oid, 'pg_proc')
  ) order by n.nspname, p.proname), '[]')
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_language l on l.oid = p.prolang
  where {SYSTEM_SCHEMAS} and ($1::text is null or n.nspname = $1)
    and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')"#
    );
    one_json(client, &sql, &[&schema]).await
}

/// User-defined triggers.
pub async fn triggers(
    client: &impl GenericClient,
    schema: Option<&str>,
) -> Result<Value, tokio_postgres::Error> {
    let sql = format!(
        r#"select coalesce(jsonb_agg(jsonb_build_object(
    'schema', n.nspname, 'table', c.relname, 'name', t.tgname,
    'function', fn.nspname || '.' || f.proname, 'enabled', t.tgenabled <> 'D',
    'definition', pg_get_triggerdef(t.oid, true)
  ) order by n.nspname, c.relname, t.tgname), '[]')
  from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
  join pg_proc f on f.oid = t.tgfoid join pg_namespace fn on fn.oid = f.pronamespace
  where not t.tgisinternal and {SYSTEM_SCHEMAS} and ($1::text is null or n.nspname = $1)"#
    );
    one_json(client, &sql, &[&schema]).await
}
