/**
 * grove's service worker (served as `/_grove/sw.js`, scope `/`): each tab
 * stays on the site version it was opened on, new navigations get the newest
 * version the worker has synced, and only what changed travels. See README.
 */

import { learn } from './apply.ts';
import { setBudget } from './evict.ts';
import { killed, unregister } from './killswitch.ts';
import { KILL_MESSAGE, ROOT_MESSAGE, parseRootDocument } from './protocol.ts';
import { noteWrite, WRITE_PATHS } from './seen.ts';
import { adopt, navigate, subresource } from './serve.ts';
import { sw } from './worker-global.ts';

// The site version is never tied to the worker's code, and everything the
// worker knows is in IndexedDB, so new code can take over open tabs at once:
// they keep their pinned versions. Nothing ever reloads a page.
const on = sw.addEventListener.bind(sw);
on('install', (event) => event.waitUntil(sw.skipWaiting()));
on('activate', (event) => event.waitUntil(sw.clients.claim()));

on('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  const sameOrigin = url.origin === sw.location.origin;
  if (request.method === 'POST' && sameOrigin && WRITE_PATHS.includes(url.pathname) && !killed) {
    // Passed on as it is; its `{ts}` is noted before the page sees the reply.
    return event.respondWith(
      fetch(request).then(async (response) => (await noteWrite(response.clone()), response)),
    );
  }
  // `/_grove/` is the host's own namespace (root polls, API calls, content
  // fetches, the worker script itself): never version-pinned, never cached here.
  const ours = request.method === 'GET' && sameOrigin && !url.pathname.startsWith('/_grove/');
  if (!ours || killed) return;
  event.respondWith(request.mode === 'navigate' ? navigate(event) : subresource(event));
});

on('message', (event) => {
  const message = event.data as { type?: unknown; root?: unknown; cacheBytes?: unknown; load?: unknown } | null;
  if (message?.type === KILL_MESSAGE) event.waitUntil(unregister());
  // A worker told to leave learns nothing more (it would recreate its database).
  if (message?.type !== ROOT_MESSAGE || killed) return;
  setBudget(message.cacheBytes);
  const news = parseRootDocument(message.root);
  if (!news) return;
  // A page the worker did not serve is on the version its check at load
  // saw; once pinned there, it is taken under control (a hard-reloaded page
  // is not, even when the worker is active: without this it would stay
  // pinned but never served).
  if (message.load === true) event.waitUntil(adopt((event.source as Client).id, news).then(() => sw.clients.claim()));
  event.waitUntil(learn(news));
});
