/**
 * IndexedDB: everything the worker keeps across restarts and code updates.
 *
 * Stores: `nodes` and `blobs` (bytes by hash), `usage` (size and last use of
 * each, for eviction), `state` (one record, `site`: see SiteState) and
 * `pins` (client id -> Pin).
 */

import { DB_NAME, type TrailingSlash, type Version } from './protocol.ts';

export type ContentKind = 'nodes' | 'blobs';

export interface Usage {
  hash: string;
  kind: ContentKind;
  size: number;
  /** Milliseconds since the epoch. */
  used: number;
}

/** What the worker knows of the site. */
export interface SiteState {
  /** What new navigations get. */
  current?: Version;
  /** The version before it, kept by eviction. */
  previous?: Version;
  /** The site's setting, once the proxy reported it. */
  trailingSlash?: TrailingSlash;
  /** Members-only path patterns, as the proxy last reported them. */
  protect?: string[];
  /** Database-backed page routes, as the proxy last reported them (for the newest version it named). */
  pages?: string[];
}

/** A client's version, and when the client was last seen (listed by `clients.matchAll`, or making a request). */
export interface Pin extends Version {
  /** Milliseconds since the epoch; absent in pins written before it was recorded. */
  seen: number;
}

/**
 * Schema migrations: step n takes a database from version n to n + 1. A
 * shipped step is never edited; a schema change appends one. A worker whose
 * code is older than the database (a newer worker's, during an update) fails
 * to open it and answers everything from the network meanwhile: it never
 * deletes data it cannot read.
 */
const MIGRATIONS: Array<(db: IDBDatabase) => void> = [
  (db) => {
    db.createObjectStore('nodes');
    db.createObjectStore('blobs');
    db.createObjectStore('usage', { keyPath: 'hash' }).createIndex('used', 'used');
    db.createObjectStore('state');
    db.createObjectStore('pins');
  },
];

let connection: Promise<IDBDatabase> | undefined;

/**
 * True once the kill switch deleted the database: from then on it is never
 * opened again (opening would create it anew), so every read and write fails
 * and the worker answers from the network.
 */
export let killed = false;

function database(): Promise<IDBDatabase> {
  if (killed) throw Error('unregistered');
  connection ??= new Promise<IDBDatabase>((resolve, reject) => {
    const open = indexedDB.open(DB_NAME, MIGRATIONS.length);
    open.onupgradeneeded = (event) => {
      for (const step of MIGRATIONS.slice(event.oldVersion)) step(open.result);
    };
    open.onsuccess = () => {
      const db = open.result;
      // A newer worker is upgrading the schema, or the browser is clearing
      // site data: let go, and reopen on next use.
      db.onversionchange = db.onclose = () => {
        db.close();
        connection = undefined;
      };
      resolve(db);
    };
    open.onerror = () => reject(open.error);
  }).catch((error: unknown) => {
    connection = undefined;
    throw error;
  });
  return connection;
}

function get<T>(store: string, key: string): Promise<T | undefined> {
  return transact([store], (tx) => tx.objectStore(store).get(key));
}

function put(store: string, key: string, value: unknown): Promise<void> {
  return transact(
    [store],
    (tx) => {
      tx.objectStore(store).put(value, key);
    },
    true,
  );
}

/**
 * Runs `work` in one transaction (read-only unless `write`) and resolves
 * with its request's result once the transaction commits.
 */
async function transact<T>(
  stores: string[],
  work: (tx: IDBTransaction) => IDBRequest<T> | void,
  write?: boolean,
): Promise<T> {
  const tx = (await database()).transaction(stores, write ? 'readwrite' : 'readonly');
  const request = work(tx);
  await new Promise<void>((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? Error('aborted'));
  });
  return request ? request.result : (undefined as T);
}

export const getContent: (kind: ContentKind, hash: string) => Promise<Uint8Array<ArrayBuffer> | undefined> = get;

/** Whether a node or blob is stored (its usage record is written and deleted with it). */
export async function hasContent(hash: string): Promise<boolean> {
  return !!(await get('usage', hash));
}

/** Stores verified bytes and their usage record together. */
export function putContent(kind: ContentKind, hash: string, bytes: Uint8Array): Promise<void> {
  return transact([kind, 'usage'], (tx) => {
    tx.objectStore(kind).put(bytes, hash);
    tx.objectStore('usage').put({ hash, kind, size: bytes.length, used: Date.now() } satisfies Usage);
  }, true);
}

/** Records a use of a stored node or blob, for least-recently-used eviction. */
export function touch(hash: string): Promise<void> {
  return transact(['usage'], (tx) => {
    const usage = tx.objectStore('usage');
    const read = usage.get(hash);
    read.onsuccess = () => {
      if (read.result) usage.put({ ...read.result, used: Date.now() });
    };
  }, true);
}

/** Every usage record, least recently used first. */
export function usageByAge(): Promise<Usage[]> {
  return transact(['usage'], (tx) => tx.objectStore('usage').index('used').getAll());
}

export function removeContent(records: Usage[]): Promise<void> {
  return transact(['nodes', 'blobs', 'usage'], (tx) => {
    for (const { hash, kind } of records) {
      tx.objectStore(kind).delete(hash);
      tx.objectStore('usage').delete(hash);
    }
  }, true);
}

export async function readState(): Promise<SiteState> {
  return (await get<SiteState>('state', 'site')) ?? {};
}

/** Replaces the site state in one write, so a version flip is never half done. */
export function writeState(state: SiteState): Promise<void> {
  return put('state', 'site', state);
}

export function readPin(clientId: string): Promise<Pin | undefined> {
  return get('pins', clientId);
}

/** Pins a client to `version`, seen now. */
export function writePin(clientId: string, version: Version): Promise<void> {
  return put('pins', clientId, { ...version, seen: Date.now() });
}

/** Every pin, by client id. */
export async function readPins(): Promise<Map<string, Pin>> {
  const pins = new Map<string, Pin>();
  await transact(['pins'], (tx) => {
    const cursor = tx.objectStore('pins').openCursor();
    cursor.onsuccess = () => {
      const at = cursor.result;
      if (at) {
        pins.set(String(at.key), at.value);
        at.continue();
      }
    };
  });
  return pins;
}

/** Deletes the pins of `gone` and rewrites the `seen` ones, in one transaction. */
export function updatePins(gone: string[], seen: Array<[string, Pin]>): Promise<void> {
  return transact(['pins'], (tx) => {
    const pins = tx.objectStore('pins');
    for (const id of gone) pins.delete(id);
    for (const [id, pin] of seen) pins.put(pin, id);
  }, true);
}

/**
 * Deletes the whole database (the kill switch): nothing the worker stored
 * outlives it, and it is never opened again (see `killed`). The deletion
 * completes once no connection is left open.
 */
export async function destroy(): Promise<void> {
  killed = true;
  (await connection?.catch(() => undefined))?.close();
  connection = undefined;
  indexedDB.deleteDatabase(DB_NAME);
}
