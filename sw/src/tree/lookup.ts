/** Finding one path in a version's tree, reading one node per level. */

import { compareKeys } from './order.ts';
import { type ChildRef, type Entry, type Interior, type TreeNode, firstKey, isLeaf, misplaced } from './node.ts';

/** Supplies a node by hash (from memory, IndexedDB or the network). */
export type GetNode = (hash: string) => Promise<TreeNode>;

/** The entry for `path` under `root`, as storage-lite's `Trees::lookup`. */
export async function lookup(root: string, path: string, getNode: GetNode): Promise<Entry | undefined> {
  let node = await getNode(root);
  while (!isLeaf(node)) {
    const { children } = node;
    // The last child whose first key is <= path holds it, if anything does.
    const after = children.findIndex((child) => compareKeys(child.firstKey, path) > 0);
    const index = (after < 0 ? children.length : after) - 1;
    if (index < 0) return undefined;
    const child = await getNode(children[index].hash);
    checkChild(node, children[index], child);
    node = child;
  }
  return node.entries.find((entry) => entry.path === path);
}

/**
 * Refuses a child that is not where its parent says it is: one level down and
 * starting at the key the parent lists (storage-lite's `Trees::child`). Hashes
 * prove which bytes a node has, not that the tree is well formed.
 */
function checkChild(parent: Interior, ref: ChildRef, child: TreeNode): void {
  if (child.level + 1 !== parent.level || firstKey(child) !== ref.firstKey) {
    throw misplaced(ref.hash);
  }
}
