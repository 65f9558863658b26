// The shared test vectors, ../../spec/vectors/*.json (see the README there):
// proxy/src/vectors.rs runs them against the proxy, this file against the
// worker's ports of the same functions. The proxy is the reference; where the
// worker leaves an answer to the proxy (a refused path, a not-found answer, a
// header value it cannot set), the case says so through its expected value,
// never by being skipped. A case of unknown shape fails, and so does a vector
// file without a runner here.
import './ts.mjs';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { fileEntry } from './prolly.mjs';

const { encodePath, parseRequestPath, urlPath } = await import('../src/path.ts');
const { resolve } = await import('../src/resolve.ts');
const { headersFor, isForced, parseRules } = await import('../src/rules.ts');
const { isProtected } = await import('../src/protect.ts');
const { isRendered } = await import('../src/rendered.ts');
const { injectRegister, isHtml } = await import('../src/html.ts');

const DIR = new URL('../../spec/vectors/', import.meta.url);

const isObject = (value) => typeof value === 'object' && value !== null && !Array.isArray(value);
const show = (value) => JSON.stringify(value);

/** Fails unless `object` has every key of `required` and no key but those and `optional`. */
function shape(object, required, optional = []) {
  if (!isObject(object)) throw Error(`expected an object, got ${show(object)}`);
  for (const key of required) if (!Object.hasOwn(object, key)) throw Error(`missing ${show(key)}`);
  for (const key of Object.keys(object)) {
    if (!required.includes(key) && !optional.includes(key)) throw Error(`unknown key ${show(key)}`);
  }
}

function string(value, what) {
  if (typeof value !== 'string') throw Error(`${what} must be a string, got ${show(value)}`);
  return value;
}

/**
 * The bytes of a text: a string (its UTF-8), or an array of pieces, each a
 * string, `{"hex": "..."}` or `{"repeat": <text>, "times": n}`.
 */
function bytesOf(value) {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (!Array.isArray(value)) throw Error(`expected a text (a string or an array of pieces), got ${show(value)}`);
  return Buffer.concat(
    value.map((piece) => {
      if (typeof piece === 'string') return Buffer.from(piece, 'utf8');
      const keys = isObject(piece) ? Object.keys(piece).sort().join() : '';
      if (keys === 'hex' && typeof piece.hex === 'string' && /^(?:[0-9a-f]{2})*$/i.test(piece.hex)) {
        return Buffer.from(piece.hex, 'hex');
      }
      if (keys === 'repeat,times' && Number.isSafeInteger(piece.times) && piece.times >= 0) {
        return Buffer.concat(Array(piece.times).fill(bytesOf(piece.repeat)));
      }
      throw Error(`unknown text piece ${show(piece)}`);
    }),
  );
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const textOf = (value) => strictUtf8.decode(bytesOf(value));

/** Reads a vector file: `about`, `cases` (objects with unique names) and the `shared` inputs, nothing else. */
function load(file, shared) {
  const vectors = JSON.parse(readFileSync(new URL(file, DIR), 'utf8'));
  shape(vectors, ['about', 'cases', ...shared]);
  assert.ok(typeof vectors.about === 'string' && vectors.about !== '', 'no "about" text');
  assert.ok(Array.isArray(vectors.cases) && vectors.cases.length > 0, 'no cases');
  const names = new Set();
  for (const [index, vector] of vectors.cases.entries()) {
    assert.ok(isObject(vector) && typeof vector.name === 'string' && vector.name !== '', `case #${index} has no name`);
    assert.ok(!names.has(vector.name), `two cases are named ${show(vector.name)}`);
    names.add(vector.name);
  }
  return vectors;
}

/** A named map of the file's shared inputs, each made ready by `prepare`. */
function named(map, what, prepare) {
  if (!isObject(map)) throw Error(`${what} must be an object`);
  return new Map(Object.entries(map).map(([name, value]) => [name, prepare(value, name)]));
}

function lookUp(map, name, what) {
  const found = map.get(string(name, what));
  if (found === undefined) throw Error(`no ${what} ${show(name)}`);
  return found;
}

// paths.json

const PATH_ERRORS = ['not_absolute', 'too_long', 'encoded_separator', 'bad_encoding', 'control', 'backslash', 'dot_segment'];

function pathCase(vector) {
  if (Object.hasOwn(vector, 'raw')) {
    shape(vector, ['name', 'raw', 'expected']);
    const parsed = parseRequestPath(textOf(vector.raw));
    const { expected } = vector;
    if (isObject(expected) && Object.hasOwn(expected, 'error')) {
      shape(expected, ['error']);
      assert.ok(PATH_ERRORS.includes(expected.error), `unknown error ${show(expected.error)}`);
      // The proxy answers 400; the worker leaves the request to it.
      assert.equal(parsed, undefined, 'the worker accepts a path the proxy refuses');
      return;
    }
    shape(expected, ['path', 'trailing_slash', 'url_path']);
    assert.deepEqual(parsed, { path: string(expected.path, 'path'), trailingSlash: expected.trailing_slash });
    assert.equal(urlPath(parsed), string(expected.url_path, 'url_path'));
  } else if (Object.hasOwn(vector, 'encode')) {
    shape(vector, ['name', 'encode', 'expected']);
    assert.equal(encodePath(textOf(vector.encode)), string(vector.expected, 'expected'));
  } else {
    throw Error('unknown case shape: expected "raw" or "encode"');
  }
}

// resolve.json

const POLICIES = ['auto', 'always', 'never'];

function site(paths, name) {
  if (!Array.isArray(paths)) throw Error(`site ${show(name)} must be an array of paths`);
  const files = new Map(paths.map((path) => [string(path, 'a site path'), fileEntry(path, path)]));
  if (files.size !== paths.length) throw Error(`site ${show(name)} lists a path twice`);
  return files;
}

/**
 * What the worker must answer for the proxy's answer `expected`: the same
 * file or redirect, or, for every not-found answer (the SPA index, the 404
 * page, a plain 404), `network`: it leaves those to the proxy.
 */
function workerAnswer(expected) {
  const keys = isObject(expected) ? Object.keys(expected).sort().join() : '';
  if (keys === 'file') return { file: string(expected.file, 'file') };
  if (keys === 'redirect') return { redirect: string(expected.redirect, 'redirect') };
  if (keys === 'status' && expected.status === 404) return 'network';
  if (keys === 'fallback,status') {
    const { fallback, status } = expected;
    if ((fallback === 'index.html' && status === 200) || (fallback === '404.html' && status === 404)) return 'network';
  }
  throw Error(`unknown expected answer ${show(expected)}`);
}

async function resolveCase(vector, sites) {
  shape(vector, ['name', 'site', 'path', 'trailing_slash', 'spa', 'expected'], ['query']);
  const files = lookUp(sites, vector.site, 'site');
  assert.ok(POLICIES.includes(vector.trailing_slash), `unknown trailing_slash ${show(vector.trailing_slash)}`);
  assert.equal(typeof vector.spa, 'boolean', '"spa" must be true or false');
  const query = Object.hasOwn(vector, 'query') ? `?${string(vector.query, 'query')}` : '';
  const request = parseRequestPath(textOf(vector.path));
  assert.ok(request, 'the worker refuses the path');
  const answer = async (policy) => {
    const found = await resolve(async (path) => files.get(path), request, policy);
    if (found === 'network') return 'network';
    if ('file' in found) return { file: found.file.path };
    // As serve.ts builds the Location: the escaped path, then `URL.search`.
    return { redirect: encodePath(found.redirect) + new URL(`http://site.test/${query}`).search };
  };
  const expected = workerAnswer(vector.expected);
  assert.deepEqual(await answer(vector.trailing_slash), expected);
  // A worker that does not know the policy yet gives the same answer or leaves it to the proxy.
  const unknown = await answer(undefined);
  assert.ok(unknown === 'network' || isDeepStrictEqual(unknown, expected), `without the policy: ${show(unknown)}`);
}

// redirects.json

function action(value, what) {
  if (value === null) return;
  if (isObject(value) && Object.hasOwn(value, 'location')) {
    shape(value, ['status', 'location']);
    assert.ok([301, 302, 303, 307, 308].includes(value.status), `${what}: a redirect's status is ${show(value.status)}`);
    string(value.location, `${what} location`);
  } else {
    shape(value, ['status', 'rewrite']);
    assert.ok([200, 404].includes(value.status), `${what}: a rewrite's status is ${show(value.status)}`);
    string(value.rewrite, `${what} rewrite`);
  }
}

function redirectsCase(vector, files) {
  shape(vector, ['name', 'file', 'path', 'expected']);
  const rules = lookUp(files, vector.file, 'file');
  shape(vector.expected, ['forced', 'unforced']);
  action(vector.expected.forced, 'forced');
  action(vector.expected.unforced, 'unforced');
  // The worker applies no rule itself: where a forced one matches, the proxy
  // answers; unforced ones only apply where no file does, which it leaves to
  // the proxy anyway.
  assert.equal(isForced(rules, textOf(vector.path)), vector.expected.forced !== null, 'a forced rule matches');
}

// headers.json

function headersCase(vector, files) {
  shape(vector, ['name', 'file', 'path', 'expected']);
  const rules = lookUp(files, vector.file, 'file');
  const { expected } = vector;
  const pairs = Array.isArray(expected) && expected.every((pair) => Array.isArray(pair) && pair.length === 2);
  assert.ok(pairs && expected.flat().every((part) => typeof part === 'string'), 'expected must be [name, value] pairs');
  // A value beyond ASCII cannot go into a worker's `Headers`: the proxy answers.
  const ascii = expected.every(([, value]) => /^[\t -~]*$/.test(value));
  assert.deepEqual(headersFor(rules, textOf(vector.path)), ascii ? expected : undefined);
}

// inject.json

function injectCase(vector) {
  if (Object.hasOwn(vector, 'html')) {
    shape(vector, ['name', 'html', 'expected']);
    const page = new Uint8Array(bytesOf(vector.html));
    const out = injectRegister(page);
    if (vector.expected === null) {
      assert.equal(out, page, 'a page without </head> is served as it is');
      return;
    }
    const expected = bytesOf(vector.expected);
    const text = (bytes) => show(Buffer.from(bytes).toString('latin1').slice(0, 300));
    assert.ok(Buffer.from(out).equals(expected), `expected ${text(expected)}, got ${text(out)}`);
  } else if (Object.hasOwn(vector, 'content_type')) {
    shape(vector, ['name', 'content_type', 'expected']);
    assert.equal(typeof vector.expected, 'boolean', 'expected must be true or false');
    assert.equal(isHtml(string(vector.content_type, 'content_type')), vector.expected);
  } else {
    throw Error('unknown case shape: expected "html" or "content_type"');
  }
}

// protect.json

function protectCase(vector) {
  shape(vector, ['name', 'patterns', 'path', 'expected']);
  assert.ok(Array.isArray(vector.patterns), 'patterns must be a list');
  assert.equal(isProtected(vector.patterns.map((p) => string(p, 'pattern')), string(vector.path, 'path')), vector.expected);
}

// pages.json

function pagesCase(vector) {
  shape(vector, ['name', 'patterns', 'path', 'expected']);
  assert.ok(Array.isArray(vector.patterns), 'patterns must be a list');
  assert.equal(isRendered(vector.patterns.map((p) => string(p, 'pattern')), string(vector.path, 'path')), vector.expected);
}

/** Per file: its shared inputs, made ready once, and the check of one case. */
const RUNNERS = {
  'headers.json': {
    prepare: (vectors) => named(vectors.files, 'files', (text) => parseRules('', textOf(text))),
    shared: ['files'],
    run: headersCase,
  },
  'inject.json': { prepare: () => undefined, shared: [], run: injectCase },
  'pages.json': { prepare: () => undefined, shared: [], run: pagesCase },
  'paths.json': { prepare: () => undefined, shared: [], run: pathCase },
  'protect.json': { prepare: () => undefined, shared: [], run: protectCase },
  'redirects.json': {
    prepare: (vectors) => named(vectors.files, 'files', (text) => parseRules(textOf(text), '')),
    shared: ['files'],
    run: redirectsCase,
  },
  'resolve.json': { prepare: (vectors) => named(vectors.sites, 'sites', site), shared: ['sites'], run: resolveCase },
};

const FILES = readdirSync(DIR)
  .filter((name) => name.endsWith('.json'))
  .sort();

test('every vector file has a runner here, and every runner its file', () => {
  assert.deepEqual(FILES, Object.keys(RUNNERS).sort());
});

for (const file of FILES) {
  test(file, async (t) => {
    const runner = RUNNERS[file];
    assert.ok(runner, `no runner for ${file}`);
    const vectors = load(file, runner.shared);
    const inputs = runner.prepare(vectors);
    for (const vector of vectors.cases) {
      await t.test(vector.name, async () => {
        try {
          await runner.run(vector, inputs);
        } catch (error) {
          throw Object.assign(Error(`${file}: ${vector.name}: ${error.message}`), { cause: error });
        }
      });
    }
  });
}
