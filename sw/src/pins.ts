/** Which version each client (tab, frame or worker) is pinned to. */

import type { Version } from './protocol.ts';
import { deletePins, readPins } from './store.ts';
import { sw } from './worker-global.ts';

/**
 * The versions open clients are pinned to. Pins of clients that are gone are
 * deleted, so closed tabs stop holding their versions; this runs on every
 * new version and every eviction, which keeps the pins to about the open tabs.
 */
export async function prunePins(): Promise<Version[]> {
  const [pins, clients] = await Promise.all([readPins(), sw.clients.matchAll({ type: 'all', includeUncontrolled: true })]);
  const open = new Set(clients.map((client) => client.id));
  await deletePins([...pins.keys()].filter((id) => !open.has(id)));
  return [...pins].filter(([id]) => open.has(id)).map(([, version]) => version);
}
