/**
 * RaftStorage over RocksDB (@nxtedition/rocksdb): one store per anchor, one key space per scope.
 *
 * Key layout (keys are utf8 strings; `<scope>` is the scope id, which may not be empty or contain '/'):
 *   s/<scope>/hs                     hard state
 *   s/<scope>/snap                   snapshot (meta + data)
 *   s/<scope>/e/<index>              one log entry; <index> is 16 lowercase hex digits, big-endian, so the
 *                                    byte order of the keys is the index order
 * A scope's entries are the key range [s/<scope>/e/, s/<scope>/e0) ('0' is the byte after '/').
 * The anchor keeps the registry's state (rocks-registry-store.ts, keys r/<scope>/) in a second database
 * and runs this one on a worker thread (threaded-raft-store.ts).
 *
 * Values (all of them): [version u8 = 1][tag u8][payload][crc32 u32 BE of every byte before it]
 *   tag 1 entry:      term u64 BE, index u64 BE, kind u8 (0 normal, 1 conf-change), data (the rest)
 *   tag 2 hard state: utf8 JSON {"term","vote","commit"}
 *   tag 3 snapshot:   meta length u32 BE, utf8 JSON meta {"index","term","conf"}, data (the rest)
 * The CRC detects a torn or corrupt value; the version byte lets the format change; the tag and the index
 * stored inside an entry catch a value written under the wrong key.
 *
 * Durability: every save and compact is ONE `db.batch(ops, { sync: true })` (the binding's `put(..., {
 * sync: true })` silently ignores `sync`; only batch honours it), so a call's snapshot, entries and hard
 * state become durable together, atomically, when its promise settles. Calls on one scope run one at a
 * time, in call order.
 *
 * Recovery: load() verifies every CRC and the contiguity of the log after the snapshot. A corrupt or
 * non-contiguous entry truncates the log at the last good entry (the rest is deleted in a synced batch and
 * one line is logged); such entries are never served. A corrupt hard state or snapshot is a
 * StorageCorruptionError: nothing sensible can be served without them.
 */
import { crc32 } from 'node:zlib';
import rocksdb from '@nxtedition/rocksdb';
import type { RaftStorage, StorageUpdate } from '../consensus/storage.ts';
import type { ConfState, Entry, HardState, PersistedState, ScopeId, Snapshot } from '../consensus/types.ts';

/** A stored hard state or snapshot that does not decode: the scope cannot be loaded. */
export class StorageCorruptionError extends Error {
  override readonly name = 'StorageCorruptionError';
  readonly scope: ScopeId;
  readonly key: string;
  constructor(scope: ScopeId, key: string, reason: string) {
    super(`storage: scope ${scope}: corrupt value under key ${key}: ${reason}`);
    this.scope = scope;
    this.key = key;
  }
}

export interface RocksRaftStoreOptions {
  readonly signal?: AbortSignal;
  /** One line per notable event (a truncated log). Default: silent. */
  readonly logger?: (line: string) => void;
  /** RocksDB's block cache, in bytes (the binding's default is 8 MiB). */
  readonly cacheBytes?: number;
  /**
   * Memory for memtables, in bytes: level-style compaction tuned for it (4 write buffers of a quarter each,
   * up to 6 when flushing falls behind). Default: RocksDB's own (2 x 64 MiB, untuned).
   */
  readonly memtableBytes?: number;
  /** ZSTD compression of stored blocks. Default true; a short-lived Raft log gains nothing from it. */
  readonly compression?: boolean;
}

// --- Value codec ---

const VERSION = 1;
const TAG_ENTRY = 1;
const TAG_HARD_STATE = 2;
const TAG_SNAPSHOT = 3;
const HEADER = 2;
const TRAILER = 4;
const ENTRY_FIXED = 8 + 8 + 1;

class DecodeError extends Error {}

function seal(buf: Buffer): Buffer {
  buf[0] = VERSION;
  buf.writeUInt32BE(crc32(buf.subarray(0, buf.length - TRAILER)), buf.length - TRAILER);
  return buf;
}

/** Checks version, tag and CRC; returns the payload (a view into `buf`). */
function unseal(buf: Buffer, tag: number): Buffer {
  if (buf.length < HEADER + TRAILER) throw new DecodeError(`too short (${buf.length} bytes)`);
  const want = buf.readUInt32BE(buf.length - TRAILER);
  const got = crc32(buf.subarray(0, buf.length - TRAILER));
  if (want !== got) throw new DecodeError(`crc mismatch (stored ${hex32(want)}, computed ${hex32(got)})`);
  if (buf[0] !== VERSION) throw new DecodeError(`unknown version ${buf[0]}`);
  if (buf[1] !== tag) throw new DecodeError(`tag ${buf[1]} where ${tag} was expected`);
  return buf.subarray(HEADER, buf.length - TRAILER);
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function checkIndex(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(`storage: ${what} ${n} is not a safe non-negative integer`);
}

function copy(view: Uint8Array): Uint8Array {
  const out = new Uint8Array(view.length);
  out.set(view);
  return out;
}

function readU64(buf: Buffer, at: number, what: string): number {
  const n = buf.readBigUInt64BE(at);
  if (n > BigInt(Number.MAX_SAFE_INTEGER))
    throw new DecodeError(`${what} ${n} beyond the safe integer range`);
  return Number(n);
}

export function encodeEntry(e: Entry): Buffer {
  checkIndex(e.term, 'entry term');
  checkIndex(e.index, 'entry index');
  const buf = Buffer.allocUnsafe(HEADER + ENTRY_FIXED + e.data.length + TRAILER);
  buf[1] = TAG_ENTRY;
  buf.writeBigUInt64BE(BigInt(e.term), HEADER);
  buf.writeBigUInt64BE(BigInt(e.index), HEADER + 8);
  buf[HEADER + 16] = e.kind === 'conf-change' ? 1 : 0;
  buf.set(e.data, HEADER + ENTRY_FIXED);
  return seal(buf);
}

export function decodeEntry(buf: Buffer): Entry {
  const p = unseal(buf, TAG_ENTRY);
  if (p.length < ENTRY_FIXED) throw new DecodeError(`entry payload too short (${p.length} bytes)`);
  const kindByte = p[16];
  if (kindByte !== 0 && kindByte !== 1) throw new DecodeError(`unknown entry kind ${kindByte}`);
  return {
    term: readU64(p, 0, 'term'),
    index: readU64(p, 8, 'index'),
    kind: kindByte === 1 ? 'conf-change' : 'normal',
    data: copy(p.subarray(ENTRY_FIXED)),
  };
}

function withJson(tag: number, json: string, extraHead: number, tail: Uint8Array): Buffer {
  const jsonLen = Buffer.byteLength(json);
  const buf = Buffer.allocUnsafe(HEADER + extraHead + jsonLen + tail.length + TRAILER);
  buf[1] = tag;
  if (extraHead === 4) buf.writeUInt32BE(jsonLen, HEADER);
  buf.write(json, HEADER + extraHead, 'utf8');
  buf.set(tail, HEADER + extraHead + jsonLen);
  return seal(buf);
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new DecodeError('malformed JSON');
  }
}

function isIndex(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

export function encodeHardState(hs: HardState): Buffer {
  checkIndex(hs.term, 'hard state term');
  checkIndex(hs.commit, 'hard state commit');
  return withJson(
    TAG_HARD_STATE,
    JSON.stringify({ term: hs.term, vote: hs.vote, commit: hs.commit }),
    0,
    new Uint8Array(0),
  );
}

export function decodeHardState(buf: Buffer): HardState {
  const v = parseJson(unseal(buf, TAG_HARD_STATE)) as {
    term?: unknown;
    vote?: unknown;
    commit?: unknown;
  } | null;
  if (
    typeof v !== 'object' ||
    v === null ||
    !isIndex(v.term) ||
    typeof v.vote !== 'string' ||
    !isIndex(v.commit)
  ) {
    throw new DecodeError('hard state JSON has the wrong shape');
  }
  return { term: v.term, vote: v.vote, commit: v.commit };
}

export function encodeSnapshot(s: Snapshot): Buffer {
  checkIndex(s.meta.index, 'snapshot index');
  checkIndex(s.meta.term, 'snapshot term');
  const conf = { voters: [...s.meta.conf.voters], learners: [...s.meta.conf.learners] };
  return withJson(TAG_SNAPSHOT, JSON.stringify({ index: s.meta.index, term: s.meta.term, conf }), 4, s.data);
}

export function decodeSnapshot(buf: Buffer): Snapshot {
  const p = unseal(buf, TAG_SNAPSHOT);
  if (p.length < 4) throw new DecodeError('snapshot payload too short');
  const metaLen = p.readUInt32BE(0);
  if (4 + metaLen > p.length) throw new DecodeError(`snapshot meta length ${metaLen} beyond the value`);
  const m = parseJson(p.subarray(4, 4 + metaLen)) as {
    index?: unknown;
    term?: unknown;
    conf?: unknown;
  } | null;
  const conf = (typeof m === 'object' && m !== null ? m.conf : null) as {
    voters?: unknown;
    learners?: unknown;
  } | null;
  if (
    typeof m !== 'object' ||
    m === null ||
    !isIndex(m.index) ||
    !isIndex(m.term) ||
    typeof conf !== 'object' ||
    conf === null ||
    !isStringArray(conf.voters) ||
    !isStringArray(conf.learners)
  ) {
    throw new DecodeError('snapshot meta JSON has the wrong shape');
  }
  const confState: ConfState = { voters: conf.voters, learners: conf.learners };
  return { meta: { index: m.index, term: m.term, conf: confState }, data: copy(p.subarray(4 + metaLen)) };
}

// --- Keys ---

const ENTRY_HEX = 16;

function entryKey(prefix: string, index: number): string {
  return `${prefix}e/${index.toString(16).padStart(ENTRY_HEX, '0')}`;
}

/** The index in an entry key, or null when the key's suffix is not 16 lowercase hex digits. */
function indexOfKey(prefix: string, key: string): number | null {
  const suffix = key.slice(prefix.length + 2);
  if (suffix.length !== ENTRY_HEX || !/^[0-9a-f]+$/.test(suffix)) return null;
  const n = Number.parseInt(suffix, 16);
  return Number.isSafeInteger(n) ? n : null;
}

/** Decodes one stored entry and checks it belongs at `expected`: null if good (pushed onto `out`), else why not. */
function checkEntry(keyIndex: number | null, value: Buffer, expected: number, out: Entry[]): string | null {
  if (keyIndex === null) return 'malformed entry key';
  let e: Entry;
  try {
    e = decodeEntry(value);
  } catch (err) {
    if (err instanceof DecodeError) return `corrupt entry (${err.message})`;
    throw err;
  }
  if (e.index !== keyIndex) return `entry index ${e.index} stored under key index ${keyIndex}`;
  if (keyIndex !== expected) return `gap: expected index ${expected}, found ${keyIndex}`;
  out.push(e);
  return null;
}

const ITER_BATCH = 1000;

// --- Store ---

type WriteOp = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

/** One RocksDB database holding the Raft state of every scope an anchor hosts. */
export class RocksRaftStore {
  private readonly db: InstanceType<typeof rocksdb.RocksLevel>;
  private readonly log: (line: string) => void;
  private readonly scopes = new Map<ScopeId, RocksRaftStorage>();

  private constructor(db: InstanceType<typeof rocksdb.RocksLevel>, log: (line: string) => void) {
    this.db = db;
    this.log = log;
  }

  /** Opens (creating if missing) the database at `path`. */
  static async open(path: string, options: RocksRaftStoreOptions = {}): Promise<RocksRaftStore> {
    const { signal } = options;
    signal?.throwIfAborted();
    const db = new rocksdb.RocksLevel(path, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    await db.open({
      createIfMissing: true,
      ...(options.cacheBytes ? { cacheSize: options.cacheBytes } : {}),
      ...(options.memtableBytes ? { compaction: 'level', memtableMemoryBudget: options.memtableBytes } : {}),
      ...(options.compression === false ? { compression: false } : {}),
    });
    if (signal?.aborted) {
      await db.close();
      signal.throwIfAborted();
    }
    return new RocksRaftStore(db, options.logger ?? (() => {}));
  }

  /** @internal The open database, for the anchor's other per-scope stores (rocks-registry-store.ts). */
  get database(): InstanceType<typeof rocksdb.RocksLevel> {
    return this.db;
  }

  /** The storage of one scope; the same object for the same scope id. */
  forScope(scope: ScopeId): RocksRaftStorage {
    if (scope === '' || scope.includes('/')) {
      throw new RangeError(`storage: scope id ${JSON.stringify(scope)} may not be empty or contain '/'`);
    }
    let s = this.scopes.get(scope);
    if (!s) {
      s = new RocksRaftStorage(this.db, scope, this.log);
      this.scopes.set(scope, s);
    }
    return s;
  }

  /** Waits for every scope's pending operation, then closes the database. */
  async close(): Promise<void> {
    if (this.db.status === 'closed' || this.db.status === 'closing') return;
    await Promise.allSettled([...this.scopes.values()].map((s) => s.idle()));
    await this.db.close();
  }
}

/** What is stored for a scope, as far as writes need to know: entries are first..last (empty if last < first). */
interface Bounds {
  hasSnapshot: boolean;
  snapIndex: number;
  first: number;
  last: number;
}

/** The RaftStorage of one scope in a RocksRaftStore. Obtain it from `store.forScope(scope)`. */
export class RocksRaftStorage implements RaftStorage {
  private readonly db: InstanceType<typeof rocksdb.RocksLevel>;
  private readonly scope: ScopeId;
  private readonly log: (line: string) => void;
  private readonly prefix: string;
  private readonly hsKey: string;
  private readonly snapKey: string;
  /** Known after the first load (or the first write, which loads if needed); null means "read from disk". */
  private bounds: Bounds | null = null;
  /** The tail of the per-scope queue: operations run one at a time, in call order. */
  private queue: Promise<unknown> = Promise.resolve();

  /** @internal Use RocksRaftStore.forScope. */
  constructor(db: InstanceType<typeof rocksdb.RocksLevel>, scope: ScopeId, log: (line: string) => void) {
    this.db = db;
    this.scope = scope;
    this.log = log;
    this.prefix = `s/${scope}/`;
    this.hsKey = `${this.prefix}hs`;
    this.snapKey = `${this.prefix}snap`;
  }

  load(): Promise<PersistedState> {
    return this.enqueue(() => this.doLoad());
  }

  save(update: StorageUpdate): Promise<void> {
    return this.enqueue(() => this.doSave(update));
  }

  compact(snapshot: Snapshot): Promise<void> {
    return this.enqueue(() => this.doCompact(snapshot));
  }

  /** @internal Settles when the operations queued so far have settled. */
  idle(): Promise<unknown> {
    return this.queue.catch(() => {});
  }

  private enqueue<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => {});
    return run;
  }

  private async doLoad(): Promise<PersistedState> {
    const [hsBuf, snapBuf] = await this.db.getMany([this.hsKey, this.snapKey]);
    const hardState = hsBuf
      ? this.decodeOrThrow(this.hsKey, hsBuf, decodeHardState)
      : { term: 0, vote: '', commit: 0 };
    const snapshot = snapBuf ? this.decodeOrThrow(this.snapKey, snapBuf, decodeSnapshot) : null;
    const snapIndex = snapshot?.meta.index ?? 0;

    const entries: Entry[] = [];
    const doomed: string[] = [];
    let stale = 0;
    let problem: { key: string; reason: string } | null = null;
    const it = this.db.iterator({ gte: `${this.prefix}e/`, lt: `${this.prefix}e0` });
    try {
      for (let rows = await it.nextv(ITER_BATCH); rows.length > 0; rows = await it.nextv(ITER_BATCH)) {
        for (const [key, value] of rows) {
          if (stale > 0) {
            this.log(
              `storage: scope ${this.scope}: deleted ${stale} stale entries at or below snapshot index ${snapIndex}`,
            );
          }
          if (problem) {
            doomed.push(key);
            continue;
          }
          const keyIndex = indexOfKey(this.prefix, key);
          if (keyIndex !== null && keyIndex <= snapIndex) {
            // Covered by the snapshot: never written by this code (batches are atomic), but harmless to drop.
            doomed.push(key);
            stale++;
            continue;
          }
          const expected = (entries.at(-1)?.index ?? snapIndex) + 1;
          const reason = checkEntry(keyIndex, value, expected, entries);
          if (reason !== null) {
            problem = { key, reason };
            doomed.push(key);
          }
        }
      }
    } finally {
      await it.close();
    }

    const last = entries.at(-1)?.index ?? snapIndex;
    if (doomed.length > 0) {
      await this.db.batch(
        doomed.map((key) => ({ type: 'del' as const, key })),
        { sync: true },
      );
      if (stale > 0) {
        this.log(
          `storage: scope ${this.scope}: deleted ${stale} stale entries at or below snapshot index ${snapIndex}`,
        );
      }
      if (problem) {
        const lost = hardState.commit > last ? ` (hard state commit ${hardState.commit} is beyond it)` : '';
        this.log(
          `storage: scope ${this.scope}: truncated log after index ${last}${lost}: ${problem.reason} at ${problem.key}; deleted ${doomed.length - stale} entr${doomed.length - stale === 1 ? 'y' : 'ies'}`,
        );
      }
    }
    this.bounds = { hasSnapshot: snapshot !== null, snapIndex, first: snapIndex + 1, last };
    return { hardState, snapshot, entries };
  }

  private decodeOrThrow<T>(key: string, buf: Buffer, decode: (b: Buffer) => T): T {
    try {
      return decode(buf);
    } catch (err) {
      if (err instanceof DecodeError) throw new StorageCorruptionError(this.scope, key, err.message);
      throw err;
    }
  }

  /** The stored bounds; reads them from disk (a full load, repairing a bad tail) if this scope was never loaded. */
  private async ensureBounds(): Promise<Bounds> {
    if (!this.bounds) await this.doLoad();
    if (!this.bounds) throw new Error('storage: unreachable: bounds unknown after load');
    return this.bounds;
  }

  private async doSave(update: StorageUpdate): Promise<void> {
    const b = await this.ensureBounds();
    const next: Bounds = { ...b };
    const ops: WriteOp[] = [];
    const entries = update.entries;
    const first = entries[0];
    const lastNew = first ? first.index + entries.length - 1 : 0;

    if (update.snapshot) {
      ops.push({ type: 'put', key: this.snapKey, value: encodeSnapshot(update.snapshot) });
      // The snapshot replaces the whole log; keys the new entries overwrite need no delete.
      for (let i = b.first; i <= b.last; i++) {
        if (!first || i < first.index || i > lastNew)
          ops.push({ type: 'del', key: entryKey(this.prefix, i) });
      }
      next.hasSnapshot = true;
      next.snapIndex = update.snapshot.meta.index;
      next.first = next.snapIndex + 1;
      next.last = next.snapIndex;
    }

    if (first) {
      const expectedMax = next.last + 1;
      if (first.index <= next.snapIndex || first.index > expectedMax) {
        const expected = Math.min(Math.max(first.index, next.snapIndex + 1), expectedMax);
        throw new RangeError(`storage: append at ${first.index} leaves a gap (next is ${expected})`);
      }
      for (let i = 1; i < entries.length; i++) {
        const e = entries[i];
        if (e && e.index !== first.index + i) {
          throw new RangeError(
            `storage: entries not contiguous: ${e.index} where ${first.index + i} was expected`,
          );
        }
      }
      if (!update.snapshot) {
        for (let i = lastNew + 1; i <= b.last; i++) ops.push({ type: 'del', key: entryKey(this.prefix, i) });
      }
      for (const e of entries)
        ops.push({ type: 'put', key: entryKey(this.prefix, e.index), value: encodeEntry(e) });
      if (next.last < next.first) next.first = first.index;
      next.last = lastNew;
    }

    if (update.hardState)
      ops.push({ type: 'put', key: this.hsKey, value: encodeHardState(update.hardState) });
    if (ops.length === 0) return;
    await this.write(ops, update.sync !== false);
    this.bounds = next;
  }

  private async doCompact(snapshot: Snapshot): Promise<void> {
    const b = await this.ensureBounds();
    const index = snapshot.meta.index;
    if (b.hasSnapshot && index <= b.snapIndex) return; // As MemoryStorage: an older (or equal) snapshot changes nothing.
    const ops: WriteOp[] = [{ type: 'put', key: this.snapKey, value: encodeSnapshot(snapshot) }];
    const upTo = Math.min(index, b.last);
    for (let i = b.first; i <= upTo; i++) ops.push({ type: 'del', key: entryKey(this.prefix, i) });
    await this.write(ops);
    const first = Math.max(b.first, index + 1);
    this.bounds = { hasSnapshot: true, snapIndex: index, first, last: Math.max(b.last, index) };
  }

  /**
   * One atomic batch, fsynced unless `sync` is false (a commit-index-only update). On failure the
   * in-memory bounds are dropped (the next call rereads them).
   */
  private async write(ops: WriteOp[], sync = true): Promise<void> {
    try {
      await this.db.batch(ops, { sync });
    } catch (err) {
      this.bounds = null;
      throw err;
    }
  }
}
