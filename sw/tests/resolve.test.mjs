// Path -> file as proxy/src/resolve.rs resolves it (its tests, ported), and
// leaving to the proxy what depends on a setting the worker lacks.
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileEntry } from './prolly.mjs';

const { parseRequestPath } = await import('../src/path.ts');
const { resolve } = await import('../src/resolve.ts');

const files = new Map(
  ['index.html', 'about/index.html', 'blog.html', 'style.css', 'docs/index.html', 'docs.html'].map((path) => [
    path,
    fileEntry(path, path),
  ]),
);

async function outcome(raw, policy) {
  const found = await resolve(async (path) => files.get(path), parseRequestPath(raw), policy);
  if (found === 'network') return 'network';
  return 'file' in found ? `file ${found.file.path}` : `redirect ${found.redirect}`;
}

test('auto policy follows the files', async () => {
  const cases = {
    '/': 'file index.html',
    '/about/': 'file about/index.html',
    '/about': 'redirect /about/',
    '/blog': 'file blog.html',
    '/blog/': 'redirect /blog',
    '/style.css': 'file style.css',
    '/style.css/': 'redirect /style.css',
    '/about/index.html': 'file about/index.html',
    '/missing': 'network',
    '/missing/': 'network',
    // A directory index wins over a sibling page for the slashed form.
    '/docs/': 'file docs/index.html',
    '/docs': 'file docs.html',
  };
  for (const [raw, expected] of Object.entries(cases)) assert.equal(await outcome(raw, 'auto'), expected, raw);
});

test('always and never policies', async () => {
  assert.equal(await outcome('/blog', 'always'), 'redirect /blog/');
  assert.equal(await outcome('/blog/', 'always'), 'file blog.html');
  assert.equal(await outcome('/about', 'never'), 'file about/index.html');
  assert.equal(await outcome('/about/', 'never'), 'redirect /about');
});

test('an unknown policy decides only what no policy changes', async () => {
  assert.equal(await outcome('/', undefined), 'file index.html');
  assert.equal(await outcome('/style.css', undefined), 'file style.css');
  assert.equal(await outcome('/about/index.html', undefined), 'file about/index.html');
  assert.equal(await outcome('/style.css/', undefined), 'redirect /style.css');
  for (const raw of ['/about', '/about/', '/blog', '/blog/', '/docs', '/docs/']) {
    assert.equal(await outcome(raw, undefined), 'network', raw);
  }
});

test('a site without index.html leaves / to the proxy', async () => {
  const found = await resolve(async () => undefined, parseRequestPath('/'), 'auto');
  assert.equal(found, 'network');
});
