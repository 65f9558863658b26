/**
 * Decoding of manifest tree nodes, as served at `/_grove/tree/<hash>`.
 *
 * The format is storage-lite's (storage-lite/src/tree/node.rs), version 1;
 * integers are unsigned LEB128 unless noted:
 *
 *     magic "GT" | format version (u8 = 1) | level (u8, 0 = leaf) | item count
 *     leaf only:  content-type count | each: length, bytes
 *     each item:  shared-prefix length with the previous key | suffix length | suffix bytes
 *                 leaf: content hash (32 bytes) | size | content-type index
 *                 interior: child node hash (32 bytes)
 *
 * Decoding is as strict about structure as the Rust decoder (bounds, strictly
 * increasing keys, indexes in range, no trailing bytes): lookups and the diff
 * rely on keys being sorted. It does not repeat storage-lite's syntax checks of
 * paths and content types, which the server applied when the node was
 * published: the worker only looks keys up by exact match against a
 * normalized request path, so an odd key can never answer a URL it does not
 * spell, and a content type that is no valid header value fails the
 * response, which then comes from the network.
 */

import { strictUtf8, toHex } from '../bytes.ts';

/** One file of a site version. */
export interface Entry {
  path: string;
  hash: string;
  size: number;
  contentType: string;
}

/** An interior node's pointer to a child: the smallest path under it, and its hash. */
export interface ChildRef {
  firstKey: string;
  hash: string;
}

export interface Leaf {
  level: 0;
  entries: Entry[];
}

export interface Interior {
  level: number;
  children: ChildRef[];
}

export type TreeNode = Leaf | Interior;

export function isLeaf(node: TreeNode): node is Leaf {
  return 'entries' in node;
}

/** The error for a node found somewhere its parent does not put it. */
export function misplaced(hash: string): Error {
  return Error(`tree node ${hash} is not where its parent says`);
}

/** The smallest key in a node's subtree (undefined only for an empty tree). */
export function firstKey(node: TreeNode): string | undefined {
  return isLeaf(node) ? node.entries[0]?.path : node.children[0].firstKey;
}

const FORMAT_VERSION = 1;
/** Levels above this cannot occur for any site (node.rs `MAX_LEVEL`). */
const MAX_LEVEL = 16;

/** Decodes one node, refusing anything the Rust decoder refuses for its structure. */
export function decodeNode(bytes: Uint8Array): TreeNode {
  let at = 0;
  const fail = (reason: string): never => {
    throw Error(`malformed tree node: ${reason}`);
  };
  const take = (length: number): Uint8Array => {
    if (at + length > bytes.length) fail('truncated');
    return bytes.subarray(at, (at += length));
  };
  const byte = (): number => take(1)[0];
  // LEB128 as the `leb128` crate reads it (at most 64 bits), further bounded
  // to what a JavaScript number holds exactly: no real size comes near 2^53.
  const uint = (): number => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      const next = byte();
      value += (next & 0x7f) * scale;
      if (next < 0x80) break;
      if (scale >= 2 ** 63) fail('bad integer');
    }
    return Number.isSafeInteger(value) ? value : fail('bad integer');
  };
  // A length or count; the node's own size bounds every one of them.
  const length = (bound: number): number => {
    const value = uint();
    return value <= bound ? value : fail('bad length');
  };
  const text = (raw: Uint8Array, what: string): string => {
    try {
      return strictUtf8.decode(raw);
    } catch {
      return fail(`${what} is not UTF-8`);
    }
  };
  let previous = new Uint8Array(0);
  const key = (): string => {
    const shared = length(previous.length);
    const suffix = take(length(bytes.length));
    const next = new Uint8Array(shared + suffix.length);
    next.set(previous.subarray(0, shared));
    next.set(suffix, shared);
    if (next.length === 0) fail('invalid key');
    if (previous.length > 0 && compareBytes(next, previous) <= 0) fail('keys not strictly increasing');
    previous = next;
    return text(next, 'key');
  };
  const hash = (): string => toHex(take(32));

  if (byte() !== 0x47 || byte() !== 0x54) fail('bad magic'); // "GT"
  if (byte() !== FORMAT_VERSION) fail('unsupported format version');
  const level = byte();
  if (level > MAX_LEVEL) fail('level out of range');
  const count = length(bytes.length);
  let node: TreeNode;
  if (level === 0) {
    const types = Array.from({ length: length(bytes.length) }, () => text(take(length(bytes.length)), 'content type'));
    const entries = Array.from({ length: count }, (): Entry => {
      const path = key();
      const entryHash = hash();
      const size = uint();
      const contentType = types[length(types.length)] ?? fail('type index out of range');
      return { path, hash: entryHash, size, contentType };
    });
    node = { level: 0, entries };
  } else {
    if (count === 0) fail('node without children');
    const children = Array.from({ length: count }, (): ChildRef => ({ firstKey: key(), hash: hash() }));
    node = { level, children };
  }
  if (at !== bytes.length) fail('trailing bytes');
  return node;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}
