/**
 * Answering a tab's requests under its version: from the tree and the cache
 * where the worker can decide exactly as the proxy would, else from the
 * network with the version pinned.
 */

import { forget, learn } from './apply.ts';
import { MAX_BLOB_BYTES, blob } from './content.ts';
import { withRoom } from './evict.ts';
import { fileAt, rulesOf } from './files.ts';
import { injectRegister, isHtml } from './html.ts';
import { unregister } from './killswitch.ts';
import { warn } from './log.ts';
import { encodePath, parseRequestPath, urlPath } from './path.ts';
import {
  LIVE_HEADER,
  ROOT_HEADER,
  ROOT_PATH,
  SW_HEADER,
  UNREGISTER,
  VERSION_HEADER,
  type Version,
  parseRootDocument,
  pinnedUrl,
  versionOf,
} from './protocol.ts';
import { isProtected } from './protect.ts';
import { isRendered } from './rendered.ts';
import { resolve } from './resolve.ts';
import { headersFor, isForced } from './rules.ts';
import { SEEN_EVERY_MS } from './lru.ts';
import { addSeen } from './seen.ts';
import { type SiteState, readPin, readState, writePin } from './store.ts';

/**
 * A navigation starts a new page on the version the proxy serves now, so
 * every new session gets the newest site. The worker asks `/_grove/root`
 * first, for at most {@link CHECK_MS}: if that is the version it holds, it
 * answers from its cache; if the proxy has moved on, the network answers
 * (and the worker syncs the new version meanwhile). Offline or slow, the
 * version it holds answers, and `x-grove-freshness` says so. The new client
 * (the tab's document) is pinned to the version that answered; with no
 * version known, or no pin written, the live version answers and the client
 * is pinned to the version it says it is. A signed-in tab (the proxy marks
 * its replies `x-grove-live`) is pinned to nothing: the network answers all
 * of its requests with the freshest version.
 */
export async function navigate(event: FetchEvent): Promise<Response> {
  const { current } = await readState().catch((): SiteState => ({}));
  const live = current && (await liveVersion(event, current));
  if (current && (live === 'same' || live === 'offline' || live === 'slow')) {
    if (await pin(event.resultingClientId, current)) return marked(await answer(event, current), live);
  }
  const response = await passthrough(event);
  const served = versionOf(response.headers);
  if (served && response.headers.get(LIVE_HEADER) !== '1') await pin(event.resultingClientId, served);
  return response;
}

/** How long a navigation waits to hear which version is live. */
const CHECK_MS = 1000;
/** Says how the worker knew a navigation's version: `same` (checked), `offline` or `slow`. */
export const FRESHNESS_HEADER = 'x-grove-freshness';

/** Whether the live version is the worker's current one, by a short `/_grove/root` check. */
async function liveVersion(
  event: FetchEvent,
  current: Version,
): Promise<'same' | 'moved' | 'offline' | 'slow' | 'signed-in'> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), CHECK_MS);
  try {
    const response = await fetch(ROOT_PATH, { cache: 'no-store', signal: timeout.signal });
    if (response.headers.get(SW_HEADER) === UNREGISTER) return (event.waitUntil(unregister()), 'moved');
    if (response.headers.get(LIVE_HEADER) === '1') return 'signed-in';
    const live = response.ok ? parseRootDocument(await response.json()) : undefined;
    if (!live) return 'offline';
    if (live.version === current.version && live.root === current.root) return 'same';
    event.waitUntil(learn(live));
    return 'moved';
  } catch {
    return timeout.signal.aborted ? 'slow' : 'offline';
  } finally {
    clearTimeout(timer);
  }
}

/** `response` with its freshness said (an opaque redirect stays as it is). */
function marked(response: Response, freshness: string): Response {
  if (response.type === 'opaqueredirect') return response;
  const headers = new Headers(response.headers);
  headers.set(FRESHNESS_HEADER, freshness);
  const { status, statusText } = response;
  return new Response(response.body, { status, statusText, headers });
}

/** Any other request resolves under the version its client is pinned to. */
export async function subresource(event: FetchEvent): Promise<Response> {
  const { clientId } = event;
  // (No client, no pin: its id is then "", which no pin has.)
  const pinned = await readPin(clientId).catch(() => undefined);
  // A client the worker never pinned (a page loaded before the worker ran)
  // is on whatever version the network gave it, which is what it keeps getting.
  if (!pinned) return passthrough(event);
  // A client making requests is open (see `sortPins`).
  if (!(Date.now() - pinned.seen < SEEN_EVERY_MS)) event.waitUntil(pin(clientId, pinned));
  // A worker that a pinned page starts belongs to the page's version.
  await pin(event.resultingClientId, pinned);
  return answer(event, pinned);
}

/** Pins a client the worker did not pin (a page it did not serve), if it still has no pin. */
export async function adopt(clientId: string, version: Version): Promise<void> {
  if (!(await readPin(clientId))) await pin(clientId, version);
}

/**
 * Pins a client (none for an empty id) and says whether it is pinned. A
 * write the quota refuses makes room and is retried once (see withRoom).
 */
async function pin(clientId: string, version: Version): Promise<boolean> {
  return (
    !clientId ||
    withRoom(() => writePin(clientId, version)).then(
      () => true,
      (error) => (warn('could not pin')(error), false),
    )
  );
}

async function answer(event: FetchEvent, version: Version): Promise<Response> {
  try {
    const local = await fromTree(event.request, version);
    if (local) return local;
  } catch (error) {
    warn('answering from the network')(error);
  }
  return pinnedFetch(event, version);
}

/**
 * The response the proxy would give, built from the tree and blobs; undefined
 * where only the proxy can answer exactly: a path it refuses, a range, a
 * forced redirect rule, a members-only path, a missing file (404 page, SPA fallback, unforced
 * rules), an answer that depends on a setting the worker does not know, a
 * file too large to keep, or a header it cannot reproduce.
 */
async function fromTree(request: Request, { version, root }: Version): Promise<Response | undefined> {
  const url = new URL(request.url);
  const path = parseRequestPath(url.pathname);
  if (!path || request.headers.has('range')) return undefined;
  const target = urlPath(path);
  const [rules, { trailingSlash, protect, pages }] = await Promise.all([rulesOf(root), readState()]);
  if (isForced(rules, target) || isProtected(protect, target) || isRendered(pages, target)) return undefined;
  const found = await resolve((file) => fileAt(root, file), path, trailingSlash);
  if (found === 'network') return undefined;
  if ('redirect' in found) {
    return Response.redirect(new URL(encodePath(found.redirect) + url.search, url), 308);
  }
  const { file } = found;
  const extra = headersFor(rules, target);
  if (!extra || file.size > MAX_BLOB_BYTES) return undefined;
  const headers = new Headers({
    'content-type': file.contentType,
    [VERSION_HEADER]: String(version),
    [ROOT_HEADER]: root,
  });
  for (const [name, value] of extra) headers.set(name, value);
  const body = await blob(file.hash, file.size);
  return new Response(isHtml(file.contentType) ? injectRegister(body) : body, { headers });
}

/**
 * The network's answer under the tab's version: the proxy resolves a request
 * carrying `_grove_version` under that version, so a tab never gets another
 * version's files, not even its 404 page. The query, not the header: a CDN
 * keys its cache by URL. Two answers go to the request as the page made it
 * instead: a redirect (to another origin, which a pinned fetch would refuse,
 * or to a URL that would carry the pin), and "version ... does not exist"
 * (the site was reset; see `forget`).
 */
async function pinnedFetch(event: FetchEvent, { version }: Version): Promise<Response> {
  const { request } = event;
  // A navigation request cannot be copied; any other is, with its mode
  // (`no-cors` is harmless now: the pin is in the URL).
  const headers = new Headers(request.headers);
  const navigation = request.mode === 'navigate';
  const url = pinnedUrl(request.url, version);
  const pinned = navigation ? new Request(addSeen(url, headers), { headers }) : new Request(url, request);
  const response = await fetch(pinned, { redirect: 'manual' });
  // The proxy names the version of every answer for a version, so a 404
  // without `x-grove-version` is its "version <n> does not exist".
  const gone = response.status === 404 && !response.headers.has(VERSION_HEADER);
  if (gone) event.waitUntil(forget(version));
  if (gone || response.type === 'opaqueredirect') return passthrough(event);
  heed(event, response, false);
  return response;
}

/** The request as the page made it, for clients and moments with no version to pin. */
async function passthrough(event: FetchEvent): Promise<Response> {
  const { request } = event;
  // A navigation goes as it is but for the newest write seen; its
  // redirects go back to the browser to follow.
  const headers = new Headers(request.headers);
  const url = request.mode === 'navigate' ? addSeen(request.url, headers) : request.url;
  const response = await fetch(url === request.url ? request : new Request(url, { headers, redirect: 'manual' }));
  heed(event, response, true);
  return response;
}

/**
 * Obeys the kill switch, and learns the live version from responses the live
 * version answered (pinned ones name the tab's version, which is no news).
 */
function heed(event: FetchEvent, response: Response, live: boolean): void {
  if (response.headers.get(SW_HEADER) === UNREGISTER) return event.waitUntil(unregister());
  const version = live && versionOf(response.headers);
  if (version) event.waitUntil(learn(version));
}
