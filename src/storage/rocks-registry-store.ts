/**
 * RegistryStore over RocksDB: a scope's registry state (src/registry) in the anchor's one RocksDB
 * database, next to the scope's Raft keys (rocksdb-raft-storage.ts), so that a scope can hold millions of
 * instances in bounded memory.
 *
 * Key layout (utf8 strings; `<scope>` may not be empty or contain '/'):
 *   r/<scope>/meta              the scalars: applied index, last removal index, instance and name counts,
 *                               and the session clock
 *   r/<scope>/n/<name>          one name's record: its modify index and its instances, sorted by id
 *   r/<scope>/sess/<client>     one client session: its recency stamp, last seq and cached result
 *   r/<scope>/x/<key>           one row of the auxiliary table (governance and lineage: src/governance, src/lineage)
 *   i/<scope>                   present only while install() replaces the scope's state (a redo marker)
 * Names are ASCII, so the byte order of the keys is the name order the state machine lists in; a scope's
 * names are the range [r/<scope>/n/, r/<scope>/n0) and its whole registry [r/<scope>/, r/<scope>0).
 *
 * Values: [version u8 = 1][tag u8][payload][crc32 u32 BE]; the CRC covers the key's UTF-8 bytes and then
 * every byte of the value before it, so a torn value and a value under the wrong key are both caught.
 *   tag 1 name:    modifyIndex varint, count varint, instance* (the command format 2 instance encoding)
 *   tag 2 meta:    appliedIndex, lastRemovalIndex, instanceCount, nameCount, sessionClock (varints)
 *   tag 3 session: stamp varint, seq varint, result (the snapshot's result encoding)
 *   tag 4 aux:     the row's bytes as they are
 * Varints and strings are the registry codec's (src/registry/commands.ts). A value that does not decode is
 * a StorageCorruptionError naming its key.
 *
 * Reads are synchronous (apply() is): @nxtedition/rocksdb 12.2 offers `_getManySync` (a MultiGet),
 * `querySync` (a bounded range read) and a chained batch with `_writeSync`, none of them in its typings
 * (see SyncDb below); verified on Node 24 by test/integration/rocks-registry-store.test.ts.
 *
 * Writes: putName/deleteName/touchSession/setScalars only change an in-memory overlay, which every read
 * sees. commit() writes the overlay, the dirty sessions and the meta (applied index included) as ONE
 * atomic RocksDB batch, then empties the overlay. So the stored state is always the state after some
 * applied index, never a mix; after a restart the state machine resumes after that index and the Raft
 * log replays the rest. commit() does not fsync by default: the Raft log is the durable record. An
 * unsynced commit survives a process crash (it is in the OS's page cache), not necessarily a power loss;
 * after one the registry may lag the Raft log (never lead it: it only holds entries the log had synced
 * before they were applied) and the log's entries, or its snapshot, bring it back.
 *
 * Memory: the overlay (what changed since the last commit), a bounded LRU of decoded name records
 * (`cacheSize` records and `cacheBytes` estimated heap bytes), and the sessions, which the state machine bounds (maxSessions) and which are kept in
 * memory in recency order (read back and ordered by their stamps when the store is created).
 */
import { crc32 } from 'node:zlib';
import type rocksdb from '@nxtedition/rocksdb';
import { ByteReader, ByteWriter, readInstance, writeInstance } from '../registry/commands.ts';
import type { Instance } from '../registry/instance.ts';
import {
  type NameEntry,
  type NameRecord,
  type RegistryScalars,
  type RegistrySink,
  type RegistryStore,
  readCommandResult,
  type SessionRecord,
  upperBound,
  writeCommandResult,
  ZERO_SCALARS,
} from '../registry/store.ts';
import { type RocksRaftStore, StorageCorruptionError } from './rocksdb-raft-storage.ts';

type RocksLevel = InstanceType<typeof rocksdb.RocksLevel>;

/** The synchronous calls of @nxtedition/rocksdb 12.2 this store uses (absent from its typings). */
interface SyncDb {
  readonly status: 'opening' | 'open' | 'closing' | 'closed';
  /** A MultiGet: Buffer, undefined when absent (null only with a timeout, which is never set here). */
  _getManySync(keys: string[]): (Buffer | undefined | null)[];
  /** A range read of at most `limit` rows; rows alternate key, value (undefined when values is false). */
  querySync(options: {
    gt?: string;
    gte?: string;
    lt: string;
    limit: number;
    keys?: boolean;
    values?: boolean;
    keyEncoding: 'utf8';
    valueEncoding: 'buffer';
  }): { rows: (string | Buffer | undefined)[] };
  /** With no argument: a chained batch. */
  batch(): SyncBatch;
}

interface SyncBatch {
  _put(key: string, value: Buffer): void;
  _del(key: string): void;
  /** Writes the batch atomically before returning; throws on failure. */
  _writeSync(options: { sync?: boolean }): void;
  close(): Promise<void>;
}

export interface RocksRegistryStoreOptions {
  /** Most decoded name records kept in memory (an LRU), besides the uncommitted ones. Default 10,000; 0 = none. */
  readonly cacheSize?: number;
  /**
   * Heap budget of that LRU in bytes, estimated per record from its encoded size (a decoded record
   * costs about 2.7x its encoding on the V8 heap, measured with 10 instances of 300 bytes per name).
   * Default: no byte bound. Whichever bound is reached first evicts.
   */
  readonly cacheBytes?: number;
}

export interface CommitOptions {
  /** fsync the WAL before returning. Default false (see the header comment). */
  readonly sync?: boolean;
}

const VERSION = 1;
const TAG_NAME = 1;
const TAG_META = 2;
const TAG_SESSION = 3;
const TAG_AUX = 4;
const TRAILER = 4;
/** Committed aux rows kept decoded (lineage's right edge and recent nodes, credentials, policy). */
const AUX_CACHE_ROWS = 4096;
/** Rows per range read (scans, loading sessions, clearing the scope). */
const PAGE = 1000;
const DEFAULT_CACHE_SIZE = 10_000;
/** Estimated heap bytes of a decoded name record: encoded bytes x 3, plus the map entry and key. */
const decodedWeight = (encodedBytes: number, name: string): number => encodedBytes * 3 + 2 * name.length + 96;
/** Bytes per batch when installing another member's state (bounded memory, short event-loop stalls). */
const INSTALL_BATCH_BYTES = 4 << 20;

class ValueError extends Error {}

interface SessionSlot {
  readonly record: SessionRecord;
  /** Recency: larger is more recent. Stored with the session so the LRU order survives a restart. */
  readonly stamp: number;
}

/** One store per (database, scope): two stores over the same keys would overwrite each other. */
const opened = new WeakMap<object, Map<string, RocksRegistryStore>>();

/** The registry state of one scope in RocksDB. Obtain it from `RocksRegistryStore.forScope(raftStore, scope)`. */
export class RocksRegistryStore implements RegistryStore {
  readonly scope: string;
  readonly #db: SyncDb;
  readonly #metaKey: string;
  readonly #auxPrefix: string;
  /** Uncommitted aux rows (null: deleted) and a small cache of committed ones (lineage reads its right edge). */
  readonly #auxOverlay = new Map<string, Uint8Array | null>();
  readonly #auxCache = new Map<string, Uint8Array>();
  readonly #scopePrefix: string;
  readonly #scopeEnd: string;
  readonly #namePrefix: string;
  readonly #nameEnd: string;
  readonly #sessionPrefix: string;
  readonly #sessionEnd: string;
  readonly #cacheSize: number;
  readonly #cacheBytes: number;
  #cacheWeight = 0;

  #scalars: RegistryScalars = ZERO_SCALARS;
  #clock = 0;
  #metaDirty = false;
  /** Names changed since the last commit: the new record, or null when deleted. */
  #overlay = new Map<string, NameRecord | null>();
  /** The overlay's names sorted, for scans; null when stale. */
  #overlaySorted: string[] | null = [];
  /** Committed records with their estimated heap bytes, least recently used first. */
  #cache = new Map<string, { readonly record: NameRecord; readonly weight: number }>();
  /** Every session (committed or not), least recently used first. */
  #sessions = new Map<string, SessionSlot>();
  /** Sessions touched or deleted since the last commit. */
  #dirtySessions = new Set<string>();

  /** The store of `scope` in the database of `raftStore`; the same object for the same scope (and database). */
  static forScope(
    raftStore: RocksRaftStore,
    scope: string,
    options: RocksRegistryStoreOptions = {},
  ): RocksRegistryStore {
    return RocksRegistryStore.forDatabase(raftStore.database, scope, options);
  }

  /** The store of `scope` in an open database (opened with utf8 keys and buffer values). */
  static forDatabase(
    db: RocksLevel,
    scope: string,
    options: RocksRegistryStoreOptions = {},
  ): RocksRegistryStore {
    let stores = opened.get(db);
    if (stores === undefined) {
      stores = new Map();
      opened.set(db, stores);
    }
    let store = stores.get(scope);
    if (store === undefined) {
      store = new RocksRegistryStore(db, scope, options);
      stores.set(scope, store);
    }
    return store;
  }

  /** @internal Use forScope or forDatabase. Reads the scalars and the sessions. */
  constructor(db: RocksLevel, scope: string, options: RocksRegistryStoreOptions = {}) {
    if (scope === '' || scope.includes('/')) {
      throw new RangeError(
        `registry store: scope id ${JSON.stringify(scope)} may not be empty or contain '/'`,
      );
    }
    const cacheSize = options.cacheSize ?? DEFAULT_CACHE_SIZE;
    if (!Number.isSafeInteger(cacheSize) || cacheSize < 0) {
      throw new RangeError(`registry store: cacheSize ${String(cacheSize)} is not a non-negative integer`);
    }
    this.scope = scope;
    this.#db = db as unknown as SyncDb;
    this.#cacheSize = cacheSize;
    const cacheBytes = options.cacheBytes ?? Number.POSITIVE_INFINITY;
    if (!(cacheBytes >= 0)) {
      throw new RangeError(`registry store: cacheBytes ${String(cacheBytes)} is not a non-negative number`);
    }
    this.#cacheBytes = cacheBytes;
    this.#scopePrefix = `r/${scope}/`;
    this.#scopeEnd = `r/${scope}0`;
    this.#metaKey = `${this.#scopePrefix}meta`;
    this.#auxPrefix = `${this.#scopePrefix}x/`;
    this.#namePrefix = `${this.#scopePrefix}n/`;
    this.#nameEnd = `${this.#scopePrefix}n0`;
    this.#sessionPrefix = `${this.#scopePrefix}sess/`;
    this.#sessionEnd = `${this.#scopePrefix}sess0`;
    this.#load();
  }

  #load(): void {
    const [meta] = this.#read([this.#metaKey]);
    if (meta !== undefined) {
      const { scalars, clock } = this.#decodeMeta(meta);
      this.#scalars = scalars;
      this.#clock = clock;
    }
    const slots: [string, SessionSlot][] = [];
    for (const [key, value] of this.#range(this.#sessionPrefix, this.#sessionEnd)) {
      const slot = this.#decodeSession(key, value);
      slots.push([key.slice(this.#sessionPrefix.length), slot]);
      if (slot.stamp > this.#clock) this.#clock = slot.stamp;
    }
    slots.sort((a, b) => a[1].stamp - b[1].stamp);
    this.#sessions = new Map(slots);
  }

  // ---- scalars ----

  scalars(): RegistryScalars {
    return this.#scalars;
  }

  setScalars(scalars: RegistryScalars): void {
    this.#scalars = scalars;
    this.#metaDirty = true;
  }

  // ---- names ----

  getName(name: string): NameRecord | undefined {
    const pending = this.#overlay.get(name);
    if (pending !== undefined) return pending ?? undefined;
    const cached = this.#cache.get(name);
    if (cached !== undefined) {
      this.#cache.delete(name);
      this.#cache.set(name, cached);
      return cached.record;
    }
    const key = this.#namePrefix + name;
    const [value] = this.#read([key]);
    if (value === undefined) return undefined;
    const record = this.#decodeName(key, value);
    this.#remember(name, record, value.length);
    return record;
  }

  putName(name: string, record: NameRecord): void {
    if (!this.#overlay.has(name)) this.#overlaySorted = null;
    this.#overlay.set(name, record);
    this.#forget(name);
  }

  deleteName(name: string): void {
    if (!this.#overlay.has(name)) this.#overlaySorted = null;
    this.#overlay.set(name, null);
    this.#forget(name);
  }

  scanNames(after: string, before: string | undefined, limit: number): NameEntry[] {
    const out: NameEntry[] = [];
    if (limit <= 0) return out;
    // Two sorted streams merged: the committed names (read a page at a time) and the overlay's.
    if (this.#overlaySorted === null) this.#overlaySorted = [...this.#overlay.keys()].sort();
    const pending = this.#overlaySorted;
    let oi = upperBound(pending, after);
    const end = before === undefined ? this.#nameEnd : this.#namePrefix + before;
    const pageSize = Math.min(PAGE, limit + 16);
    let rows: (string | Buffer | undefined)[] = [];
    let ri = 0;
    let cursor = this.#namePrefix + after;
    let exhausted = false;
    while (out.length < limit) {
      if (ri >= rows.length && !exhausted) {
        rows = this.#query({ gt: cursor, lt: end, limit: pageSize }).rows;
        ri = 0;
        exhausted = rows.length < 2 * pageSize;
        const lastKey = rows[rows.length - 2];
        if (typeof lastKey === 'string') cursor = lastKey;
      }
      const dbName = ri < rows.length ? (rows[ri] as string).slice(this.#namePrefix.length) : undefined;
      let pendingName = pending[oi];
      if (pendingName !== undefined && before !== undefined && pendingName >= before) pendingName = undefined;
      if (dbName === undefined && pendingName === undefined) break;
      if (pendingName !== undefined && (dbName === undefined || pendingName <= dbName)) {
        oi++;
        if (pendingName === dbName) ri += 2; // superseded by the overlay
        const record = this.#overlay.get(pendingName);
        if (record) out.push({ name: pendingName, record });
        continue;
      }
      const name = dbName as string;
      const key = rows[ri] as string;
      const value = rows[ri + 1] as Buffer;
      ri += 2;
      // A scan does not fill the cache (a snapshot would flush it), but uses what is there.
      out.push({ name, record: this.#cache.get(name)?.record ?? this.#decodeName(key, value) });
    }
    return out;
  }

  // ---- sessions ----

  getSession(client: string): SessionRecord | undefined {
    return this.#sessions.get(client)?.record;
  }

  touchSession(client: string, record: SessionRecord): void {
    this.#sessions.delete(client);
    this.#sessions.set(client, { record, stamp: ++this.#clock });
    this.#dirtySessions.add(client);
    this.#metaDirty = true;
  }

  deleteSession(client: string): void {
    if (this.#sessions.delete(client)) this.#dirtySessions.add(client);
  }

  oldestSession(): string | undefined {
    const first = this.#sessions.keys().next();
    return first.done === true ? undefined : first.value;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  *sessions(): Iterable<readonly [string, SessionRecord]> {
    for (const [client, slot] of this.#sessions) yield [client, slot.record];
  }

  // ---- the auxiliary table ----

  getAux(key: string): Uint8Array | undefined {
    const pending = this.#auxOverlay.get(key);
    if (pending !== undefined) return pending ?? undefined;
    const cached = this.#auxCache.get(key);
    if (cached !== undefined) return cached;
    const full = this.#auxPrefix + key;
    const [value] = this.#read([full]);
    if (value === undefined) return undefined;
    const row = this.#decodeAux(full, value);
    this.#rememberAux(key, row);
    return row;
  }

  putAux(key: string, value: Uint8Array): void {
    this.#auxOverlay.set(key, value);
    this.#auxCache.delete(key);
  }

  deleteAux(key: string): void {
    this.#auxOverlay.set(key, null);
    this.#auxCache.delete(key);
  }

  scanAux(prefix: string, after: string, limit: number): [string, Uint8Array][] {
    const out: [string, Uint8Array][] = [];
    const from = after < prefix ? '' : after;
    const stored: [string, Uint8Array][] = [];
    for (const [full, value] of this.#range(this.#auxPrefix + prefix, `${this.#auxPrefix}${prefix}\uffff`)) {
      const key = full.slice(this.#auxPrefix.length);
      if (key <= from) continue;
      stored.push([key, this.#decodeAux(full, value)]);
      if (stored.length >= limit + this.#auxOverlay.size) break;
    }
    const merged = new Map<string, Uint8Array | null>(stored);
    for (const [key, value] of this.#auxOverlay)
      if (key.startsWith(prefix) && key > from) merged.set(key, value);
    for (const key of [...merged.keys()].sort()) {
      const value = merged.get(key);
      if (value) out.push([key, value]);
      if (out.length >= limit) break;
    }
    return out;
  }

  #rememberAux(key: string, row: Uint8Array): void {
    if (this.#auxCache.size >= AUX_CACHE_ROWS) {
      const oldest = this.#auxCache.keys().next();
      if (oldest.done !== true) this.#auxCache.delete(oldest.value);
    }
    this.#auxCache.set(key, row);
  }

  /** The decoded-record LRU: how many records, and their estimated heap bytes. */
  get cacheStats(): { readonly names: number; readonly bytes: number } {
    return { names: this.#cache.size, bytes: this.#cacheWeight };
  }

  // ---- writing ----

  /** True when there are changes that commit() would write. */
  get dirty(): boolean {
    return (
      this.#metaDirty || this.#overlay.size > 0 || this.#dirtySessions.size > 0 || this.#auxOverlay.size > 0
    );
  }

  /**
   * Writes every change since the last commit (names, sessions, scalars with the applied index) as one
   * atomic batch. On failure nothing is written and the changes stay pending (a later commit retries).
   */
  commit(options: CommitOptions = {}): void {
    if (!this.dirty) {
      // Nothing new, but earlier commits may be unsynced: a synced write of the meta syncs the WAL
      // behind them too (compaction relies on it before dropping the log).
      if (options.sync === true) {
        this.#write((batch) => batch._put(this.#metaKey, this.#encodeMeta(this.#scalars, this.#clock)), true);
      }
      return;
    }
    const encodedBytes = new Map<string, number>();
    this.#write((batch) => {
      for (const [name, record] of this.#overlay) {
        const key = this.#namePrefix + name;
        if (record === null) batch._del(key);
        else {
          const value = this.#encodeName(key, record);
          encodedBytes.set(name, value.length);
          batch._put(key, value);
        }
      }
      for (const client of this.#dirtySessions) {
        const key = this.#sessionPrefix + client;
        const slot = this.#sessions.get(client);
        if (slot === undefined) batch._del(key);
        else batch._put(key, this.#encodeSession(key, slot));
      }
      for (const [key, value] of this.#auxOverlay) {
        const full = this.#auxPrefix + key;
        if (value === null) batch._del(full);
        else batch._put(full, this.#encodeAux(full, value));
      }
      batch._put(this.#metaKey, this.#encodeMeta(this.#scalars, this.#clock));
    }, options.sync === true);
    for (const [key, value] of this.#auxOverlay) if (value !== null) this.#rememberAux(key, value);
    this.#auxOverlay.clear();
    for (const [name, record] of this.#overlay) {
      if (record !== null) this.#remember(name, record, encodedBytes.get(name) ?? 0);
    }
    this.#overlay.clear();
    this.#overlaySorted = [];
    this.#dirtySessions.clear();
    this.#metaDirty = false;
  }

  /**
   * Replaces the scope's whole registry state in one atomic batch: deletes every key under r/<scope>/,
   * then writes what `fill` puts and the scalars it returns. Pending changes are dropped. If `fill` throws
   * (a malformed snapshot), nothing is written and the store is unchanged.
   */
  replace(fill: (sink: RegistrySink) => RegistryScalars, options: CommitOptions = {}): void {
    const sessions = new Map<string, SessionSlot>();
    let clock = 0;
    let scalars: RegistryScalars = ZERO_SCALARS;
    this.#write((batch) => {
      for (const [key] of this.#range(this.#scopePrefix, this.#scopeEnd, false)) batch._del(key);
      scalars = fill({
        putName: (name, record) => {
          const key = this.#namePrefix + name;
          batch._put(key, this.#encodeName(key, record));
        },
        putSession: (client, record) => {
          sessions.delete(client);
          sessions.set(client, { record, stamp: ++clock });
        },
        putAux: (key, value) => {
          const full = this.#auxPrefix + key;
          batch._put(full, this.#encodeAux(full, value));
        },
      });
      for (const [client, slot] of sessions) {
        const key = this.#sessionPrefix + client;
        batch._put(key, this.#encodeSession(key, slot));
      }
      batch._put(this.#metaKey, this.#encodeMeta(scalars, clock));
    }, options.sync === true);
    this.#scalars = scalars;
    this.#clock = clock;
    this.#metaDirty = false;
    this.#overlay.clear();
    this.#overlaySorted = [];
    this.#cache.clear();
    this.#cacheWeight = 0;
    this.#sessions = sessions;
    this.#dirtySessions.clear();
    this.#auxOverlay.clear();
    this.#auxCache.clear();
  }

  // ---- whole-state transfer (snapshots to and from other members; registry-snapshots.ts) ----

  /**
   * Hands over every stored row of the scope (meta, names, sessions) as (key suffix, value), from one
   * consistent point: a RocksDB iterator reads an implicit snapshot taken when it is created, so commits
   * made meanwhile are not seen. The overlay (uncommitted changes) is not included: the rows are the
   * state after the returned applied index. Yields to the event loop between pages.
   */
  async dump(
    row: (suffix: string, value: Buffer) => void | Promise<void>,
    signal?: AbortSignal,
  ): Promise<RegistryScalars> {
    this.#checkOpen();
    const it = (this.#db as unknown as RocksLevel).iterator({ gte: this.#scopePrefix, lt: this.#scopeEnd });
    let scalars: RegistryScalars | undefined;
    try {
      for (;;) {
        signal?.throwIfAborted();
        const rows = await it.nextv(PAGE);
        if (rows.length === 0) break;
        for (const [key, value] of rows) {
          if (key === this.#metaKey) scalars = this.#decodeMeta(value).scalars;
          await row(key.slice(this.#scopePrefix.length), value);
        }
      }
    } finally {
      await it.close();
    }
    return scalars ?? ZERO_SCALARS;
  }

  /**
   * Replaces the scope's stored state with `rows` (from another member's dump()), without holding it in
   * memory: a redo marker (`i/<scope>` = `redo`, written synced first) records that an install is under
   * way, the scope's keys are deleted by range, the rows are written in batches, and the last batch
   * removes the marker, synced. A crash in between leaves the marker: the caller must install again
   * (from the same source) before using the store — see pendingInstall(). Every value is checked (CRC,
   * version) before it is written. Pending changes are dropped.
   */
  async install(rows: AsyncIterable<readonly [string, Buffer]>, redo: string): Promise<RegistryScalars> {
    const marker = `i/${this.scope}`;
    this.#write((b) => b._put(marker, Buffer.from(redo)), true);
    this.#checkOpen();
    await (this.#db as unknown as RocksLevel).clear({ gte: this.#scopePrefix, lt: this.#scopeEnd });
    let batch: [string, Buffer][] = [];
    let bytes = 0;
    let sawMeta = false;
    const flush = (): void => {
      const rowsNow = batch;
      batch = [];
      bytes = 0;
      this.#write((b) => {
        for (const [k, v] of rowsNow) b._put(k, v);
      }, false);
    };
    for await (const [suffix, value] of rows) {
      const key = this.#scopePrefix + suffix;
      if (
        !(
          suffix === 'meta' ||
          suffix.startsWith('n/') ||
          suffix.startsWith('sess/') ||
          suffix.startsWith('x/')
        )
      ) {
        throw new StorageCorruptionError(this.scope, key, 'not a registry key');
      }
      this.#reader(key, value, value[1] ?? -1); // CRC and version; the tag is checked when the row is read
      if (suffix === 'meta') sawMeta = true;
      batch.push([key, value]);
      bytes += key.length + value.length;
      if (bytes >= INSTALL_BATCH_BYTES) flush();
    }
    if (!sawMeta) throw new StorageCorruptionError(this.scope, this.#metaKey, 'the state has no meta row');
    const last = batch;
    this.#write((b) => {
      for (const [k, v] of last) b._put(k, v);
      b._del(marker);
    }, true);
    this.#overlay.clear();
    this.#overlaySorted = [];
    this.#cache.clear();
    this.#cacheWeight = 0;
    this.#dirtySessions.clear();
    this.#auxOverlay.clear();
    this.#auxCache.clear();
    this.#metaDirty = false;
    this.#scalars = ZERO_SCALARS;
    this.#clock = 0;
    this.#load();
    return this.#scalars;
  }

  /** The redo marker of an install that did not finish (a crash), if any: install again from it. */
  pendingInstall(): string | undefined {
    const [value] = this.#read([`i/${this.scope}`]);
    return value?.toString();
  }

  // ---- RocksDB access ----

  #checkOpen(): void {
    if (this.#db.status !== 'open') {
      throw new Error(`registry store: scope ${this.scope}: the database is ${this.#db.status}`);
    }
  }

  #read(keys: string[]): (Buffer | undefined)[] {
    this.#checkOpen();
    const values = this.#db._getManySync(keys);
    return values.map((v, i) => {
      if (v === null) throw new Error(`registry store: scope ${this.scope}: read of ${keys[i]} timed out`);
      return v;
    });
  }

  #query(range: { gt: string; lt: string; limit: number; values?: boolean }) {
    this.#checkOpen();
    return this.#db.querySync({ ...range, keyEncoding: 'utf8', valueEncoding: 'buffer' });
  }

  /** Every row in [from, to), a page at a time. */
  *#range(from: string, to: string, values = true): Generator<[string, Buffer]> {
    let cursor = from;
    let first = true;
    for (;;) {
      this.#checkOpen();
      const { rows } = this.#db.querySync({
        ...(first ? { gte: cursor } : { gt: cursor }),
        lt: to,
        limit: PAGE,
        values,
        keyEncoding: 'utf8',
        valueEncoding: 'buffer',
      });
      first = false;
      for (let i = 0; i < rows.length; i += 2) yield [rows[i] as string, rows[i + 1] as Buffer];
      if (rows.length < 2 * PAGE) return;
      cursor = rows[rows.length - 2] as string;
    }
  }

  #write(fill: (batch: SyncBatch) => void, sync: boolean): void {
    this.#checkOpen();
    const batch = this.#db.batch();
    try {
      fill(batch);
      batch._writeSync({ sync });
    } finally {
      // Frees the native batch now; the promise only detaches it from the database on the next tick.
      batch.close().catch(() => {});
    }
  }

  #remember(name: string, record: NameRecord, encodedBytes: number): void {
    if (this.#cacheSize === 0) return;
    this.#forget(name);
    const weight = decodedWeight(encodedBytes, name);
    this.#cache.set(name, { record, weight });
    this.#cacheWeight += weight;
    while (this.#cache.size > this.#cacheSize || this.#cacheWeight > this.#cacheBytes) {
      const oldest = this.#cache.keys().next();
      if (oldest.done === true) break;
      this.#forget(oldest.value);
    }
  }

  #forget(name: string): void {
    const entry = this.#cache.get(name);
    if (entry === undefined) return;
    this.#cache.delete(name);
    this.#cacheWeight -= entry.weight;
  }

  // ---- values ----

  #writer(tag: number): ByteWriter {
    const w = new ByteWriter(64, (message) => new Error(`registry store: scope ${this.scope}: ${message}`));
    w.u8(VERSION);
    w.u8(tag);
    return w;
  }

  #seal(key: string, w: ByteWriter): Buffer {
    const body = w.finish();
    const out = Buffer.allocUnsafe(body.length + TRAILER);
    out.set(body);
    out.writeUInt32BE(crc32(body, crc32(key)), body.length);
    return out;
  }

  #encodeName(key: string, record: NameRecord): Buffer {
    const w = this.#writer(TAG_NAME);
    w.varint(record.modifyIndex, 'modify index');
    w.varint(record.instances.length, 'instance count');
    for (const instance of record.instances) writeInstance(w, instance);
    return this.#seal(key, w);
  }

  #encodeSession(key: string, slot: SessionSlot): Buffer {
    const w = this.#writer(TAG_SESSION);
    w.varint(slot.stamp, 'session stamp');
    w.varint(slot.record.seq, 'session seq');
    writeCommandResult(w, slot.record.result);
    return this.#seal(key, w);
  }

  #encodeAux(key: string, value: Uint8Array): Buffer {
    const w = this.#writer(TAG_AUX);
    w.bytes(value);
    return this.#seal(key, w);
  }

  #decodeAux(key: string, value: Buffer): Uint8Array {
    const r = this.#reader(key, value, TAG_AUX);
    return new Uint8Array(r.bytes(r.remaining, 'aux row'));
  }

  #encodeMeta(s: RegistryScalars, clock: number): Buffer {
    const w = this.#writer(TAG_META);
    w.varint(s.appliedIndex, 'applied index');
    w.varint(s.lastRemovalIndex, 'last removal index');
    w.varint(s.instanceCount, 'instance count');
    w.varint(s.nameCount, 'name count');
    w.varint(clock, 'session clock');
    return this.#seal(this.#metaKey, w);
  }

  /** Checks the CRC, version and tag; returns a reader positioned on the payload. */
  #reader(key: string, value: Buffer, tag: number): ByteReader {
    return this.#decode(key, () => {
      if (value.length < 2 + TRAILER) throw new ValueError(`too short (${value.length} bytes)`);
      const bodyLength = value.length - TRAILER;
      const want = value.readUInt32BE(bodyLength);
      const got = crc32(value.subarray(0, bodyLength), crc32(key));
      if (want !== got) {
        throw new ValueError(`crc mismatch (stored ${hex32(want)}, computed ${hex32(got)})`);
      }
      if (value[0] !== VERSION) throw new ValueError(`unknown version ${value[0]}`);
      if (value[1] !== tag) throw new ValueError(`tag ${value[1]} where ${tag} was expected`);
      const r = new ByteReader(value.subarray(0, bodyLength), (message) => new ValueError(message));
      r.bytes(2, 'header');
      return r;
    });
  }

  #decode<T>(key: string, f: () => T): T {
    try {
      return f();
    } catch (error) {
      if (error instanceof ValueError) throw new StorageCorruptionError(this.scope, key, error.message);
      throw error;
    }
  }

  #decodeName(key: string, value: Buffer): NameRecord {
    const r = this.#reader(key, value, TAG_NAME);
    return this.#decode(key, () => {
      const modifyIndex = r.varint('modify index');
      const count = r.count('instance count', 6);
      if (count === 0) throw new ValueError('a name record without instances');
      const instances: Instance[] = new Array(count);
      let previous: string | undefined;
      for (let i = 0; i < count; i++) {
        const instance = readInstance(r);
        if (previous !== undefined && !(previous < instance.id)) {
          throw new ValueError(`instance ${JSON.stringify(instance.id)} is out of order`);
        }
        previous = instance.id;
        Object.freeze(instance.tags);
        Object.freeze(instance.meta);
        instances[i] = Object.freeze(instance);
      }
      r.end('the name record');
      return { instances: Object.freeze(instances), modifyIndex };
    });
  }

  #decodeMeta(value: Buffer): { scalars: RegistryScalars; clock: number } {
    const r = this.#reader(this.#metaKey, value, TAG_META);
    return this.#decode(this.#metaKey, () => {
      const scalars = Object.freeze({
        appliedIndex: r.varint('applied index'),
        lastRemovalIndex: r.varint('last removal index'),
        instanceCount: r.varint('instance count'),
        nameCount: r.varint('name count'),
      });
      const clock = r.varint('session clock');
      r.end('the meta');
      return { scalars, clock };
    });
  }

  #decodeSession(key: string, value: Buffer): SessionSlot {
    const r = this.#reader(key, value, TAG_SESSION);
    return this.#decode(key, () => {
      const stamp = r.varint('session stamp');
      const seq = r.varint('session seq');
      const result = readCommandResult(r);
      r.end('the session');
      return { stamp, record: Object.freeze({ seq, result }) };
    });
  }
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}
