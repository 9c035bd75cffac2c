// Tools of lineage-tamper.test.ts: what an attacker (or a careless operator) does to an exported lineage
// file or to a stopped anchor's data dir.
//
// Data dir edits go through RocksRegistryStore (the anchor's own store code), so every row keeps a valid
// CRC and only the lineage's own checks (signatures, the Merkle tree, signed tree heads, known heads) can
// catch them. corruptRawRow is the naive twin: it changes a stored value's bytes without fixing the CRC.
// The log's rows are the aux rows `l/s` (the size), `l/e/<index base 36>` (entries) and
// `l/n/<level>/<index>` (subtree hashes) of src/lineage/log.ts, prefixed `r/<scope>/x/` on disk.

import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeEntry, encodeEntry, LineageReader, LineageWriter } from '../../src/lineage/entry.ts';
import { storageScopeId } from '../../src/scope/scope-host.ts';
import { RocksRegistryStore } from '../../src/storage/rocks-registry-store.ts';
import { RocksRaftStore } from '../../src/storage/rocksdb-raft-storage.ts';

const entryKey = (index: number): string => `l/e/${index.toString(36)}`;

/** The lineage rows of one scope in a stopped anchor's registry database. */
export interface LineageRows {
  readonly size: number;
  entry(index: number): Uint8Array;
  setEntry(index: number, bytes: Uint8Array): void;
  deleteEntry(index: number): void;
  setSize(size: number): void;
}

/** Opens `<dataDir>/registry`, lets `edit` change the scope's lineage rows, commits, closes. */
export async function editLineage(
  dataDir: string,
  scope: string,
  edit: (rows: LineageRows) => void,
): Promise<void> {
  const db = await RocksRaftStore.open(join(dataDir, 'registry'));
  try {
    const store = RocksRegistryStore.forScope(db, storageScopeId(scope));
    const raw = store.getAux('l/s');
    if (raw === undefined) throw new Error(`${dataDir}: scope ${scope} has no lineage`);
    const r = new LineageReader(raw, 'size');
    let size = r.varint('size');
    const rows: LineageRows = {
      get size() {
        return size;
      },
      entry: (index) => {
        const v = store.getAux(entryKey(index));
        if (v === undefined) throw new Error(`${dataDir}: no lineage entry ${index}`);
        return v.slice();
      },
      setEntry: (index, bytes) => store.putAux(entryKey(index), bytes),
      deleteEntry: (index) => store.deleteAux(entryKey(index)),
      setSize: (n) => {
        const w = new LineageWriter(8, (m) => new Error(m));
        w.varint(n, 'size');
        store.putAux('l/s', w.finish());
        size = n;
      },
    };
    edit(rows);
    store.commit({ sync: true });
  } finally {
    await db.close();
  }
}

/** The registry's applied index and lineage size in a stopped anchor's data dir (opening recovers it). */
export async function registryState(
  dataDir: string,
  scope: string,
): Promise<{ appliedIndex: number; lineageSize: number }> {
  const db = await RocksRaftStore.open(join(dataDir, 'registry'));
  try {
    const store = RocksRegistryStore.forScope(db, storageScopeId(scope));
    const raw = store.getAux('l/s');
    const lineageSize = raw === undefined ? 0 : new LineageReader(raw, 'size').varint('size');
    return { appliedIndex: store.scalars().appliedIndex, lineageSize };
  } finally {
    await db.close();
  }
}

/**
 * The naive tamper: flips one byte of entry `index`'s stored value (inside the entry's bytes, `offset`
 * bytes from the end of the row's payload) with a raw RocksDB put, leaving the row's CRC as it was.
 */
export async function corruptRawRow(dataDir: string, scope: string, index: number): Promise<string> {
  const db = await RocksRaftStore.open(join(dataDir, 'registry'));
  const key = `r/${storageScopeId(scope)}/x/${entryKey(index)}`;
  try {
    const raw = db.database;
    const [value] = (await raw.getMany([key])) as (Buffer | undefined)[];
    if (value === undefined) throw new Error(`${dataDir}: no row ${key}`);
    const copy = Buffer.from(value);
    // [version][tag][entry bytes][crc32]: flip a byte in the middle of the entry bytes.
    const at = 2 + Math.floor((copy.length - 6) / 2);
    copy[at] = (copy[at] as number) ^ 0x01;
    await raw.batch([{ type: 'put', key, value: copy }]);
  } finally {
    await db.close();
  }
  return key;
}

/**
 * The naive tamper on the files themselves: flips one byte at `fraction` of the newest `.<ext>` file of
 * `<dataDir>/registry` (RocksDB's write-ahead log, `log`, or a table, `sst`). Returns the file's name.
 */
export function flipOnDisk(dataDir: string, ext: 'log' | 'sst', fraction: number): string {
  const dir = join(dataDir, 'registry');
  const name = readdirSync(dir)
    .filter((n) => n.endsWith(`.${ext}`))
    .sort()
    .pop();
  if (name === undefined) throw new Error(`${dir} has no .${ext} file: ${readdirSync(dir).join(' ')}`);
  const path = join(dir, name);
  const bytes = readFileSync(path);
  const i = Math.floor(bytes.length * fraction);
  bytes[i] = (bytes[i] as number) ^ 0x01;
  writeFileSync(path, bytes);
  return `${name} byte ${i} of ${bytes.length}`;
}

export function copyDir(from: string, to: string): void {
  cpSync(from, to, { recursive: true });
}

// ---- entry bytes ----

/** Flips one bit inside the entry's payload (covered by the admitting anchor's signature). */
export function flipPayloadByte(bytes: Uint8Array): Uint8Array {
  const e = decodeEntry(bytes);
  const payload = e.payload.slice();
  const i = Math.floor(payload.length / 2);
  payload[i] = (payload[i] as number) ^ 0x01;
  return encodeEntry({ ...e, payload });
}

/** Changes the entry's Raft log index: part of the leaf, not of the signed bytes. */
export function bumpLogIndex(bytes: Uint8Array): Uint8Array {
  const e = decodeEntry(bytes);
  return encodeEntry({ ...e, logIndex: e.logIndex + 1000 });
}

/** The same entry claiming another position (the position is not signed either). */
export function renumber(bytes: Uint8Array, index: number): Uint8Array {
  return encodeEntry({ ...decodeEntry(bytes), index });
}

// ---- export files ----

/** An export's lines, without the final empty string. */
export function exportLines(path: string): string[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export function writeLines(path: string, lines: readonly string[]): void {
  writeFileSync(path, `${lines.join('\n')}\n`);
}

/** The line number (0-based) of entry `index`. */
export function entryLine(lines: readonly string[], index: number): number {
  const at = lines.findIndex((l) => {
    if (!l.startsWith('{"entry"')) return false;
    return decodeEntry(Buffer.from((JSON.parse(l) as { entry: string }).entry, 'base64')).index === index;
  });
  if (at < 0) throw new Error(`no line holds entry ${index}`);
  return at;
}

export function lineBytes(line: string): Uint8Array {
  return new Uint8Array(Buffer.from((JSON.parse(line) as { entry: string }).entry, 'base64'));
}

export function entryLineOf(bytes: Uint8Array): string {
  return JSON.stringify({ entry: Buffer.from(bytes).toString('base64') });
}

/** The failure codes printed on stderr by `aq verify lineage` / `aq lineage --verify`. */
export function failureCodes(stderr: string, command: string): string[] {
  const codes = new Set<string>();
  for (const line of stderr.split('\n')) {
    const m = new RegExp(`^aq: ${command}: ([a-z-]+): `).exec(line);
    if (m) codes.add(m[1] as string);
  }
  return [...codes].sort();
}
