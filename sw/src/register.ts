/**
 * grove's register script (served as `/_grove/register.js`, added to every
 * HTML page): installs the worker, polls `/_grove/root` while the page is
 * visible and hands what it learns to the worker, and turns the worker's
 * news into a `grove:update` event on `window`.
 *
 * A page works the same without it: everything here is best effort.
 */

import { ROOT_MESSAGE, ROOT_PATH, SW_HEADER, SW_PATH, UNREGISTER, UPDATE_MESSAGE } from './protocol.ts';

/** Seconds between polls unless the page says otherwise (see pollSeconds). */
const DEFAULT_POLL_SECONDS = 60;

/**
 * `<meta name="grove-poll-seconds" content="30">` in a page sets its polling
 * interval; `0` keeps only the check at load.
 */
function pollSeconds(): number {
  const content = document.querySelector<HTMLMetaElement>('meta[name="grove-poll-seconds"]')?.content.trim();
  const seconds = Number(content);
  return content && seconds >= 0 ? seconds : DEFAULT_POLL_SECONDS;
}

function start(): void {
  const container = navigator.serviceWorker;
  const seconds = pollSeconds();
  let lastCheck = 0;
  let registered: Promise<unknown> | undefined;

  container.addEventListener('message', (event) => {
    const { type, version, root } = (event.data ?? {}) as Record<string, unknown>;
    if (type === UPDATE_MESSAGE) dispatchEvent(new CustomEvent(UPDATE_MESSAGE, { detail: { version, root } }));
  });

  const check = async () => {
    lastCheck = Date.now();
    const response = await fetch(ROOT_PATH, { cache: 'no-store' });
    if (response.headers.get(SW_HEADER) === UNREGISTER) {
      clearInterval(timer);
      await (await container.getRegistration('/'))?.unregister();
      return;
    }
    if (!response.ok) return;
    const root: unknown = await response.json();
    // Registered only after the server has not said to leave, so a kill
    // switch never races a fresh install. Where workers are unavailable
    // (blocked, private browsing), polling for them stops too.
    registered ??= container.register(SW_PATH, { scope: '/' }).catch((error: unknown) => {
      clearInterval(timer);
      throw error;
    });
    await registered;
    (await container.ready).active?.postMessage({ type: ROOT_MESSAGE, root });
  };

  // Offline, blocked or refused: the page simply goes on without the worker.
  const run = () => void check().catch(() => undefined);
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
