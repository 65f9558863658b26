/**
 * Request paths as the proxy reads them (proxy/src/resolve.rs `RequestPath`),
 * so the worker maps a URL to the same file the proxy would.
 */

import { utf8 } from './bytes.ts';

/** A decoded, normalized request path: no `.`/`..`, no empty segments. */
export interface RequestPath {
  /** Segments joined by `/`, without leading or trailing slash ("" for `/`). */
  path: string;
  trailingSlash: boolean;
}

/**
 * The proxy's default `[http] max_path_bytes`. A site that lowers it gets 400s
 * from the proxy for long paths the worker may still serve from its cache.
 */
const MAX_PATH_BYTES = 2048;

/**
 * Decodes and checks the path of a URL (still percent-encoded, as sent);
 * undefined where the proxy answers 400, which the worker leaves to it.
 */
export function parseRequestPath(raw: string): RequestPath | undefined {
  // The limit is in bytes, as the proxy reads the request line.
  if (!raw.startsWith('/') || utf8.encode(raw).length > MAX_PATH_BYTES || /%2f|%5c/i.test(raw)) return undefined;
  const decoded = percentDecode(raw);
  // Unicode control characters (Rust's `char::is_control`) and backslashes.
  if (decoded === undefined || /[\0-\x1f\x7f-\x9f\\]/.test(decoded)) return undefined;
  const segments = decoded.split('/').filter((segment) => segment !== '');
  if (segments.some((segment) => segment === '.' || segment === '..')) return undefined;
  return { path: segments.join('/'), trailingSlash: decoded.length > 1 && decoded.endsWith('/') };
}

/** The path with its leading slash, the form `_redirects` and `_headers` patterns match. */
export function urlPath({ path, trailingSlash }: RequestPath): string {
  return path === '' ? '/' : `/${path}${trailingSlash ? '/' : ''}`;
}

/**
 * Percent-encodes a decoded path for a `Location` header, escaping what the
 * proxy's `encode_path` does: controls, space, `"#<>?\`{}%` and non-ASCII
 * (as UTF-8 bytes with uppercase hex, which `encodeURIComponent` produces).
 */
export function encodePath(path: string): string {
  return path.replace(/[\0- "#%<>?`{}\x7f-\u{10ffff}]/gu, encodeURIComponent);
}

/**
 * `percent_decode_str` then strict UTF-8: `%` followed by two hex digits is a
 * byte, any other `%` stays as it is (escaped first, as `%25`, so that
 * `decodeURIComponent` gives it back). `decodeURIComponent` refuses what is
 * not UTF-8, as Rust's `str::from_utf8` does, and keeps a byte-order mark.
 * Characters that are not escaped stay as they are: a URL's path has none
 * beyond printable ASCII, but a client may send a request line with raw
 * UTF-8 or spaces, which the proxy reads as such.
 */
function percentDecode(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw.replace(/%(?![\da-f]{2})/gi, '%25'));
  } catch {
    return undefined;
  }
}
