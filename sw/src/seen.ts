/**
 * Read-your-writes for the worker's tabs: the newest write one of them made
 * (a `{ts}` reply to a node write through the proxy), sent with every
 * navigation for a while after (see {@link addSeen}), so the proxy
 * holds a database-backed page until it reflects the write. Kept in
 * memory: a worker stopped meanwhile forgets it, and a session's write
 * still has its `__Host-grove_seen` cookie.
 */

import { withParam } from './protocol.ts';

/** The request header naming the newest write seen (proxy/src/pages/seen.rs `SEEN_HEADER`). */
export const SEEN_HEADER = 'x-grove-seen';
/** The query parameter naming it too (`SEEN_QUERY` there). */
export const SEEN_QUERY = '_grove_seen';
/** Node writes, whose replies carry `{ts}`. */
export const WRITE_PATHS: readonly string[] = ['/_grove/api/v1/write', '/_grove/api/v1/txn'];
/** How long a write is sent along: the proxy's seen cookie lives as long. */
const SEEN_MS = 60_000;

let newest: { ts: bigint; until: number } | undefined;

/** Learns the timestamp of a successful write's reply (a copy of it: the page reads the original). */
export async function noteWrite(response: Response): Promise<void> {
  if (!response.ok) return;
  const { ts } = ((await response.json().catch(() => undefined)) ?? {}) as { ts?: unknown };
  if (typeof ts !== 'string' || !/^[0-9]{1,20}$/.test(ts)) return;
  const written = BigInt(ts);
  if (!newest || written > newest.ts || Date.now() >= newest.until) newest = { ts: written, until: Date.now() + SEEN_MS };
}

/** The newest write seen, while it is sent along. */
function seenWrite(): string | undefined {
  return newest && Date.now() < newest.until ? String(newest.ts) : undefined;
}

/**
 * A navigation's URL, with the newest write seen added to it and to its
 * `headers`: as `x-grove-seen`, and as the `_grove_seen` query parameter,
 * since a CDN keys its cache by URL and could answer the header alone from
 * its copy. `url` as it is when no write is recent.
 */
export function addSeen(url: string, headers: Headers): string {
  const seen = seenWrite();
  if (!seen) return url;
  headers.set(SEEN_HEADER, seen);
  return withParam(url, SEEN_QUERY, seen);
}
