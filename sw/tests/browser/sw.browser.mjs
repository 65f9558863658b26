// The worker in a real browser (Debian's chromium through playwright-core)
// against a real grove-proxy, with sites published by the real grove CLI.
// Network fetches are counted from the proxy's access log: the browser's
// routing hooks do not see what a service worker fetches.
//
//   npm run test:browser      (see harness.mjs for the environment it reads)

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import '../ts.mjs';
import {
  Proxy,
  agePins,
  controlled,
  launchBrowser,
  recordUpdates,
  sleep,
  tally,
  tempDir,
  until,
  workerOn,
  workerStore,
  writeSite,
} from './harness.mjs';

const { decodeNode, isLeaf } = await import('../../src/tree/node.ts');

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

/** A proxy and a fresh browser context for one test, both gone when it ends. */
async function setup(t, { config = '', context: options = {} } = {}) {
  const proxy = await Proxy.start({ config });
  const context = await browser.newContext(options);
  const errors = [];
  context.on('weberror', (error) => errors.push(error.error().message));
  t.after(async () => {
    await context.close().catch(() => undefined);
    await proxy.stop();
  });
  const site = await tempDir();
  t.after(() => rm(site, { recursive: true, force: true }));
  /** The browser's requests in the access log since `mark` (not the CLI's or the harness's own). */
  const browserRequests = async (mark) =>
    (await proxy.since(mark)).filter((entry) => entry.host === `demo.localhost:${proxy.port}`);
  return { proxy, context, errors, site, browserRequests };
}

/**
 * A page that says which version it is (`data-version` on the body) and
 * loads `app.js`, which marks the document with its own version, so a mix
 * shows. No favicon requests; `poll` sets the register script's interval.
 */
function page(version, title, { poll = 0, body = '' } = {}) {
  return (
    `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">` +
    `<meta name="grove-poll-seconds" content="${poll}"><title>${title}</title>` +
    `<script src="/assets/app.js"></script><link rel="stylesheet" href="/assets/site.css"></head>` +
    `<body data-version="${version}"><h1>${title}</h1>${body}</body></html>\n`
  );
}

/** A site in which every file names `version`; `only` adds files of that version alone. */
function versionedSite(version, { poll = 0, only = {} } = {}) {
  return {
    'index.html': page(version, 'home', { poll }),
    'about/index.html': page(version, 'about', { poll }),
    'page-a.html': page(version, 'page a', { poll }),
    'page-b.html': page(version, 'page b', { poll }),
    'assets/app.js': `document.documentElement.dataset.app = ${JSON.stringify(version)};\n`,
    'assets/site.css': `:root { --version: "${version}"; }\n`,
    'assets/lazy.mjs': `export const version = ${JSON.stringify(version)};\n`,
    'data.json': JSON.stringify({ version }),
    ...only,
  };
}

/** What the page shows of its versions: the document's, app.js's and the stylesheet's. */
function shown(page) {
  return page.evaluate(() => ({
    document: document.body.dataset.version,
    app: document.documentElement.dataset.app,
    css: JSON.parse(getComputedStyle(document.documentElement).getPropertyValue('--version').trim() || 'null'),
  }));
}

/** Lazy loads from the page: a module, JSON, another page's HTML, and `extra` paths' status. */
function lazy(page, extra = []) {
  return page.evaluate(async (extra) => {
    const status = {};
    for (const path of extra) status[path] = await fetch(path).then((r) => r.status, () => 'failed');
    const html = await (await fetch('/page-b.html')).text();
    return {
      module: (await import(`/assets/lazy.mjs`)).version,
      json: (await (await fetch('/data.json')).json()).version,
      page: /data-version="([^"]*)"/.exec(html)?.[1],
      status,
    };
  }, extra);
}

/**
 * Loads the site once so the worker installs and learns the live version
 * (from the register script's check at load), and again so the tab is
 * pinned and served by it.
 */
async function installed(page, proxy, path = '/') {
  await page.goto(proxy.url('demo', path));
  await controlled(page);
  await until('the worker to learn a version', async () => (await workerStore(page))?.state.current);
  const response = await page.reload();
  assert.equal(response.fromServiceWorker(), true, 'the second load is the worker’s');
  return response;
}

// ---------------------------------------------------------------------------

test('first load installs the worker, which then controls and serves the site', async (t) => {
  const { proxy, context, site, errors, browserRequests } = await setup(t);
  await writeSite(site, versionedSite('v1'));
  await proxy.publish(site);
  const tab = await context.newPage();

  const first = await tab.goto(proxy.url());
  assert.equal(first.status(), 200);
  assert.equal(first.fromServiceWorker(), false, 'the first visit is the network’s');
  assert.equal(await controlled(tab), proxy.url('demo', '/_grove/sw.js'));
  const registration = await tab.evaluate(async () => {
    const found = await navigator.serviceWorker.getRegistration();
    return { scope: found.scope, active: found.active?.state };
  });
  assert.deepEqual(registration, { scope: proxy.url(), active: 'activated' });
  await workerOn(tab, 1);

  const mark = proxy.mark();
  const again = await tab.goto(proxy.url('demo', '/page-a.html'));
  assert.equal(again.status(), 200);
  assert.equal(again.fromServiceWorker(), true);
  assert.deepEqual(await shown(tab), { document: 'v1', app: 'v1', css: 'v1' });
  // The page the worker built is the proxy's, byte for byte (register tag included, once).
  const fromWorker = await again.body();
  const fromProxy = (await proxy.get('demo', '/page-a.html')).body;
  assert.equal(fromWorker.toString(), fromProxy.toString());
  assert.equal(fromWorker.toString().split('/_grove/register.js').length, 2);
  assert.equal(again.headers()['x-grove-version'], '1');
  // It came from the tree and blobs, not from the page's URL.
  const seen = await browserRequests(mark);
  assert.deepEqual(tally(seen, /^\/(page-a\.html|assets\/)/).paths, [], 'no site path reached the network');
  assert.ok(tally(seen, /^\/_grove\/blob\//).requests >= 1, 'the worker fetched blobs');
  // The worker pinned the tab to the version it serves.
  const store = await workerStore(tab);
  assert.equal(store.state.current.version, 1);
  assert.ok(store.pins.some((pin) => pin.version === 1));
  assert.deepEqual(errors, []);
});

test('a new version with 1 of 500 files changed costs only its changed nodes and blob', async (t) => {
  const { proxy, context, site, errors, browserRequests } = await setup(t);
  const files = {
    'index.html': page('v1', 'home', { poll: 1 }),
    'assets/app.js': 'document.documentElement.dataset.app = "v1";\n',
    'assets/site.css': ':root { --version: "v1"; }\n',
  };
  for (let i = 0; i < 497; i++) {
    const n = String(i).padStart(3, '0');
    files[`docs/page-${n}.html`] = page('v1', `page ${n}`, { poll: 1 });
  }
  await writeSite(site, files);
  const v1 = await proxy.publish(site);
  await recordUpdates(context);
  const tab = await context.newPage();
  await installed(tab, proxy);
  // The visitor reads the page that will change: its leaf and blob are cached.
  assert.equal((await tab.goto(proxy.url('demo', '/docs/page-250.html'))).fromServiceWorker(), true);

  const changed = page('v2', 'page 250', { poll: 1 });
  files['docs/page-250.html'] = changed;
  await writeSite(site, files);
  const mark = proxy.mark();
  const v2 = await proxy.publish(site);
  // The page's poll (every second) brings the news; the worker syncs, flips, and tells the tab.
  await until('the update event', () => tab.evaluate(() => window.__updates.find((u) => u.version === 2)));
  const applied = await browserRequests(mark);

  // What changed between the two trees, read from the proxy outside the browser.
  const oldNodes = await treeNodes(proxy, v1.root);
  const newNodes = await treeNodes(proxy, v2.root);
  const expectedNodes = [...newNodes.keys()].filter((hash) => !oldNodes.has(hash)).sort();
  const changedEntry = [...newNodes.values()]
    .flatMap((node) => (isLeaf(node) ? node.entries : []))
    .find((entry) => entry.path === 'docs/page-250.html');
  assert.ok(expectedNodes.length >= 2, `a root and a leaf at least (${expectedNodes.length})`);

  const trees = tally(applied, /^\/_grove\/tree\//);
  const blobs = tally(applied, /^\/_grove\/blob\//);
  assert.deepEqual(trees.paths.map((path) => path.slice('/_grove/tree/'.length)).sort(), expectedNodes);
  assert.deepEqual(blobs.paths, [`/_grove/blob/${changedEntry.hash}`]);
  assert.deepEqual(tally(applied, /^\/(?!_grove\/)/).paths, [], 'no site path was fetched');
  t.diagnostic(`update: ${trees.requests} nodes (${trees.bytes} B) + ${blobs.requests} blob (${blobs.bytes} B)`);

  // Everything the new version of that page needs is already here.
  const before = proxy.mark();
  const response = await tab.goto(proxy.url('demo', '/docs/page-250.html'));
  assert.equal(response.fromServiceWorker(), true);
  assert.deepEqual((await shown(tab)).document, 'v2');
  assert.deepEqual(tally(await browserRequests(before), /^\/(?!_grove\/(root|register\.js)$)/).paths, []);
  assert.deepEqual(errors, []);
});

test('an old tab stays on its version after a publish, a new tab gets only the new one', async (t) => {
  const { proxy, context, site, errors } = await setup(t);
  // chunk-v1.js exists only in version 1, chunk-v2.js only in version 2: the
  // lazy chunk a deploy removes.
  await writeSite(site, versionedSite('v1', { only: { 'assets/chunk-v1.js': '// v1 chunk\n' } }));
  await proxy.publish(site);
  await recordUpdates(context);
  // The first visit: a page the worker did not serve (it installs meanwhile),
  // pinned to the version its check at load reports.
  const first = await context.newPage();
  assert.equal((await first.goto(proxy.url('demo', '/page-a.html'))).fromServiceWorker(), false);
  await controlled(first);
  await until('the first page to be pinned', async () => (await workerStore(first))?.pins.some((pin) => pin.version === 1));
  // A tab the worker served.
  const old = await context.newPage();
  assert.equal((await old.goto(proxy.url('demo', '/page-a.html'))).fromServiceWorker(), true);
  assert.deepEqual(await shown(old), { document: 'v1', app: 'v1', css: 'v1' });

  await writeSite(site, versionedSite('v2', { only: { 'assets/chunk-v2.js': '// v2 chunk\n' } }));
  await proxy.publish(site);

  // A tab opened now, before the worker has heard of version 2, starts on
  // version 2 all the same: the navigation's check finds the proxy moved
  // on, and the worker syncs version 2 meanwhile, which every open tab
  // hears of.
  const between = await context.newPage();
  assert.equal((await between.goto(proxy.url('demo', '/about/'))).fromServiceWorker(), true);
  assert.deepEqual(await shown(between), { document: 'v2', app: 'v2', css: 'v2' });
  await until('the old tab’s update event', () => old.evaluate(() => window.__updates.some((u) => u.version === 2)));
  await workerOn(old, 2);

  const v1Lazy = { module: 'v1', json: 'v1', page: 'v1', status: { '/assets/chunk-v1.js': 200, '/assets/chunk-v2.js': 404 } };
  const paths = Object.keys(v1Lazy.status);
  for (const tab of [first, old]) {
    assert.deepEqual(await shown(tab), { document: 'v1', app: 'v1', css: 'v1' });
    assert.deepEqual(await lazy(tab, paths), v1Lazy);
  }

  const fresh = await context.newPage();
  const response = await fresh.goto(proxy.url('demo', '/page-a.html'));
  assert.equal(response.fromServiceWorker(), true);
  assert.deepEqual(await shown(fresh), { document: 'v2', app: 'v2', css: 'v2' });
  assert.deepEqual(await lazy(fresh, paths), {
    module: 'v2',
    json: 'v2',
    page: 'v2',
    status: { '/assets/chunk-v1.js': 404, '/assets/chunk-v2.js': 200 },
  });
  // The old tabs still are on version 1, after the new tab's loads too.
  assert.deepEqual(await lazy(first, paths), v1Lazy);
  assert.deepEqual(await lazy(old, paths), v1Lazy);
  assert.deepEqual(errors.filter((message) => !/404/.test(message)), []);
});

test('every new tab starts on the newest version, publish after publish; old tabs keep theirs', async (t) => {
  const { proxy, context, site, errors } = await setup(t);
  await writeSite(site, versionedSite('v1'));
  await proxy.publish(site);
  const old = await context.newPage();
  await installed(old, proxy, '/page-a.html');
  assert.deepEqual(await shown(old), { document: 'v1', app: 'v1', css: 'v1' });
  const v1Lazy = { module: 'v1', json: 'v1', page: 'v1', status: {} };
  assert.deepEqual(await lazy(old), v1Lazy);
  for (const n of [2, 3, 4]) {
    await writeSite(site, versionedSite(`v${n}`));
    await proxy.publish(site);
    // The publishing proxy serves the new version at once; a new tab
    // opened now must show it, whatever the worker has synced so far.
    const tab = await context.newPage();
    const response = await tab.goto(proxy.url('demo', '/about/'));
    assert.equal(response.fromServiceWorker(), true);
    assert.deepEqual(await shown(tab), { document: `v${n}`, app: `v${n}`, css: `v${n}` }, `after publish ${n}`);
    assert.deepEqual(await lazy(tab), { module: `v${n}`, json: `v${n}`, page: `v${n}`, status: {} });
    // Once the worker holds the new version, a navigation it answers from
    // its cache says it checked.
    await workerOn(tab, n);
    const again = await tab.goto(proxy.url('demo', '/page-b.html'));
    assert.equal(again.headers()['x-grove-freshness'], 'same');
    assert.deepEqual(await shown(tab), { document: `v${n}`, app: `v${n}`, css: `v${n}` });
    // The first tab stays on version 1 throughout, dynamic imports included.
    assert.deepEqual(await lazy(old), v1Lazy, `the old tab after publish ${n}`);
    assert.deepEqual(await shown(old), { document: 'v1', app: 'v1', css: 'v1' });
    await tab.close();
  }
  assert.deepEqual(errors.filter((message) => !/404/.test(message)), []);
});

test('offline, cached pages and their assets are served by the worker', async (t) => {
  const { proxy, context, site, errors, browserRequests } = await setup(t);
  await writeSite(site, versionedSite('v1', { only: { 'never-visited.html': page('v1', 'never visited') } }));
  await proxy.publish(site);
  const tab = await context.newPage();
  await installed(tab, proxy);
  await tab.goto(proxy.url('demo', '/about/'));
  await workerOn(tab, 1);

  await context.setOffline(true);
  const mark = proxy.mark();
  for (const path of ['/', '/about/', '/about']) {
    const response = await tab.goto(proxy.url('demo', path));
    assert.equal(response.status(), 200, path);
    assert.equal(response.fromServiceWorker(), true, path);
    assert.equal(response.headers()['x-grove-freshness'], 'offline', 'the page says it could not be checked');
    assert.equal(new URL(tab.url()).pathname, path === '/about' ? '/about/' : path);
    assert.deepEqual(await shown(tab), { document: 'v1', app: 'v1', css: 'v1' }, path);
  }
  // Offline is real for the worker too: what it never cached cannot load.
  await assert.rejects(tab.goto(proxy.url('demo', '/never-visited.html')));
  assert.deepEqual(await browserRequests(mark), [], 'the proxy saw nothing while offline');

  await context.setOffline(false);
  assert.equal((await tab.goto(proxy.url('demo', '/never-visited.html'))).status(), 200);
  assert.deepEqual(errors, []);
});

test('eviction keeps to the budget but never what a pinned tab needs', async (t) => {
  const { proxy, context, site, errors } = await setup(t);
  const BUDGET = 150_000;
  const BIG = 6;
  // Six 40 kB files whose bytes change with every version; every page says the budget.
  const bigFiles = () =>
    Object.fromEntries(Array.from({ length: BIG }, (_, i) => [`assets/big-${i}.bin`, randomBytes(40_000)]));
  const siteOf = (version) => {
    const files = versionedSite(version);
    for (const name of ['index.html', 'about/index.html', 'page-a.html', 'page-b.html']) {
      files[name] = files[name].replace('<title>', `<meta name="grove-cache-bytes" content="${BUDGET}"><title>`);
    }
    files['index.html'] = files['index.html'].replace('content="0"', 'content="1"');
    return { ...files, ...bigFiles() };
  };
  const hashes = {};
  const publish = async (version) => {
    const files = siteOf(version);
    hashes[version] = Object.fromEntries(
      Object.entries(files).map(([path, bytes]) => [path, createHash('sha256').update(bytes).digest('hex')]),
    );
    await writeSite(site, files);
    return proxy.publish(site);
  };
  const bigOf = (version, from, to) => Array.from({ length: to - from }, (_, i) => hashes[version][`assets/big-${from + i}.bin`]);
  const loadBig = (tab, from, to) =>
    tab.evaluate(
      async ([from, to]) => {
        const digests = [];
        for (let i = from; i < to; i++) {
          const bytes = await (await fetch(`/assets/big-${i}.bin`)).arrayBuffer();
          digests.push([...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join(''));
        }
        return digests;
      },
      [from, to],
    );

  await publish('v1');
  await recordUpdates(context);
  // The pinned tab: version 1, three big files read. Its index page polls every second.
  const pinned = await context.newPage();
  await installed(pinned, proxy);
  assert.deepEqual(await loadBig(pinned, 0, 3), bigOf('v1', 0, 3));

  // Another tab reads all of version 2, then closes: its pin goes with it
  // once unseen for an hour (the worker keeps the pin of a tab
  // `clients.matchAll` does not list for that long: a tab in the back/forward
  // cache is not listed), which is made to have passed.
  await publish('v2');
  await workerOn(pinned, 2);
  const other = await context.newPage();
  await other.goto(proxy.url('demo', '/page-b.html'));
  assert.deepEqual(await loadBig(other, 0, BIG), bigOf('v2', 0, BIG));
  await other.close();
  assert.ok((await agePins(pinned, 2, 2 * 3_600_000)) >= 1, 'the closed tab was pinned to version 2');

  // Two more versions: version 2 is then neither current, previous, nor pinned.
  await publish('v3');
  await workerOn(pinned, 3);
  await publish('v4');
  await workerOn(pinned, 4);

  const stored = await until('version 2 to be evicted', async () => {
    const store = await workerStore(pinned);
    return bigOf('v2', 0, BIG).every((hash) => !store.blobs.includes(hash)) && store;
  });
  const total = stored.usage.reduce((sum, record) => sum + record.size, 0);
  t.diagnostic(`stored after eviction: ${stored.usage.length} objects, ${total} bytes (budget ${BUDGET})`);
  // The pinned tab's files are all kept (they are the least recently used).
  for (const hash of [hashes.v1['index.html'], hashes.v1['assets/app.js'], hashes.v1['assets/site.css'], ...bigOf('v1', 0, 3)]) {
    assert.ok(stored.blobs.includes(hash), `pinned version 1 keeps ${hash}`);
  }
  // ... and still serve it, with no network at all.
  await context.setOffline(true);
  assert.deepEqual(await loadBig(pinned, 0, 3), bigOf('v1', 0, 3));
  assert.deepEqual(await shown(pinned), { document: 'v1', app: 'v1', css: 'v1' });
  assert.deepEqual(errors, []);
});

test('the kill switch on a response the worker fetches unregisters it and deletes its data', async (t) => {
  const { proxy, context, site } = await setup(t);
  await writeSite(site, versionedSite('v1'));
  await proxy.publish(site);
  const tab = await context.newPage();
  await installed(tab, proxy);
  assert.notEqual(await workerStore(tab), null);

  await proxy.restart('service_worker = false');
  // Only the proxy answers a missing file (its 404 page): the worker asks it,
  // pinned to the tab's version, and finds the order on the reply.
  assert.equal(await tab.evaluate(async () => (await fetch('/missing.js')).status), 404);
  await until('the registration to go', () => tab.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).length === 0));
  await until('the database to go', async () => (await workerStore(tab)) === null);
  await assertGone(tab, proxy);
});

test('the kill switch on /_grove/root unregisters the worker from a page it serves', async (t) => {
  const { proxy, context, site } = await setup(t);
  await writeSite(site, versionedSite('v1'));
  await proxy.publish(site);
  const tab = await context.newPage();
  await installed(tab, proxy);

  await proxy.restart('[sites.demo]\nservice_worker = false');
  // The worker answers this load from its cache, register tag included; the
  // register script's check at load finds the order.
  assert.equal((await tab.reload()).fromServiceWorker(), true);
  await until('the registration to go', () => tab.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).length === 0));
  await until('the database to go', async () => (await workerStore(tab)) === null);
  await assertGone(tab, proxy);
});

/** After the kill switch: the next load is the network's, without the register tag, and nothing reloads by itself. */
async function assertGone(tab, proxy) {
  let navigations = 0;
  tab.on('framenavigated', (frame) => frame === tab.mainFrame() && navigations++);
  const response = await tab.reload();
  assert.equal(response.fromServiceWorker(), false);
  assert.equal(response.headers()['x-grove-sw'], 'unregister');
  assert.doesNotMatch(await response.text(), /register\.js/);
  assert.equal(await tab.evaluate(() => navigator.serviceWorker.controller), null);
  assert.deepEqual(await shown(tab), { document: 'v1', app: 'v1', css: 'v1' });
  await sleep(1500);
  assert.equal(navigations, 1, 'no reload loop');
  assert.equal(await tab.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).length), 0);
}

test('with service workers blocked, the site works as it does for bots', async (t) => {
  const { proxy, context, site, errors, browserRequests } = await setup(t, { context: { serviceWorkers: 'block' } });
  await writeSite(site, versionedSite('v1', { only: { 'index.html': page('v1', 'home', { poll: 1 }) } }));
  await proxy.publish(site);
  const tab = await context.newPage();
  const mark = proxy.mark();
  for (const path of ['/', '/about', '/page-a.html']) {
    const response = await tab.goto(proxy.url('demo', path));
    assert.equal(response.status(), 200, path);
    assert.equal(response.fromServiceWorker(), false);
    assert.deepEqual(await shown(tab), { document: 'v1', app: 'v1', css: 'v1' }, path);
  }
  assert.equal(new URL(tab.url()).pathname, '/page-a.html');
  assert.deepEqual(await lazy(tab), { module: 'v1', json: 'v1', page: 'v1', status: {} });
  // This page asks its register script to poll every second; with no
  // worker to tell, it checks once at load and stops.
  await tab.goto(proxy.url());
  await sleep(2500);
  assert.equal(await tab.evaluate(() => navigator.serviceWorker?.controller ?? null), null);
  const seen = await browserRequests(mark);
  assert.equal(tally(seen, /^\/_grove\/root$/).requests, 4, 'one check per page load, no polling');
  assert.deepEqual(tally(seen, /^\/_grove\/(tree|blob)\//).paths, [], 'nothing of the worker’s');
  assert.deepEqual(errors, []);
});

// ---------------------------------------------------------------------------

/** Every node of the tree under `root`, decoded, by hash (fetched from the proxy outside the browser). */
async function treeNodes(proxy, root) {
  const nodes = new Map();
  const stack = [root];
  while (stack.length > 0) {
    const hash = stack.pop();
    if (nodes.has(hash)) continue;
    const { status, body } = await proxy.get('demo', `/_grove/tree/${hash}`);
    assert.equal(status, 200);
    const node = decodeNode(new Uint8Array(body));
    nodes.set(hash, node);
    if (!isLeaf(node)) stack.push(...node.children.map((child) => child.hash));
  }
  return nodes;
}
