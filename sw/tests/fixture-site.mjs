// The real tree fixtures (see fixtures/README.md): their nodes, and the files
// of the site they describe, rebuilt the way they were made.
import { readdirSync, readFileSync } from 'node:fs';
import { fileEntry } from './prolly.mjs';

const dir = new URL('./fixtures/trees/', import.meta.url);

/** Every fixture node, encoded, by hash. */
export const fixtureNodes = new Map(
  readdirSync(dir).map((name) => [name, new Uint8Array(readFileSync(new URL(name, dir)))]),
);

export const DEMO_ROOT = 'e8cf39b7747eef860c9dc0a6a68e5eda789252500fb0a1c265704c54e206c12d';
export const V1_ROOT = '4b0f1e1f04aaca1b324af8b4ee91f0596ec5a4e1bc2df74faa01cbf79d78922d';
export const V2_ROOT = '752e63f4bd4c5bcd1722ab1551383a8d653eecf76074e7c67d99a2c7d54e54eb';

const page = (title, body) => `<!doctype html><html><head><title>${title}</title></head><body>${body}</body></html>\n`;

/** The files of version `version` (1 or 2) of the 303-file fixture site. */
export function siteFiles(version) {
  const files = [
    fileEntry('index.html', page('home', 'home')),
    fileEntry('about/index.html', page('about', 'about')),
    fileEntry('assets/app.css', 'body{color:green}\n', 'text/css; charset=utf-8'),
  ];
  for (let i = 0; i < 300; i++) {
    const n = String(i).padStart(3, '0');
    const edition = version === 2 && n === '150' ? 'v2' : 'v1';
    files.push(fileEntry(`docs/page-${n}.html`, page(`page ${n}`, `page ${n} ${edition}`)));
  }
  return files;
}
