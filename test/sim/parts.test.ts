// Unit tests of the simulator's building blocks: the PRNG, the event queue, the simulated disk and network.

import { expect } from 'chai';
import { bootstrapState, type Entry, type Snapshot } from '../../src/consensus/index.ts';
import { SimDisk, StorageContractError } from './disk.ts';
import { EventQueue } from './events.ts';
import { SimNetwork } from './network.ts';
import { Rng } from './rng.ts';

const entry = (index: number, term: number, byte = index): Entry => ({
  index,
  term,
  kind: 'normal',
  data: new Uint8Array([byte]),
});

describe('simulator parts', () => {
  describe('Rng', () => {
    it('is a pure function of its seed', () => {
      const a = new Rng(42);
      const b = new Rng(42);
      const c = new Rng(43);
      const xs = Array.from({ length: 50 }, () => a.u32());
      expect(Array.from({ length: 50 }, () => b.u32())).to.deep.equal(xs);
      expect(Array.from({ length: 50 }, () => c.u32())).to.not.deep.equal(xs);
      expect(new Rng(2 ** 40 + 5).u32()).to.not.equal(new Rng(5).u32());
    });

    it('draws integers in range, roughly uniformly', () => {
      const r = new Rng(1);
      const counts = [0, 0, 0, 0, 0];
      for (let i = 0; i < 10_000; i++) counts[r.int(5)]!++;
      for (const n of counts) expect(n).to.be.within(1800, 2200);
      for (let i = 0; i < 1000; i++) expect(r.range(3, 6)).to.be.within(3, 6);
      expect(() => r.int(0)).to.throw(RangeError);
    });

    it('forks independent, reproducible streams', () => {
      const a = new Rng(9);
      const b = new Rng(9);
      expect(a.fork().u32()).to.equal(b.fork().u32());
      expect(a.fork().u32()).to.not.equal(a.fork().u32());
    });
  });

  describe('EventQueue', () => {
    it('runs events in time order, and same-time events in scheduling order', () => {
      const q = new EventQueue();
      const seen: string[] = [];
      q.at(5, () => seen.push('b'));
      q.at(1, () => seen.push('a'));
      q.at(5, () => seen.push('c'));
      q.at(9, () => seen.push('late'));
      q.runUntil(6);
      expect(seen).to.deep.equal(['a', 'b', 'c']);
      expect(q.now).to.equal(6);
      q.after(0, () => seen.push('now'));
      q.runUntil(100);
      expect(seen).to.deep.equal(['a', 'b', 'c', 'now', 'late']);
    });

    it('stops when asked', () => {
      const q = new EventQueue();
      let n = 0;
      for (let i = 0; i < 10; i++) q.at(i, () => n++);
      q.runUntil(100, () => n >= 3);
      expect(n).to.equal(3);
    });
  });

  describe('SimDisk', () => {
    it('makes a write durable only when it completes', () => {
      const d = SimDisk.from(bootstrapState(['h1', 'h2', 'h3']));
      const w = d.begin({
        hardState: { term: 2, vote: 'h1', commit: 3 },
        entries: [entry(4, 2)],
        snapshot: null,
      });
      expect(d.load().entries.length).to.equal(3);
      expect(d.complete(w)).to.equal(true);
      expect(d.load().entries.map((e) => e.index)).to.deep.equal([1, 2, 3, 4]);
      expect(d.load().hardState).to.deep.equal({ term: 2, vote: 'h1', commit: 3 });
    });

    it('loses writes in flight on a crash; a tear keeps a prefix of the entries and never the hard state', () => {
      const rng = new Rng(3);
      let torn = 0;
      for (let i = 0; i < 50; i++) {
        const d = SimDisk.from(bootstrapState(['h1']));
        const w = d.begin({
          hardState: { term: 2, vote: 'h1', commit: 1 },
          entries: [entry(2, 2), entry(3, 2), entry(4, 2)],
          snapshot: null,
        });
        const out = d.crash(rng, 1);
        expect(d.complete(w)).to.equal(false);
        const s = d.load();
        expect(s.hardState.term).to.equal(1);
        const idx = s.entries.map((e) => e.index);
        expect([[1], [1, 2], [1, 2, 3], [1, 2, 3, 4]]).to.deep.include(idx);
        if (out.torn) torn++;
      }
      expect(torn).to.be.greaterThan(10);
    });

    it('never erases durable entries when a torn rewrite starts with the same entries', () => {
      const d = SimDisk.from({
        hardState: { term: 2, vote: '', commit: 0 },
        snapshot: null,
        entries: [entry(1, 2), entry(2, 2)],
      });
      d.begin({ hardState: null, entries: [entry(1, 2), entry(2, 2), entry(3, 2)], snapshot: null });
      d.crash(new Rng(1), 1);
      expect(
        d
          .load()
          .entries.map((e) => e.index)
          .slice(0, 2),
      ).to.deep.equal([1, 2]);
    });

    it('replaces the log with a leader snapshot, compacts with a local one, and refuses gaps', () => {
      const d = SimDisk.from({
        hardState: { term: 1, vote: '', commit: 0 },
        snapshot: null,
        entries: [entry(1, 1), entry(2, 1), entry(3, 1)],
      });
      const conf = { voters: ['h1'], learners: [] };
      const local: Snapshot = { meta: { index: 2, term: 1, conf }, data: new Uint8Array() };
      d.compact(local);
      expect(d.load().entries.map((e) => e.index)).to.deep.equal([3]);
      const leader: Snapshot = { meta: { index: 10, term: 3, conf }, data: new Uint8Array() };
      d.save({ hardState: null, entries: [entry(11, 3)], snapshot: leader });
      expect(d.load().snapshot?.meta.index).to.equal(10);
      expect(d.load().entries.map((e) => e.index)).to.deep.equal([11]);
      expect(() => d.save({ hardState: null, entries: [entry(14, 3)], snapshot: null })).to.throw(
        StorageContractError,
      );
    });
  });

  describe('SimNetwork', () => {
    it('delivers with delay, drops across cuts, and heals', () => {
      const q = new EventQueue();
      const got: string[] = [];
      const net = new SimNetwork<string>(
        q,
        new Rng(5),
        {
          delayMin: 1,
          delayMax: 2,
          spikeProbability: 0,
          spikeFactor: 1,
          lossProbability: 0,
          dupProbability: 0,
        },
        (from, to, p) => got.push(`${from}>${to}:${p}`),
      );
      const cut = net.partition(['a'], ['b', 'c']);
      net.send('a', 'b', 'x');
      net.send('b', 'c', 'y');
      q.runUntil(10);
      expect(got).to.deep.equal(['b>c:y']);
      net.send('c', 'a', 'in-flight');
      net.heal(cut);
      net.send('a', 'b', 'z');
      const oneWay = net.cut([['b', 'a']]);
      net.send('b', 'a', 'w');
      q.runUntil(20);
      expect(got).to.deep.equal(['b>c:y', 'a>b:z']);
      net.heal(oneWay);
      expect(net.stats.cut).to.equal(3);
    });
  });
});
