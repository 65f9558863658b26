/**
 * The register script tag, added to HTML the worker serves from its cache so
 * such a page loads it exactly as a page from the proxy does (the proxy adds
 * the same bytes at the same place; see README, proxy-side requirements).
 */

import { utf8 } from './bytes.ts';

export const REGISTER_TAG = '<script src="/_grove/register.js" defer></script>';

const TAG_BYTES = utf8.encode(REGISTER_TAG);

/** True for a `text/html` content type, whatever its parameters. */
export function isHtml(contentType: string): boolean {
  return contentType.split(';')[0].trim().toLowerCase() === 'text/html';
}

/**
 * The page with the tag inserted before its first `</head>` (ASCII case
 * insensitive); a page without one is returned as it is. Works on bytes, so
 * every ASCII-compatible charset survives untouched.
 */
export function injectRegister(page: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  // windows-1252 decodes every byte to one character, so string and byte
  // offsets agree; `i` without `u` folds ASCII letters only.
  const at = new TextDecoder('windows-1252').decode(page).search(/<\/head>/i);
  if (at < 0) return page;
  const out = new Uint8Array(page.length + TAG_BYTES.length);
  out.set(page.subarray(0, at));
  out.set(TAG_BYTES, at);
  out.set(page.subarray(at), at + TAG_BYTES.length);
  return out;
}
