// What the worker reads from the proxy: /_grove/root and version headers.
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { V1_ROOT } from './fixture-site.mjs';

const { parseRootDocument, versionOf } = await import('../src/protocol.ts');

test('reads /_grove/root as the proxy writes it', () => {
  // proxy/src/app.rs `grove_namespace`, today and with the trailing-slash setting.
  assert.deepEqual(parseRootDocument({ site: 'fx', version: 2, root: V1_ROOT }), { version: 2, root: V1_ROOT });
  assert.deepEqual(parseRootDocument({ site: 'fx', version: 2, root: V1_ROOT, trailing_slash: 'never' }), {
    version: 2,
    root: V1_ROOT,
    trailingSlash: 'never',
  });
  assert.deepEqual(parseRootDocument({ version: 2, root: V1_ROOT, trailing_slash: 'sometimes' }), { version: 2, root: V1_ROOT });
  for (const bad of [null, undefined, 7, 'x', {}, { version: 0, root: V1_ROOT }, { version: 1.5, root: V1_ROOT }, { version: '2', root: V1_ROOT }, { version: 2, root: V1_ROOT.toUpperCase() }]) {
    assert.equal(parseRootDocument(bad), undefined, JSON.stringify(bad));
  }
});

test('reads the version a response names', () => {
  assert.deepEqual(versionOf(new Headers({ 'x-grove-version': '12', 'x-grove-root': V1_ROOT })), { version: 12, root: V1_ROOT });
  assert.equal(versionOf(new Headers({ 'x-grove-root': V1_ROOT })), undefined);
  assert.equal(versionOf(new Headers({ 'x-grove-version': '12' })), undefined);
  assert.equal(versionOf(new Headers({ 'x-grove-version': 'x', 'x-grove-root': V1_ROOT })), undefined);
});
