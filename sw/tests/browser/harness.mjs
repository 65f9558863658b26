// What the browser tests and the benchmark run against: a real grove-proxy
// process, sites published with the real `grove` CLI, and Debian's chromium
// driven by playwright-core. Every process started here is killed when its
// owner stops it, and on exit whatever still runs.
//
// Environment:
//   GROVE_PROXY_BIN  grove-proxy binary (default /var/tmp/grove-target/debug/grove-proxy)
//   GROVE_BIN        grove CLI binary   (default /var/tmp/grove-target/debug/grove)
//   CHROMIUM         browser binary     (default /usr/bin/chromium)

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const PROXY_BIN = process.env.GROVE_PROXY_BIN || '/var/tmp/grove-target/debug/grove-proxy';
export const GROVE_BIN = process.env.GROVE_BIN || '/var/tmp/grove-target/debug/grove';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const DIST = fileURLToPath(new URL('../../dist/', import.meta.url));

/** Every child process still running, killed on exit whatever happened. */
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => process.exit(130));
}

/** Ports `freePort` has handed out in this process. */
const handedOut = new Set();

/**
 * A port free on 127.0.0.1 that this process has not handed out before: the
 * kernel may offer a port it just freed again, and two servers of one test
 * given the same port would keep the second from starting.
 */
export async function freePort() {
  for (;;) {
    const server = net.createServer();
    await new Promise((resolve, reject) => server.listen(0, '127.0.0.1', resolve).on('error', reject));
    const { port } = server.address();
    await new Promise((resolve) => server.close(resolve));
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns something truthy; fails with `what` after `timeout` ms. */
export async function until(what, check, { timeout = 15_000, every = 50 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

/** A temporary directory, removed by `cleanup`. */
export async function tempDir(prefix = 'grove-browser-') {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Writes `files` (path -> string or bytes) under `dir`, replacing what was there. */
export async function writeSite(dir, files) {
  await rm(dir, { recursive: true, force: true });
  for (const [path, contents] of Object.entries(files)) {
    const file = join(dir, path);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, contents);
  }
}

/**
 * A grove-proxy process on free ports with its own state directory, and its
 * access log (`grove::access` JSON lines on stderr) parsed as it comes.
 */
export class Proxy {
  /** Access log entries, in order: { method, host, path, status, bytes, ms, site, version }. */
  log = [];
  env = {};
  /** Every stderr line, for failure reports. */
  lines = [];

  /** `env`: extra environment for the process (e.g. a client secret the config names). */
  static async start({ config = '', env = {}, ...options } = {}) {
    const proxy = new Proxy();
    proxy.env = env;
    proxy.root = await tempDir('grove-proxy-');
    proxy.port = await freePort();
    proxy.adminPort = await freePort();
    proxy.token = `grove_${randomBytes(32).toString('hex')}`;
    await proxy.#spawn(config);
    await proxy.#checkWorkerBundle(options);
    return proxy;
  }

  /** Where the browser reaches `site`. */
  url(site = 'demo', path = '/') {
    return `http://${site}.localhost:${this.port}${path}`;
  }

  /** Stops the process and starts it again on the same ports and state with `config` (extra TOML). */
  async restart(config = '') {
    await this.#kill();
    await this.#spawn(config);
  }

  async stop() {
    await this.#kill();
    await rm(this.root, { recursive: true, force: true });
  }

  /** Publishes `dir` as the next version of `site` with the grove CLI; returns the CLI's JSON reply. */
  async publish(dir, site = 'demo') {
    const { stdout } = await run(GROVE_BIN, ['publish', dir, '--site', site, '--json'], {
      GROVE_HOST: `http://127.0.0.1:${this.port}`,
      GROVE_TOKEN: this.token,
      XDG_CONFIG_HOME: join(this.root, 'xdg'),
    });
    const reply = JSON.parse(stdout);
    // The proxy learns a new root within root_refresh_ms (100).
    await until(`version ${reply.version} to be live`, async () => (await this.rootDocument(site))?.version >= reply.version);
    return reply;
  }

  /** `/_grove/root` of `site` as the proxy answers it now (fetched from Node, outside the browser). */
  async rootDocument(site = 'demo') {
    const { status, body } = await this.get(site, '/_grove/root');
    return status === 200 ? JSON.parse(body) : undefined;
  }

  /** A GET from Node straight to the proxy: { status, headers, body (Buffer) }. */
  get(site, path, headers = {}) {
    return new Promise((resolve, reject) => {
      const request = http.get(
        { host: '127.0.0.1', port: this.port, path, headers: { host: `${site}.localhost`, ...headers }, agent: false },
        (response) => {
          const chunks = [];
          response.on('data', (chunk) => chunks.push(chunk));
          response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }));
          response.on('error', reject);
        },
      );
      request.on('error', reject);
    });
  }

  /** A position in the access log, for `since`. */
  mark() {
    return this.log.length;
  }

  /** Access log entries after `mark`, once the log has been quiet for a moment (lines arrive after responses). */
  async since(mark, quietMs = 300) {
    let seen = -1;
    while (seen !== this.log.length) {
      seen = this.log.length;
      await sleep(quietMs);
    }
    return this.log.slice(mark);
  }

  async #spawn(config) {
    const configFile = join(this.root, 'grove.toml');
    await writeFile(
      configFile,
      [
        `listen = "127.0.0.1:${this.port}"`,
        `admin_listen = "127.0.0.1:${this.adminPort}"`,
        `state_dir = "${join(this.root, 'state')}"`,
        'root_refresh_ms = 100',
        config,
      ].join('\n'),
    );
    const child = spawn(PROXY_BIN, ['--config', configFile], {
      env: { ...process.env, ...this.env, GROVE_ADMIN_TOKEN: this.token, GROVE_LOG_FORMAT: 'json', RUST_LOG: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.add(child);
    this.child = child;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    this.exited = exited.then(() => children.delete(child));
    createInterface({ input: child.stderr }).on('line', (line) => {
      this.lines.push(line);
      if (!line.startsWith('{')) return;
      try {
        const entry = JSON.parse(line);
        if (entry.target === 'grove::access') this.log.push(entry.fields);
      } catch {
        // not a log line of ours
      }
    });
    const health = `http://127.0.0.1:${this.adminPort}/health`;
    await Promise.race([
      until('grove-proxy to start', () => fetch(health).then((r) => r.ok, () => false), { timeout: 30_000 }),
      exited.then((code) => {
        throw new Error(`grove-proxy exited (${code}):\n${this.lines.slice(-20).join('\n')}`);
      }),
    ]);
  }

  async #kill() {
    if (!this.child || this.child.exitCode !== null) return;
    // SIGINT: Pingora's fast shutdown; SIGKILL if it lingers.
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  /**
   * The proxy embeds sw/dist at build time: a binary built before the last
   * `npm run build` serves another worker, and every result would be about
   * that one. The test command builds the proxy after checking dist.
   */
  async #checkWorkerBundle() {
    for (const name of ['sw', 'register']) {
      const dist = await readFile(join(DIST, `grove-${name}.js`));
      const served = await this.get('demo', `/_grove/${name}.js`);
      if (!served.body.equals(dist)) {
        throw new Error(`${PROXY_BIN} does not serve the current sw/dist/grove-${name}.js: rebuild it (cargo build -p grove-proxy)`);
      }
    }
  }
}

/** Runs a command to completion; rejects with its output if it fails. */
export function run(command, args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code) => {
      children.delete(child);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${stderr}${stdout}`));
    });
  });
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

// ---- in the page ----------------------------------------------------------

/** Waits until the page is controlled by an activated worker. */
export function controlled(page) {
  return page.evaluate(async () => {
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) {
      await new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }));
    }
    return navigator.serviceWorker.controller.scriptURL;
  });
}

/**
 * What the worker stored (its IndexedDB database `grove`, read from the
 * page), or null if there is none. The database is never created from here.
 */
export function workerStore(page) {
  return page.evaluate(async () => {
    if (!(await indexedDB.databases()).some((db) => db.name === 'grove')) return null;
    const db = await new Promise((resolve, reject) => {
      const open = indexedDB.open('grove');
      open.onupgradeneeded = () => open.transaction.abort();
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => resolve(null);
      open.onblocked = () => reject(new Error('blocked'));
    });
    if (!db) return null;
    try {
      const all = (store, keys) =>
        new Promise((resolve, reject) => {
          const request = db.transaction(store).objectStore(store)[keys ? 'getAllKeys' : 'getAll']();
          request.onsuccess = () => resolve(request.result);
          request.onerror = () => reject(request.error);
        });
      const [state] = await all('state');
      return {
        state: state ?? {},
        pins: await all('pins'),
        usage: await all('usage'),
        nodes: await all('nodes', true),
        blobs: await all('blobs', true),
      };
    } finally {
      db.close();
    }
  });
}

/**
 * Backdates the last sighting (`seen`) of every worker pin to `version` by
 * `ms`, from the page: what an hour without its client looks like. The
 * worker keeps a pin whose client `clients.matchAll` does not list for an
 * hour (a tab in the back/forward cache is not listed), so a test cannot
 * wait for a closed tab's pin to go.
 */
export function agePins(page, version, ms) {
  return page.evaluate(
    async ([version, ms]) => {
      const db = await new Promise((resolve, reject) => {
        const open = indexedDB.open('grove');
        open.onupgradeneeded = () => open.transaction.abort();
        open.onsuccess = () => resolve(open.result);
        open.onerror = () => reject(open.error);
      });
      try {
        return await new Promise((resolve, reject) => {
          let aged = 0;
          const tx = db.transaction('pins', 'readwrite');
          const cursor = tx.objectStore('pins').openCursor();
          cursor.onsuccess = () => {
            const at = cursor.result;
            if (!at) return;
            if (at.value.version === version) {
              at.update({ ...at.value, seen: (at.value.seen ?? Date.now()) - ms });
              aged++;
            }
            at.continue();
          };
          tx.oncomplete = () => resolve(aged);
          tx.onabort = () => reject(tx.error);
        });
      } finally {
        db.close();
      }
    },
    [version, ms],
  );
}

/** Waits until the worker's current version is `version`. */
export function workerOn(page, version) {
  return until(`the worker to be on version ${version}`, async () => {
    const store = await workerStore(page);
    return store?.state.current?.version === version && store;
  });
}

/** Records the page's `grove:update` events in `window.__updates` (call before they can happen). */
export function recordUpdates(page) {
  return page.addInitScript(() => {
    window.__updates = [];
    addEventListener('grove:update', (event) => window.__updates.push(event.detail));
  });
}

/** Summarises access log entries: count and bytes, for paths matching `pattern`. */
export function tally(entries, pattern = /./) {
  const hits = entries.filter((entry) => pattern.test(entry.path));
  return { requests: hits.length, bytes: hits.reduce((sum, entry) => sum + entry.bytes, 0), paths: hits.map((e) => e.path) };
}
