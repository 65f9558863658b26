// Content-addressed downloads: verified by hash, retried once past a stale cache.
import './ts.mjs';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { afterEach, test } from 'node:test';

const { fetchVerified } = await import('../src/fetcher.ts');

const realFetch = globalThis.fetch;
afterEach(() => {
  globalThis.fetch = realFetch;
});

const good = new TextEncoder().encode('the real bytes');
const hash = createHash('sha256').update(good).digest('hex');

/** Answers each fetch with the next of `replies` ([status, bytes]) and records the calls. */
function serve(...replies) {
  const calls = [];
  globalThis.fetch = async (url, init) => {
    calls.push({ url, cache: init?.cache });
    const [status, bytes] = replies.shift();
    return new Response(bytes, { status });
  };
  return calls;
}

test('a verified download is one fetch', async () => {
  const calls = serve([200, good]);
  assert.deepEqual(await fetchVerified('blob', hash, good.length), good);
  assert.deepEqual(calls, [{ url: `/_grove/blob/${hash}`, cache: undefined }]);
});

test('a hash mismatch (a stale cached copy) is retried once with cache: reload', async () => {
  const calls = serve([200, new TextEncoder().encode('stale bytes!!!')], [200, good]);
  assert.deepEqual(await fetchVerified('blob', hash, good.length), good);
  assert.deepEqual(
    calls.map((call) => call.cache),
    [undefined, 'reload'],
  );
});

test('a size mismatch is retried too; a second mismatch fails', async () => {
  const calls = serve([200, new Uint8Array(3)], [200, new Uint8Array(3)]);
  await assert.rejects(fetchVerified('tree', hash), /does not match its hash/);
  assert.equal(calls.length, 2);
  const sized = serve([200, good], [200, good]);
  await assert.rejects(fetchVerified('blob', hash, good.length + 1), /does not match its hash/);
  assert.equal(sized.length, 2);
});

test('an HTTP error fails at once (no retry)', async () => {
  const calls = serve([404, 'missing'], [200, good]);
  await assert.rejects(fetchVerified('blob', hash, good.length), /HTTP 404/);
  assert.equal(calls.length, 1);
});
