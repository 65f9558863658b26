// Request paths read as proxy/src/resolve.rs reads them (its tests, ported).
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';

const { encodePath, parseRequestPath, urlPath } = await import('../src/path.ts');

test('normalizes once and refuses what the proxy refuses', () => {
  assert.deepEqual(parseRequestPath('/a//b/'), { path: 'a/b', trailingSlash: true });
  assert.deepEqual(parseRequestPath('/'), { path: '', trailingSlash: false });
  assert.equal(parseRequestPath('/caf%C3%A9').path, 'café');
  assert.equal(parseRequestPath('/caf%c3%a9').path, 'café');
  // %2525 decodes once to %25, never twice to %; a lone % stays.
  assert.equal(parseRequestPath('/100%2525').path, '100%25');
  assert.equal(parseRequestPath('/50%/x%zz').path, '50%/x%zz');
  for (const refused of [
    '/%2e%2e/etc/passwd',
    '/../etc/passwd',
    '/a/./b',
    '/..%2fetc',
    '/a%5C..%5Cb',
    '/a%00b',
    '/a%c2%85b', // U+0085, a control character
    '/a\\b',
    '/a%5cb',
    '/%ff',
    `/${'a'.repeat(2048)}`,
    'relative',
  ]) {
    assert.equal(parseRequestPath(refused), undefined, refused);
  }
  assert.ok(parseRequestPath(`/${'a'.repeat(2047)}`));
});

test('keeps a byte-order mark as the proxy does', () => {
  assert.equal(parseRequestPath('/%EF%BB%BFa').path, '\ufeffa');
});

test('url paths for rule matching', () => {
  assert.equal(urlPath(parseRequestPath('/')), '/');
  assert.equal(urlPath(parseRequestPath('/a//b/')), '/a/b/');
  assert.equal(urlPath(parseRequestPath('/a/b')), '/a/b');
});

test('encodes locations as encode_path does', () => {
  assert.equal(encodePath('/a b/é"#<>?`{}%.html'), '/a%20b/%C3%A9%22%23%3C%3E%3F%60%7B%7D%25.html');
  assert.equal(encodePath("/~!$&'()*+,;=:@[]\\^|"), "/~!$&'()*+,;=:@[]\\^|");
  assert.equal(encodePath('/\u0001\u007f\u{1f600}'), '/%01%7F%F0%9F%98%80');
});
