// The test-side tree encoder reproduces trees the Rust code wrote, so the
// synthetic trees other tests build from it have the real format.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEMO_ROOT, V1_ROOT, V2_ROOT, fixtureNodes, siteFiles } from './fixture-site.mjs';
import { buildTree, sha256 } from './prolly.mjs';

test('every fixture is named by its SHA-256', () => {
  assert.equal(fixtureNodes.size, 10);
  for (const [hash, bytes] of fixtureNodes) assert.equal(sha256(bytes).toString('hex'), hash);
});

test('building the fixture site gives the nodes and roots the Rust code wrote', () => {
  const v1 = buildTree(siteFiles(1));
  const v2 = buildTree(siteFiles(2));
  assert.equal(v1.root, V1_ROOT);
  assert.equal(v2.root, V2_ROOT);
  for (const [hash, bytes] of [...v1.nodes, ...v2.nodes]) assert.deepEqual(bytes, fixtureNodes.get(hash), hash);
  const all = new Set([...v1.nodes.keys(), ...v2.nodes.keys(), DEMO_ROOT]);
  assert.deepEqual([...all].sort(), [...fixtureNodes.keys()].sort());
});
