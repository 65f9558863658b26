/**
 * Read-your-writes for the worker's tabs: the newest write one of them made
 * (a `{ts}` reply to a node write through the proxy), sent as
 * `x-grove-seen` with every navigation for a while after, so the proxy
 * holds a database-backed page until it reflects the write. Kept in
 * memory: a worker stopped meanwhile forgets it, and a session's write
 * still has its `__Host-grove_seen` cookie.
 */

/** The request header naming the newest write seen (proxy/src/pages/seen.rs `SEEN_HEADER`). */
export const SEEN_HEADER = 'x-grove-seen';
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
export function seenWrite(): string | undefined {
  return newest && Date.now() < newest.until ? String(newest.ts) : undefined;
}

/** A navigation's headers: the page's, and the newest write seen. */
export function navigationHeaders(request: Request): Headers {
  const headers = new Headers(request.headers);
  const seen = seenWrite();
  if (seen) headers.set(SEEN_HEADER, seen);
  return headers;
}
