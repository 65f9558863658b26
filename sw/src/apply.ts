/** Applying a newly learned version: sync what changed, flip, tell the tabs. */

import { MAX_BLOB_BYTES, blob, localNode, node } from './content.ts';
import { applying, noteStored } from './evict.ts';
import { warn } from './log.ts';
import { prunePins } from './pins.ts';
import { type RootDocument, UPDATE_MESSAGE, type Version } from './protocol.ts';
import { hasContent, readState, writeState } from './store.ts';
import { changedFiles } from './tree/diff.ts';
import { sw } from './worker-global.ts';

let queue: Promise<void> = Promise.resolve();

/**
 * Applies what a response header or a `/_grove/root` poll said. Applications
 * run one at a time (a header and a poll often tell the same news at once),
 * and a version no newer than the current one changes nothing, so each
 * version is synced, flipped and announced once.
 */
export function learn(news: RootDocument): Promise<void> {
  queue = queue
    .then(() => apply(news))
    .catch(warn(`could not apply version ${news.version}`));
  return queue;
}

async function apply({ trailingSlash, ...next }: RootDocument): Promise<void> {
  const state = await readState();
  const { current } = state;
  const newer = !current || next.version > current.version;
  // Before the flip, so the first navigation to the new version finds what
  // it needs; if this fails (offline), the flip waits for the next news.
  // Eviction keeps what the sync fetches (a failed sync leaves its root
  // kept until the next one: harmless).
  if (newer && current) {
    applying(next.root);
    await prefetch(current.root, next.root);
  }
  await writeState({
    ...(newer ? { current: next, previous: current } : state),
    trailingSlash: trailingSlash ?? state.trailingSlash,
  });
  applying();
  // The version before `current` is no longer kept: if the cache is over
  // its budget, it goes now, not at the next store.
  if (newer && current) await Promise.all([announce(next), prunePins().then(() => noteStored(0))]);
}

/** Fetches the changed nodes on the way to what the worker holds, and the new content of every file it holds. */
async function prefetch(oldRoot: string, newRoot: string): Promise<void> {
  const changes = await changedFiles(oldRoot, newRoot, { local: localNode, fetch: node });
  await Promise.all(
    changes.map(async ({ before, after }) => {
      if (after.size <= MAX_BLOB_BYTES && (await hasContent(before.hash))) await blob(after.hash, after.size);
    }),
  );
}

/**
 * Tells every open tab that `next` is what a navigation now gets. Each tab
 * is on an older version: it was pinned to an earlier current one, or loaded
 * from the network before the worker learned of `next`.
 */
async function announce(next: Version): Promise<void> {
  for (const client of await sw.clients.matchAll({ type: 'window', includeUncontrolled: true })) {
    client.postMessage({ type: UPDATE_MESSAGE, version: next.version, root: next.root });
  }
}
