/** Which version each client (tab, frame or worker) is pinned to. */

import type { Version } from './protocol.ts';
import { deletePins, readPins, writePin } from './store.ts';
import { sw } from './worker-global.ts';

/**
 * Clients pinned by this worker that `clients.matchAll` has not listed yet:
 * a navigation's client is pinned before its document exists, and is listed
 * only once the document runs, so until then its pin must not look like the
 * pin of a closed tab.
 */
const unlisted = new Set<string>();

/** Pins a client that is being created (`event.resultingClientId`). */
export function pinClient(clientId: string, version: Version): Promise<void> {
  unlisted.add(clientId);
  return writePin(clientId, version);
}

/**
 * The versions open clients are pinned to. Pins of clients that are gone are
 * deleted, so closed tabs stop holding their versions; this runs on every
 * new version and every eviction, which keeps the pins to about the open tabs.
 */
export async function prunePins(): Promise<Version[]> {
  const [pins, clients] = await Promise.all([readPins(), sw.clients.matchAll({ type: 'all', includeUncontrolled: true })]);
  const open = new Set(clients.map((client) => client.id));
  const kept: Version[] = [];
  const gone: string[] = [];
  for (const [id, version] of pins) {
    if (open.has(id)) unlisted.delete(id);
    if (open.has(id) || unlisted.has(id)) kept.push(version);
    else gone.push(id);
  }
  await deletePins(gone);
  return kept;
}
