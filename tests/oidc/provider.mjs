// A real OpenID provider on loopback for grove's login tests: panva's
// certified oidc-provider with its development login form (any user name,
// any password), PKCE required, RP-initiated and back-channel logout on.
//
//   node provider.mjs '<settings JSON>'
//
// settings: { "port": 0, "clients": [{ "client_id", "client_secret",
//   "redirect_uris": [...], "backchannel_logout_uri"?: "..." }],
//   "resolve": { "demo.localhost": "127.0.0.1:8080" } }
//
// `resolve` maps the host names the provider calls back (back-channel
// logout) to loopback addresses, as /etc/hosts would; only loopback is
// ever contacted. It prints one line, `{"issuer": "http://127.0.0.1:<port>"}`,
// once it listens.

import http from 'node:http';

// The provider's start-up notes (development keys, in-memory adapter) are
// expected here; its errors still print.
const warn = console.warn;
console.warn = (...args) => {
  if (!String(args[0]).startsWith('oidc-provider WARNING')) warn(...args);
};
const { default: Provider } = await import('oidc-provider');

const settings = JSON.parse(process.argv[2] ?? '{}');

const server = http.createServer();
await new Promise((resolve) => server.listen(settings.port ?? 0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

// Back-channel calls, sent with node:http so that the Host header names the
// site while the connection goes to the loopback address `resolve` gives.
function loopbackFetch(url, options) {
  const target = new URL(url);
  const address = settings.resolve?.[target.host] ?? settings.resolve?.[target.hostname] ?? target.host;
  const [hostname, port] = address.split(':');
  if (hostname !== '127.0.0.1') {
    return Promise.reject(new Error(`refusing to call ${url}: not on loopback`));
  }
  const body = options.body === undefined ? undefined : String(options.body);
  const headers = Object.fromEntries(options.headers ?? []);
  headers.host = target.host;
  if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
  return new Promise((resolve, reject) => {
    const request = http.request(
      { hostname, port, method: options.method ?? 'GET', path: target.pathname + target.search, headers },
      (response) => {
        response.resume();
        response.on('end', () => resolve({ status: response.statusCode }));
      },
    );
    request.setTimeout(2500, () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end(body);
  });
}

function subjectOf(login) {
  return login.replace(/[^A-Za-z0-9._-]/g, '-');
}

const provider = new Provider(issuer, {
  clients: (settings.clients ?? []).map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    backchannel_logout_session_required: true,
    ...client,
  })),
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => true },
  cookies: { keys: ['grove-test-provider'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // The development form's login name is the account: `alice` is
  // alice@example.com, a name with an @ is that address.
  async findAccount(_ctx, login) {
    return {
      accountId: login,
      async claims() {
        const email = login.includes('@') ? login : `${login}@example.com`;
        return { sub: subjectOf(login), email, email_verified: true, name: login };
      },
    };
  },
  // No consent screen: every client is granted the scopes it asks for.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
  fetch: loopbackFetch,
  ttl: { Session: 3600, Grant: 3600, AuthorizationCode: 60, IdToken: 3600, AccessToken: 3600, Interaction: 600 },
});
provider.on('server_error', (_ctx, error) => console.error('provider error:', error));
provider.on('backchannel.error', (_ctx, error, client) => {
  console.error(`back-channel logout to ${client.clientId} failed: ${error.message}`);
});

server.on('request', provider.callback());
console.log(JSON.stringify({ issuer }));
