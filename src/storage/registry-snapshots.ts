// Raft snapshots of a scope whose registry lives in RocksDB, in bounded memory whatever the registry's size.
//
// Why not serialize the registry into the snapshot (what the simulator's in-memory host does): at a
// million instances that is a ~400 MB buffer built on the event loop at every compaction, held by the
// core and copied to the storage worker. As in etcd v3, the registry store is itself durable at its
// applied index, so:
//  - compacting the log stores a *marker* as the snapshot's data ("the state is in the store"), after a
//    synced commit of the store at the compaction index;
//  - when a follower needs a snapshot, the leader dumps its store (one consistent RocksDB iterator, at an
//    applied index >= the snapshot's) into a file and streams the file; entries between the two indexes
//    are skipped on apply, since the state already reflects them;
//  - the follower writes the chunks to a file and gives the core a marker naming it; when the core hands
//    the snapshot over, the file is installed into the store in batches (RocksRegistryStore.install, with
//    a redo marker so a crash mid-install is finished on restart) and then deleted.
//
// Dump file (one scope's stored rows, in key order):
//   "AQSD" version:u8 (=1) scopeLength:varint scope:utf8
//   row*  := 0x01 suffixLength:varint suffix:utf8 valueLength:varint value
//   end   := 0x00 rowCount:varint crc32:u32be (CRC-32 of every byte before it)
// Varints are unsigned LEB128. Every value also carries the store's own CRC over its key.

import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Snapshot } from '../consensus/index.ts';
import { type RegistryChange, type RegistryOptions, RegistryStateMachine } from '../registry/index.ts';
import type { RegistryScalars } from '../registry/store.ts';
import type { RocksRegistryStore } from './rocks-registry-store.ts';

const MARKER_MAGIC = Buffer.from('AQSM');
const MARKER_LOCAL = 0;
const MARKER_FILE = 1;
const DUMP_MAGIC = Buffer.from('AQSD');
const DUMP_VERSION = 1;
const ROW = 1;
const END = 0;
/** How long an unused dump is kept for the next follower that needs one. */
const DUMP_KEEP_MS = 60_000;
/** Bytes buffered before a write to the dump file, and per read when installing it. */
const IO_CHUNK = 1 << 20;

export type SnapshotMarker = { readonly kind: 'local' } | { readonly kind: 'file'; readonly file: string };

/** Snapshot data meaning "the state at (at least) the snapshot's index is in the registry store". */
export function localSnapshotData(): Uint8Array {
  return Buffer.concat([MARKER_MAGIC, Buffer.from([MARKER_LOCAL])]);
}

/** Snapshot data naming a received dump file (a file name inside the snapshot directory). */
export function fileSnapshotData(file: string): Uint8Array {
  return Buffer.concat([MARKER_MAGIC, Buffer.from([MARKER_FILE]), Buffer.from(file)]);
}

/** The marker in a snapshot's data, or null when the data is something else. */
export function parseSnapshotData(data: Uint8Array): SnapshotMarker | null {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b.length < 5 || !b.subarray(0, 4).equals(MARKER_MAGIC)) return null;
  if (b[4] === MARKER_LOCAL && b.length === 5) return { kind: 'local' };
  if (b[4] === MARKER_FILE && b.length > 5) {
    const file = b.subarray(5).toString();
    if (/^[\w.:-]+$/.test(file)) return { kind: 'file', file };
  }
  return null;
}

/** A dump file that is truncated, altered or of another scope. */
export class DumpFileError extends Error {
  override readonly name = 'DumpFileError';
  constructor(path: string, message: string) {
    super(`snapshot file ${path}: ${message}`);
  }
}

/** Decodes a varint at `at`: [value, next offset], or null when the buffer ends first. */
function readVarint(b: Buffer, at: number, path: string): [number, number] | null {
  let n = 0;
  let scale = 1;
  for (let i = at; i < b.length; i++) {
    const byte = b[i] as number;
    n += (byte & 0x7f) * scale;
    if (byte < 0x80) return [n, i + 1];
    scale *= 0x80;
    if (scale > 2 ** 56) throw new DumpFileError(path, `varint at byte ${i} is too long`);
  }
  return null;
}

/** Writes `store`'s stored rows to `path` (created or replaced, fsynced); returns its size and scalars. */
export async function writeDumpFile(
  store: RocksRegistryStore,
  path: string,
  signal?: AbortSignal,
): Promise<{ bytes: number; rows: number; scalars: RegistryScalars }> {
  const file = await open(path, 'w', 0o600);
  // One reused buffer, written out whenever full: the dump makes no garbage per row (a dump is as large
  // as the registry, and garbage buffers outlive their use until V8 collects them).
  const buf = Buffer.allocUnsafe(IO_CHUNK);
  let pos = 0;
  let crc = 0;
  let bytes = 0;
  let rows = 0;
  const flush = async (): Promise<void> => {
    if (pos === 0) return;
    const chunk = buf.subarray(0, pos);
    crc = crc32(chunk, crc);
    bytes += pos;
    await file.write(chunk);
    pos = 0;
  };
  const put = async (b: Uint8Array): Promise<void> => {
    if (pos + b.length > buf.length) await flush();
    if (b.length > buf.length) {
      crc = crc32(b, crc);
      bytes += b.length;
      await file.write(b);
      return;
    }
    buf.set(b, pos);
    pos += b.length;
  };
  const putVarint = async (n: number): Promise<void> => {
    if (pos + 10 > buf.length) await flush();
    while (n >= 0x80) {
      buf[pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    buf[pos++] = n;
  };
  const putByte = async (n: number): Promise<void> => {
    if (pos + 1 > buf.length) await flush();
    buf[pos++] = n;
  };
  try {
    const scope = Buffer.from(store.scope);
    await put(DUMP_MAGIC);
    await putByte(DUMP_VERSION);
    await putVarint(scope.length);
    await put(scope);
    const scalars = await store.dump(async (suffix, value) => {
      const key = Buffer.from(suffix);
      await putByte(ROW);
      await putVarint(key.length);
      await put(key);
      await putVarint(value.length);
      await put(value);
      rows++;
    }, signal);
    await putByte(END);
    await putVarint(rows);
    await flush();
    const trailer = Buffer.alloc(4);
    trailer.writeUInt32BE(crc);
    await file.write(trailer);
    bytes += 4;
    await file.sync();
    return { bytes, rows, scalars };
  } finally {
    await file.close();
  }
}

/** The rows of a dump file, checked as they are read (structure, scope, row count, CRC at the end). */
export async function* readDumpFile(path: string, scope: string): AsyncGenerator<readonly [string, Buffer]> {
  const file = await open(path, 'r');
  try {
    let buf = Buffer.alloc(0);
    let position = 0;
    let crc = 0;
    let eof = false;
    /** Reads more; false at the end of the file. */
    const more = async (): Promise<boolean> => {
      if (eof) return false;
      const chunk = Buffer.allocUnsafe(IO_CHUNK);
      const { bytesRead } = await file.read(chunk, 0, IO_CHUNK, position);
      if (bytesRead === 0) {
        eof = true;
        return false;
      }
      position += bytesRead;
      buf =
        buf.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([buf, chunk.subarray(0, bytesRead)]);
      return true;
    };
    const truncated = () => new DumpFileError(path, `truncated at byte ${position - buf.length}`);
    /** Drops the first n bytes of the buffer, adding them to the running CRC. */
    const consume = (n: number): void => {
      crc = crc32(buf.subarray(0, n), crc);
      buf = buf.subarray(n);
    };
    /** Resolves once `parse` can read from the buffer (returns non-null), reading more as needed. */
    const need = async <T>(parse: () => T | null): Promise<T> => {
      for (;;) {
        const v = parse();
        if (v !== null) return v;
        if (!(await more())) throw truncated();
      }
    };
    /** A varint at `at` followed by at least `then(value)` bytes. */
    const varintThen = (at: number, then: (v: number) => number) => () => {
      const v = readVarint(buf, at, path);
      return v !== null && buf.length >= v[1] + then(v[0]) ? v : null;
    };
    await need(() => (buf.length >= 5 ? true : null));
    if (!buf.subarray(0, 4).equals(DUMP_MAGIC))
      throw new DumpFileError(path, 'not a snapshot file (bad magic)');
    if (buf[4] !== DUMP_VERSION) throw new DumpFileError(path, `unsupported version ${buf[4]}`);
    consume(5);
    const [scopeLength, scopeAt] = await need(varintThen(0, (n) => n));
    const fileScope = buf.subarray(scopeAt, scopeAt + scopeLength).toString();
    if (fileScope !== scope) throw new DumpFileError(path, `holds scope ${fileScope}, not ${scope}`);
    consume(scopeAt + scopeLength);
    let rows = 0;
    for (;;) {
      await need(() => (buf.length >= 1 ? true : null));
      if (buf[0] === END) {
        const [count, countEnd] = await need(varintThen(1, () => 4));
        if (count !== rows) throw new DumpFileError(path, `announces ${count} rows, holds ${rows}`);
        consume(countEnd);
        if (buf.readUInt32BE(0) !== crc) throw new DumpFileError(path, 'checksum mismatch');
        if (buf.length > 4 || (await more())) throw new DumpFileError(path, 'bytes after the end');
        return;
      }
      if (buf[0] !== ROW)
        throw new DumpFileError(path, `unknown record ${buf[0]} at byte ${position - buf.length}`);
      const [keyLength, keyAt] = await need(varintThen(1, (n) => n));
      const [valueLength, valueAt] = await need(varintThen(keyAt + keyLength, (n) => n));
      const suffix = buf.subarray(keyAt, keyAt + keyLength).toString();
      const value = Buffer.from(buf.subarray(valueAt, valueAt + valueLength)); // a copy: buf moves on
      consume(valueAt + valueLength);
      rows++;
      yield [suffix, value];
    }
  } finally {
    await file.close();
  }
}

/**
 * A scope's snapshot files: dumps written for followers (shared while their snapshot is current) and
 * dumps received from the leader (until installed). All live in one directory of the anchor's data dir.
 */
export class SnapshotDirectory {
  readonly dir: string;
  #sequence = 0;

  constructor(dir: string) {
    this.dir = dir;
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** A new file name for a dump of `scope` (`out` for sending, `in` for receiving). */
  fileName(scope: string, direction: 'in' | 'out'): string {
    return `${scope}.${direction}.${Date.now()}-${++this.#sequence}.aqsd`;
  }

  path(file: string): string {
    return join(this.dir, file);
  }

  async remove(file: string): Promise<void> {
    await rm(this.path(file), { force: true });
  }

  /** Removes the files of `scope` (of one direction, or both) except those in `keep`. */
  async prune(scope: string, keep: ReadonlySet<string> = new Set(), direction?: 'in' | 'out'): Promise<void> {
    const prefix = direction === undefined ? `${scope}.` : `${scope}.${direction}.`;
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(prefix) && !keep.has(name)) await this.remove(name);
    }
  }
}

/** State machine options beyond the store (the scope's verifier and expected id). */
export type MachineOptions = Pick<RegistryOptions, 'verifier' | 'expectedScopeId' | 'maxSessions'>;

/**
 * The registry of one scope over a RocksRegistryStore, as the scope group drives it (RegistryHost):
 * snapshots are markers and dump files, never the serialized state.
 */
export class RocksRegistryHost {
  readonly #store: RocksRegistryStore;
  readonly #onChange: (change: RegistryChange) => void;
  readonly #files: SnapshotDirectory;
  readonly #options: MachineOptions;
  #machine: RegistryStateMachine;
  /** The dump being sent to followers: its file, the applied index it holds, and the sends using it. */
  #outgoing: { file: Promise<{ file: string; bytes: number; applied: number }>; users: number } | null = null;
  #retired = new Set<string>();

  private constructor(
    store: RocksRegistryStore,
    onChange: (c: RegistryChange) => void,
    files: SnapshotDirectory,
    options: MachineOptions,
  ) {
    this.#store = store;
    this.#onChange = onChange;
    this.#files = files;
    this.#options = options;
    this.#machine = new RegistryStateMachine({ ...options, store, onChange });
  }

  /** Opens the host; finishes an install a crash interrupted (its file is kept until it is done). */
  static async open(
    store: RocksRegistryStore,
    onChange: (change: RegistryChange) => void,
    files: SnapshotDirectory,
    options: MachineOptions = {},
  ): Promise<RocksRegistryHost> {
    const pending = store.pendingInstall();
    if (pending !== undefined) await store.install(readDumpFile(files.path(pending), store.scope), pending);
    // Dumps written for followers are rewritten on demand; received ones are installed or superseded.
    await files.prune(store.scope, new Set(), 'out');
    return new RocksRegistryHost(store, onChange, files, options);
  }

  get machine(): RegistryStateMachine {
    return this.#machine;
  }

  commit(options: { sync?: boolean } = {}): void {
    this.#store.commit(options);
  }

  /** The data to compact the log with at the applied index: the store is made durable, a marker stored. */
  compactionData(): Uint8Array {
    this.#store.commit({ sync: true });
    return localSnapshotData();
  }

  /** Brings the state to the snapshot's (or later): installs a received dump, or checks the store has it. */
  async restore(snapshot: Snapshot): Promise<void> {
    const marker = parseSnapshotData(snapshot.data);
    if (marker === null)
      throw new Error(`scope ${this.#store.scope}: snapshot data is not a registry marker`);
    if (marker.kind === 'local') {
      if (this.#machine.appliedIndex < snapshot.meta.index) {
        throw new Error(
          `scope ${this.#store.scope}: the registry store is at index ${this.#machine.appliedIndex}, behind the log's snapshot at ${snapshot.meta.index} (its stored state was lost)`,
        );
      }
      return;
    }
    if (this.#machine.appliedIndex >= snapshot.meta.index) return; // already installed (restart)
    const scalars = await this.#store.install(
      readDumpFile(this.#files.path(marker.file), this.#store.scope),
      marker.file,
    );
    if (scalars.appliedIndex < snapshot.meta.index) {
      throw new Error(
        `scope ${this.#store.scope}: the snapshot file ${marker.file} holds index ${scalars.appliedIndex}, the snapshot says ${snapshot.meta.index}`,
      );
    }
    this.#machine = new RegistryStateMachine({
      ...this.#options,
      store: this.#store,
      onChange: this.#onChange,
    });
    await this.#files.prune(this.#store.scope, new Set(), 'in');
  }

  /**
   * A dump file holding the state at `index` or later, for a follower: the current dump when it is recent
   * enough, else a new one (the older is removed once no send uses it). Call release() when sent.
   */
  async outgoing(index: number): Promise<{ path: string; bytes: number; release: () => void }> {
    let current = this.#outgoing;
    if (current !== null) {
      const made = await current.file.catch(() => null);
      if (made === null || made.applied < index) {
        if (made !== null) this.#retire(made.file, current);
        current = null;
      }
    }
    if (current === null) {
      const file = this.#files.fileName(this.#store.scope, 'out');
      const entry = {
        users: 0,
        file: writeDumpFile(this.#store, this.#files.path(file)).then(({ bytes, scalars }) => ({
          file,
          bytes,
          applied: scalars.appliedIndex,
        })),
      };
      this.#outgoing = entry;
      current = entry;
    }
    const entry = current;
    entry.users++;
    const made = await entry.file;
    let released = false;
    return {
      path: this.#files.path(made.file),
      bytes: made.bytes,
      release: () => {
        if (released) return;
        released = true;
        entry.users--;
        if (entry.users > 0) return;
        if (this.#retired.has(made.file)) {
          this.#retired.delete(made.file);
          void this.#files.remove(made.file);
          return;
        }
        // Kept a while for another follower (they often fall behind together), then removed: a dump is
        // as large as the registry.
        setTimeout(() => {
          if (entry.users === 0 && this.#outgoing === entry) this.#retire(made.file, entry);
        }, DUMP_KEEP_MS).unref();
      },
    };
  }

  #retire(file: string, entry: { users: number }): void {
    if (this.#outgoing === entry) this.#outgoing = null;
    if (entry.users === 0) void this.#files.remove(file);
    else this.#retired.add(file);
  }
}
