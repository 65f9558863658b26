// Looking paths up in real trees, and refusing misplaced nodes.
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { V1_ROOT, V2_ROOT, fixtureNodes, siteFiles } from './fixture-site.mjs';
import { buildTree, encodeInterior, encodeLeaf, fileEntry, sha256 } from './prolly.mjs';
import { sources } from './sources.mjs';

const { decodeNode } = await import('../src/tree/node.ts');
const { lookup } = await import('../src/tree/lookup.ts');

test('finds every file of both fixture versions, one node per level', async () => {
  for (const [root, version] of [[V1_ROOT, 1], [V2_ROOT, 2]]) {
    for (const file of siteFiles(version)) {
      const { fetch, fetched } = sources([], fixtureNodes);
      assert.deepEqual(await lookup(root, file.path, fetch), file);
      assert.equal(fetched.length, 2);
    }
  }
});

test('misses paths that are not files', async () => {
  const { fetch } = sources([], fixtureNodes);
  for (const path of ['', 'a', 'about', 'about/', 'docs/page-300.html', 'docs/page-1.html', 'zzz', 'index.htm']) {
    assert.equal(await lookup(V1_ROOT, path, fetch), undefined, path);
  }
});

test('orders keys by UTF-8 bytes, as the encoder does', async () => {
  // U+FF5E sorts before U+1F600 in UTF-8 (and code points), after it in UTF-16.
  const files = ['a\uff5e', 'a\u{1f600}', 'b'].flatMap((stem) =>
    Array.from({ length: 400 }, (_, i) => fileEntry(`${stem}/${i}.html`, `${stem}${i}`)),
  );
  const { root, nodes } = buildTree(files);
  const { fetch } = sources([], nodes);
  assert.ok(decodeNode(nodes.get(root)).level >= 1);
  for (const file of files) assert.deepEqual(await lookup(root, file.path, fetch), file);
});

test('refuses a child at the wrong level or with another first key', async () => {
  const leaf = encodeLeaf([fileEntry('a.html', 'a')]);
  const leafHash = sha256(leaf).toString('hex');
  const store = (bytes) => [sha256(bytes).toString('hex'), bytes];
  const [wrongLevel, wrongLevelBytes] = store(encodeInterior(2, [{ firstKey: 'a.html', hash: leafHash }]));
  const [wrongKey, wrongKeyBytes] = store(encodeInterior(1, [{ firstKey: 'a', hash: leafHash }]));
  const nodes = new Map([[leafHash, leaf], [wrongLevel, wrongLevelBytes], [wrongKey, wrongKeyBytes]]);
  const { fetch } = sources([], nodes);
  await assert.rejects(lookup(wrongLevel, 'a.html', fetch), /not where its parent says/);
  await assert.rejects(lookup(wrongKey, 'a.html', fetch), /not where its parent says/);
});
