/**
 * IndexedDB: everything the worker keeps across restarts and code updates.
 *
 * Stores: `nodes` and `blobs` (bytes by hash), `usage` (size and last use of
 * each, for eviction), `state` (one record, `site`: see SiteState) and
 * `pins` (client id -> version).
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

function database(): Promise<IDBDatabase> {
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
  return transact([store], 'readonly', (tx) => tx.objectStore(store).get(key));
}

function put(store: string, key: string, value: unknown): Promise<void> {
  return transact([store], 'readwrite', (tx) => {
    tx.objectStore(store).put(value, key);
  });
}

/** Runs `work` in one transaction and resolves with its request's result once the transaction commits. */
async function transact<T>(
  stores: string[],
  mode: IDBTransactionMode,
  work: (tx: IDBTransaction) => IDBRequest<T> | void,
): Promise<T> {
  const tx = (await database()).transaction(stores, mode);
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
  return transact([kind, 'usage'], 'readwrite', (tx) => {
    tx.objectStore(kind).put(bytes, hash);
    tx.objectStore('usage').put({ hash, kind, size: bytes.length, used: Date.now() } satisfies Usage);
  });
}

/** Records a use of a stored node or blob, for least-recently-used eviction. */
export function touch(hash: string): Promise<void> {
  return transact(['usage'], 'readwrite', (tx) => {
    const usage = tx.objectStore('usage');
    const read = usage.get(hash);
    read.onsuccess = () => {
      if (read.result) usage.put({ ...read.result, used: Date.now() });
    };
  });
}

/** Every usage record, least recently used first. */
export function usageByAge(): Promise<Usage[]> {
  return transact(['usage'], 'readonly', (tx) => tx.objectStore('usage').index('used').getAll());
}

export function removeContent(records: Usage[]): Promise<void> {
  return transact(['nodes', 'blobs', 'usage'], 'readwrite', (tx) => {
    for (const { hash, kind } of records) {
      tx.objectStore(kind).delete(hash);
      tx.objectStore('usage').delete(hash);
    }
  });
}

export async function readState(): Promise<SiteState> {
  return (await get<SiteState>('state', 'site')) ?? {};
}

/** Replaces the site state in one write, so a version flip is never half done. */
export function writeState(state: SiteState): Promise<void> {
  return put('state', 'site', state);
}

export function readPin(clientId: string): Promise<Version | undefined> {
  return get('pins', clientId);
}

export function writePin(clientId: string, version: Version): Promise<void> {
  return put('pins', clientId, version);
}

/** Every pin, by client id. */
export async function readPins(): Promise<Map<string, Version>> {
  let keys: IDBRequest<IDBValidKey[]> | undefined;
  const versions = await transact(['pins'], 'readonly', (tx) => {
    keys = tx.objectStore('pins').getAllKeys();
    return tx.objectStore('pins').getAll();
  });
  // Both lists come in key order.
  return new Map(keys!.result.map((key, index) => [String(key), versions[index] as Version]));
}

export function deletePins(clientIds: string[]): Promise<void> {
  return transact(['pins'], 'readwrite', (tx) => {
    for (const id of clientIds) tx.objectStore('pins').delete(id);
  });
}

/**
 * Deletes the whole database (the kill switch): nothing the worker stored
 * outlives it. The deletion completes once no connection is left open.
 */
export async function destroy(): Promise<void> {
  (await connection?.catch(() => undefined))?.close();
  connection = undefined;
  indexedDB.deleteDatabase(DB_NAME);
}
