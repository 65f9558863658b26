// Eviction choices: least recently used first, kept versions spared.
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { V1_ROOT, V2_ROOT, fixtureNodes, siteFiles } from './fixture-site.mjs';
import { sources } from './sources.mjs';

const { chooseVictims, reachable } = await import('../src/lru.ts');
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
