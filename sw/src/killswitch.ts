/** The server's order to leave (`x-grove-sw: unregister`; see README). */

import { destroy } from './store.ts';
import { sw } from './worker-global.ts';

/** True once the worker was told to leave: from then on it answers nothing itself. */
export let killed = false;

/**
 * Unregisters the worker and deletes everything it stored. Tabs it controls
 * keep it until they close, and meanwhile every request of theirs goes to the
 * network as if there were no worker.
 */
export async function unregister(): Promise<void> {
  if (killed) return;
  killed = true;
  await sw.registration.unregister();
  await destroy();
}
