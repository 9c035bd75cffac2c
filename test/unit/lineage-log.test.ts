// LineageLog: the stored Merkle log must produce exactly the roots and RFC 6962 proofs of merkle.ts's
// reference functions (which compute from all leaves), for every size and historical size, in O(log n)
// stored reads, and resume from the same store.
import { expect } from 'chai';
import fc from 'fast-check';
import { type LineageKv, LineageLog, LineageStoreError, MemoryLineageKv } from '../../src/lineage/log.ts';
import {
  consistencyProof,
  hashLeaves,
  inclusionProof,
  rootHash,
  verifyConsistency,
  verifyInclusion,
} from '../../src/lineage/merkle.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const hexes = (bs: readonly Uint8Array[]): string[] => bs.map(hex);

/** Distinct entries (index in the last 4 bytes) so no two leaf hashes coincide. */
const entryOf = (i: number, salt = 0): Uint8Array => {
  const e = new Uint8Array(9 + (i % 7));
  e[0] = salt;
  new DataView(e.buffer).setUint32(e.length - 4, i);
  return e;
};

/** A kv that counts reads. */
class CountingKv implements LineageKv {
  readonly inner = new MemoryLineageKv();
  reads = 0;
  get(key: string): Uint8Array | undefined {
    this.reads++;
    return this.inner.get(key);
  }
  put(key: string, value: Uint8Array): void {
    this.inner.put(key, value);
  }
}

const build = (n: number, salt = 0) => {
  const kv = new CountingKv();
  const log = new LineageLog(kv);
  const entries: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const e = entryOf(i, salt);
    entries.push(e);
    expect(log.append(e)).to.equal(i);
  }
  return { kv, log, entries, hashes: hashLeaves(entries) };
};

describe('lineage/log: LineageLog over a synchronous kv', () => {
  const N = 300;
  const big = build(N);

  it('root(size) equals the reference MTH for every size 0..300 (historical roots included)', () => {
    for (let n = 0; n <= N; n++) {
      expect(hex(big.log.root(n)), `size ${n}`).to.equal(hex(rootHash(big.hashes.slice(0, n))));
    }
    expect(hex(big.log.root())).to.equal(hex(rootHash(big.hashes)));
  });

  it('every inclusion proof of every tree of size 1..100 equals the reference and verifies', () => {
    for (let n = 1; n <= 100; n++) {
      const hs = big.hashes.slice(0, n);
      const root = rootHash(hs);
      for (let i = 0; i < n; i++) {
        const p = big.log.inclusionProof(i, n);
        expect(hexes(p), `i=${i} n=${n}`).to.deep.equal(hexes(inclusionProof(hs, i)));
        expect(verifyInclusion(big.hashes[i]!, i, n, p, root)).to.equal(true);
      }
    }
  });

  it('every consistency proof between sizes 0..100 equals the reference and verifies', () => {
    for (let n = 0; n <= 100; n++) {
      const hs = big.hashes.slice(0, n);
      const newRoot = rootHash(hs);
      for (let m = 0; m <= n; m++) {
        const p = big.log.consistencyProof(m, n);
        expect(hexes(p), `m=${m} n=${n}`).to.deep.equal(hexes(consistencyProof(hs, m)));
        if (m > 0)
          expect(verifyConsistency(m, n, big.log.root(m), newRoot, p), `m=${m} n=${n}`).to.equal(true);
      }
    }
  });

  it('sizes 1..300: every proof verifies against the log roots; first, middle and last match the reference', () => {
    const roots = Array.from({ length: N + 1 }, (_, n) => big.log.root(n));
    for (let n = 1; n <= N; n++) {
      const hs = big.hashes.slice(0, n);
      const root = roots[n]!;
      for (let i = 0; i < n; i++) {
        const ok = verifyInclusion(big.hashes[i]!, i, n, big.log.inclusionProof(i, n), root);
        if (!ok) expect.fail(`inclusion i=${i} n=${n}`);
      }
      for (let m = 1; m <= n; m++) {
        const ok = verifyConsistency(m, n, roots[m]!, root, big.log.consistencyProof(m, n));
        if (!ok) expect.fail(`consistency m=${m} n=${n}`);
      }
      for (const i of new Set([0, n >> 1, n - 1])) {
        expect(hexes(big.log.inclusionProof(i, n))).to.deep.equal(hexes(inclusionProof(hs, i)));
        expect(hexes(big.log.consistencyProof(i, n))).to.deep.equal(hexes(consistencyProof(hs, i)));
      }
    }
  });

  it('random larger logs: roots and proofs at random (index, old size, size) equal the reference', () => {
    const large = build(4099, 1);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4099 }), fc.nat(), fc.nat(), (n, a, b) => {
        const hs = large.hashes.slice(0, n);
        const root = rootHash(hs);
        const i = a % n;
        const m = b % (n + 1);
        expect(hex(large.log.root(n))).to.equal(hex(root));
        const ip = large.log.inclusionProof(i, n);
        expect(hexes(ip)).to.deep.equal(hexes(inclusionProof(hs, i)));
        expect(verifyInclusion(hs[i]!, i, n, ip, root)).to.equal(true);
        const cp = large.log.consistencyProof(m, n);
        expect(hexes(cp)).to.deep.equal(hexes(consistencyProof(hs, m)));
        if (m > 0) expect(verifyConsistency(m, n, rootHash(hs.slice(0, m)), root, cp)).to.equal(true);
      }),
      { numRuns: 60 },
    );
  });

  it('property: any entry list (empty, equal or long entries) gives the reference root and proofs at every size', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 300 }),
        fc.nat(),
        (entries, seed) => {
          const log = new LineageLog(new MemoryLineageKv());
          for (const e of entries) log.append(e);
          const hs = hashLeaves(entries);
          for (let n = 0; n <= entries.length; n++) {
            const sub = hs.slice(0, n);
            if (hex(log.root(n)) !== hex(rootHash(sub))) expect.fail(`root ${n}`);
            if (n === 0) continue;
            const i = (seed + n) % n;
            const m = (seed * 7 + n) % (n + 1);
            expect(hexes(log.inclusionProof(i, n))).to.deep.equal(hexes(inclusionProof(sub, i)));
            expect(hexes(log.consistencyProof(m, n))).to.deep.equal(hexes(consistencyProof(sub, m)));
          }
        },
      ),
      { numRuns: 15 },
    );
  });

  it('root, inclusion and consistency take O(log n) stored reads; append reads nothing', () => {
    const n = 70_001;
    const { kv, log } = build(n, 2);
    expect(kv.reads).to.equal(1); // the constructor reads the size of the empty store; appends read nothing
    const logN = Math.ceil(Math.log2(n));
    let worst = { root: 0, inclusion: 0, consistency: 0 };
    fc.assert(
      fc.property(fc.integer({ min: 1, max: n }), fc.nat(), fc.nat(), (size, a, b) => {
        const measure = (f: () => unknown): number => {
          const before = kv.reads;
          f();
          return kv.reads - before;
        };
        const r = measure(() => log.root(size));
        const ip = measure(() => log.inclusionProof(a % size, size));
        const cp = measure(() => log.consistencyProof(b % (size + 1), size));
        worst = {
          root: Math.max(worst.root, r),
          inclusion: Math.max(worst.inclusion, ip),
          consistency: Math.max(worst.consistency, cp),
        };
      }),
      { numRuns: 300 },
    );
    expect(worst.root).to.be.at.most(logN);
    expect(worst.inclusion).to.be.at.most(2 * logN);
    expect(worst.consistency).to.be.at.most(3 * logN);
    // the current root comes from the cached frontier
    const before = kv.reads;
    log.root();
    expect(kv.reads).to.equal(before);
  });

  it('entry and leafHash return copies of what was appended', () => {
    const e = big.log.entry(17);
    expect(hex(e)).to.equal(hex(big.entries[17]!));
    e.fill(0);
    expect(hex(big.log.entry(17))).to.equal(hex(big.entries[17]!));
    expect(hex(big.log.leafHash(17))).to.equal(hex(big.hashes[17]!));
    const root = big.log.root(5);
    root.fill(0);
    expect(hex(big.log.root(5))).to.equal(hex(rootHash(big.hashes.slice(0, 5))));
  });

  it('append copies the entry bytes (a caller reusing its buffer does not change the log)', () => {
    const log = new LineageLog(new MemoryLineageKv());
    const buf = Uint8Array.of(1, 2, 3);
    log.append(buf);
    buf[0] = 9;
    expect([...log.entry(0)]).to.deep.equal([1, 2, 3]);
  });

  it('stores exactly the documented keys: s, e/<i>, n/<level>/<i> in base 36', () => {
    const kv = new MemoryLineageKv();
    const log = new LineageLog(kv);
    for (let i = 0; i < 37; i++) log.append(entryOf(i));
    const keys = [...kv.map.keys()].sort();
    const want = ['s'];
    for (let i = 0; i < 37; i++) want.push(`e/${i.toString(36)}`);
    for (let level = 0; 2 ** level <= 37; level++) {
      for (let j = 0; (j + 1) * 2 ** level <= 37; j++) want.push(`n/${level.toString(36)}/${j.toString(36)}`);
    }
    expect(keys).to.deep.equal(want.sort());
    expect([...kv.map.get('s')!]).to.deep.equal([37]);
    expect(kv.map.has('n/0/10')).to.equal(true); // leaf 36
    expect(kv.map.has('n/5/0')).to.equal(true); // leaves 0..31
  });

  it('a log reopened on the same kv resumes: same size, roots, proofs, and further appends', () => {
    for (let n = 0; n <= 70; n++) {
      const kv = new MemoryLineageKv();
      const a = new LineageLog(kv);
      for (let i = 0; i < n; i++) a.append(entryOf(i));
      const b = new LineageLog(kv);
      expect(b.size).to.equal(n);
      expect(hex(b.root())).to.equal(hex(a.root()));
      for (let i = n; i < n + 5; i++) b.append(entryOf(i));
      const ref = build(n + 5).hashes;
      expect(hex(b.root()), `n=${n}`).to.equal(hex(rootHash(ref)));
      expect(hex(new LineageLog(kv).root())).to.equal(hex(rootHash(ref)));
      if (n > 0) expect(hexes(b.inclusionProof(n - 1))).to.deep.equal(hexes(inclusionProof(ref, n - 1)));
    }
  });

  it('a store that lost a node or holds a corrupt size fails with LineageStoreError', () => {
    const kv = new MemoryLineageKv();
    const log = new LineageLog(kv);
    for (let i = 0; i < 8; i++) log.append(entryOf(i));
    kv.map.delete('n/2/0');
    expect(() => log.root(5)).to.throw(LineageStoreError, /n\/2\/0 is missing/);
    kv.map.delete('n/3/0'); // the frontier of size 8, read on open
    expect(() => new LineageLog(kv)).to.throw(LineageStoreError, /n\/3\/0 is missing/);
    kv.map.delete('e/3');
    expect(() => log.entry(3)).to.throw(LineageStoreError, /entry 3/);
    const bad = new MemoryLineageKv();
    bad.put('s', Uint8Array.of(0x80, 0x00));
    expect(() => new LineageLog(bad)).to.throw(LineageStoreError, /not minimally encoded/);
  });

  it('throws RangeError for out-of-range arguments', () => {
    const { log } = build(10);
    for (const bad of [-1, 10, 1.5, Number.NaN, 2 ** 53]) {
      expect(() => log.entry(bad), `entry ${bad}`).to.throw(RangeError);
      expect(() => log.leafHash(bad), `leafHash ${bad}`).to.throw(RangeError);
    }
    for (const bad of [-1, 11, 0.5, Number.POSITIVE_INFINITY]) {
      expect(() => log.root(bad), `root ${bad}`).to.throw(RangeError);
      expect(() => log.inclusionProof(0, bad), `inclusion size ${bad}`).to.throw(RangeError);
      expect(() => log.consistencyProof(0, bad), `consistency size ${bad}`).to.throw(RangeError);
    }
    expect(() => log.inclusionProof(5, 5)).to.throw(RangeError, /index 5/);
    expect(() => log.inclusionProof(0, 0)).to.throw(RangeError);
    expect(() => log.consistencyProof(4, 3)).to.throw(RangeError, /oldSize 4/);
    expect(() => log.consistencyProof(-1, 3)).to.throw(RangeError);
    expect(log.consistencyProof(0, 10)).to.deep.equal([]);
    expect(log.consistencyProof(10, 10)).to.deep.equal([]);
    expect(log.consistencyProof(0, 0)).to.deep.equal([]);
    expect(hex(log.root(0))).to.equal(hex(rootHash([])));
    const empty = new LineageLog(new MemoryLineageKv());
    expect(() => empty.entry(0)).to.throw(RangeError);
    expect(() => empty.inclusionProof(0)).to.throw(RangeError);
    expect(hex(empty.root())).to.equal(hex(rootHash([])));
  });
});
