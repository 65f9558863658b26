/** What changed between two versions, in the part of the old tree the worker holds. */

import { compareKeys } from './order.ts';
import { type Entry, type TreeNode, isLeaf, misplaced } from './node.ts';

/** Where the walk reads nodes from. */
export interface NodeSources {
  /** A node of the old tree if it is stored locally; never touches the network. */
  local(hash: string): Promise<TreeNode | undefined>;
  /** A node of the new tree, fetched (and stored) if needed; a second call for one hash is answered locally. */
  fetch(hash: string): Promise<TreeNode>;
}

/** One path whose content differs between the two versions. */
export interface Change {
  before: Entry;
  after: Entry;
}

/** A subtree still to compare, known by hash and level from its parent, holding keys in [low, high). */
interface Subtree {
  hash: string;
  level: number;
  low: string;
  /** Exclusive; null for no bound. */
  high: string | null;
}

/**
 * The paths whose content hash changed from `oldRoot` to `newRoot`, among the
 * entries of old leaves stored locally.
 *
 * As storage-lite's `Trees::diff` (storage-lite/src/tree/diff.rs), both trees
 * are frontiers of subtrees: subtrees present on both sides hold identical
 * entries and are dropped, by hash, before anything under them is read; then
 * the highest remaining level is opened, until only leaves are left. Unlike
 * it, the old side is read from local storage only: an old subtree the worker
 * never stored holds nothing it cached, so it leaves the walk, and a new
 * subtree is opened only where its key range meets an old subtree still in
 * the walk. So the network sees only new nodes whose hash changed, on the
 * way to what the worker holds.
 */
export async function changedFiles(oldRoot: string, newRoot: string, nodes: NodeSources): Promise<Change[]> {
  const oldTop = oldRoot === newRoot ? undefined : await nodes.local(oldRoot);
  if (!oldTop) return [];
  const newTop = await nodes.fetch(newRoot);
  let oldSide: Subtree[] = [{ hash: oldRoot, level: oldTop.level, low: '', high: null }];
  let newSide: Subtree[] = [{ hash: newRoot, level: newTop.level, low: '', high: null }];
  const oldEntries: Entry[] = [];
  const newEntries: Entry[] = [];
  for (;;) {
    // Subtrees present on both sides hold identical entries.
    const oldHashes = new Set(oldSide.map((s) => s.hash));
    const newHashes = new Set(newSide.map((s) => s.hash));
    oldSide = oldSide.filter((s) => !newHashes.has(s.hash));
    newSide = newSide.filter((s) => !oldHashes.has(s.hash));
    if (!oldSide.length || !newSide.length) break;
    const level = Math.max(...oldSide.map((s) => s.level), ...newSide.map((s) => s.level));
    const oldOpened = await read(oldSide, level, nodes.local);
    const reach = [...oldSide.filter((s) => s.level !== level), ...oldOpened.map(([subtree]) => subtree)];
    newSide = newSide.filter((subtree) => reach.some((old) => overlap(old, subtree)));
    const newOpened = await read(newSide, level, nodes.fetch);
    oldSide = open(oldSide, level, oldOpened, oldEntries);
    newSide = open(newSide, level, newOpened, newEntries);
  }
  const before = new Map(oldEntries.map((entry) => [entry.path, entry]));
  return newEntries.flatMap((after) => {
    const old = before.get(after.path);
    return old && old.hash !== after.hash ? [{ before: old, after }] : [];
  });
}

/** The nodes of the subtrees at `level` that `get` supplies, with their subtree. */
async function read(
  side: Subtree[],
  level: number,
  get: (hash: string) => Promise<TreeNode | undefined>,
): Promise<Array<[Subtree, TreeNode]>> {
  const pairs = await Promise.all(
    side.filter((s) => s.level === level).map(async (s) => [s, await get(s.hash)] as const),
  );
  return pairs.flatMap(([subtree, node]) => {
    if (!node) return [];
    if (node.level !== level) throw misplaced(subtree.hash);
    return [[subtree, node]];
  });
}

/**
 * The frontier with the subtrees at `level` replaced by their children (read
 * ones) or dropped (unread ones); a leaf's entries go to `entries` instead.
 */
function open(side: Subtree[], level: number, opened: Array<[Subtree, TreeNode]>, entries: Entry[]): Subtree[] {
  const next = side.filter((s) => s.level !== level);
  for (const [subtree, node] of opened) {
    if (isLeaf(node)) {
      entries.push(...node.entries);
      continue;
    }
    node.children.forEach((child, index) => {
      next.push({
        hash: child.hash,
        level: level - 1,
        low: child.firstKey,
        high: node.children[index + 1]?.firstKey ?? subtree.high,
      });
    });
  }
  return next;
}

function overlap(a: Subtree, b: Subtree): boolean {
  const below = (key: string, high: string | null) => high === null || compareKeys(key, high) < 0;
  return below(a.low, b.high) && below(b.low, a.high);
}
