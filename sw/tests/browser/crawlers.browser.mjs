// What a search bot that renders sees: Debian's chromium with JavaScript
// off, walking every page the generated sitemap lists on the demo site. No
// page needs the service worker or any script to show its text.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Proxy, launchBrowser } from './harness.mjs';

const DEMO_SITE = fileURLToPath(new URL('../../../proxy/demo-site/', import.meta.url));

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(() => browser?.close());

test('with JavaScript off, every page of the demo sitemap shows its text', async (t) => {
  const proxy = await Proxy.start();
  t.after(() => proxy.stop());
  await proxy.publish(DEMO_SITE);
  const context = await browser.newContext({ javaScriptEnabled: false });
  t.after(() => context.close());
  const page = await context.newPage();

  const sitemap = (await proxy.get('demo', '/sitemap.xml')).body.toString();
  const pages = [...sitemap.matchAll(/<loc>([^<]+)<\/loc>/g)].map((match) => match[1]);
  assert.ok(pages.length >= 4, sitemap);
  for (const url of pages) {
    const response = await page.goto(url);
    assert.equal(response.status(), 200, url);
    const heading = await page.textContent('h1');
    assert.ok(heading && heading.trim().length > 0, `${url} has a heading`);
    const text = await page.innerText('body');
    assert.ok(text.length > 40, `${url} shows its text: ${text}`);
  }
  await page.goto(proxy.url('demo', '/'));
  assert.match(await page.innerText('main'), /It works\./);
  assert.match(await page.innerText('main'), /robots\.txt/);
});
