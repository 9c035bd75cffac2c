import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Snapshot } from '../../src/consensus/index.ts';
import { RegistryStateMachine } from '../../src/registry/index.ts';
import {
  DumpFileError,
  fileSnapshotData,
  localSnapshotData,
  parseSnapshotData,
  RocksRegistryHost,
  readDumpFile,
  SnapshotDirectory,
  writeDumpFile,
} from '../../src/storage/registry-snapshots.ts';
import { RocksRegistryStore } from '../../src/storage/rocks-registry-store.ts';
import { RocksRaftStore, StorageCorruptionError } from '../../src/storage/rocksdb-raft-storage.ts';
import { dereg, inst, reg } from '../support/registry-fixtures.ts';

const snapshotAt = (index: number, data: Uint8Array): Snapshot => ({
  meta: { index, term: 1, conf: { voters: ['a'], learners: [] } },
  data,
});

async function collect(path: string, scope: string): Promise<[string, Buffer][]> {
  const rows: [string, Buffer][] = [];
  for await (const [k, v] of readDumpFile(path, scope)) rows.push([k, v]);
  return rows;
}

describe('registry snapshots (dump files, markers, install)', function () {
  this.timeout(60_000);
  let dir: string;
  const dbs: RocksRaftStore[] = [];

  async function db(name: string): Promise<RocksRaftStore> {
    const d = await RocksRaftStore.open(join(dir, name));
    dbs.push(d);
    return d;
  }

  /** A store of scope `s` with `names` names of 3 instances each, one deregistered, committed. */
  function fill(store: RocksRegistryStore, names: number): RegistryStateMachine {
    const sm = new RegistryStateMachine({ store });
    let index = sm.appliedIndex;
    for (let n = 0; n < names; n++) {
      for (let i = 0; i < 3; i++) {
        sm.apply(
          ++index,
          reg(`svc-${n}`, inst(`i${i}`, { port: 1000 + i }), { client: `c${n % 7}`, seq: index }),
        );
      }
    }
    sm.apply(++index, dereg('svc-0', 'i1'));
    store.commit();
    return sm;
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'aq-snap-'));
  });
  afterEach(async () => {
    for (const d of dbs.splice(0)) await d.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('markers round-trip, and anything else is not a marker', () => {
    expect(parseSnapshotData(localSnapshotData())).to.deep.equal({ kind: 'local' });
    expect(parseSnapshotData(fileSnapshotData('s.in.1-1.aqsd'))).to.deep.equal({
      kind: 'file',
      file: 's.in.1-1.aqsd',
    });
    expect(parseSnapshotData(fileSnapshotData('../etc/passwd'))).to.equal(null);
    expect(parseSnapshotData(new Uint8Array([65, 81, 82, 83, 2]))).to.equal(null); // a serialized state
  });

  it('a dump installed into another database gives the same state, sessions included', async () => {
    const source = RocksRegistryStore.forScope(await db('a'), 's');
    const sm = fill(source, 2_500); // several pages and install batches
    const path = join(dir, 'dump.aqsd');
    const { rows, scalars } = await writeDumpFile(source, path);
    expect(scalars.appliedIndex).to.equal(sm.appliedIndex);
    expect(rows).to.equal(1 + 2_500 + 7); // meta, names, sessions

    const target = RocksRegistryStore.forScope(await db('b'), 's');
    fill(target, 3); // something to replace
    const installed = await target.install(readDumpFile(path, 's'), 'dump.aqsd');
    expect(installed).to.deep.equal(scalars);
    const copy = new RegistryStateMachine({ store: target });
    expect(copy.appliedIndex).to.equal(sm.appliedIndex);
    expect(copy.resolve('svc-0').instances.map((i) => i.id)).to.deep.equal(['i0', 'i2']);
    expect(copy.resolve('svc-2499').instances).to.have.length(3);
    expect(Buffer.from(copy.snapshot()).equals(Buffer.from(sm.snapshot()))).to.equal(true);
    expect(target.pendingInstall()).to.equal(undefined);
  });

  it('the dump is of the committed state at one point: commits made while it runs are not in it', async () => {
    const source = RocksRegistryStore.forScope(await db('a'), 's');
    const sm = fill(source, 1_500);
    const at = sm.appliedIndex;
    const path = join(dir, 'dump.aqsd');
    let rows = 0;
    const dumped = source.dump(() => {
      if (++rows === 10) {
        sm.apply(at + 1, reg('svc-1499', inst('late')));
        sm.apply(at + 2, reg('zzz', inst('late')));
        source.commit();
      }
    });
    const scalars = await dumped;
    expect(scalars.appliedIndex).to.equal(at);
    await writeDumpFile(source, path); // a new dump sees the later state
    const names = (await collect(path, 's')).map(([k]) => k);
    expect(names).to.include('n/zzz');
  });

  it('refuses a dump file that is truncated, altered, of another scope or with extra bytes', async () => {
    const source = RocksRegistryStore.forScope(await db('a'), 's');
    fill(source, 200);
    const path = join(dir, 'dump.aqsd');
    await writeDumpFile(source, path);
    const good = readFileSync(path);
    const variants: [string, Buffer, RegExp][] = [
      ['truncated', good.subarray(0, good.length - 100), /truncated/],
      ['truncated trailer', good.subarray(0, good.length - 2), /truncated/],
      [
        'flipped byte',
        Buffer.from(good).fill(good[5000]! ^ 1, 5000, 5001),
        /checksum mismatch|crc|varint|unknown/,
      ],
      ['extra bytes', Buffer.concat([good, Buffer.from([0])]), /after the end/],
      ['bad magic', Buffer.concat([Buffer.from('XXXX'), good.subarray(4)]), /bad magic/],
    ];
    for (const [what, bytes, message] of variants) {
      writeFileSync(path, bytes);
      const error = await collect(path, 's').then(
        () => null,
        (e: Error) => e,
      );
      expect(error, what).to.be.instanceOf(DumpFileError);
      expect(error?.message, what).to.match(message);
    }
    writeFileSync(path, good);
    const other = await collect(path, 'other').then(
      () => null,
      (e: Error) => e,
    );
    expect(other?.message).to.match(/holds scope s, not other/);
  });

  it('an install a crash interrupted is finished when the host opens (the redo marker)', async () => {
    const files = new SnapshotDirectory(join(dir, 'snapshots'));
    await files.init();
    const source = RocksRegistryStore.forScope(await db('a'), 's');
    const sm = fill(source, 300);
    const file = files.fileName('s', 'in');
    await writeDumpFile(source, files.path(file));

    const targetDb = await db('b');
    const target = RocksRegistryStore.forScope(targetDb, 's');
    fill(target, 5);
    // Crash mid-install: the rows stop after 50 with an error (the process "dies").
    async function* broken() {
      let n = 0;
      for await (const row of readDumpFile(files.path(file), 's')) {
        if (++n > 50) throw new Error('power cut');
        yield row;
      }
    }
    const crash = await target.install(broken(), file).then(
      () => null,
      (e: Error) => e,
    );
    expect(crash?.message).to.equal('power cut');
    expect(target.pendingInstall()).to.equal(file);

    const host = await RocksRegistryHost.open(target, () => {}, files);
    expect(target.pendingInstall()).to.equal(undefined);
    expect(host.machine.appliedIndex).to.equal(sm.appliedIndex);
    await host.restore(snapshotAt(sm.appliedIndex, fileSnapshotData(file))); // already there: nothing to do
  });

  it('restore installs a received file, then removes it; a local marker ahead of the store is an error', async () => {
    const files = new SnapshotDirectory(join(dir, 'snapshots'));
    await files.init();
    const source = RocksRegistryStore.forScope(await db('a'), 's');
    const sm = fill(source, 100);
    const leader = await RocksRegistryHost.open(source, () => {}, files);
    const sent = await leader.outgoing(sm.appliedIndex);
    const again = await leader.outgoing(sm.appliedIndex - 10);
    expect(again.path).to.equal(sent.path); // one dump serves every follower while it is recent enough

    const received = files.fileName('s', 'in');
    writeFileSync(files.path(received), readFileSync(sent.path));
    sent.release();
    again.release();
    const follower = await RocksRegistryHost.open(
      RocksRegistryStore.forScope(await db('b'), 's'),
      () => {},
      files,
    );
    await follower.restore(snapshotAt(sm.appliedIndex - 5, fileSnapshotData(received)));
    expect(follower.machine.appliedIndex).to.equal(sm.appliedIndex); // later than the snapshot: allowed
    expect(follower.machine.resolve('svc-99').instances).to.have.length(3);
    expect(existsSync(files.path(received))).to.equal(false);

    const empty = await RocksRegistryHost.open(
      RocksRegistryStore.forScope(await db('c'), 's'),
      () => {},
      files,
    );
    const lost = await Promise.resolve(empty.restore(snapshotAt(10, localSnapshotData()))).then(
      () => null,
      (e: Error) => e,
    );
    expect(lost?.message).to.match(/behind the log's snapshot at 10/);
  });

  it('install refuses a row with a bad checksum and keeps its redo marker', async () => {
    const target = RocksRegistryStore.forScope(await db('b'), 's');
    async function* rows(): AsyncGenerator<readonly [string, Buffer]> {
      yield ['n/x', Buffer.from([1, 1, 0, 0, 0, 0, 0, 0])];
    }
    const error = await target.install(rows(), 'f').then(
      () => null,
      (e: Error) => e,
    );
    expect(error).to.be.instanceOf(StorageCorruptionError);
    expect(target.pendingInstall()).to.equal('f');
  });
});
