// Database-backed pages under the worker, in Debian's chromium against a
// real grove-proxy: the worker leaves them to the proxy (even where a
// static file of the same path is in its tree), so a background re-render
// shows at the next navigation, and a tab's own write (the `{ts}` of a
// node write it made) is sent along as `x-grove-seen`, so its next page
// waits for that write.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import { after, before, test } from 'node:test';

import { Proxy, controlled, launchBrowser, tempDir, until, workerStore, writeSite } from './harness.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

const HOME =
  '<!doctype html><html><head><title>book</title></head><body><h1>book</h1>' +
  '{% for entry in data.entries("book", limit=50) %}<p>{{ entry.data.text }}</p>{% endfor %}</body></html>';

/** A node write with the proxy's token, from Node (not a tab); its `ts`. */
function write(proxy, text) {
  const body = JSON.stringify({ path: 'book', data: { text } });
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port: proxy.port,
        method: 'POST',
        path: '/_grove/api/v1/write',
        headers: { host: 'demo.localhost', authorization: `Bearer ${proxy.token}`, 'content-type': 'application/json' },
        agent: false,
      },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          const reply = Buffer.concat(chunks).toString();
          if (response.statusCode === 200) resolve(JSON.parse(reply).ts);
          else reject(new Error(`write: ${response.statusCode} ${reply}`));
        });
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

test('the worker leaves rendered pages to the proxy and sends the tab its own writes', async (t) => {
  const proxy = await Proxy.start();
  t.after(() => proxy.stop());
  const site = await tempDir();
  t.after(() => rm(site, { recursive: true, force: true }));
  await writeSite(site, {
    // The rendered route `/` replaces this file.
    'index.html': '<!doctype html><html><head><title>static</title></head><body><h1>static home</h1></body></html>',
    'about/index.html': '<!doctype html><html><head><title>about</title></head><body><h1>about</h1></body></html>',
    '_grove/pages.toml': '[[route]]\npath = "/"\ntemplate = "_templates/home.html"\n',
    '_templates/home.html': HOME,
  });
  await proxy.publish(site);
  assert.deepEqual((await proxy.rootDocument()).pages, ['/']);
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(proxy.url('demo', '/about/'));
  await controlled(page);
  await until('the worker to know the rendered routes', async () => (await workerStore(page))?.state?.pages?.length === 1);

  // Someone else writes; the proxy re-renders `/` in the background, and
  // the tab's next navigation shows it.
  await write(proxy, 'from elsewhere');
  await until('the re-render', async () => (await proxy.get('demo', '/')).body.toString().includes('from elsewhere'));
  const home = await page.goto(proxy.url('demo', '/'));
  assert.ok(home.fromServiceWorker(), 'the worker answered the navigation');
  assert.equal(await page.textContent('h1'), 'book', 'the rendered page, not the static index.html');
  assert.match(await page.innerText('body'), /from elsewhere/);

  // The tab writes; its very next navigation waits for the page to show it.
  const ts = await page.evaluate(async (token) => {
    const response = await fetch('/_grove/api/v1/write', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ path: 'book', data: { text: 'my own entry' } }),
    });
    return (await response.json()).ts;
  }, proxy.token);
  const own = await page.goto(proxy.url('demo', '/'));
  assert.match(await page.innerText('body'), /my own entry/);
  const headers = own.headers();
  // A request that has seen a write is answered privately, as of the write.
  assert.equal(headers['cache-control'], 'private, no-store', JSON.stringify(headers));
  assert.ok(BigInt(headers['x-grove-as-of']) >= BigInt(ts), `as of ${headers['x-grove-as-of']}, wrote ${ts}`);
  // Static pages still come from the worker's cache.
  const about = await page.goto(proxy.url('demo', '/about/'));
  assert.ok(about.fromServiceWorker());
  assert.equal(await page.textContent('h1'), 'about');
});
