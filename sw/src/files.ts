/** The files of one version and its `_redirects`/`_headers` rules, read through the tree. */

import { MAX_BLOB_BYTES, blob, node } from './content.ts';
import { type SiteRules, parseRules } from './rules.ts';
import { lookup } from './tree/lookup.ts';
import type { Entry } from './tree/node.ts';

/** Parsed rules of the last few roots; a root's rules never change. */
const RULES_HELD = 8;
const rulesByRoot = new Map<string, Promise<SiteRules>>();

export function fileAt(root: string, path: string): Promise<Entry | undefined> {
  return lookup(root, path, node);
}

/** The rules of the version `root`; rejects if they cannot be read (the proxy then answers). */
export function rulesOf(root: string): Promise<SiteRules> {
  let rules = rulesByRoot.get(root);
  if (!rules) {
    rules = Promise.all([ruleText(root, '_redirects'), ruleText(root, '_headers')]).then(([redirects, headers]) =>
      parseRules(redirects, headers),
    );
    rulesByRoot.set(root, rules);
    rules.catch(() => rulesByRoot.delete(root));
    if (rulesByRoot.size > RULES_HELD) rulesByRoot.delete(rulesByRoot.keys().next().value!);
  }
  return rules;
}

/** A rule file's text ("" when absent), decoded as the proxy does (lossy UTF-8, byte-order mark kept). */
async function ruleText(root: string, name: string): Promise<string> {
  const entry = await fileAt(root, name);
  if (!entry) return '';
  if (entry.size > MAX_BLOB_BYTES) throw Error(`${name} is too large to keep`);
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(await blob(entry.hash, entry.size));
}
