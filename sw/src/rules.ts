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

/** Headers a site may not set (rules/headers.rs `RESERVED`), in any case; the proxy ignores such lines. */
const RESERVED =
  /^(connection|content-(encoding|length|range)|date|etag|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade|x-grove-(root|version))$/i;

/**
 * Rust's Unicode `White_Space`, which `trim` and `split_whitespace` use: the
 * same as JavaScript's `\s` but for U+FEFF, which only `\s` has, and U+0085,
 * which only `White_Space` has.
 */
const SPACE = '(?:[^\\S\\ufeff]|\\x85)';
const EDGE_SPACE = new RegExp(`^${SPACE}+|${SPACE}+$`, 'g');
const SPACES = new RegExp(`${SPACE}+`);
/**
 * An HTTP token (a valid header name). `i` without `u` folds ASCII letters
 * only, so the Kelvin sign, which `toLowerCase` turns into `k`, is no letter.
 */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i;
/**
 * Bytes `http::HeaderValue` refuses: ASCII controls other than tab. A
 * `_redirects` target, split at spaces, has no tab, so for it this is the
 * proxy's `is_ascii_control` test.
 */
const CONTROL = /[\0-\b\n-\x1f\x7f]/;

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
 * The status field of a `_redirects` rule that rules/redirects.rs
 * `parse_rule` accepts: a `u16` as Rust reads one (an optional `+`, leading
 * zeros) among 200, 301, 302, 303, 307, 308 and 404, then `!` if the rule is
 * forced. Groups: 1 is there for a redirect (3xx), the only statuses that may
 * target a URL; 2 is the `!`.
 */
const STATUS = /^\+?0*(?:200|404|(3)0[1-378])(!?)$/;

/**
 * The patterns of forced rules, among the rules the proxy keeps: a line it
 * refuses (fields, status, target or pattern) counts for nothing, and lines
 * after its first MAX_RULES rules are ignored, as in rules/redirects.rs.
 * Unforced rules only apply where no file matches, and the worker leaves
 * every such path to the proxy anyway.
 */
function forcedPatterns(text: string): Pattern[] {
  const forced: Pattern[] = [];
  let rules = 0;
  for (const line of lines(text)) {
    const fields = trim(line.split('#')[0]).split(SPACES);
    if (!fields[0]) continue;
    if (rules === MAX_RULES) break;
    const [from, to = '', status = '301'] = fields;
    const code = STATUS.exec(status);
    const target = code && (/^https?:\/\//.test(to) ? code[1] : to[0] === '/') && !CONTROL.test(to);
    const pattern = fields.length < 4 && target && parsePattern(from);
    if (pattern) {
      rules++;
      if (code[2]) forced.push(pattern);
    }
  }
  return forced;
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
    const name = trim(line.slice(0, colon));
    const value = trim(line.slice(colon + 1));
    if (TOKEN.test(name) && !RESERVED.test(name) && !CONTROL.test(value)) {
      block.headers.push([name.toLowerCase(), value]);
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
