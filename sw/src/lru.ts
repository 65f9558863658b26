/** Which stored nodes and blobs eviction removes: pure choices, tested without a browser. */

import type { Usage } from './store.ts';
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
