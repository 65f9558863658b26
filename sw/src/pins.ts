/** Which version each client (tab, frame or worker) is pinned to. */

import { sortPins } from './lru.ts';
import { readPins, updatePins } from './store.ts';
import { sw } from './worker-global.ts';

/**
 * The roots of the versions open clients are pinned to. Pins of clients unseen for an
 * hour are deleted (see `sortPins`), so closed tabs stop holding their
 * versions, while a tab in the back/forward cache, which `clients.matchAll`
 * omits, keeps its pin when it comes back; this runs on every new version
 * and every eviction.
 */
export async function prunePins(): Promise<string[]> {
  const [pins, clients] = await Promise.all([readPins(), sw.clients.matchAll({ type: 'all', includeUncontrolled: true })]);
  const [kept, gone, seen] = sortPins(pins, new Set(clients.map((client) => client.id)), Date.now());
  await updatePins(gone, seen);
  return kept;
}
