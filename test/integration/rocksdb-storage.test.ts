import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import rocksdb from '@nxtedition/rocksdb';
import { expect } from 'chai';
import fc from 'fast-check';
import { MemoryStorage, type StorageUpdate } from '../../src/consensus/storage.ts';
import type { Entry, HardState, Snapshot } from '../../src/consensus/types.ts';
import {
  encodeEntry,
  RocksRaftStore,
  StorageCorruptionError,
} from '../../src/storage/rocksdb-raft-storage.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/rocksdb-crash-writer.ts', import.meta.url));

function entry(index: number, term = 1, kind: Entry['kind'] = 'normal'): Entry {
  return { index, term, kind, data: Uint8Array.from([index & 0xff, term & 0xff, 7]) };
}

function entries(from: number, to: number, term = 1): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term));
  return out;
}

function snap(index: number, term = 1): Snapshot {
  return {
    meta: { index, term, conf: { voters: ['a', 'b'], learners: ['c'] } },
    data: Uint8Array.from([1, 2, index & 0xff]),
  };
}

function update(u: Partial<StorageUpdate>): StorageUpdate {
  return { hardState: null, entries: [], snapshot: null, ...u };
}

function entryKey(scope: string, index: number): string {
  return `s/${scope}/e/${index.toString(16).padStart(16, '0')}`;
}

/** Raw access to the database behind a closed store. */
async function withRaw(
  path: string,
  f: (db: InstanceType<typeof rocksdb.RocksLevel>) => Promise<void>,
): Promise<void> {
  const db = new rocksdb.RocksLevel(path, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    await f(db);
  } finally {
    await db.close();
  }
}

async function rawKeys(path: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  await withRaw(path, async (db) => {
    const it = db.iterator({ gte: prefix, lt: `${prefix}\xff`, values: false });
    for (let rows = await it.nextv(1000); rows.length > 0; rows = await it.nextv(1000)) {
      for (const [k] of rows) keys.push(k);
    }
    await it.close();
  });
  return keys;
}

describe('RocksRaftStore (RocksDB RaftStorage)', function () {
  this.timeout(20_000);
  let dir: string;
  let path: string;
  let store: RocksRaftStore | null;
  let logLines: string[];

  async function reopen(): Promise<RocksRaftStore> {
    await store?.close();
    store = await RocksRaftStore.open(path, { logger: (l) => logLines.push(l) });
    return store;
  }

  /** The error a promise rejects with (the test fails if it resolves). */
  async function rejection(p: Promise<unknown>): Promise<unknown> {
    return p.then(
      () => expect.fail('expected a rejection'),
      (e: unknown) => e,
    );
  }

  async function closeStore(): Promise<void> {
    await store?.close();
    store = null;
  }

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aqmesh-rocks-'));
    path = join(dir, 'db');
    logLines = [];
    store = null;
    await reopen();
  });

  afterEach(async () => {
    await closeStore();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads an empty scope as MemoryStorage does', async () => {
    const s = (await reopen()).forScope('x');
    expect(await s.load()).to.deep.equal(new MemoryStorage().load());
  });

  it('appends, overwrites from an index, keeps the hard state', async () => {
    const s = (await reopen()).forScope('x');
    await s.load();
    await s.save(update({ entries: entries(1, 5), hardState: { term: 1, vote: 'a', commit: 2 } }));
    await s.save(update({ entries: entries(3, 4, 2) }));
    const got = await s.load();
    expect(got.entries).to.deep.equal([...entries(1, 2), ...entries(3, 4, 2)]);
    expect(got.hardState).to.deep.equal({ term: 1, vote: 'a', commit: 2 });
    // Truncated tail keys are gone from disk, not just hidden.
    await closeStore();
    expect(await rawKeys(path, 's/x/e/')).to.have.length(4);
  });

  it('refuses an append that leaves a gap, and writes nothing', async () => {
    const s = (await reopen()).forScope('x');
    await s.save(update({ entries: entries(1, 2) }));
    const err = await rejection(
      s.save(update({ entries: entries(4, 4), hardState: { term: 9, vote: '', commit: 0 } })),
    );
    expect(err).to.be.instanceOf(RangeError);
    expect((await s.load()).entries).to.deep.equal(entries(1, 2));
    expect((await s.load()).hardState.term).to.equal(0);
  });

  it('a snapshot in a save replaces the log; compact drops entries up to its index', async () => {
    const s = (await reopen()).forScope('x');
    await s.save(update({ entries: entries(1, 10) }));
    await s.compact(snap(4));
    expect((await s.load()).entries).to.deep.equal(entries(5, 10));
    await s.save(update({ snapshot: snap(20, 3), entries: entries(21, 22, 3) }));
    const got = await s.load();
    expect(got.snapshot).to.deep.equal(snap(20, 3));
    expect(got.entries).to.deep.equal(entries(21, 22, 3));
    await closeStore();
    expect(await rawKeys(path, 's/x/e/')).to.deep.equal([entryKey('x', 21), entryKey('x', 22)]);
  });

  it('matches MemoryStorage for random sequences of saves and compacts (and after reopen)', async () => {
    const st = await reopen();
    let run = 0;
    const models = new Map<string, MemoryStorage>();
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('append' as const),
        at: fc.double({ min: 0, max: 1, noNaN: true }),
        count: fc.integer({ min: 0, max: 4 }),
        term: fc.integer({ min: 1, max: 5 }),
        hs: fc.option(
          fc.record({ term: fc.nat(9), vote: fc.constantFrom('', 'a', 'b'), commit: fc.nat(30) }),
        ),
      }),
      fc.record({
        kind: fc.constant('snapshot' as const),
        delta: fc.integer({ min: -3, max: 4 }),
        count: fc.integer({ min: 0, max: 3 }),
      }),
      fc.record({ kind: fc.constant('compact' as const), delta: fc.integer({ min: -2, max: 3 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 15 }), fc.boolean(), async (ops, loadEachStep) => {
        const scope = `p${run++}`;
        const mem = new MemoryStorage();
        models.set(scope, mem);
        const rocks = st.forScope(scope);
        // Without a load first, the store reads its bounds lazily; without a load per step, it relies on the
        // bounds it keeps in memory across writes.
        if (loadEachStep) await rocks.load();
        for (const o of ops) {
          const m = mem.load();
          const snapIndex = m.snapshot?.meta.index ?? 0;
          const last = m.entries.at(-1)?.index ?? snapIndex;
          if (o.kind === 'append') {
            const from = snapIndex + 1 + Math.floor(o.at * (last - snapIndex + 1 - 1e-9));
            const u = update({
              entries: entries(from, from + o.count - 1, o.term),
              hardState: o.hs as HardState | null,
            });
            mem.save(u);
            await rocks.save(u);
          } else if (o.kind === 'snapshot') {
            const index = Math.max(0, last + o.delta);
            const u = update({ snapshot: snap(index, 2), entries: entries(index + 1, index + o.count, 2) });
            mem.save(u);
            await rocks.save(u);
          } else {
            const s = snap(Math.max(0, snapIndex + o.delta + Math.floor((last - snapIndex) / 2)), 2);
            mem.compact(s);
            await rocks.compact(s);
          }
          if (loadEachStep) expect(await rocks.load()).to.deep.equal(mem.load());
        }
        // Scopes never loaded after their writes are checked below, first on the raw keys (load() would hide
        // and delete stale entries at or below the snapshot), then after a reopen.
        if (loadEachStep) expect(await rocks.load()).to.deep.equal(mem.load());
      }),
      { numRuns: 60 },
    );
    // No stale keys on disk, and everything written survives a reopen, in every scope.
    await closeStore();
    const keys = await rawKeys(path, 's/');
    for (const [scope, mem] of models) {
      const stored = keys.filter((k) => k.startsWith(`s/${scope}/e/`)).length;
      expect(stored, `entry keys of scope ${scope}`).to.equal(mem.load().entries.length);
    }
    const st2 = await reopen();
    for (const [scope, mem] of models) expect(await st2.forScope(scope).load()).to.deep.equal(mem.load());
  });

  it('data survives close and reopen', async () => {
    let s = (await reopen()).forScope('x');
    await s.save(
      update({ snapshot: snap(3), entries: entries(4, 9), hardState: { term: 4, vote: 'b', commit: 7 } }),
    );
    const before = await s.load();
    s = (await reopen()).forScope('x');
    expect(await s.load()).to.deep.equal(before);
    // A store reopened without load() still writes correctly (bounds are read lazily).
    await s.save(update({ entries: entries(6, 6, 5) }));
    s = (await reopen()).forScope('x');
    expect((await s.load()).entries).to.deep.equal([...entries(4, 5), entry(6, 5)]);
  });

  it('keeps two scopes in one store independent', async () => {
    const st = await reopen();
    const a = st.forScope('aaa');
    const b = st.forScope('aa');
    await a.save(update({ entries: entries(1, 5), hardState: { term: 1, vote: 'x', commit: 1 } }));
    await b.save(update({ entries: entries(1, 2, 7) }));
    await a.compact(snap(3));
    await b.save(update({ snapshot: snap(40), entries: entries(41, 41) }));
    const st2 = await reopen();
    const la = await st2.forScope('aaa').load();
    const lb = await st2.forScope('aa').load();
    expect(la).to.deep.equal({
      hardState: { term: 1, vote: 'x', commit: 1 },
      snapshot: snap(3),
      entries: entries(4, 5),
    });
    expect(lb).to.deep.equal({
      hardState: { term: 0, vote: '', commit: 0 },
      snapshot: snap(40),
      entries: entries(41, 41),
    });
    expect(() => st2.forScope('a/b')).to.throw(RangeError);
  });

  it('truncates a corrupt last entry on load, loads the rest, and logs one line', async () => {
    await (await reopen()).forScope('x').save(update({ entries: entries(1, 6) }));
    await closeStore();
    await withRaw(path, (db) => db.put(entryKey('x', 6), Buffer.from('garbage bytes!')));
    const got = await (await reopen()).forScope('x').load();
    expect(got.entries).to.deep.equal(entries(1, 5));
    expect(logLines).to.have.length(1);
    expect(logLines[0]).to.match(/scope x: truncated log after index 5.*corrupt entry/);
    // The bad key is deleted: a second load is clean and silent.
    expect((await (await reopen()).forScope('x').load()).entries).to.deep.equal(entries(1, 5));
    expect(logLines).to.have.length(1);
  });

  it('truncates at a torn entry in the middle and drops everything after it', async () => {
    await (await reopen()).forScope('x').save(update({ entries: entries(1, 8) }));
    await closeStore();
    const torn = encodeEntry(entry(4)).subarray(0, 9);
    await withRaw(path, (db) => db.put(entryKey('x', 4), Buffer.from(torn)));
    const s = (await reopen()).forScope('x');
    expect((await s.load()).entries).to.deep.equal(entries(1, 3));
    expect(logLines).to.have.length(1);
    await s.save(update({ entries: entries(4, 4, 2) }));
    expect((await s.load()).entries).to.deep.equal([...entries(1, 3), entry(4, 2)]);
    await closeStore();
    expect(await rawKeys(path, 's/x/e/')).to.have.length(4);
  });

  it('drops a non-contiguous tail entry', async () => {
    await (await reopen()).forScope('x').save(update({ entries: entries(1, 3) }));
    await closeStore();
    await withRaw(path, (db) => db.put(entryKey('x', 5), encodeEntry(entry(5))));
    expect((await (await reopen()).forScope('x').load()).entries).to.deep.equal(entries(1, 3));
    expect(logLines[0]).to.match(/gap: expected index 4, found 5/);
  });

  it('raises StorageCorruptionError for a corrupt hard state or snapshot', async () => {
    await (await reopen())
      .forScope('x')
      .save(update({ snapshot: snap(2), hardState: { term: 2, vote: 'a', commit: 2 } }));
    await closeStore();
    await withRaw(path, async (db) => {
      const [hs] = await db.getMany(['s/x/hs']);
      if (!hs) throw new Error('no hard state');
      hs[hs.length - 6] = (hs[hs.length - 6] ?? 0) ^ 0x01; // flip one bit
      await db.put('s/x/hs', hs);
    });
    let err = await rejection((await reopen()).forScope('x').load());
    expect(err).to.be.instanceOf(StorageCorruptionError);
    expect((err as Error).message).to.match(/scope x: corrupt value under key s\/x\/hs: crc mismatch/);
    await closeStore();
    await withRaw(path, (db) => db.put('s/x/snap', Buffer.from([1, 3, 0])));
    err = await rejection((await reopen()).forScope('x').load());
    expect(err).to.be.instanceOf(StorageCorruptionError);
  });

  it('keeps every acknowledged save across a SIGKILL of the writing process', async function () {
    this.timeout(30_000);
    await closeStore();
    const acked: number[] = [];
    let child: ChildProcess | null = null;
    try {
      const killAfter = 40;
      const started = Date.now();
      child = spawn(process.execPath, [FIXTURE, path, 'crash', '100000'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const proc = child;
      const exited = new Promise<NodeJS.Signals | number | null>((resolve) => {
        proc.on('exit', (code, signal) => resolve(signal ?? code));
      });
      await new Promise<void>((resolve, reject) => {
        let buf = '';
        const timer = setTimeout(
          () => reject(new Error(`child made no progress in 20 s: ${stderr}`)),
          20_000,
        );
        proc.stdout?.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop() ?? '';
          for (const line of lines) {
            const m = /^acked (\d+)$/.exec(line);
            if (m) acked.push(Number(m[1]));
          }
          if (acked.length >= killAfter && proc.pid !== undefined) {
            clearTimeout(timer);
            process.kill(proc.pid, 'SIGKILL');
            resolve();
          }
        });
        proc.on('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`child exited early (${code}): ${stderr}`));
        });
      });
      expect(await exited).to.equal('SIGKILL');
      child = null;
      const s = (await reopen()).forScope('crash');
      const got = await s.load();
      const indices = new Set(got.entries.map((e) => e.index));
      for (const i of acked) expect(indices.has(i), `acknowledged index ${i} lost`).to.equal(true);
      expect(got.hardState.commit).to.be.at.least(Math.max(...acked));
      expect(got.entries[0]?.index).to.equal(1);
      if (process.env.ROCKS_TEST_VERBOSE) {
        console.log(`      acked ${acked.length}, stored ${got.entries.length}, ${Date.now() - started} ms`);
      }
    } finally {
      if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null)
        process.kill(child.pid, 'SIGKILL');
    }
  });
});
