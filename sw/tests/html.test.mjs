// The register tag in pages the worker serves.
import './ts.mjs';
import assert from 'node:assert/strict';
import { test } from 'node:test';

const { REGISTER_TAG, injectRegister, isHtml } = await import('../src/html.ts');

const bytes = (text) => new Uint8Array(Buffer.from(text, 'latin1'));
const text = (page) => Buffer.from(page).toString('latin1');

test('goes before the first </head>, whatever its case', () => {
  assert.equal(text(injectRegister(bytes('<html><HEAD></Head><body></head>'))), `<html><HEAD>${REGISTER_TAG}</Head><body></head>`);
  assert.equal(REGISTER_TAG, '<script src="/_grove/register.js" defer></script>');
});

test('leaves other bytes alone, in any ASCII-compatible charset', () => {
  const page = Uint8Array.from([0xef, 0xbb, 0xbf, 0x81, 0xe9, ...bytes('</head>'), 0x9d, 0xff]);
  const out = injectRegister(page);
  assert.deepEqual(out.subarray(0, 5), page.subarray(0, 5));
  assert.equal(text(out.subarray(5, 5 + REGISTER_TAG.length)), REGISTER_TAG);
  assert.deepEqual(out.subarray(5 + REGISTER_TAG.length), page.subarray(5));
});

test('a page without </head> is unchanged', () => {
  const page = bytes('<p>fragment</p><head>');
  assert.equal(injectRegister(page), page);
  // Only ASCII letters fold: È (0xC8) is no E.
  assert.equal(text(injectRegister(bytes('</\u00c8ead>'))), '</\u00c8ead>');
});

test('html content types', () => {
  for (const type of ['text/html', 'text/html; charset=utf-8', 'Text/HTML ;charset=x']) assert.ok(isHtml(type), type);
  for (const type of ['text/plain', 'application/xhtml+xml', 'text/htmlx']) assert.ok(!isHtml(type), type);
});
