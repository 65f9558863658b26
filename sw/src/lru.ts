/** Which stored nodes, blobs and pins eviction removes: pure choices, tested without a browser. */

import type { Pin, Usage } from './store.ts';
import { type TreeNode, isLeaf } from './tree/node.ts';

/**
 * The records to delete, least recently used first, until what remains fits
 * `budget` bytes; records in `keep` are never chosen, even if what they hold
 * alone exceeds the budget.
 */
export function chooseVictims(byAge: Usage[], keep: Set<string>, budget: number): Usage[] {
  let total = byAge.reduce((sum, record) => sum + record.size, 0);
  const victims: Usage[] = [];
  for (const record of byAge) {
    if (total <= budget) break;
    if (keep.has(record.hash)) continue;
    victims.push(record);
    total -= record.size;
  }
  return victims;
}

/**
 * The hashes of every node and blob reachable from `roots` through nodes held
 * locally: what a version needs to keep answering from the cache.
 */
export async function reachable(
  roots: string[],
  local: (hash: string) => Promise<TreeNode | undefined>,
): Promise<Set<string>> {
  const seen = new Set<string>();
  const stack = [...roots];
  for (let hash = stack.pop(); hash !== undefined; hash = stack.pop()) {
    if (seen.has(hash)) continue;
    seen.add(hash);
    const node = await local(hash);
    if (!node) continue;
    if (isLeaf(node)) for (const entry of node.entries) seen.add(entry.hash);
    else stack.push(...node.children.map((child) => child.hash));
  }
  return seen;
}

/**
 * How long a pin outlives the last sighting of its client. `clients.matchAll`
 * does not list pages in the back/forward cache (nor, for a moment, a
 * navigation's document that does not run yet), so a client it omits may
 * come back; only one unseen for this long is taken for closed.
 */
export const PIN_GRACE_MS = 3_600_000;
/** A pin's sighting is recorded at most this often. */
export const SEEN_EVERY_MS = 60_000;

/**
 * Sorts the pins at `now`, given the clients `clients.matchAll` lists, into
 * `[kept, gone, seen]`: the roots of the pins that stay; the client ids
 * whose pins go (unseen for over PIN_GRACE_MS, or never seen); the listed
 * pins to rewrite with their new sighting.
 */
export function sortPins(
  pins: Map<string, Pin>,
  listed: Set<string>,
  now: number,
): [kept: string[], gone: string[], seen: Array<[string, Pin]>] {
  const kept: string[] = [];
  const gone: string[] = [];
  const seen: Array<[string, Pin]> = [];
  for (const [id, pin] of pins) {
    // `!(... < ...)`: a pin written before sightings were recorded has none (NaN).
    if (listed.has(id)) {
      if (!(now - pin.seen < SEEN_EVERY_MS)) seen.push([id, { ...pin, seen: now }]);
    } else if (!(now - pin.seen <= PIN_GRACE_MS)) {
      gone.push(id);
      continue;
    }
    kept.push(pin.root);
  }
  return [kept, gone, seen];
}
