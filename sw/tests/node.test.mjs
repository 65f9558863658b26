// Decoding the real node format (fixtures written by storage-lite).
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEMO_ROOT, V1_ROOT, fixtureNodes } from './fixture-site.mjs';
import { encodeInterior, encodeLeaf, fileEntry } from './prolly.mjs';

const { decodeNode } = await import('../src/tree/node.ts');

test('decodes the demo site leaf', () => {
  const node = decodeNode(fixtureNodes.get(DEMO_ROOT));
  assert.equal(node.level, 0);
  assert.deepEqual(
    node.entries.map((entry) => [entry.path, entry.contentType]),
    [
      ['404.html', 'text/html; charset=utf-8'],
      ['_headers', 'application/octet-stream'],
      ['_redirects', 'application/octet-stream'],
      ['about/index.html', 'text/html; charset=utf-8'],
      ['assets/site.4f9c2a1b.css', 'text/css; charset=utf-8'],
      ['blog/first-post.html', 'text/html; charset=utf-8'],
      ['img/grove.svg', 'image/svg+xml'],
      ['index.html', 'text/html; charset=utf-8'],
    ],
  );
  // The demo's blobs, as stored next to this node.
  const index = node.entries.at(-1);
  assert.equal(index.hash, '6a28487f9a36cec50fd1a835b4e1afeda08b76d8427fe2e79a22d64a7981f347');
  assert.equal(node.entries[0].hash, 'b7014dcd8726dffd807e1ef2efd5255dacaedcd61e1542f096ff2ce0542f02c7');
  assert.equal(node.entries[0].size, 266);
});

test('decodes an interior node', () => {
  const node = decodeNode(fixtureNodes.get(V1_ROOT));
  assert.equal(node.level, 1);
  assert.equal(node.children.length, 6);
  assert.equal(node.children[0].firstKey, 'about/index.html');
  for (const child of node.children) assert.ok(fixtureNodes.has(child.hash), child.hash);
  const keys = node.children.map((child) => child.firstKey);
  assert.deepEqual(keys, [...keys].sort());
});

test('decodes sizes past 32 bits and keys beyond ASCII', () => {
  const big = { ...fileEntry('vidéo/😀.mp4', 'x', 'video/mp4'), size: 2 ** 40 + 3 };
  const [entry] = decodeNode(encodeLeaf([big])).entries;
  assert.deepEqual(entry, big);
  assert.deepEqual(decodeNode(encodeLeaf([])), { level: 0, entries: [] });
});

const malformed = (bytes) => assert.throws(() => decodeNode(bytes), /malformed tree node/);

test('refuses every truncation and trailing bytes', () => {
  const good = fixtureNodes.get(DEMO_ROOT);
  for (let cut = 0; cut < good.length; cut++) malformed(good.subarray(0, cut));
  assert.throws(() => decodeNode(Uint8Array.from([...good, 0])), /trailing bytes/);
});

test('refuses what the Rust decoder refuses', () => {
  const good = encodeLeaf([fileEntry('a.html', 'a'), fileEntry('b.html', 'b')]);
  const patched = (at, value) => Uint8Array.from(good, (byte, index) => (index === at ? value : byte));
  assert.throws(() => decodeNode(patched(0, 0x48)), /bad magic/);
  assert.throws(() => decodeNode(patched(2, 9)), /unsupported format version/);
  assert.throws(() => decodeNode(patched(3, 17)), /level out of range/);
  assert.throws(() => decodeNode(encodeLeaf([fileEntry('b.html', 'b'), fileEntry('a.html', 'a')])), /strictly increasing/);
  assert.throws(() => decodeNode(encodeLeaf([fileEntry('a.html', 'a'), fileEntry('a.html', 'b')])), /strictly increasing/);
  assert.throws(() => decodeNode(encodeInterior(1, [])), /without children/);
  // The last byte is the second entry's content-type index; there is one type.
  assert.throws(() => decodeNode(patched(good.length - 1, 1)), /index out of range/);
  const badUtf8 = encodeLeaf([fileEntry('a\u00e9', 'a')]);
  badUtf8[badUtf8.indexOf(0xc3)] = 0xff;
  assert.throws(() => decodeNode(badUtf8), /not UTF-8/);
});
