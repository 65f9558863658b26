// A test-only encoder of storage-lite's manifest trees, written from
// storage-lite/src/tree/node.rs (`Node::encode`, `is_boundary`) and
// storage-lite/src/tree/chunk.rs + mod.rs (`chunks`, `Trees::build`), so the
// tests can build trees of any shape. It is checked against trees the Rust
// code wrote (fixtures/trees, see fixtures/README.md): the same files give
// byte-identical nodes and the same root hash.
import { createHash } from 'node:crypto';

export const sha256 = (bytes) => createHash('sha256').update(bytes).digest();
const utf8 = (text) => Buffer.from(text, 'utf8');

function writeUint(out, value) {
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out.push(byte);
  } while (value > 0);
}

function writeBytes(out, bytes) {
  writeUint(out, bytes.length);
  out.push(...bytes);
}

// Prefix compression against the previous key, counted in bytes.
function writeKey(out, previous, key) {
  let shared = 0;
  while (shared < previous.length && shared < key.length && previous[shared] === key[shared]) shared++;
  writeUint(out, shared);
  writeBytes(out, key.subarray(shared));
}

/** entries: [{ path, hash (hex), size, contentType }] sorted by path. */
export function encodeLeaf(entries) {
  const out = [0x47, 0x54, 1, 0];
  writeUint(out, entries.length);
  // Content types are numbered in order of first appearance.
  const types = [...new Set(entries.map((entry) => entry.contentType))];
  writeUint(out, types.length);
  for (const type of types) writeBytes(out, utf8(type));
  let previous = Buffer.alloc(0);
  for (const entry of entries) {
    const key = utf8(entry.path);
    writeKey(out, previous, key);
    out.push(...Buffer.from(entry.hash, 'hex'));
    writeUint(out, entry.size);
    writeUint(out, types.indexOf(entry.contentType));
    previous = key;
  }
  return Uint8Array.from(out);
}

/** children: [{ firstKey, hash (hex) }] sorted by firstKey. */
export function encodeInterior(level, children) {
  const out = [0x47, 0x54, 1, level];
  writeUint(out, children.length);
  let previous = Buffer.alloc(0);
  for (const child of children) {
    const key = utf8(child.firstKey);
    writeKey(out, previous, key);
    out.push(...Buffer.from(child.hash, 'hex'));
    previous = key;
  }
  return Uint8Array.from(out);
}

/** A node ends after a key whose SHA-256 of (level byte, key) starts with 6 zero bits. */
export function isBoundary(level, key) {
  return sha256(Buffer.concat([Buffer.from([level]), utf8(key)]))[0] < 4;
}

function chunks(level, items, keyOf) {
  const result = [];
  let current = [];
  for (const item of items) {
    current.push(item);
    if (isBoundary(level, keyOf(item))) {
      result.push(current);
      current = [];
    }
  }
  if (current.length > 0) result.push(current);
  return result;
}

/**
 * Builds the tree of `entries` (any order): its root hash and every node,
 * encoded, by hash.
 */
export function buildTree(entries) {
  const nodes = new Map();
  const store = (bytes) => {
    const hash = sha256(bytes).toString('hex');
    nodes.set(hash, bytes);
    return hash;
  };
  const sorted = [...entries].sort((a, b) => Buffer.compare(utf8(a.path), utf8(b.path)));
  let refs = chunks(0, sorted, (entry) => entry.path).map((leaf) => ({
    firstKey: leaf[0].path,
    hash: store(encodeLeaf(leaf)),
  }));
  if (refs.length === 0) return { root: store(encodeLeaf([])), nodes };
  for (let level = 1; refs.length > 1; level++) {
    refs = chunks(level, refs, (ref) => ref.firstKey).map((children) => ({
      firstKey: children[0].firstKey,
      hash: store(encodeInterior(level, children)),
    }));
  }
  return { root: refs[0].hash, nodes };
}

/** An entry for a file with these contents, hashed as the publisher does. */
export function fileEntry(path, contents, contentType = 'text/html; charset=utf-8') {
  const bytes = utf8(contents);
  return { path, hash: sha256(bytes).toString('hex'), size: bytes.length, contentType };
}
