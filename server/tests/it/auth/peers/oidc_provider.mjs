// A real OpenID Connect provider (panva/oidc-provider) for the OAuth tests.
// Env: NODE_MODULES (where oidc-provider is installed), PORT, REDIRECT_URI.
// Accounts: any login name; claims: sub = login, email = login@oidc.test (verified).
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const entry = path.join(process.env.NODE_MODULES, 'oidc-provider', 'lib', 'index.js');
const { default: Provider } = await import(pathToFileURL(entry).href);

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'ferrobase',
    client_secret: 'ferrobase-secret',
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'picture'] },
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, email: `${id}@oidc.test`, email_verified: true, name: `User ${id}` }),
  }),
  features: { devInteractions: { enabled: true } },
  // ID_TOKEN_CLAIMS=1: profile claims in the ID token too (for the id_token grant).
  conformIdTokenClaims: process.env.ID_TOKEN_CLAIMS !== '1',
});
provider.proxy = true;
const server = provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
