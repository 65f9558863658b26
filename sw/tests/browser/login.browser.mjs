// Sign-in in Debian's chromium against a real OpenID provider (oidc-provider
// on loopback): two tabs signing in at once both finish, the session cookie
// is a __Host- cookie the page cannot read and a sibling host never gets,
// and a signed-in tab is live: the worker pins it to nothing, so a
// navigation after a publish shows the new version at once.

import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { Proxy, controlled, freePort, launchBrowser, tempDir, writeSite } from './harness.mjs';

const PROVIDER = fileURLToPath(new URL('../../../tests/oidc/provider.mjs', import.meta.url));
const SECRET = 'browser-test-secret';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Starts the provider on `port` for a client of `proxyPort`; resolves once it listens. */
async function startProvider(port, proxyPort) {
  const settings = {
    port,
    clients: [
      {
        client_id: 'grove-demo',
        client_secret: SECRET,
        redirect_uris: [`http://demo.localhost:${proxyPort}/_grove/auth/callback`],
      },
    ],
  };
  const child = spawn(process.execPath, [PROVIDER, JSON.stringify(settings)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the provider exited (${code})`)));
  });
  return { child, issuer: JSON.parse(line).issuer };
}

/** Signs a tab in at the provider's development form (any name and password). */
async function submitLogin(tab, login) {
  await tab.waitForSelector('input[name="login"]');
  await tab.fill('input[name="login"]', login);
  await tab.fill('input[name="password"]', 'any');
  await tab.click('button[type="submit"]');
}

test('two tabs sign in at once; the cookie is a host cookie the page cannot read; a signed-in tab is live', async (t) => {
  const providerPort = await freePort();
  const proxy = await Proxy.start({
    config: [
      '[sites.demo.auth]',
      `issuer = "http://127.0.0.1:${providerPort}"`,
      'client_id = "grove-demo"',
      'client_secret_env = "BROWSER_OIDC_SECRET"',
      'allow = ["*@example.com"]',
      'protect = ["/members/*"]',
    ].join('\n'),
    env: { BROWSER_OIDC_SECRET: SECRET },
  });
  const provider = await startProvider(providerPort, proxy.port);
  const site = await tempDir();
  t.after(async () => {
    provider.child.kill('SIGKILL');
    await proxy.stop();
  });
  const page = (version) =>
    `<!doctype html><html><head><title>grove</title></head><body><p id="v">version ${version}</p></body></html>`;
  const files = (version) => ({
    'index.html': page(version),
    'members/a.html': page(`${version} members a`),
    'members/b.html': page(`${version} members b`),
  });
  await writeSite(site, files(1));
  await proxy.publish(site);

  const context = await browser.newContext();
  t.after(() => context.close());
  // Anonymous: a members page sends the tab to sign in.
  const first = await context.newPage();
  const second = await context.newPage();
  await first.goto(proxy.url('demo', '/members/a'));
  await second.goto(proxy.url('demo', '/members/b'));
  assert.match(first.url(), new RegExp(`^${provider.issuer}/interaction/`), 'sent to the provider');
  assert.match(second.url(), new RegExp(`^${provider.issuer}/interaction/`));
  const states = (await context.cookies(proxy.url('demo', '/'))).filter((c) => c.name.startsWith('__Host-grove_login_'));
  assert.equal(states.length, 2, 'each sign-in keeps its own state cookie');

  // The second tab finishes first; both land where they started.
  await submitLogin(second, 'alice');
  await second.waitForURL(proxy.url('demo', '/members/b'));
  await submitLogin(first, 'alice');
  await first.waitForURL(proxy.url('demo', '/members/a'));
  assert.equal(await first.textContent('#v'), 'version 1 members a');
  assert.equal(await second.textContent('#v'), 'version 1 members b');

  const cookies = await context.cookies(proxy.url('demo', '/'));
  const session = cookies.find((c) => c.name === '__Host-grove_session');
  assert.ok(session, 'the session cookie is set');
  assert.equal(session.secure, true);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');
  assert.equal(session.path, '/');
  assert.equal(session.domain, 'demo.localhost', 'host-only: no Domain attribute');
  assert.equal(cookies.filter((c) => c.name.startsWith('__Host-grove_login_')).length, 0, 'state cookies are cleared');
  assert.equal(await first.evaluate(() => document.cookie.includes('grove_session')), false, 'HttpOnly');
  assert.equal((await context.cookies(proxy.url('other', '/'))).length, 0, 'a sibling host gets no cookie');

  const me = await first.evaluate(async () => (await fetch('/_grove/auth/me')).json());
  assert.equal(me.email, 'alice@example.com');

  // Live: a worker-controlled tab still gets the newest version at once.
  await first.goto(proxy.url('demo', '/'));
  await controlled(first);
  const live = await first.evaluate(async () => {
    const response = await fetch('/', { cache: 'no-store' });
    return { live: response.headers.get('x-grove-live'), cache: response.headers.get('cache-control') };
  });
  assert.deepEqual(live, { live: '1', cache: 'private, no-store' });
  await writeSite(site, files(2));
  await proxy.publish(site);
  const navigation = await first.goto(proxy.url('demo', '/'));
  assert.equal(navigation.fromServiceWorker(), true, 'the worker answers the navigation');
  assert.equal(await first.textContent('#v'), 'version 2', 'a signed-in tab is never pinned to an old version');
  await first.goto(proxy.url('demo', '/members/a'));
  assert.equal(await first.textContent('#v'), 'version 2 members a');

  // Signing out (a same-origin form POST) ends it; the members page sends to sign in again.
  await first.goto(proxy.url('demo', '/'));
  await first.evaluate(() => {
    const form = document.createElement('form');
    form.method = 'post';
    form.action = '/_grove/auth/logout';
    document.body.append(form);
    form.submit();
  });
  await first.waitForURL(new RegExp(`^${provider.issuer}/`));
  const after = await context.cookies(proxy.url('demo', '/'));
  assert.equal(after.find((c) => c.name === '__Host-grove_session'), undefined, 'the cookie is gone');
  // (A navigation to a members page would sign in again at once: the
  // provider's own session lives until the user confirms its logout page.)
  const anonymous = await context.newPage();
  await anonymous.goto(proxy.url('demo', '/'));
  const statuses = await anonymous.evaluate(async () => [
    (await fetch('/_grove/auth/me')).status,
    (await fetch('/members/a')).status,
  ]);
  assert.deepEqual(statuses, [401, 401], 'signed out, and the worker serves no members page from its cache');
});
