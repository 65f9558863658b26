/**
 * The wire protocol between the proxy, the pages and the worker: header
 * names, messages and the `/_grove/root` document. See README.
 */

/** Response header naming the version served (and a request header pinning one; the worker uses VERSION_QUERY). */
export const VERSION_HEADER = 'x-grove-version';
/**
 * Query parameter pinning a request to a version. The worker pins with it
 * rather than the header: a CDN keys its cache by URL, so it would answer a
 * header-pinned request with its copy of the live version.
 */
export const VERSION_QUERY = '_grove_version';
/** Response header naming the tree (root hash) of the version served. */
export const ROOT_HEADER = 'x-grove-root';
/** On every reply to a signed-in session: the tab is live, so the worker pins it to nothing. */
export const LIVE_HEADER = 'x-grove-live';
/** Response header of the kill switch: `x-grove-sw: unregister`. */
export const SW_HEADER = 'x-grove-sw';
export const UNREGISTER = 'unregister';

export const ROOT_PATH = '/_grove/root';
export const SW_PATH = '/_grove/sw.js';

/** The worker's IndexedDB database; the register script deletes it too when the server says to leave. */
export const DB_NAME = 'grove';

/**
 * Page -> worker: `{ type, root, cacheBytes?, load }` where `root` is a
 * `/_grove/root` reply body, `cacheBytes` the page's
 * `<meta name="grove-cache-bytes">` (the worker's byte budget), and `load`
 * true for the check at load of a page the worker did not serve.
 */
export const ROOT_MESSAGE = 'grove:root';
/** Page -> worker: `{ type }` once `/_grove/root` carried the kill switch: leave. */
export const KILL_MESSAGE = 'grove:unregister';
/**
 * Worker -> page: `{ type, version, root }` once a newer version is synced
 * and live for new navigations; also the name of the window event the
 * register script dispatches, with `{ version, root }` as its detail.
 */
export const UPDATE_MESSAGE = 'grove:update';

/** The site's `trailing_slash` setting (proxy/src/config.rs `TrailingSlash`). */
export type TrailingSlash = 'auto' | 'always' | 'never';

/** A site version: its number (for pinning requests) and its tree's root hash. */
export interface Version {
  version: number;
  root: string;
}

/** What `/_grove/root` tells the worker. */
export interface RootDocument extends Version {
  /** Absent until the proxy reports it; then answers that depend on it are left to the proxy. */
  trailingSlash?: TrailingSlash;
  /** Members-only URL path patterns, which the worker leaves to the network. */
  protect?: string[];
  /** The version's database-backed page routes (see rendered.ts), which the worker leaves to the network. */
  pages?: string[];
}

/** Reads a `/_grove/root` body: `{"site", "version", "root", "trailing_slash"?, "protect"?, "pages"?}`. */
export function parseRootDocument(body: unknown): RootDocument | undefined {
  const { version, root, trailing_slash: slash, protect, pages } = (body ?? {}) as Record<string, unknown>;
  const found: RootDocument | undefined = asVersion(version, root);
  if (!found) return undefined;
  if (['auto', 'always', 'never'].includes(slash as string)) found.trailingSlash = slash as TrailingSlash;
  if (Array.isArray(protect) && protect.every((pattern) => typeof pattern === 'string')) found.protect = protect;
  if (Array.isArray(pages) && pages.every((pattern) => typeof pattern === 'string')) found.pages = pages;
  return found;
}

/** The version a response says it is, from its `x-grove-version` and `x-grove-root` headers. */
export function versionOf(headers: Headers): Version | undefined {
  return asVersion(Number(headers.get(VERSION_HEADER)), headers.get(ROOT_HEADER));
}

/**
 * `url` pinned to `version`: `_grove_version=<version>` appended to the
 * query, which is otherwise kept byte for byte, in place of any the URL
 * already had (the proxy would take the first).
 */
export function pinnedUrl(url: string, version: number): string {
  return withParam(url, VERSION_QUERY, String(version));
}

/** `url` with `name=value` appended to its query in place of any `name` it had; the rest kept byte for byte. */
export function withParam(url: string, name: string, value: string): string {
  const marked = new URL(url);
  const query = marked.search.replace(new RegExp(`[?&]${name}=[^&]*`, 'g'), '');
  marked.search = `${query}${query ? '&' : ''}${name}=${value}`;
  return marked.href;
}

function asVersion(version: unknown, root: unknown): Version | undefined {
  const valid = Number.isSafeInteger(version) && (version as number) > 0 && typeof root === 'string' && /^[0-9a-f]{64}$/.test(root);
  return valid ? { version: version as number, root: root as string } : undefined;
}
