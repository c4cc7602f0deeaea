// Drives the official @supabase/auth-js client against a Ferrobase project.
// Env: AUTH_URL (…/auth/v1), ANON_KEY, SERVICE_KEY. Exits non-zero on the
// first failed expectation; prints one line per step.
const { GoTrueClient, GoTrueAdminApi } = require('@supabase/auth-js');

const url = process.env.AUTH_URL;
const anon = process.env.ANON_KEY;
const service = process.env.SERVICE_KEY;

function expect(cond, what, detail) {
  if (!cond) {
    console.error(`FAILED: ${what}`, detail === undefined ? '' : JSON.stringify(detail));
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

async function main() {
  const memory = {};
  const storage = {
    getItem: (k) => memory[k] ?? null,
    setItem: (k, v) => { memory[k] = v; },
    removeItem: (k) => { delete memory[k]; },
  };
  const client = new GoTrueClient({
    url,
    headers: { apikey: anon, Authorization: `Bearer ${anon}` },
    storage,
    persistSession: true,
    autoRefreshToken: false,
    detectSessionInUrl: false,
  });
  const email = `js-${Date.now()}@example.com`;

  let { data, error } = await client.signUp({ email, password: 'js-password-1', options: { data: { name: 'JS' } } });
  expect(!error && data.session && data.user.email === email, 'signUp returns a session', { error, data });
  expect(data.user.user_metadata.name === 'JS', 'signUp stores user metadata', data.user);

  ({ data, error } = await client.signUp({ email, password: 'js-password-1' }));
  expect(error && error.code === 'user_already_exists' && error.status === 422, 'duplicate signUp is user_already_exists', error);

  ({ data, error } = await client.signInWithPassword({ email, password: 'wrong-password' }));
  expect(error && error.code === 'invalid_credentials' && error.status === 400, 'wrong password is invalid_credentials', error);

  ({ data, error } = await client.signInWithPassword({ email, password: 'js-password-1' }));
  expect(!error && data.session.access_token && data.session.refresh_token, 'signInWithPassword', error);
  const first = data.session;

  ({ data, error } = await client.getUser());
  expect(!error && data.user.email === email, 'getUser', error);

  ({ data, error } = await client.refreshSession());
  expect(!error && data.session.refresh_token !== first.refresh_token, 'refreshSession rotates the refresh token', error);
  expect(data.session.user.id === first.user.id, 'refreshed session is the same user');

  ({ data, error } = await client.updateUser({ data: { theme: 'dark' }, password: 'js-password-2' }));
  expect(!error && data.user.user_metadata.theme === 'dark', 'updateUser', error);

  ({ data, error } = await client.getSession());
  expect(!error && data.session && data.session.user.email === email, 'getSession from storage', error);

  const admin = new GoTrueAdminApi({ url, headers: { apikey: service, Authorization: `Bearer ${service}` } });
  ({ data, error } = await admin.listUsers());
  expect(!error && data.users.some((u) => u.email === email), 'admin.listUsers', error);
  ({ data, error } = await admin.updateUserById(first.user.id, { app_metadata: { roles: ['tester'] } }));
  expect(!error && data.user.app_metadata.roles[0] === 'tester', 'admin.updateUserById app roles', error);

  ({ error } = await client.signOut());
  expect(!error, 'signOut', error);
  ({ data } = await client.getSession());
  expect(data.session === null, 'no session after signOut');

  ({ data, error } = await client.signInWithPassword({ email, password: 'js-password-2' }));
  expect(!error && data.session, 'signIn with the updated password', error);
  ({ data, error } = await admin.deleteUser(data.user.id));
  expect(!error, 'admin.deleteUser', error);
  console.log('ALL OK');
}

main().catch((e) => {
  console.error('FAILED: exception', e);
  process.exit(1);
});
