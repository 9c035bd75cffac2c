import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import rocksdb from '@nxtedition/rocksdb';
import { expect } from 'chai';
import fc from 'fast-check';
import {
  type ApplyResult,
  type RegistryChange,
  RegistryStateMachine,
  SnapshotDecodeError,
} from '../../src/registry/index.ts';
import { RocksRegistryStore } from '../../src/storage/rocks-registry-store.ts';
import { RocksRaftStore, StorageCorruptionError } from '../../src/storage/rocksdb-raft-storage.ts';
import { dereg, health, hex, inst, NOOP, reg } from '../support/registry-fixtures.ts';

type RawDb = InstanceType<typeof rocksdb.RocksLevel>;

/** Raw access to the database behind a closed store. */
async function withRaw(path: string, f: (db: RawDb) => Promise<void>): Promise<void> {
  const db = new rocksdb.RocksLevel(path, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    await f(db);
  } finally {
    await db.close();
  }
}

async function rawEntries(path: string, prefix: string): Promise<[string, Buffer][]> {
  const out: [string, Buffer][] = [];
  await withRaw(path, async (db) => {
    const it = db.iterator({ gte: prefix, lt: `${prefix}\xff` });
    for (let rows = await it.nextv(1000); rows.length > 0; rows = await it.nextv(1000)) out.push(...rows);
    await it.close();
  });
  return out;
}

describe('RocksRegistryStore (the registry state in RocksDB)', function () {
  this.timeout(120_000);
  let dir: string;
  let path: string;
  let raft: RocksRaftStore | null = null;

  async function reopen(): Promise<RocksRaftStore> {
    await raft?.close();
    raft = await RocksRaftStore.open(path);
    return raft;
  }

  async function close(): Promise<void> {
    await raft?.close();
    raft = null;
  }

  function open(scope = 'x', options: { cacheSize?: number; maxSessions?: number } = {}) {
    if (raft === null) throw new Error('test bug: database not open');
    const store = RocksRegistryStore.forScope(
      raft,
      scope,
      options.cacheSize === undefined ? {} : { cacheSize: options.cacheSize },
    );
    const sm = new RegistryStateMachine(
      options.maxSessions === undefined ? { store } : { store, maxSessions: options.maxSessions },
    );
    return { store, sm };
  }

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aqmesh-registry-'));
    path = join(dir, 'db');
    await reopen();
  });

  afterEach(async () => {
    await close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts empty, applies synchronously, and resumes after the committed applied index when reopened', async () => {
    let { store, sm } = open();
    expect(sm.appliedIndex).to.equal(0);
    expect(hex(sm.snapshot())).to.equal(hex(new RegistryStateMachine().snapshot()));
    expect(sm.apply(1, reg('eu/pay', inst('a', { ttlMs: 5_000 }), { client: 'c', seq: 1 }))).to.deep.equal({
      type: 'register',
      ok: true,
      modifyIndex: 1,
    });
    sm.apply(2, reg('eu/pay', inst('b')));
    expect(sm.resolve('eu/pay').instances.map((i) => i.id)).to.deep.equal(['a', 'b']);
    expect(store.dirty).to.equal(true);
    store.commit();
    expect(store.dirty).to.equal(false);
    store.commit(); // nothing to write
    const before = hex(sm.snapshot());

    await reopen();
    ({ store, sm } = open());
    expect(sm.appliedIndex).to.equal(2);
    expect(sm.stats()).to.deep.equal({ names: 1, instances: 2 });
    expect(hex(sm.snapshot())).to.equal(before);
    expect(sm.resolve('eu/pay').instances[0]).to.deep.equal(inst('a', { ttlMs: 5_000 }));
    expect(Object.isFrozen(sm.resolve('eu/pay').instances[0])).to.equal(true);
    // Exactly once across the restart: the session came back with the state.
    expect(sm.apply(3, reg('eu/pay', inst('a', { ttlMs: 5_000 }), { client: 'c', seq: 1 }))).to.deep.equal({
      type: 'duplicate',
      result: { type: 'register', ok: true, modifyIndex: 1 },
    });
  });

  it('keeps its keys under r/<scope>/ next to the Raft keys, one atomic batch per commit', async () => {
    const storage = (raft as RocksRaftStore).forScope('x');
    await storage.save({
      hardState: { term: 1, vote: 'n1', commit: 0 },
      entries: [{ index: 1, term: 1, kind: 'normal', data: new Uint8Array([1]) }],
      snapshot: null,
    });
    const { store, sm } = open();
    sm.apply(1, reg('eu/pay', inst('a'), { client: 'cli/1', seq: 1 }));
    sm.apply(2, reg('eu', inst('b')));
    store.commit();
    const other = open('y');
    other.sm.apply(1, reg('us', inst('c')));
    other.store.commit();
    await close();
    const keys = (await rawEntries(path, '')).map(([k]) => k);
    expect(keys).to.deep.equal([
      'r/x/meta',
      'r/x/n/eu',
      'r/x/n/eu/pay',
      'r/x/sess/cli/1',
      'r/y/meta',
      'r/y/n/us',
      's/x/e/0000000000000001',
      's/x/hs',
    ]);
    // Every value: version 1, its tag, and a CRC32 at the end.
    for (const [key, value] of await rawEntries(path, 'r/')) {
      expect(value[0], key).to.equal(1);
      expect(value[1], key).to.equal(key.endsWith('/meta') ? 2 : key.includes('/n/') ? 1 : 3);
    }
  });

  it('does not make uncommitted changes visible after reopening: the applied index is the committed one', async () => {
    let { store, sm } = open('x', { maxSessions: 2 });
    const log: { index: number; data: Uint8Array }[] = [
      { index: 1, data: reg('eu/pay', inst('a'), { client: 'c1', seq: 1 }) },
      { index: 2, data: reg('eu/pay', inst('b'), { client: 'c2', seq: 1 }) },
      { index: 3, data: health('eu/pay', 'a', 'critical') },
      { index: 4, data: dereg('eu/pay', 'b', { client: 'c3', seq: 1 }) },
      { index: 5, data: reg('us', inst('z'), { client: 'c1', seq: 2 }) },
      { index: 6, data: NOOP },
    ];
    const reference = new RegistryStateMachine({ maxSessions: 2 });
    const expected = log.map(({ index, data }) => reference.apply(index, data));
    for (const { index, data } of log.slice(0, 2)) sm.apply(index, data);
    store.commit();
    const committed = hex(sm.snapshot());
    for (const { index, data } of log.slice(2)) sm.apply(index, data);
    expect(hex(sm.snapshot())).to.equal(hex(reference.snapshot()));

    await reopen(); // a crash: the overlay is lost
    ({ store, sm } = open('x', { maxSessions: 2 }));
    expect(sm.appliedIndex).to.equal(2);
    expect(hex(sm.snapshot())).to.equal(committed);
    expect(sm.resolve('us').instances).to.deep.equal([]);
    expect(sm.resolve('eu/pay').instances.map((i) => i.health)).to.deep.equal(['passing', 'passing']);
    // The Raft log replays the rest; the results are the ones the first run gave.
    const replayed = log.slice(2).map(({ index, data }) => sm.apply(index, data));
    expect(replayed).to.deep.equal(expected.slice(2));
    expect(hex(sm.snapshot())).to.equal(hex(reference.snapshot()));
  });

  it('keeps the sessions LRU order across a restart (the same client is forgotten next)', async () => {
    let { store, sm } = open('x', { maxSessions: 3 });
    const reference = new RegistryStateMachine({ maxSessions: 3 });
    const both = (index: number, data: Uint8Array): void => {
      expect(sm.apply(index, data)).to.deep.equal(reference.apply(index, data));
    };
    both(1, reg('a', inst('1'), { client: 'c1', seq: 1 }));
    both(2, reg('a', inst('2'), { client: 'c2', seq: 1 }));
    both(3, reg('a', inst('3'), { client: 'c3', seq: 1 }));
    both(4, reg('a', inst('1'), { client: 'c1', seq: 1 })); // touches c1: c2 is now the oldest
    store.commit();
    await reopen();
    ({ store, sm } = open('x', { maxSessions: 3 }));
    expect([...store.sessions()].map(([c]) => c)).to.deep.equal(['c2', 'c3', 'c1']);
    both(5, reg('a', inst('4'), { client: 'c4', seq: 1 })); // forgets c2
    both(6, reg('a', inst('2'), { client: 'c2', seq: 1 })); // applied again: c2 was forgotten; forgets c3
    both(7, reg('a', inst('1'), { client: 'c1', seq: 1 })); // still a duplicate
    expect(hex(sm.snapshot())).to.equal(hex(reference.snapshot()));
    store.commit();
    await reopen();
    ({ sm } = open('x', { maxSessions: 2 })); // a smaller bound: the least recently used goes
    const smaller = RegistryStateMachine.restore(reference.snapshot(), { maxSessions: 2 });
    expect(hex(sm.snapshot())).to.equal(hex(smaller.snapshot()));
  });

  it('reports a corrupt record as a StorageCorruptionError naming its key', async () => {
    const { store, sm } = open();
    sm.apply(1, reg('eu/pay', inst('a'), { client: 'c', seq: 1 }));
    sm.apply(2, reg('eu/shop', inst('b')));
    store.commit();
    await close();
    const flip = async (key: string): Promise<void> => {
      await withRaw(path, async (db) => {
        const [value] = await db.getMany([key]);
        if (value === undefined) throw new Error(`no ${key}`);
        const copy = Buffer.from(value);
        copy[copy.length - 6] = (copy[copy.length - 6] ?? 0) ^ 0x40;
        await db.batch([{ type: 'put', key, value: copy }]);
      });
    };
    const failure = async (f: () => unknown): Promise<StorageCorruptionError> => {
      await reopen();
      try {
        f();
      } catch (error) {
        expect(error).to.be.instanceOf(StorageCorruptionError);
        return error as StorageCorruptionError;
      }
      return expect.fail('expected a StorageCorruptionError');
    };

    await flip('r/x/n/eu/pay');
    let error = await failure(() => open().sm.resolve('eu/pay'));
    expect(error.key).to.equal('r/x/n/eu/pay');
    expect(error.message).to.match(
      /^storage: scope x: corrupt value under key r\/x\/n\/eu\/pay: crc mismatch/,
    );
    // The other names are still readable; a scan over the bad one fails the same way.
    expect(open().sm.resolve('eu/shop').instances).to.have.length(1);
    expect(() => open().sm.list('eu', '', 10))
      .to.throw(StorageCorruptionError)
      .with.property('key', 'r/x/n/eu/pay');

    // A good value under the wrong key is caught too: the CRC covers the key.
    await close();
    await withRaw(path, async (db) => {
      const [value] = await db.getMany(['r/x/n/eu/shop']);
      await db.batch([{ type: 'put', key: 'r/x/n/eu/pay', value: value as Buffer }]);
    });
    error = await failure(() => open().sm.resolve('eu/pay'));
    expect(error.message).to.match(/key r\/x\/n\/eu\/pay: crc mismatch/);

    await close();
    await flip('r/x/sess/c');
    error = await failure(() => open());
    expect(error.key).to.equal('r/x/sess/c');

    await close();
    await withRaw(path, async (db) => {
      await db.batch([{ type: 'put', key: 'r/x/meta', value: Buffer.from([1, 2, 3]) }]);
    });
    error = await failure(() => open());
    expect(error.message).to.equal('storage: scope x: corrupt value under key r/x/meta: too short (3 bytes)');
  });

  it('restores a snapshot into the store in one batch: the old keys go, the scope next door stays', async () => {
    const { store, sm } = open();
    sm.apply(1, reg('old/a', inst('a'), { client: 'old', seq: 1 }));
    sm.apply(2, reg('old/b', inst('b')));
    store.commit();
    const neighbour = open('y');
    neighbour.sm.apply(1, reg('keep', inst('k')));
    neighbour.store.commit();
    sm.apply(3, reg('pending', inst('p'))); // uncommitted: dropped by the restore

    const source = new RegistryStateMachine();
    source.apply(1, reg('new/a', inst('n', { ttlMs: 2_000, meta: { k: 'v' }, tags: ['t'] })));
    source.apply(2, reg('new/b', inst('m'), { client: 'c', seq: 3 }));
    source.apply(3, health('new/a', 'n', 'critical', { client: 'leader', seq: 1 }));
    source.apply(9, dereg('new/b', 'm'));
    const bytes = source.snapshot();

    // A malformed snapshot changes nothing.
    const before = await (async () => {
      await close();
      const entries = await rawEntries(path, 'r/');
      await reopen();
      return entries;
    })();
    const s1 = open();
    expect(() =>
      RegistryStateMachine.restore(bytes.subarray(0, bytes.length - 2), { store: s1.store }),
    ).to.throw(SnapshotDecodeError);
    expect(s1.sm.appliedIndex).to.equal(2);
    await close();
    expect(await rawEntries(path, 'r/')).to.deep.equal(before);
    await reopen();

    const s2 = open();
    const restored = RegistryStateMachine.restore(bytes, { store: s2.store });
    expect(restored.store).to.equal(s2.store);
    expect(s2.store.dirty).to.equal(false); // written by the restore itself
    expect(hex(restored.snapshot())).to.equal(hex(bytes));
    expect(restored.resolve('old/a').instances).to.deep.equal([]);
    await close();
    expect((await rawEntries(path, 'r/x/')).map(([k]) => k)).to.deep.equal([
      'r/x/meta',
      'r/x/n/new/a',
      'r/x/sess/c',
      'r/x/sess/leader',
    ]);
    expect((await rawEntries(path, 'r/y/')).map(([k]) => k)).to.deep.equal(['r/y/meta', 'r/y/n/keep']);
    await reopen();
    const s3 = open();
    expect(hex(s3.sm.snapshot())).to.equal(hex(bytes));
    expect(s3.sm.apply(10, health('new/a', 'n', 'critical', { client: 'leader', seq: 1 }))).to.deep.equal({
      type: 'duplicate',
      result: { type: 'set-health', ok: true, changed: true, modifyIndex: 3 },
    });
    expect(open('y').sm.resolve('keep').instances).to.have.length(1);
  });

  it('lists committed and uncommitted names together, at label boundaries, in pages', async () => {
    const { store, sm } = open('x', { cacheSize: 1 });
    const memory = new RegistryStateMachine();
    const names = ['a', 'a/b', 'a/b-x', 'a/b/c', 'a/bc', 'a/b/c/d', 'b', 'a/b/e'];
    let index = 0;
    const both = (data: Uint8Array): void => {
      index++;
      expect(sm.apply(index, data)).to.deep.equal(memory.apply(index, data));
    };
    for (const name of names.slice(0, 5)) both(reg(name, inst('i')));
    store.commit();
    both(dereg('a/b/c', 'i')); // a committed name deleted in the overlay
    for (const name of names.slice(5)) both(reg(name, inst('i'))); // new names in the overlay
    both(reg('a/b', inst('j'))); // a committed name changed in the overlay
    const check = (): void => {
      for (const prefix of ['', 'a', 'a/b', 'a/b/c', 'b', 'c']) {
        for (const limit of [1, 2, 100]) {
          let after = '';
          for (let pages = 0; pages < 20; pages++) {
            const page = sm.list(prefix, after, limit);
            expect(page, `${prefix} after ${after} limit ${limit}`).to.deep.equal(
              memory.list(prefix, after, limit),
            );
            if (page.length < limit) break;
            after = page.at(-1)?.name ?? '';
          }
        }
      }
    };
    check();
    expect(sm.list('a/b', '', 100).map((a) => a.name)).to.deep.equal(['a/b', 'a/b/c/d', 'a/b/e']);
    store.commit();
    check();
    expect(hex(sm.snapshot())).to.equal(hex(memory.snapshot()));
  });

  it('pages through more names and sessions than one range read returns (1,000 rows)', async () => {
    let { store, sm } = open('x', { cacheSize: 10 });
    const memory = new RegistryStateMachine();
    let index = 0;
    const both = (data: Uint8Array): void => {
      index++;
      expect(sm.apply(index, data)).to.deep.equal(memory.apply(index, data));
    };
    for (let i = 0; i < 2_500; i++) {
      const name = `n${String(i % 50).padStart(2, '0')}/s${String(i).padStart(4, '0')}`;
      both(reg(name, inst('i'), i < 1_500 ? { client: `c${i}`, seq: 1 } : undefined));
    }
    store.commit();
    await reopen();
    ({ store, sm } = open('x', { cacheSize: 10 }));
    expect(store.sessionCount).to.equal(1_500);
    expect(hex(sm.snapshot())).to.equal(hex(memory.snapshot()));
    // Uncommitted deletions and additions spread over the range, then scans with small and large limits.
    for (let i = 0; i < 2_500; i += 7) {
      const name = `n${String(i % 50).padStart(2, '0')}/s${String(i).padStart(4, '0')}`;
      both(dereg(name, 'i'));
    }
    for (let i = 0; i < 30; i++) both(reg(`n07/t${i}`, inst('j')));
    expect(hex(sm.snapshot())).to.equal(hex(memory.snapshot()));
    for (const [prefix, after, limit] of [
      ['', '', 1_500],
      ['', 'n10', 2_000],
      ['n07', '', 20],
      ['n07', 'n07/s1000', 100],
    ] as const) {
      expect(sm.list(prefix, after, limit)).to.deep.equal(memory.list(prefix, after, limit));
    }
    // restore() deletes more keys than one read returns.
    const small = new RegistryStateMachine();
    small.apply(1, reg('only', inst('o')));
    const restored = RegistryStateMachine.restore(small.snapshot(), { store });
    expect(hex(restored.snapshot())).to.equal(hex(small.snapshot()));
    await close();
    expect((await rawEntries(path, 'r/x/')).map(([k]) => k)).to.deep.equal(['r/x/meta', 'r/x/n/only']);
  });

  it('a synced commit with nothing new still writes (its fsync covers the unsynced commits before it)', async () => {
    const db = (raft as RocksRaftStore).database as unknown as { getProperty(p: string): string };
    const entries = () => Number(db.getProperty('rocksdb.num-entries-active-mem-table'));
    const store = RocksRegistryStore.forScope(raft as RocksRaftStore, 'synced');
    const sm = new RegistryStateMachine({ store });
    sm.apply(1, reg('a', inst('i')));
    store.commit(); // unsynced
    const before = entries();
    store.commit(); // clean, unsynced: nothing to do
    expect(entries()).to.equal(before);
    store.commit({ sync: true }); // clean, synced: one synced write of the meta
    expect(entries()).to.equal(before + 1);
    expect(new RegistryStateMachine({ store }).resolve('a').instances).to.have.length(1);
  });

  it('bounds the decoded-record cache by estimated heap bytes as well as by count', async () => {
    const store = RocksRegistryStore.forScope(raft as RocksRaftStore, 'bytes', { cacheBytes: 20_000 });
    const sm = new RegistryStateMachine({ store });
    const many = Array.from({ length: 10 }, (_, i) =>
      inst(`i${i}`, { tags: ['a', 'b'], meta: { k: 'v'.repeat(50) } }),
    );
    let index = 0;
    for (let n = 0; n < 100; n++) for (const i of many) sm.apply(++index, reg(`svc-${n}`, i));
    store.commit();
    const stats = store.cacheStats;
    expect(stats.bytes).to.be.at.most(20_000);
    expect(stats.names).to.be.within(1, 99);
    for (let n = 0; n < 100; n++) expect(sm.resolve(`svc-${n}`).instances).to.have.length(10);
    expect(store.cacheStats.bytes).to.be.at.most(20_000);
    expect(store.cacheStats.names).to.equal(stats.names); // the most recent ones, as many as fit
  });

  it('refuses a bad scope id or cache size, and refuses to work on a closed database', async () => {
    expect(() => open('a/b')).to.throw(RangeError, /may not be empty or contain/);
    expect(() => open('')).to.throw(RangeError);
    expect(() => open('z', { cacheSize: -1 })).to.throw(RangeError, /cacheSize -1/);
    const { store, sm } = open();
    expect(RocksRegistryStore.forScope(raft as RocksRaftStore, 'x')).to.equal(store);
    sm.apply(1, reg('a', inst('i')));
    await close();
    expect(() => store.commit()).to.throw(Error, /registry store: scope x: the database is closed/);
    expect(() => sm.resolve('b')).to.throw(Error, /the database is closed/);
  });

  describe('agrees with the memory store (fast-check)', () => {
    const names = ['eu', 'eu/pay', 'eu/pay/x', 'eu/pays', 'eu-x', 'us', 'eu/Bad'];
    const idArb = fc.constantFrom('i1', 'i2', 'i3');
    const healthArb = fc.constantFrom('passing', 'warning', 'critical' as const);
    const instanceArb = fc.record({
      id: idArb,
      address: fc.constantFrom('10.0.0.1', 'fd00::2', 'bad address'),
      port: fc.constantFrom(80, 8080),
      tags: fc.constantFrom([], ['a'], ['a', 'b']),
      meta: fc.constantFrom({}, { k: 'v' }),
      health: healthArb,
      ttlMs: fc.constantFrom(0, 0, 5_000, 10),
    });
    const sessionArb = fc.option(
      fc.record({ client: fc.constantFrom('c1', 'c2', 'c3', 'c4', ''), seq: fc.nat(5) }),
      {
        freq: 2,
      },
    );
    const commandArb = fc.oneof(
      {
        weight: 4,
        arbitrary: fc
          .tuple(fc.constantFrom(...names), instanceArb, sessionArb)
          .map(([n, i, s]) => (s ? reg(n, i, s) : reg(n, i))),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(fc.constantFrom(...names), idArb, sessionArb)
          .map(([n, id, s]) => (s ? dereg(n, id, s) : dereg(n, id))),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(fc.constantFrom(...names), idArb, healthArb, sessionArb)
          .map(([n, id, h, s]) => (s ? health(n, id, h, s) : health(n, id, h))),
      },
      { weight: 1, arbitrary: fc.constant(NOOP) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 6 }) },
    );
    type Step =
      | { kind: 'data'; data: Uint8Array }
      | { kind: 'replay'; pick: number }
      | { kind: 'commit' }
      | { kind: 'reopen' }
      | { kind: 'crash' };
    const stepArb: fc.Arbitrary<Step> = fc.oneof(
      { weight: 12, arbitrary: commandArb.map((data): Step => ({ kind: 'data', data })) },
      { weight: 3, arbitrary: fc.nat().map((pick): Step => ({ kind: 'replay', pick })) },
      { weight: 2, arbitrary: fc.constant<Step>({ kind: 'commit' }) },
      { weight: 1, arbitrary: fc.constant<Step>({ kind: 'reopen' }) },
      { weight: 1, arbitrary: fc.constant<Step>({ kind: 'crash' }) },
    );

    let run = 0;

    it('gives equal results, changes, resolve/list answers and byte-identical snapshots, across reopens and crashes', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(stepArb, { maxLength: 60 }),
          fc.constantFrom(0, 1, 3, 10_000),
          fc.constantFrom(2, 3, 100),
          async (steps, cacheSize, maxSessions) => {
            const scope = `p${run++}`;
            const memoryChanges: RegistryChange[] = [];
            const memory = new RegistryStateMachine({ maxSessions, onChange: (c) => memoryChanges.push(c) });
            let rocksChanges: RegistryChange[] = [];
            const build = () => {
              const store = RocksRegistryStore.forScope(raft as RocksRaftStore, scope, { cacheSize });
              return {
                store,
                sm: new RegistryStateMachine({ store, maxSessions, onChange: (c) => rocksChanges.push(c) }),
              };
            };
            let { store, sm } = build();
            const log: { index: number; data: Uint8Array; result: ApplyResult }[] = [];
            let index = 0;
            const compare = (): void => {
              expect(sm.appliedIndex).to.equal(memory.appliedIndex);
              expect(sm.stats()).to.deep.equal(memory.stats());
              for (const name of names) expect(sm.resolve(name)).to.deep.equal(memory.resolve(name));
              for (const [prefix, after, limit] of [
                ['', '', 100],
                ['eu', '', 2],
                ['eu/pay', '', 100],
                ['eu', 'eu/pay', 1],
                ['', 'eu-x', 3],
              ] as const) {
                expect(sm.list(prefix, after, limit)).to.deep.equal(memory.list(prefix, after, limit));
              }
              expect(hex(sm.snapshot())).to.equal(hex(memory.snapshot()));
            };
            for (const step of steps) {
              if (step.kind === 'commit') {
                store.commit();
              } else if (step.kind === 'reopen' || step.kind === 'crash') {
                if (step.kind === 'reopen') store.commit();
                await reopen();
                ({ store, sm } = build());
                // After a crash, the Raft log replays what the store had not committed.
                rocksChanges = [];
                const replay = log.filter((e) => e.index > sm.appliedIndex);
                for (const e of replay) expect(sm.apply(e.index, e.data)).to.deep.equal(e.result);
                if (step.kind === 'reopen') expect(replay).to.deep.equal([]);
                rocksChanges = [];
                memoryChanges.length = 0;
              } else {
                index += 1 + (step.kind === 'data' ? step.data.length % 2 : 0);
                const data =
                  step.kind === 'data'
                    ? step.data
                    : log.length === 0
                      ? NOOP
                      : log[step.pick % log.length]!.data;
                memoryChanges.length = 0;
                rocksChanges = [];
                const result = memory.apply(index, data);
                expect(sm.apply(index, data)).to.deep.equal(result);
                expect(rocksChanges).to.deep.equal(memoryChanges);
                log.push({ index, data, result });
              }
              compare();
            }
            // restore() into a RocksDB store, then snapshot(), round-trips; so does reopening it.
            const bytes = memory.snapshot();
            const restored = RegistryStateMachine.restore(bytes, { store, maxSessions });
            expect(hex(restored.snapshot())).to.equal(hex(bytes));
            await reopen();
            expect(hex(build().sm.snapshot())).to.equal(hex(bytes));
          },
        ),
        { numRuns: 100 },
      );
    });
  });
});
