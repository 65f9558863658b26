/** Applying a newly learned version: sync what changed, flip, tell the tabs. */

import { MAX_BLOB_BYTES, blob, localNode, node } from './content.ts';
import { applying, noteStored } from './evict.ts';
import { rulesOf } from './files.ts';
import { warn } from './log.ts';
import { prunePins } from './pins.ts';
import { type RootDocument, UPDATE_MESSAGE, type Version } from './protocol.ts';
import { hasContent, readState, writeState } from './store.ts';
import { changedFiles } from './tree/diff.ts';
import { sw } from './worker-global.ts';

let queue: Promise<void> = Promise.resolve();

/** Runs `work` after every application and state change before it. */
function enqueue(work: () => Promise<void>): Promise<void> {
  queue = queue.then(work).catch(warn('could not apply news'));
  return queue;
}

/**
 * Applies what a response header or a `/_grove/root` poll said. Applications
 * run one at a time (a header and a poll often tell the same news at once),
 * and a version no newer than the current one changes nothing, so each
 * version is synced, flipped and announced once.
 */
export function learn(news: RootDocument): Promise<void> {
  return enqueue(() => apply(news));
}

/**
 * The proxy said `version` does not exist: the site was reset, and its
 * version numbers restarted. If it is `current`, the state is cleared, so the
 * next news is taken as it comes instead of as older than `current`.
 */
export function forget(version: number): Promise<void> {
  return enqueue(async () => {
    if ((await readState()).current?.version === version) await writeState({});
  });
}

/** Once the kill switch deleted the database, this refuses at `readState`: nothing is fetched or written. */
async function apply({ trailingSlash, protect, pages, ...next }: RootDocument): Promise<void> {
  const state = await readState();
  const { current } = state;
  const newer = !current || next.version > current.version;
  // Before the flip, so the first navigation to the new version finds what
  // it needs; if this fails (offline), the flip waits for the next news.
  // Eviction keeps what the sync fetches (a failed sync leaves its root
  // kept until the next one: harmless).
  if (newer) {
    applying(next.root);
    // No version becomes current unchecked: its root node is fetched and
    // verified first (a version the proxy cannot give is never flipped to).
    await node(next.root);
    if (current) await prefetch(current.root, next.root);
  }
  await writeState({
    ...(newer ? { current: next, previous: current } : state),
    trailingSlash: trailingSlash ?? state.trailingSlash,
    protect: protect ?? state.protect,
    pages: pages ?? state.pages,
  });
  applying();
  // The version before `current` is no longer kept: if the cache is over
  // its budget, it goes now, not at the next store.
  if (newer && current) await Promise.all([announce(next), prunePins().then(() => noteStored(0))]);
}

/**
 * Fetches the changed nodes on the way to what the worker holds (a failure
 * fails the application), then the new content of every file it holds and
 * the version's `_redirects` and `_headers` where they are new or changed
 * (failures there do not: those files are fetched on use).
 */
async function prefetch(oldRoot: string, newRoot: string): Promise<void> {
  const changes = await changedFiles(oldRoot, newRoot, { local: localNode, fetch: node });
  // Every download settles before the flip, and none fails it: a file that
  // cannot be fetched now (404, 502, a hash mismatch twice) is fetched when a
  // tab asks for it, and holds back neither the other files nor the version.
  await Promise.allSettled([
    rulesOf(newRoot),
    ...changes.map(
      async ({ before, after }) =>
        after.size <= MAX_BLOB_BYTES && (await hasContent(before.hash)) && blob(after.hash, after.size),
    ),
  ]);
}

/**
 * Tells every open tab that `next` is what a navigation now gets. Each tab
 * is on an older version: it was pinned to an earlier current one, or loaded
 * from the network before the worker learned of `next`.
 */
async function announce(next: Version): Promise<void> {
  for (const client of await sw.clients.matchAll({ type: 'window', includeUncontrolled: true })) {
    client.postMessage({ type: UPDATE_MESSAGE, ...next });
  }
}
