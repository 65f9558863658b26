// What the worker transfers to apply a one-file change to a 10,000-file
// site, against the full path -> SHA-256 manifest a Workbox-style precache
// downloads for every new version. Measured in a real browser against a real
// grove-proxy: bytes and requests come from the proxy's access log (body
// bytes as sent).
//
//   npm run bench [-- --files 10000] [-- --json]
//
// The visitor has opened the home page and the page that changes, so the
// worker holds the tree's path to it and its old bytes: applying the new
// version costs the tree nodes whose hash changed on that path and the new
// bytes of that one file, which the worker prefetches before the flip.

import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { Proxy, controlled, launchBrowser, recordUpdates, tally, tempDir, until, workerOn, writeSite } from '../tests/browser/harness.mjs';

const args = process.argv.slice(2);
const FILES = Number(args[args.indexOf('--files') + 1]) || 10_000;
const JSON_OUTPUT = args.includes('--json');
const CHANGED = `docs/s${String(Math.floor(FILES / 2 / 100)).padStart(3, '0')}/page-${String(Math.floor(FILES / 2)).padStart(5, '0')}.html`;

const page = (title, body) =>
  `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">` +
  `<meta name="grove-poll-seconds" content="1"><title>${title}</title></head><body><h1>${title}</h1><p>${body}</p></body></html>\n`;

function site(edition) {
  const files = { 'index.html': page('home', 'home') };
  for (let i = 0; files && Object.keys(files).length < FILES; i++) {
    const n = String(i).padStart(5, '0');
    const path = `docs/s${String(Math.floor(i / 100)).padStart(3, '0')}/page-${n}.html`;
    files[path] = page(`page ${n}`, path === CHANGED ? `edition ${edition}` : 'edition 1');
  }
  return files;
}

/** The manifest a precaching worker fetches for each version: every path with its SHA-256. */
function manifest(files) {
  const entries = Object.keys(files)
    .sort()
    .map((path) => [`/${path}`, createHash('sha256').update(files[path]).digest('hex')]);
  return Buffer.from(JSON.stringify(Object.fromEntries(entries)));
}

const proxy = await Proxy.start();
const browser = await launchBrowser();
const dir = await tempDir();
try {
  const v1 = site(1);
  await writeSite(dir, v1);
  let started = Date.now();
  await proxy.publish(dir);
  const publishMs = Date.now() - started;

  const context = await browser.newContext();
  await recordUpdates(context);
  const tab = await context.newPage();
  await tab.goto(proxy.url());
  await controlled(tab);
  await workerOn(tab, 1);
  await tab.goto(proxy.url('demo', '/'));
  await tab.goto(proxy.url('demo', `/${CHANGED}`));

  const v2 = site(2);
  await writeSite(dir, v2);
  await proxy.publish(dir);
  const mark = proxy.mark();
  started = Date.now();
  await until('the update event', () => tab.evaluate(() => window.__updates.some((u) => u.version === 2)), { timeout: 60_000 });
  const applyMs = Date.now() - started;
  const seen = (await proxy.since(mark)).filter((entry) => entry.host === `demo.localhost:${proxy.port}`);
  const trees = tally(seen, /^\/_grove\/tree\//);
  const blobs = tally(seen, /^\/_grove\/blob\//);
  const rootCheck = (await proxy.get('demo', '/_grove/root')).body.length;
  const other = tally(seen, /^\/(?!_grove\/(tree\/|blob\/|root$))/);
  if (other.requests > 0) throw new Error(`unexpected requests while applying: ${other.paths.join(', ')}`);

  const full = manifest(v2);
  const sizes = { raw: full.length, gzip: gzipSync(full, { level: 9 }).length, brotli: brotliCompressSync(full).length };
  const worker = { requests: trees.requests + blobs.requests, bytes: trees.bytes + blobs.bytes };
  const withCheck = { requests: worker.requests + 1, bytes: worker.bytes + rootCheck };
  const share = (bytes, of) => `${((100 * bytes) / of).toFixed(3)} %`;

  const result = {
    files: FILES,
    changed: CHANGED,
    publishMs,
    applyMs,
    worker: { trees: { requests: trees.requests, bytes: trees.bytes }, blobs: { requests: blobs.requests, bytes: blobs.bytes }, total: worker },
    rootCheckBytes: rootCheck,
    manifest: sizes,
    shareOfManifest: { raw: worker.bytes / sizes.raw, gzip: worker.bytes / sizes.gzip, brotli: worker.bytes / sizes.brotli },
  };
  if (JSON_OUTPUT) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    const rows = [
      ['tree nodes (changed only)', trees.requests, trees.bytes, share(trees.bytes, sizes.raw), share(trees.bytes, sizes.gzip)],
      ['blob (the changed file)', blobs.requests, blobs.bytes, share(blobs.bytes, sizes.raw), share(blobs.bytes, sizes.gzip)],
      ['worker total', worker.requests, worker.bytes, share(worker.bytes, sizes.raw), share(worker.bytes, sizes.gzip)],
      ['  + the /_grove/root check', withCheck.requests, withCheck.bytes, share(withCheck.bytes, sizes.raw), share(withCheck.bytes, sizes.gzip)],
      ['full manifest, JSON', 1, sizes.raw, '100 %', ''],
      ['full manifest, gzip -9', 1, sizes.gzip, '', '100 %'],
      ['full manifest, brotli', 1, sizes.brotli, '', ''],
    ];
    const widths = [30, 9, 10, 14, 14];
    const line = (cells) => cells.map((cell, i) => String(cell).padStart(i === 0 ? 0 : widths[i]).padEnd(i === 0 ? widths[0] : 0)).join('');
    console.log(`1 file changed of ${FILES} (${CHANGED}); publishing ${FILES} files took ${publishMs} ms;`);
    console.log(`the worker had applied the change ${applyMs} ms after the publish (its page polls every second)`);
    console.log(line(['', 'requests', 'bytes', 'of manifest', 'of gzipped']));
    for (const row of rows) console.log(line(row));
    const goal = worker.bytes < sizes.raw / 100;
    console.log('(bytes as sent: chromium asks for br, and the proxy compresses tree nodes and blobs when that helps)');
    console.log(`goal (< 1 % of the full manifest, as measured): ${goal ? 'met' : 'NOT met'}`);
  }
  await context.close();
} finally {
  await browser.close();
  await proxy.stop();
  await rm(dir, { recursive: true, force: true });
}
