/**
 * grove's register script (served as `/_grove/register.js`, added to every
 * HTML page): installs the worker, polls `/_grove/root` while the page is
 * visible and hands what it learns to the worker, and turns the worker's
 * news into a `grove:update` event on `window`.
 *
 * A page works the same without it: everything here is best effort.
 */

import { DB_NAME, KILL_MESSAGE, ROOT_MESSAGE, ROOT_PATH, SW_HEADER, SW_PATH, UNREGISTER, UPDATE_MESSAGE } from './protocol.ts';

/** Seconds between polls unless the page says otherwise (see pollSeconds). */
const DEFAULT_POLL_SECONDS = 60;

/**
 * `<meta name="grove-poll-seconds" content="30">` in a page sets its polling
 * interval; `0` keeps only the check at load.
 */
function pollSeconds(): number {
  const seconds = meta('grove-poll-seconds');
  return seconds !== undefined && seconds >= 0 ? seconds : DEFAULT_POLL_SECONDS;
}

/** The number a `<meta name="...">` of the page gives, if any. */
function meta(name: string): number | undefined {
  const content = document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content.trim();
  return content ? Number(content) : undefined;
}

function start(): void {
  const container = navigator.serviceWorker;
  const seconds = pollSeconds();
  // `<meta name="grove-cache-bytes" content="...">`: the worker's byte budget
  // for the site (default 50 MiB); give it on every page, or on none.
  const cacheBytes = meta('grove-cache-bytes');
  // A page the worker did not serve (a first visit, a hard reload) is on the
  // live version, which its check at load reports: the worker pins it there,
  // so its later loads stay on that version after a publish.
  let unpinned = !container.controller;
  let lastCheck = 0;
  let stopped = false;
  let registered: Promise<ServiceWorkerRegistration | undefined> | undefined;

  container.addEventListener('message', (event) => {
    const { type, version, root } = (event.data ?? {}) as Record<string, unknown>;
    if (type === UPDATE_MESSAGE) dispatchEvent(new CustomEvent(UPDATE_MESSAGE, { detail: { version, root } }));
  });

  const stop = () => {
    stopped = true;
    clearInterval(timer);
  };

  const check = async () => {
    const load = unpinned;
    unpinned = false;
    lastCheck = Date.now();
    const response = await fetch(ROOT_PATH, { cache: 'no-store' });
    if (response.headers.get(SW_HEADER) === UNREGISTER) {
      stop();
      // The worker is told first, so it stops answering the tabs it still
      // controls; the registration and the database go even if its code is
      // broken (which is what a kill switch is for).
      const registration = await container.getRegistration('/');
      registration?.active?.postMessage({ type: KILL_MESSAGE });
      await registration?.unregister();
      indexedDB.deleteDatabase(DB_NAME);
      return;
    }
    if (!response.ok) return;
    const root: unknown = await response.json();
    // Registered only after the server has not said to leave, so a kill
    // switch never races a fresh install. Where workers are unavailable
    // (blocked, private browsing: registration fails or gives nothing),
    // polling for them stops too.
    registered ??= container.register(SW_PATH, { scope: '/' }).catch(() => undefined);
    if (!(await registered)) return stop();
    (await container.ready).active?.postMessage({ type: ROOT_MESSAGE, root, cacheBytes, load });
  };

  // Offline, blocked or refused: the page simply goes on without the worker.
  const run = () => void (stopped || check().catch(() => undefined));
  // Hidden pages do not poll: a background tab costs the server nothing.
  const visible = () => document.visibilityState === 'visible';
  const timer = seconds > 0 ? setInterval(() => visible() && run(), seconds * 1000) : undefined;
  document.addEventListener('visibilitychange', () => {
    const stale = lastCheck === 0 || (seconds > 0 && Date.now() - lastCheck >= seconds * 1000);
    if (visible() && stale) run();
  });
  if (visible()) run();
}

if ('serviceWorker' in navigator) start();
