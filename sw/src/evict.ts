/** Keeping the stored nodes and blobs within a byte budget. */

import { chooseVictims, reachable } from './lru.ts';
import { prunePins } from './pins.ts';
import { getContent, readState, removeContent, usageByAge } from './store.ts';
import { decodeNode } from './tree/node.ts';

/**
 * Bytes of nodes and blobs kept before the least recently used go: 50 MiB,
 * or what the site's pages say (`<meta name="grove-cache-bytes">`, passed on
 * by the register script).
 */
let budget = 50 * 2 ** 20;

export function setBudget(bytes: unknown): void {
  if (Number.isSafeInteger(bytes) && (bytes as number) > 0) budget = bytes as number;
}

/** Bytes stored, as last counted plus what was written since; unknown until first counted. */
let stored: number | undefined;

/**
 * The root of the version being applied: what its sync fetches is kept like
 * the current version's, or the sync would evict its own work before the flip.
 */
let incoming: string | undefined;

export function applying(root?: string): void {
  incoming = root;
}

/** Accounts for `size` bytes just stored, and evicts if the budget is exceeded. */
export async function noteStored(size: number): Promise<void> {
  stored = stored === undefined ? sum(await usageByAge()) : stored + size;
  if (stored > budget) await makeRoom(1);
}

/**
 * Deletes least recently used nodes and blobs, sparing every kept version,
 * until what is stored fits the budget and `share` of what is stored now.
 * After a quota error (the browser grants less than the budget, or other data
 * of the origin fills it), a share of 1/2 makes room rather than losing everything.
 */
export async function makeRoom(share: number): Promise<void> {
  const byAge = await usageByAge();
  const target = Math.min(budget, sum(byAge) * share);
  const keep = await reachable(await keptRoots(), async (hash) => {
    const bytes = await getContent('nodes', hash);
    return bytes && decodeNode(bytes);
  });
  const victims = chooseVictims(byAge, keep, target);
  await removeContent(victims);
  stored = sum(byAge) - sum(victims);
}

/**
 * Runs `write`; after a quota error, makes room (down to half of what is
 * stored, see makeRoom) and runs it once more.
 */
export function withRoom(write: () => Promise<void>): Promise<void> {
  return write().catch((error: DOMException) => {
    if (error.name !== 'QuotaExceededError') throw error;
    return makeRoom(1 / 2).then(write);
  });
}

/**
 * The roots eviction spares: the current and previous versions, the one
 * being applied, and every version an open client is pinned to.
 */
async function keptRoots(): Promise<string[]> {
  const [{ current, previous }, pinned] = await Promise.all([readState(), prunePins()]);
  return [current?.root, previous?.root, incoming, ...pinned].filter(Boolean) as string[];
}

function sum(records: Array<{ size: number }>): number {
  return records.reduce((total, record) => total + record.size, 0);
}
