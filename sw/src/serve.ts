/**
 * Answering a tab's requests under its version: from the tree and the cache
 * where the worker can decide exactly as the proxy would, else from the
 * network with the version pinned.
 */

import { learn } from './apply.ts';
import { MAX_BLOB_BYTES, blob } from './content.ts';
import { fileAt, rulesOf } from './files.ts';
import { injectRegister, isHtml } from './html.ts';
import { unregister } from './killswitch.ts';
import { warn } from './log.ts';
import { encodePath, parseRequestPath, urlPath } from './path.ts';
import { ROOT_HEADER, SW_HEADER, UNREGISTER, VERSION_HEADER, type Version, versionOf } from './protocol.ts';
import { resolve } from './resolve.ts';
import { headersFor, isForced } from './rules.ts';
import { pinClient } from './pins.ts';
import { readPin, readState } from './store.ts';

/** A navigation gets the current version and pins its new client (the tab's document) to it. */
export async function navigate(event: FetchEvent): Promise<Response> {
  const { current } = await readState().catch(() => ({ current: undefined }));
  if (current) {
    await pin(event.resultingClientId, current);
    return answer(event, current);
  }
  // No version known yet: the live one answers, and says which it is.
  const response = await passthrough(event);
  const live = versionOf(response.headers);
  if (live) await pin(event.resultingClientId, live);
  return response;
}

/** Any other request resolves under the version its client is pinned to. */
export async function subresource(event: FetchEvent): Promise<Response> {
  const pinned = event.clientId ? await readPin(event.clientId).catch(() => undefined) : undefined;
  // A client the worker never pinned (a page loaded before the worker ran)
  // is on whatever version the network gave it, which is what it keeps getting.
  if (!pinned) return passthrough(event);
  // A worker that a pinned page starts belongs to the page's version.
  await pin(event.resultingClientId, pinned);
  return answer(event, pinned);
}

/** Pins a client the worker did not pin (a page it did not serve), if it still has no pin. */
export async function adopt(clientId: string, version: Version): Promise<void> {
  if (!(await readPin(clientId))) await pin(clientId, version);
}

async function pin(clientId: string, version: Version): Promise<void> {
  if (!clientId) return;
  await pinClient(clientId, version).catch(warn('could not pin a client'));
}

async function answer(event: FetchEvent, version: Version): Promise<Response> {
  try {
    const local = await fromTree(event.request, version);
    if (local) return local;
  } catch (error) {
    warn('answering from the network instead')(error);
  }
  return pinnedFetch(event, version);
}

/**
 * The response the proxy would give, built from the tree and blobs; undefined
 * where only the proxy can answer exactly: a path it refuses, a range, a
 * forced redirect rule, a missing file (404 page, SPA fallback, unforced
 * rules), an answer that depends on a setting the worker does not know, a
 * file too large to keep, or a header it cannot reproduce.
 */
async function fromTree(request: Request, { version, root }: Version): Promise<Response | undefined> {
  const url = new URL(request.url);
  const path = parseRequestPath(url.pathname);
  if (!path || request.headers.has('range')) return undefined;
  const target = urlPath(path);
  const [rules, { trailingSlash }] = await Promise.all([rulesOf(root), readState()]);
  if (isForced(rules, target)) return undefined;
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
 * carrying `x-grove-version` under that version, so a tab never gets another
 * version's files, not even its 404 page.
 */
async function pinnedFetch(event: FetchEvent, { version }: Version): Promise<Response> {
  const { request } = event;
  const headers = new Headers(request.headers);
  headers.set(VERSION_HEADER, String(version));
  const pinned =
    request.mode === 'navigate'
      ? // A navigation request cannot be copied; as for the original, the
        // browser follows redirects itself.
        new Request(request.url, { headers, redirect: 'manual' })
      : // `no-cors` would drop the header; the request is same-origin anyway.
        new Request(request, { headers, mode: 'same-origin' });
  const response = await fetch(pinned);
  heed(event, response, false);
  return response;
}

/** The request as the page made it, for clients and moments with no version to pin. */
async function passthrough(event: FetchEvent): Promise<Response> {
  const response = await fetch(event.request);
  heed(event, response, true);
  return response;
}

/**
 * Obeys the kill switch, and learns the live version from responses the live
 * version answered (pinned ones name the tab's version, which is no news).
 */
function heed(event: FetchEvent, response: Response, live: boolean): void {
  if (response.headers.get(SW_HEADER) === UNREGISTER) {
    event.waitUntil(unregister());
    return;
  }
  const version = live ? versionOf(response.headers) : undefined;
  if (version) event.waitUntil(learn(version));
}
