/**
 * Database-backed pages (`pages` in `/_grove/root`: the version's route
 * paths, like `/posts/{id}/`): the proxy renders them from node data, so
 * the worker never answers them from its tree, where a static file of the
 * same path may stand in the way (a rendered `/` replaces `index.html`).
 * The proxy's rule (grove_pages `RouteFile::find`), checked by
 * spec/vectors/pages.json: the same segments, literal ones exactly, a
 * `{name}` segment any one data path segment, and the trailing slash as
 * the pattern has it.
 */
export function isRendered(patterns: readonly string[] | undefined, urlPath: string): boolean {
  const path = parts(urlPath);
  return !!path && !!patterns?.some((pattern) => matches(parts(pattern), path));
}

interface Parts {
  segments: string[];
  trailingSlash: boolean;
}

/** A URL path or a pattern: its non-empty segments, and whether it ends in `/` (not counting `/` itself). */
function parts(path: string): Parts | undefined {
  if (!path.startsWith('/')) return undefined;
  const rest = path.slice(1);
  return { segments: rest.split('/').filter(Boolean), trailingSlash: rest !== '' && rest.endsWith('/') };
}

function matches(pattern: Parts | undefined, path: Parts): boolean {
  if (!pattern || pattern.trailingSlash !== path.trailingSlash) return false;
  if (pattern.segments.length !== path.segments.length) return false;
  return pattern.segments.every((segment, i) => {
    const part = path.segments[i] as string;
    return /^\{[a-z0-9_]+\}$/.test(segment) ? isDataSegment(part) : segment === part;
  });
}

/** A segment of a node data path: what a route's `{name}` stands for. */
function isDataSegment(segment: string): boolean {
  return segment !== '.' && segment !== '..' && segment.length <= 255 && /^[A-Za-z0-9._@+~-]+$/.test(segment);
}
