// A scripted session of the official JavaScript client (@supabase/postgrest-js)
// against a Ferrobase project loaded with server/tests/it/rest/peers.rs's schema.
// usage: node postgrest_js_session.mjs PROJECT_URL ANON_KEY USER_A_TOKEN USER_B_TOKEN
// Exits non-zero (with the failed check) on the first mismatch.
import assert from 'node:assert/strict'
import { PostgrestClient } from '@supabase/postgrest-js'

const [url, anonKey, userA, userB] = process.argv.slice(2)
if (!userB) {
  console.error('usage: node postgrest_js_session.mjs PROJECT_URL ANON_KEY USER_A_TOKEN USER_B_TOKEN')
  process.exit(2)
}
const client = (token) =>
  new PostgrestClient(`${url}/rest/v1`, { headers: { apikey: anonKey, Authorization: `Bearer ${token}` } })
const anon = client(anonKey)
const a = client(userA)
const b = client(userB)

let checks = 0
async function check(name, fn) {
  try {
    await fn()
    checks++
  } catch (e) {
    console.error(`FAILED: ${name}\n${e.stack ?? e}`)
    process.exit(1)
  }
}
const ok = (res) => {
  assert.equal(res.error, null, JSON.stringify(res.error))
  return res
}

await check('anon select + order', async () => {
  const { data, status } = ok(await anon.from('tags').select('id,name').order('id'))
  assert.equal(status, 200)
  assert.deepEqual(data, [{ id: 1, name: 'red' }, { id: 2, name: 'green' }, { id: 3, name: 'blue' }])
})
await check('anon filters: in, ilike, neq, or, not', async () => {
  const { data } = ok(await anon.from('tags').select('id').in('id', [1, 2, 3]).ilike('name', '%e%').neq('id', 3).order('id', { ascending: false }))
  assert.deepEqual(data, [{ id: 2 }, { id: 1 }])
  const r2 = ok(await anon.from('tags').select('id').or('id.eq.1,name.eq.blue').not('id', 'eq', 1))
  assert.deepEqual(r2.data, [{ id: 3 }])
})
await check('anon sees no todos (RLS)', async () => {
  const { data, count } = ok(await anon.from('todos').select('*', { count: 'exact' }))
  assert.deepEqual(data, [])
  assert.equal(count, 0)
})
await check('anon cannot insert todos', async () => {
  const { error, status } = await anon.from('todos').insert({ title: 'anon', list_id: 1 })
  assert.equal(status, 401)
  assert.equal(error.code, '42501')
})
await check('user insert + select + single', async () => {
  const { data, status } = ok(await a.from('todos').insert({ title: 'js one', list_id: 1 }).select('title, done').single())
  assert.equal(status, 201)
  assert.deepEqual(data, { title: 'js one', done: false })
})
await check('user bulk insert', async () => {
  const rows = [{ title: 'js two', list_id: 1 }, { title: 'js three', list_id: 2, done: true }]
  // As with PostgREST, a missing key is NULL unless missing=default is asked for.
  const bad = await a.from('todos').insert(rows)
  assert.equal(bad.error?.code, '23502')
  const { data } = ok(await a.from('todos').insert(rows, { defaultToNull: false }).select('title'))
  assert.deepEqual(data.map((r) => r.title).sort(), ['js three', 'js two'])
})
await check('user count (exact, head)', async () => {
  const { count, data } = ok(await a.from('todos').select('*', { count: 'exact', head: true }))
  assert.equal(count, 5) // 2 seeded + 3 inserted above
  assert.equal(data, null)
})
await check('range + Content-Range count', async () => {
  const { data, count, status } = ok(await a.from('todos').select('title', { count: 'exact' }).order('id').range(0, 1))
  assert.equal(data.length, 2)
  assert.equal(count, 5)
  assert.equal(status, 206)
})
await check('embedding (many-to-one and one-to-many), only own rows', async () => {
  const { data } = ok(await a.from('lists').select('name, todos(title)').eq('id', 1).order('id', { referencedTable: 'todos' }).single())
  assert.equal(data.name, 'home')
  assert.ok(data.todos.every((t) => t.title.startsWith('a') || t.title.startsWith('js')), JSON.stringify(data))
  const r2 = ok(await a.from('todos').select('title, list:lists(name)').eq('title', 'js three').single())
  assert.deepEqual(r2.data, { title: 'js three', list: { name: 'work' } })
  const r3 = ok(await a.from('lists').select('name, todos!inner(title)').eq('todos.done', true))
  assert.deepEqual(r3.data, [{ name: 'work', todos: [{ title: 'js three' }] }])
})
await check('user A cannot touch B', async () => {
  const bRows = ok(await b.from('todos').select('id'))
  assert.equal(bRows.data.length, 1)
  const bId = bRows.data[0].id
  const seen = ok(await a.from('todos').select('id').eq('id', bId))
  assert.deepEqual(seen.data, [])
  const upd = ok(await a.from('todos').update({ title: 'hacked' }).eq('id', bId).select())
  assert.deepEqual(upd.data, [])
  const del = ok(await a.from('todos').delete().eq('id', bId).select())
  assert.deepEqual(del.data, [])
  const still = ok(await b.from('todos').select('title').single())
  assert.equal(still.data.title, 'b1')
})
await check('update + delete own rows', async () => {
  const upd = ok(await a.from('todos').update({ done: true }).eq('title', 'js one').select('done'))
  assert.deepEqual(upd.data, [{ done: true }])
  const del = ok(await a.from('todos').delete().eq('title', 'js two').select('title'))
  assert.deepEqual(del.data, [{ title: 'js two' }])
})
await check('upsert (merge, onConflict, ignoreDuplicates)', async () => {
  const r1 = ok(await a.from('tags').upsert({ id: 1, name: 'crimson' }).select())
  assert.deepEqual(r1.data, [{ id: 1, name: 'crimson' }])
  const r2 = ok(await a.from('tags').upsert({ id: 9, name: 'green' }, { onConflict: 'name', ignoreDuplicates: true }).select())
  assert.deepEqual(r2.data, [])
  const r3 = ok(await a.from('tags').upsert([{ id: 2, name: 'lime' }, { id: 4, name: 'black' }]).select().order('id'))
  assert.deepEqual(r3.data, [{ id: 2, name: 'lime' }, { id: 4, name: 'black' }])
})
await check('rpc: POST, GET, set-returning with filters', async () => {
  assert.equal(ok(await anon.rpc('add', { a: 1, b: 2 })).data, 3)
  assert.equal(ok(await anon.rpc('add', { a: 5, b: 6 }, { get: true })).data, 11)
  const { data } = ok(await a.rpc('my_todos').eq('done', true).select('title').order('title'))
  assert.deepEqual(data, [{ title: 'js one' }, { title: 'js three' }])
  const { count } = ok(await a.rpc('my_todos', {}, { count: 'exact', head: true }))
  assert.equal(count, 4) // a1, a2, js one, js three
})
await check('single / maybeSingle', async () => {
  const many = await anon.from('tags').select().single()
  assert.equal(many.status, 406)
  assert.equal(many.error.code, 'PGRST116')
  const none = ok(await anon.from('tags').select().eq('id', 999).maybeSingle())
  assert.equal(none.data, null)
  const one = ok(await anon.from('tags').select('name').eq('id', 3).maybeSingle())
  assert.deepEqual(one.data, { name: 'blue' })
})
await check('text search and csv', async () => {
  const { data } = ok(await a.from('todos').select('title').textSearch('title', 'three', { config: 'english' }))
  assert.deepEqual(data, [{ title: 'js three' }])
  const csv = ok(await anon.from('tags').select('id,name').eq('id', 3).csv())
  assert.equal(csv.data, 'id,name\n3,blue')
})
await check('errors: unknown table, duplicate, bad column, raise', async () => {
  const r1 = await anon.from('nope').select()
  assert.equal(r1.status, 404)
  assert.equal(r1.error.code, 'PGRST205')
  const r2 = await anon.from('tags').insert({ id: 3, name: 'again' })
  assert.equal(r2.status, 409)
  assert.equal(r2.error.code, '23505')
  const r3 = await anon.from('tags').select('nope')
  assert.equal(r3.status, 400)
  assert.equal(r3.error.code, '42703')
  const r4 = await anon.rpc('fail_it')
  assert.equal(r4.status, 400)
  assert.deepEqual({ code: r4.error.code, message: r4.error.message, details: r4.error.details, hint: r4.error.hint },
    { code: 'P0001', message: 'boom', details: 'det', hint: 'hin' })
})
await check('throwOnError', async () => {
  await assert.rejects(async () => await anon.from('nope').select().throwOnError())
})
await check('aggregates: grouped, in embeds, only own rows (RLS)', async () => {
  const { data } = ok(await a.from('todos').select('done, id.count()').order('done'))
  assert.deepEqual(data, [{ done: false, count: 2 }, { done: true, count: 2 }])
  const none = ok(await anon.from('todos').select('count()'))
  assert.deepEqual(none.data, [{ count: 0 }])
  const emb = ok(await a.from('lists').select('name, todos(n:count())').order('id'))
  assert.deepEqual(emb.data, [{ name: 'home', todos: [{ n: 3 }] }, { name: 'work', todos: [{ n: 1 }] }])
  const bad = await a.from('todos').select('id.drop()')
  assert.equal(bad.status, 400)
  assert.equal(bad.error.code, 'PGRST100')
})
await check('limited update and delete (order + limit)', async () => {
  const upd = ok(await a.from('todos').update({ title: 'first' }).eq('done', false).order('id').limit(1).select('title'))
  assert.deepEqual(upd.data, [{ title: 'first' }])
  const del = ok(await a.from('todos').delete().eq('done', true).order('id', { ascending: false }).limit(1).select('title'))
  assert.deepEqual(del.data, [{ title: 'js three' }])
  const unordered = await a.from('todos').delete().eq('done', false).limit(1)
  assert.equal(unordered.status, 400)
  assert.equal(unordered.error.code, 'PGRST109')
  const left = ok(await a.from('todos').select('title').order('id'))
  assert.deepEqual(left.data.map((r) => r.title), ['first', 'a2', 'js one'])
})

console.log(`postgrest-js: ${checks} checks passed`)
