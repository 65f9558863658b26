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

async function verifiedDownload(url: string, hash: string, size: number | undefined): Promise<Uint8Array<ArrayBuffer>> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if ((size !== undefined && bytes.length !== size) || (await sha256Hex(bytes)) !== hash) {
    throw new Error(`${url} does not match its hash`);
  }
  return bytes;
}
