// Node sources over encoded nodes, for lookups and diffs, that record what
// they read from the "network".
import './ts.mjs';

const { decodeNode } = await import('../src/tree/node.ts');

/**
 * `held`: nodes the worker stores; `remote`: every node the server has.
 * `fetch` takes a held node locally and records a network fetch otherwise.
 */
export function sources(held, remote) {
  const local = new Map(held);
  const fetched = [];
  return {
    fetched,
    local: async (hash) => (local.has(hash) ? decodeNode(local.get(hash)) : undefined),
    fetch: async (hash) => {
      if (!local.has(hash)) {
        if (!remote.has(hash)) throw new Error(`no node ${hash}`);
        fetched.push(hash);
        local.set(hash, remote.get(hash));
      }
      return decodeNode(local.get(hash));
    },
  };
}
