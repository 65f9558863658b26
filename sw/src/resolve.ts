/**
 * Request path -> file of one version, as proxy/src/resolve.rs `resolve`:
 * exact files, directory indexes, clean URLs and the trailing-slash policy.
 */

import type { RequestPath } from './path.ts';
import type { TrailingSlash } from './protocol.ts';
import type { Entry } from './tree/node.ts';

/** Finds a file of the version by its site path. */
export type Files = (path: string) => Promise<Entry | undefined>;

/**
 * A file to serve, the canonical path to redirect (308) to, or `network`:
 * the answer is the proxy's to give (a 404 page, an SPA index, an unforced
 * `_redirects` rule) or depends on a trailing-slash policy the worker does
 * not know.
 */
export type Resolution = { file: Entry } | { redirect: string } | 'network';

export async function resolve(
  file: Files,
  request: RequestPath,
  policy: TrailingSlash | undefined,
): Promise<Resolution> {
  const { path } = request;
  // The branch taken when the policy is `special`, or the other one.
  const by = (special: TrailingSlash, ifSpecial: Resolution, otherwise: Resolution): Resolution =>
    policy === undefined ? 'network' : policy === special ? ifSpecial : otherwise;
  if (path === '') return found(await file('index.html'));
  const bare = { redirect: `/${path}` };
  const slashed = { redirect: `/${path}/` };
  const indexPath = `${path}/index.html`;
  const pagePath = `${path}.html`;
  if (request.trailingSlash) {
    const index = await file(indexPath);
    if (index) return by('never', bare, { file: index });
    const page = await file(pagePath);
    if (page) return by('always', { file: page }, bare);
    return (await file(path)) ? bare : 'network';
  }
  const exact = await file(path);
  if (exact) return { file: exact };
  const page = await file(pagePath);
  if (page) return by('always', slashed, { file: page });
  const index = await file(indexPath);
  if (index) return by('never', { file: index }, slashed);
  return 'network';
}

function found(entry: Entry | undefined): Resolution {
  return entry ? { file: entry } : 'network';
}
