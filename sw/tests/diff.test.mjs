// The update walk: changed files among what the worker holds, fetching only
// new nodes whose hash changed.
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { V1_ROOT, V2_ROOT, fixtureNodes, siteFiles } from './fixture-site.mjs';
import { buildTree, fileEntry } from './prolly.mjs';
import { sources } from './sources.mjs';

const { decodeNode } = await import('../src/tree/node.ts');
const { lookup } = await import('../src/tree/lookup.ts');
const { changedFiles } = await import('../src/tree/diff.ts');

/** The nodes a worker holds after looking up `paths` under `root`. */
async function heldAfterVisiting(root, paths, nodes) {
  const visit = sources([], nodes);
  for (const path of paths) await lookup(root, path, visit.fetch);
  return visit.fetched.map((hash) => [hash, nodes.get(hash)]);
}

const paths = (changes) => changes.map(({ before, after }) => [before.path, before.hash, after.hash]);

test('real versions: one changed page fetches the new root and its leaf', async () => {
  const held = await heldAfterVisiting(V1_ROOT, ['index.html', 'docs/page-150.html', 'docs/page-010.html'], fixtureNodes);
  const walk = sources(held, fixtureNodes);
  const changes = await changedFiles(V1_ROOT, V2_ROOT, walk);
  const [before, after] = [siteFiles(1)[153], siteFiles(2)[153]];
  assert.equal(before.path, 'docs/page-150.html');
  assert.deepEqual(changes, [{ before, after }]);
  const root = decodeNode(fixtureNodes.get(V2_ROOT));
  const leaf = root.children.findLast((child) => child.firstKey <= 'docs/page-150.html').hash;
  assert.deepEqual(walk.fetched, [V2_ROOT, leaf]);
});

test('real versions: a change where the worker holds nothing fetches only the new root', async () => {
  const held = await heldAfterVisiting(V1_ROOT, ['index.html'], fixtureNodes);
  const walk = sources(held, fixtureNodes);
  assert.deepEqual(await changedFiles(V1_ROOT, V2_ROOT, walk), []);
  assert.deepEqual(walk.fetched, [V2_ROOT]);
});

test('nothing to walk: same root, or an old root never stored', async () => {
  const walk = sources([], fixtureNodes);
  assert.deepEqual(await changedFiles(V1_ROOT, V1_ROOT, walk), []);
  assert.deepEqual(await changedFiles(V1_ROOT, V2_ROOT, walk), []);
  assert.deepEqual(walk.fetched, []);
});

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32). */
function random(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const site = (count, edition = () => 'v1') =>
  Array.from({ length: count }, (_, i) => fileEntry(`p/${i}.html`, `page ${i} ${edition(i)}`));

test('10,000 files, one changed, all held: fetches exactly the changed path of nodes', async () => {
  const old = buildTree(site(10_000));
  const next = buildTree(site(10_000, (i) => (i === 4321 ? 'v2' : 'v1')));
  assert.equal(decodeNode(old.nodes.get(old.root)).level, 2);
  const walk = sources(old.nodes, next.nodes);
  const changes = await changedFiles(old.root, next.root, walk);
  assert.deepEqual(paths(changes).map(([path]) => path), ['p/4321.html']);
  const changedNodes = [...next.nodes.keys()].filter((hash) => !old.nodes.has(hash));
  assert.equal(changedNodes.length, 3);
  assert.deepEqual(walk.fetched.sort(), changedNodes.sort());
});

test('random edits, partly held trees: exactly the held changes, only changed new nodes fetched', async () => {
  for (let seed = 1; seed <= 12; seed++) {
    const next = random(seed);
    const count = 200 + Math.floor(next() * 6000);
    const oldFiles = site(count);
    const newFiles = new Map(oldFiles.map((file) => [file.path, file]));
    for (let edits = Math.floor(next() * 40); edits > 0; edits--) {
      const i = Math.floor(next() * count * 1.1);
      const path = `p/${i}.html`;
      const roll = next();
      if (roll < 0.2) newFiles.delete(path);
      else if (roll < 0.3) newFiles.set(path, { ...newFiles.get(path) ?? fileEntry(path, 'new'), contentType: 'text/plain' });
      else newFiles.set(path, fileEntry(path, `page ${i} edited ${seed}`));
    }
    const old = buildTree(oldFiles);
    const updated = buildTree([...newFiles.values()]);
    const visited = oldFiles.filter(() => next() < 0.05).map((file) => file.path);
    const held = await heldAfterVisiting(old.root, visited, old.nodes);
    const walk = sources(held, updated.nodes);
    const changes = await changedFiles(old.root, updated.root, walk);

    // Expected: entries of held old leaves whose path now has other content.
    const heldEntries = held.flatMap(([, bytes]) => decodeNode(bytes).entries ?? []);
    const expected = heldEntries
      .filter((entry) => newFiles.has(entry.path) && newFiles.get(entry.path).hash !== entry.hash)
      .map((entry) => [entry.path, entry.hash, newFiles.get(entry.path).hash]);
    const sort = (list) => list.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    assert.deepEqual(sort(paths(changes)), sort(expected), `seed ${seed}`);
    for (const hash of walk.fetched) {
      assert.ok(!old.nodes.has(hash), `seed ${seed}: fetched an unchanged node`);
    }
  }
});

test('a tree that grows a level and one that shrinks to a leaf', async () => {
  const small = buildTree(site(20));
  const large = buildTree(site(3000, (i) => (i === 7 ? 'v2' : 'v1')));
  assert.equal(decodeNode(small.nodes.get(small.root)).level, 0);
  const grow = sources(small.nodes, large.nodes);
  assert.deepEqual(paths(await changedFiles(small.root, large.root, grow)).map(([path]) => path), ['p/7.html']);
  const shrink = sources(large.nodes, small.nodes);
  assert.deepEqual(paths(await changedFiles(large.root, small.root, shrink)).map(([path]) => path), ['p/7.html']);
  assert.deepEqual(shrink.fetched, [small.root]);
});
