/**
 * What the worker must know of a version's `_redirects` and `_headers` to
 * serve a file exactly as the proxy would (proxy/src/rules/).
 *
 * Only two questions matter: does a forced redirect rule take the path (then
 * the proxy answers), and which headers does `_headers` add to the file.
 * Wherever the worker could differ from the proxy, it errs towards asking
 * the proxy, which is always correct.
 */

/** Pattern segments: literals, `:name` (one segment), and a final `*` (the rest). */
type Pattern = string[];

interface HeaderBlock {
  pattern: Pattern;
  headers: Array<[string, string]>;
}

export interface SiteRules {
  /** Patterns of `_redirects` rules marked `!`, which apply even over an existing file. */
  forced: Pattern[];
  headers: HeaderBlock[];
}

/** Rules past this many are ignored by the proxy (rules/redirects.rs `MAX_RULES`). */
const MAX_RULES = 10_000;

/** Headers a site may not set (rules/headers.rs `RESERVED`); the proxy ignores such lines. */
const RESERVED =
  /^(connection|content-(encoding|length|range)|date|etag|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade|x-grove-(root|version))$/;

/** Rust's Unicode `White_Space`, which `trim` and `split_whitespace` use (JavaScript's `\s` also has U+FEFF). */
const SPACE = '[\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const EDGE_SPACE = new RegExp(`^${SPACE}+|${SPACE}+$`, 'g');
const SPACES = new RegExp(`${SPACE}+`);
/** An HTTP token (a valid header name), lowercased. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
/** Bytes `http::HeaderValue` refuses: controls other than tab. */
const INVALID_VALUE = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/** Parses the texts of `_redirects` and `_headers` (empty where a file is absent). */
export function parseRules(redirects: string, headers: string): SiteRules {
  return { forced: forcedPatterns(redirects), headers: headerBlocks(headers) };
}

/** True if a forced `_redirects` rule matches the URL path: the proxy must answer it. */
export function isForced(rules: SiteRules, path: string): boolean {
  return rules.forced.some((pattern) => matches(pattern, path));
}

/**
 * The headers `_headers` adds to the file at the URL path, in file order
 * (later ones replace earlier ones of the same name, as the proxy's
 * `HeaderMap::insert`); undefined if one is not plain ASCII, which the proxy
 * sends as UTF-8 bytes and a `Headers` object cannot.
 */
export function headersFor(rules: SiteRules, path: string): Array<[string, string]> | undefined {
  const headers = rules.headers.filter((block) => matches(block.pattern, path)).flatMap((block) => block.headers);
  return headers.every(([, value]) => /^[\t -~]*$/.test(value)) ? headers : undefined;
}

/**
 * The patterns of forced rules. A line the proxy would refuse for its status
 * or target still counts: asking the proxy needlessly is safe, serving a file
 * it would have redirected is not. Unforced rules only apply where no file
 * matches, and the worker leaves every such path to the proxy anyway.
 */
function forcedPatterns(text: string): Pattern[] {
  return lines(text).flatMap((line) => {
    const fields = trim(line.split('#')[0]).split(SPACES);
    const pattern = fields.length === 3 && fields[2].endsWith('!') ? parsePattern(fields[0]) : undefined;
    return pattern ? [pattern] : [];
  });
}

/** `_headers` as rules/headers.rs parses it: a pattern line, then indented `Name: value` lines. */
function headerBlocks(text: string): HeaderBlock[] {
  const blocks: HeaderBlock[] = [];
  let block: HeaderBlock | undefined;
  for (const raw of lines(text)) {
    const line = trim(raw);
    if (line === '' || line.startsWith('#')) continue;
    if (!/^[ \t]/.test(raw)) {
      if (blocks.length === MAX_RULES) break;
      const pattern = parsePattern(line);
      block = pattern && { pattern, headers: [] };
      if (block) blocks.push(block);
      continue;
    }
    const colon = line.indexOf(':');
    if (!block || colon < 0) continue;
    const name = trim(line.slice(0, colon)).toLowerCase();
    const value = trim(line.slice(colon + 1));
    if (TOKEN.test(name) && !RESERVED.test(name) && !INVALID_VALUE.test(value)) {
      block.headers.push([name, value]);
    }
  }
  return blocks;
}

/** rules/pattern.rs `Pattern::parse`: must start with `/`; `*` only as the last segment. */
function parsePattern(text: string): Pattern | undefined {
  if (!text.startsWith('/')) return undefined;
  const parts = segments(text);
  return parts.every((part, index) => part !== '*' || index === parts.length - 1) ? parts : undefined;
}

/** rules/pattern.rs `Pattern::matches` on a decoded URL path; a trailing slash does not matter. */
function matches(pattern: Pattern, path: string): boolean {
  const parts = segments(path);
  for (const [index, segment] of pattern.entries()) {
    if (segment === '*') return true;
    const isParam = segment.startsWith(':') && segment.length > 1;
    if (index >= parts.length || (!isParam && segment !== parts[index])) return false;
  }
  return parts.length === pattern.length;
}

function segments(path: string): string[] {
  return path.split('/').filter((segment) => segment !== '');
}

/** Rust's `str::lines`: split at `\n`, dropping a `\r` before it. */
function lines(text: string): string[] {
  return text.split(/\r?\n/);
}

function trim(text: string): string {
  return text.replace(EDGE_SPACE, '');
}
