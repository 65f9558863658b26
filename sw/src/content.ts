/**
 * Tree nodes and blobs by hash: from memory (decoded nodes), IndexedDB, or
 * the network (verified, then stored).
 */

import { noteStored, withRoom } from './evict.ts';
import { fetchVerified } from './fetcher.ts';
import { warn } from './log.ts';
import { type ContentKind, getContent, putContent, touch } from './store.ts';
import { type TreeNode, decodeNode } from './tree/node.ts';

/**
 * Files larger than this are not kept: they are answered by the network
 * (pinned to the tab's version) instead, so one video cannot push a whole
 * site out of the cache, and no body held whole in memory gets huge.
 */
export const MAX_BLOB_BYTES = 8 * 2 ** 20;

/** Decoded nodes held in memory; nodes are immutable, so they never go stale. */
const MEMORY_NODES = 512;
const decoded = new Map<string, TreeNode>();

/** A stored object's last use is recorded at most this often. */
const TOUCH_EVERY_MS = 60_000;
const touched = new Map<string, number>();

/** A node if it is held locally; never touches the network. */
export async function localNode(hash: string): Promise<TreeNode | undefined> {
  const held = decoded.get(hash);
  if (held) return held;
  const bytes = await getContent('nodes', hash);
  return bytes && remember(hash, decodeNode(bytes));
}

/** A node, fetched and stored if it is not held locally. */
export async function node(hash: string): Promise<TreeNode> {
  const local = await localNode(hash);
  if (local) {
    used(hash);
    return local;
  }
  const bytes = await fetchVerified('tree', hash);
  // Decoded before it is stored: a malformed node is never kept.
  const fetched = decodeNode(bytes);
  await keep('nodes', hash, bytes);
  return remember(hash, fetched);
}

/** A file's bytes, fetched and stored if they are not held locally. */
export async function blob(hash: string, size: number): Promise<Uint8Array<ArrayBuffer>> {
  const stored = await getContent('blobs', hash);
  if (stored) {
    used(hash);
    return stored;
  }
  const bytes = await fetchVerified('blob', hash, size);
  await keep('blobs', hash, bytes);
  return bytes;
}

/**
 * Stores verified bytes. A full quota first makes room and retries once;
 * failing that, the bytes are served without being kept: storage trouble
 * never fails a request.
 */
async function keep(kind: ContentKind, hash: string, bytes: Uint8Array): Promise<void> {
  try {
    await withRoom(() => putContent(kind, hash, bytes));
    await noteStored(bytes.length);
  } catch (error) {
    warn(`could not store ${kind}/${hash}`)(error);
  }
}

function used(hash: string): void {
  const now = Date.now();
  if (now - (touched.get(hash) ?? 0) < TOUCH_EVERY_MS) return;
  touched.set(hash, now);
  touch(hash).catch(warn('could not record a use'));
}

function remember(hash: string, node: TreeNode): TreeNode {
  decoded.set(hash, node);
  if (decoded.size > MEMORY_NODES) decoded.delete(decoded.keys().next().value!);
  return node;
}
