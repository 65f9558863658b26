// Eviction choices: least recently used first, kept versions spared.
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { V1_ROOT, V2_ROOT, fixtureNodes, siteFiles } from './fixture-site.mjs';
import { sources } from './sources.mjs';

const { PIN_GRACE_MS, SEEN_EVERY_MS, chooseVictims, reachable, sortPins } = await import('../src/lru.ts');
const { lookup } = await import('../src/tree/lookup.ts');

const record = (hash, size, used) => ({ hash, kind: 'blobs', size, used });

test('evicts the least recently used until the budget is met', () => {
  const byAge = [record('a', 40, 1), record('b', 30, 2), record('c', 20, 3), record('d', 10, 4)];
  assert.deepEqual(chooseVictims(byAge, new Set(), 100), []);
  assert.deepEqual(chooseVictims(byAge, new Set(), 60).map((r) => r.hash), ['a']);
  assert.deepEqual(chooseVictims(byAge, new Set(), 59).map((r) => r.hash), ['a', 'b']);
  assert.deepEqual(chooseVictims(byAge, new Set(), 0).map((r) => r.hash), ['a', 'b', 'c', 'd']);
});

test('never evicts what a kept version needs, even over budget', () => {
  const byAge = [record('a', 40, 1), record('b', 30, 2), record('c', 20, 3), record('d', 10, 4)];
  assert.deepEqual(chooseVictims(byAge, new Set(['a']), 60).map((r) => r.hash), ['b', 'c']);
  assert.deepEqual(chooseVictims(byAge, new Set(['b']), 60).map((r) => r.hash), ['a']);
  assert.deepEqual(chooseVictims(byAge, new Set(['a', 'b', 'c']), 0).map((r) => r.hash), ['d']);
});

test('what a version needs: its held nodes and the blobs of their entries', async () => {
  // The worker looked up two pages of version 1 and one of version 2.
  const visit = sources([], fixtureNodes);
  await lookup(V1_ROOT, 'index.html', visit.fetch);
  await lookup(V1_ROOT, 'docs/page-150.html', visit.fetch);
  await lookup(V2_ROOT, 'docs/page-150.html', visit.fetch);
  const [v1Root, v1IndexLeaf, v1PageLeaf, v2Root, v2PageLeaf] = visit.fetched;
  assert.equal(visit.fetched.length, 5, 'v2 shares the leaf of index.html');
  const held = sources(visit.fetched.map((hash) => [hash, fixtureNodes.get(hash)]), new Map());

  const v1 = await reachable([V1_ROOT], held.local);
  for (const hash of [v1Root, v1IndexLeaf, v1PageLeaf]) assert.ok(v1.has(hash));
  assert.ok(!v1.has(v2Root) && !v1.has(v2PageLeaf));
  const blob = (version, path) => siteFiles(version).find((file) => file.path === path).hash;
  assert.ok(v1.has(blob(1, 'index.html')) && v1.has(blob(1, 'docs/page-150.html')));
  assert.ok(!v1.has(blob(2, 'docs/page-150.html')));

  const v2 = await reachable([V2_ROOT], held.local);
  assert.ok(v2.has(v2PageLeaf) && v2.has(blob(2, 'docs/page-150.html')));
  assert.ok(!v2.has(v1PageLeaf) && !v2.has(blob(1, 'docs/page-150.html')));
  assert.ok(v2.has(blob(2, 'index.html')), 'through the leaf both versions share');
});

test('pins are dropped only when their client was unseen for the grace period', () => {
  const now = 10 * PIN_GRACE_MS;
  const pin = (version, seen) => ({ version, root: `root-${version}`, seen });
  const pins = new Map([
    ['open', pin(1, now - 5 * PIN_GRACE_MS)], // listed: kept, whenever it was last seen
    ['bfcache', pin(2, now - PIN_GRACE_MS)], // not listed (back/forward cache), seen an hour ago: kept
    ['closed', pin(3, now - PIN_GRACE_MS - 1)], // not listed for over an hour: dropped
    ['opening', pin(4, now)], // just pinned, its document not running yet: kept
    ['legacy', { version: 5, root: 'root-5' }], // written before sightings were recorded, not listed: dropped
    ['legacy-open', { version: 6, root: 'root-6' }], // the same, listed: kept, and now seen
    ['fresh', pin(7, now - SEEN_EVERY_MS + 1)], // listed, seen under a minute ago: no rewrite
  ]);
  const [kept, gone, seen] = sortPins(pins, new Set(['open', 'legacy-open', 'fresh', 'not-pinned']), now);
  assert.deepEqual(kept.sort(), ['root-1', 'root-2', 'root-4', 'root-6', 'root-7']);
  assert.deepEqual(gone.sort(), ['closed', 'legacy']);
  assert.deepEqual(
    seen.sort(([a], [b]) => a.localeCompare(b)),
    [
      ['legacy-open', { version: 6, root: 'root-6', seen: now }],
      ['open', { version: 1, root: 'root-1', seen: now }],
    ],
  );
  // Nothing listed, nothing stale: nothing changes.
  assert.deepEqual(sortPins(new Map([['a', pin(1, now)]]), new Set(), now), [['root-1'], [], []]);
  assert.equal(PIN_GRACE_MS, 60 * 60 * 1000);
});
