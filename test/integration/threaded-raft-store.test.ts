// The Raft storage on its worker thread answers exactly as RocksRaftStorage does on the main thread:
// saves, compaction and reloads round-trip through the thread, errors come back as errors, and a
// reopened store sees what was saved before close.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Entry } from '../../src/consensus/index.ts';
import { ThreadedRaftStore } from '../../src/storage/threaded-raft-store.ts';

const entry = (index: number, term = 1): Entry => ({
  term,
  index,
  kind: 'normal',
  data: new Uint8Array([index % 256, 7, 7]),
});

describe('ThreadedRaftStore (RocksDB on a worker thread)', function () {
  this.timeout(30_000);
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aq-threaded-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('saves, compacts and reloads per scope, across a close and reopen', async () => {
    const path = join(dir, 'raft');
    const store = await ThreadedRaftStore.open(path);
    const a = store.forScope('a');
    const b = store.forScope('b');
    await a.save({
      hardState: { term: 2, vote: 'n1', commit: 3 },
      entries: [1, 2, 3, 4].map((i) => entry(i)),
      snapshot: null,
    });
    await b.save({ hardState: { term: 1, vote: '', commit: 0 }, entries: [entry(1)], snapshot: null });
    // A replacing suffix, then an unsynced commit-only update.
    await a.save({ hardState: null, entries: [entry(3, 2), entry(4, 2), entry(5, 2)], snapshot: null });
    await a.save({ hardState: { term: 2, vote: 'n1', commit: 5 }, entries: [], snapshot: null, sync: false });
    await a.compact({
      meta: { index: 2, term: 1, conf: { voters: ['n1'], learners: [] } },
      data: new Uint8Array([9]),
    });
    await store.close();
    await store.close(); // idempotent

    const again = await ThreadedRaftStore.open(path);
    try {
      const loaded = await again.forScope('a').load();
      expect(loaded.hardState).to.deep.equal({ term: 2, vote: 'n1', commit: 5 });
      expect(loaded.snapshot?.meta.index).to.equal(2);
      expect([...(loaded.snapshot?.data ?? [])]).to.deep.equal([9]);
      expect(loaded.entries.map((e) => [e.index, e.term])).to.deep.equal([
        [3, 2],
        [4, 2],
        [5, 2],
      ]);
      expect([...(loaded.entries[0]?.data ?? [])]).to.deep.equal([3, 7, 7]);
      expect((await again.forScope('b').load()).entries).to.have.length(1);
    } finally {
      await again.close();
    }
  });

  it("returns the worker's errors as rejections and keeps serving", async () => {
    const store = await ThreadedRaftStore.open(join(dir, 'errors'));
    try {
      const s = store.forScope('x');
      await s.save({ hardState: null, entries: [entry(1)], snapshot: null });
      const error = await Promise.resolve(
        s.save({ hardState: null, entries: [entry(5)], snapshot: null }),
      ).then(
        () => null,
        (e: Error) => e,
      );
      expect(error?.message).to.match(/gap|contiguous|5/);
      await s.save({ hardState: null, entries: [entry(2)], snapshot: null });
      expect((await s.load()).entries.map((e) => e.index)).to.deep.equal([1, 2]);
    } finally {
      await store.close();
    }
  });

  it('fails to open a database another process holds, with the path in the message', async () => {
    const path = join(dir, 'locked');
    const first = await ThreadedRaftStore.open(path);
    try {
      const error = await ThreadedRaftStore.open(path).then(
        () => null,
        (e: Error) => e,
      );
      expect(error?.message).to.include(path);
      expect(error?.message.toLowerCase()).to.include('lock');
    } finally {
      await first.close();
    }
  });
});
