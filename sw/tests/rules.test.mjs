// What the worker reads of _redirects and _headers (proxy/src/rules/ tests, ported).
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';

const { headersFor, isForced, parseRules } = await import('../src/rules.ts');

test('only forced redirect rules take a path from the files', () => {
  const rules = parseRules(
    `
      # comments and blank lines are skipped
      /old          /new
      /blog/*       /news/:splat       302
      /u/:id        /users/:id.html    200
      /shadow/*     /elsewhere         301!  # forced
      /gone         /404.html          404!
      /exact        /x                 200!
      /*/x          /bad-pattern       301!
    `,
    '',
  );
  assert.ok(isForced(rules, '/shadow/a'));
  assert.ok(isForced(rules, '/shadow'), 'a splat matches the empty rest');
  assert.ok(isForced(rules, '/shadow/a/b/'));
  assert.ok(isForced(rules, '/gone'));
  assert.ok(isForced(rules, '/exact/'), 'a trailing slash does not matter');
  for (const path of ['/old', '/blog/2024/post', '/u/42', '/exact/more', '/a/x', '/shadowy']) {
    assert.ok(!isForced(rules, path), path);
  }
});

test('a forced line the proxy refuses counts for nothing, as in the proxy', () => {
  // spec/vectors/redirects.json has every way a line is refused.
  assert.ok(!isForced(parseRules('/x /y 999!', ''), '/x'));
  assert.ok(isForced(parseRules('/x /y 308!', ''), '/x'));
  assert.ok(!isForced(parseRules('/x /y', ''), '/x'));
});

test('header blocks apply to matching paths in order', () => {
  const rules = parseRules(
    '',
    '/assets/*\n  Cache-Control: immutable\n/*\n  X-Frame-Options: DENY\n  Bad Header: x\n\tX-Test: 1\n  Transfer-Encoding: chunked\n  ETag: "x"\nnot-a-path\n  X-Lost: 1\n',
  );
  assert.deepEqual(headersFor(rules, '/assets/a.css'), [
    ['cache-control', 'immutable'],
    ['x-frame-options', 'DENY'],
    ['x-test', '1'],
  ]);
  assert.deepEqual(headersFor(rules, '/index.html'), [
    ['x-frame-options', 'DENY'],
    ['x-test', '1'],
  ]);
});

test('placeholders, reserved names, comments, CRLF and whitespace', () => {
  const rules = parseRules(
    '',
    '# a comment\r\n/u/:id\r\n  X-User: yes\r\n  X-Grove-Version: 9\r\n  Content-Length: 1\r\n/:\r\n  X-Colon: literal\r\n\u3000/spaced\r\n  X-Spaced: 1\r\n\ufeff/bom\r\n  X-Bom: 1\r\n',
  );
  assert.deepEqual(headersFor(rules, '/u/42'), [['x-user', 'yes']]);
  assert.deepEqual(headersFor(rules, '/u'), []);
  assert.deepEqual(headersFor(rules, '/:'), [['x-colon', 'literal']], '":" alone is a literal segment');
  // Rust trims U+3000 (White_Space) but not U+FEFF.
  assert.deepEqual(headersFor(rules, '/spaced'), [['x-spaced', '1']]);
  assert.deepEqual(headersFor(rules, '/bom'), []);
});

test('a header value beyond ASCII is left to the proxy', () => {
  const rules = parseRules('', '/*\n  X-Name: café\n/plain\n  X-Plain: 1\n');
  assert.equal(headersFor(rules, '/a'), undefined);
  assert.equal(headersFor(rules, '/plain'), undefined);
  const fine = parseRules('', '/plain\n  X-Plain: 1\n  X-Control: a\u0001b\n');
  assert.deepEqual(headersFor(fine, '/plain'), [['x-plain', '1']]);
});
