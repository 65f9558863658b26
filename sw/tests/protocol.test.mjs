// What the worker reads from the proxy: /_grove/root and version headers.
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { V1_ROOT } from './fixture-site.mjs';

const { parseRootDocument, pinnedUrl, versionOf } = await import('../src/protocol.ts');

test('reads /_grove/root as the proxy writes it', () => {
  // proxy/src/app.rs `grove_namespace`, today and with the trailing-slash setting.
  assert.deepEqual(parseRootDocument({ site: 'fx', version: 2, root: V1_ROOT }), { version: 2, root: V1_ROOT });
  assert.deepEqual(parseRootDocument({ site: 'fx', version: 2, root: V1_ROOT, trailing_slash: 'never' }), {
    version: 2,
    root: V1_ROOT,
    trailingSlash: 'never',
  });
  assert.deepEqual(parseRootDocument({ version: 2, root: V1_ROOT, trailing_slash: 'sometimes' }), { version: 2, root: V1_ROOT });
  // Members-only patterns and rendered routes, each only as a list of strings.
  assert.deepEqual(parseRootDocument({ version: 2, root: V1_ROOT, protect: ['/m/*'], pages: ['/', '/posts/{id}/'] }), {
    version: 2,
    root: V1_ROOT,
    protect: ['/m/*'],
    pages: ['/', '/posts/{id}/'],
  });
  assert.deepEqual(parseRootDocument({ version: 2, root: V1_ROOT, protect: '/m/*', pages: ['/', 7] }), { version: 2, root: V1_ROOT });
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

test('pins a URL with the _grove_version query, keeping the rest of the query as it was', () => {
  const base = 'http://demo.localhost:8080';
  assert.equal(pinnedUrl(`${base}/assets/app.js`, 3), `${base}/assets/app.js?_grove_version=3`);
  assert.equal(pinnedUrl(`${base}/a?`, 3), `${base}/a?_grove_version=3`);
  // Appended to an existing query, which keeps its bytes (no re-encoding: `+`, `%20`, a bare flag).
  assert.equal(pinnedUrl(`${base}/search?q=a+b%20c&flag`, 12), `${base}/search?q=a+b%20c&flag&_grove_version=12`);
  // A pin already in the URL (from a link that carried one) is replaced, wherever it is.
  assert.equal(pinnedUrl(`${base}/a?x=1&_grove_version=9`, 3), `${base}/a?x=1&_grove_version=3`);
  assert.equal(pinnedUrl(`${base}/a?x=1&_grove_version=9&y=2`, 3), `${base}/a?x=1&y=2&_grove_version=3`);
  assert.equal(pinnedUrl(`${base}/a?_grove_version=9`, 3), `${base}/a?_grove_version=3`);
  assert.equal(pinnedUrl(`${base}/a?_grove_version=9&_grove_version=8`, 3), `${base}/a?_grove_version=3`);
  // Only that exact parameter: look-alikes stay.
  assert.equal(pinnedUrl(`${base}/a?x_grove_version=1&_grove_versions=2`, 3), `${base}/a?x_grove_version=1&_grove_versions=2&_grove_version=3`);
  // The proxy reads the first `_grove_version=` pair (proxy/src/app.rs `pin_of`): there is exactly one.
  const query = new URL(pinnedUrl(`${base}/a?_grove_version=1&b=2&_grove_version=5`, 7)).search.slice(1).split('&');
  assert.deepEqual(query.filter((pair) => pair.startsWith('_grove_version=')), ['_grove_version=7']);
  // The path, and a fragment if any, are untouched.
  assert.equal(pinnedUrl(`${base}/d%C3%A9j%C3%A0/x.html?a=1#top`, 2), `${base}/d%C3%A9j%C3%A0/x.html?a=1&_grove_version=2#top`);
});
