/** Content-addressed downloads: `/_grove/tree/<hash>` and `/_grove/blob/<hash>`. */

import { sha256Hex } from './bytes.ts';

const pending = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();

/**
 * The bytes named `hash`, checked against it (and against `size`, when a
 * manifest gives one) before anything uses or stores them: content-addressed
 * bytes are trusted by their name, never by the network. Concurrent requests
 * for one object share one download.
 */
export function fetchVerified(kind: 'tree' | 'blob', hash: string, size?: number): Promise<Uint8Array<ArrayBuffer>> {
  const url = `/_grove/${kind}/${hash}`;
  let download = pending.get(url);
  if (!download) {
    download = verifiedDownload(url, hash, size).finally(() => pending.delete(url));
    pending.set(url, download);
  }
  return download;
}

/**
 * A mismatch may be a stale copy in the HTTP cache (or a cache on the way,
 * which its revalidation reaches): the download is retried once with
 * `cache: 'reload'`, then it fails.
 */
async function verifiedDownload(
  url: string,
  hash: string,
  size: number | undefined,
  cache?: RequestCache,
): Promise<Uint8Array<ArrayBuffer>> {
  const response = await fetch(url, { cache });
  if (!response.ok) throw Error(`${url}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if ((size !== undefined && bytes.length !== size) || (await sha256Hex(bytes)) !== hash) {
    if (!cache) return verifiedDownload(url, hash, size, 'reload');
    throw Error(`${url} does not match its hash`);
  }
  return bytes;
}
