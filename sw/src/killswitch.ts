/** The server's order to leave (`x-grove-sw: unregister`; see README). */

import { destroy, killed } from './store.ts';
import { sw } from './worker-global.ts';

/** True once the worker was told to leave: from then on it answers nothing itself, and never reopens its database. */
export { killed };

/**
 * Unregisters the worker and deletes everything it stored. Tabs it controls
 * keep it until they close, and meanwhile every request of theirs goes to the
 * network as if there were no worker. `killed` is set at once, before
 * anything is awaited, so no request or application under way can recreate
 * the database.
 */
export async function unregister(): Promise<void> {
  if (!killed) await Promise.all([destroy(), sw.registration.unregister()]);
}
