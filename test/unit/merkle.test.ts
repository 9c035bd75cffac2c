import { createHash } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import {
  consistencyProof,
  HASH_LENGTH,
  hashLeaves,
  inclusionProof,
  leafHash,
  nodeHash,
  rootHash,
  verifyConsistency,
  verifyInclusion,
} from '../../src/lineage/merkle.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

// ---- independent reference, written from RFC 6962 §2.1 on entry lists (node:crypto SHA-256) ----

const sha = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const split = (n: number): number => 2 ** Math.ceil(Math.log2(n) - 1);
const naiveMTH = (d: readonly Uint8Array[]): Uint8Array => {
  const n = d.length;
  if (n === 0) return sha();
  if (n === 1) return sha(Uint8Array.of(0), d[0]!);
  const k = split(n);
  return sha(Uint8Array.of(1), naiveMTH(d.slice(0, k)), naiveMTH(d.slice(k)));
};
const naivePATH = (m: number, d: readonly Uint8Array[]): Uint8Array[] => {
  const n = d.length;
  if (n === 1) return [];
  const k = split(n);
  return m < k
    ? [...naivePATH(m, d.slice(0, k)), naiveMTH(d.slice(k))]
    : [...naivePATH(m - k, d.slice(k)), naiveMTH(d.slice(0, k))];
};
const naiveSUBPROOF = (m: number, d: readonly Uint8Array[], b: boolean): Uint8Array[] => {
  const n = d.length;
  if (m === n) return b ? [] : [naiveMTH(d)];
  const k = split(n);
  return m <= k
    ? [...naiveSUBPROOF(m, d.slice(0, k), b), naiveMTH(d.slice(k))]
    : [...naiveSUBPROOF(m - k, d.slice(k), false), naiveMTH(d.slice(0, k))];
};
const naivePROOF = (m: number, d: readonly Uint8Array[]): Uint8Array[] => naiveSUBPROOF(m, d, true);

/** Left/right position of leaf m along its path in a tree of size n (leaf to root), per §2.1.1. */
const dirs = (m: number, n: number): string => {
  if (n === 1) return '';
  const k = split(n);
  return m < k ? `${dirs(m, k)}L` : `${dirs(m - k, n - k)}R`;
};
/** Length of PROOF(m, D[n]) as defined in §2.1.2 (0 when m is 0 or n), without hashing. */
const proofLen = (m: number, n: number): number => {
  if (m === 0 || m === n) return 0;
  const sub = (m: number, n: number, b: boolean): number => {
    if (m === n) return b ? 0 : 1;
    const k = split(n);
    return m <= k ? sub(m, k, b) + 1 : sub(m - k, n - k, false) + 1;
  };
  return sub(m, n, true);
};

// ---- arbitraries ----

/** Distinct entries: random bytes followed by the 4-byte index, so no two leaf hashes coincide. */
const treeArb = (minLength: number, maxLength: number) =>
  fc.array(fc.uint8Array({ maxLength: 12 }), { minLength, maxLength, size: 'max' }).map((raw) =>
    raw.map((r, i) => {
      const e = new Uint8Array(r.length + 4);
      e.set(r);
      new DataView(e.buffer).setUint32(r.length, i);
      return e;
    }),
  );
const treeWithIndexArb = treeArb(1, 300).chain((d) =>
  fc.record({ d: fc.constant(d), i: fc.nat({ max: d.length - 1 }), pos: fc.nat(), byte: fc.nat() }),
);
const treeWithOldSizeArb = treeArb(1, 300).chain((d) =>
  fc.record({ d: fc.constant(d), m: fc.nat({ max: d.length }), pos: fc.nat(), byte: fc.nat() }),
);

const flip = (h: Uint8Array, at: number): Uint8Array => {
  const c = h.slice();
  c[at % c.length]! ^= 1 << (at % 8);
  return c;
};

describe('lineage/merkle (RFC 6962 / RFC 9162)', () => {
  describe('hashing', () => {
    it('empty tree root is SHA-256 of the empty string', () => {
      expect(hex(rootHash([]))).to.equal('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    });

    it('one empty leaf: root is SHA-256(0x00)', () => {
      const root = rootHash(hashLeaves([new Uint8Array(0)]));
      expect(hex(root)).to.equal('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    });

    it('leafHash and nodeHash are domain-separated SHA-256', () => {
      const e = bytes('deadbeef');
      expect(hex(leafHash(e))).to.equal(hex(sha(bytes('00deadbeef'))));
      const l = leafHash(bytes('01'));
      const r = leafHash(bytes('02'));
      expect(hex(nodeHash(l, r))).to.equal(hex(sha(Uint8Array.of(1), l, r)));
      expect(leafHash(e)).to.have.length(HASH_LENGTH);
    });

    it('rootHash matches the naive recursive MTH for every size 0..70 and random trees up to 300', () => {
      const d = Array.from({ length: 70 }, (_, i) => Uint8Array.of(i, i * 7));
      for (let n = 0; n <= d.length; n++) {
        expect(hex(rootHash(hashLeaves(d.slice(0, n)))), `n=${n}`).to.equal(hex(naiveMTH(d.slice(0, n))));
      }
      fc.assert(
        fc.property(treeArb(0, 300), (t) => hex(rootHash(hashLeaves(t))) === hex(naiveMTH(t))),
        { numRuns: 30 },
      );
    });

    it('rootHash does not let callers mutate the shared empty root', () => {
      rootHash([]).fill(0);
      expect(hex(rootHash([]))).to.equal('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    });
  });

  describe('inclusion', () => {
    it('every index of every tree of size 1..40 matches PATH and verifies', () => {
      const d = Array.from({ length: 40 }, (_, i) => Uint8Array.of(i));
      for (let n = 1; n <= d.length; n++) {
        const t = d.slice(0, n);
        const hs = hashLeaves(t);
        const root = rootHash(hs);
        for (let i = 0; i < n; i++) {
          const proof = inclusionProof(hs, i);
          expect(proof.map(hex), `n=${n} i=${i}`).to.deep.equal(naivePATH(i, t).map(hex));
          expect(verifyInclusion(hs[i]!, i, n, proof, root), `n=${n} i=${i}`).to.equal(true);
        }
      }
    });

    it('random trees: the proof verifies and any tampering fails', () => {
      fc.assert(
        fc.property(treeWithIndexArb, ({ d, i, pos, byte }) => {
          const n = d.length;
          const hs = hashLeaves(d);
          const root = rootHash(hs);
          const leaf = hs[i]!;
          const proof = inclusionProof(hs, i);
          expect(proof.map(hex)).to.deep.equal(naivePATH(i, d).map(hex));
          expect(verifyInclusion(leaf, i, n, proof, root)).to.equal(true);
          // leaf and root bytes
          expect(verifyInclusion(flip(leaf, byte), i, n, proof, root)).to.equal(false);
          expect(verifyInclusion(leafHash(flip(d[i]!, byte)), i, n, proof, root)).to.equal(false);
          expect(verifyInclusion(leaf, i, n, proof, flip(root, byte))).to.equal(false);
          // any byte of any proof element
          for (let j = 0; j < proof.length; j++) {
            const bad = proof.slice();
            bad[j] = flip(bad[j]!, byte + j);
            expect(verifyInclusion(leaf, i, n, bad, root), `element ${j}`).to.equal(false);
          }
          // dropping / adding an element
          for (let j = 0; j < proof.length; j++) {
            expect(verifyInclusion(leaf, i, n, proof.toSpliced(j, 1), root), `drop ${j}`).to.equal(false);
          }
          const extra = leafHash(Uint8Array.of(byte & 0xff));
          const at = pos % (proof.length + 1);
          expect(verifyInclusion(leaf, i, n, proof.toSpliced(at, 0, extra), root)).to.equal(false);
          expect(verifyInclusion(leaf, i, n, [...proof, proof.at(-1) ?? extra], root)).to.equal(false);
          // any other index in the same tree (leaves are distinct)
          for (let j = 0; j < n + 2; j++) {
            if (j !== i) expect(verifyInclusion(leaf, j, n, proof, root), `index ${j}`).to.equal(false);
          }
          // other tree sizes: RFC 9162 verification binds the size only through the path shape, so
          // a size verifies exactly when the leaf's left/right path is unchanged (e.g. 0 in 3 vs 4).
          for (let m = 0; m <= n + 40; m++) {
            if (m === n) continue;
            const expected = i < m && dirs(i, m) === dirs(i, n);
            expect(verifyInclusion(leaf, i, m, proof, root), `size ${m}`).to.equal(expected);
          }
        }),
        { numRuns: 60 },
      );
    });
  });

  describe('consistency', () => {
    it('every oldSize of every tree of size 1..40 matches PROOF and verifies', () => {
      const d = Array.from({ length: 40 }, (_, i) => Uint8Array.of(i, 1));
      const roots = Array.from({ length: d.length + 1 }, (_, n) => naiveMTH(d.slice(0, n)));
      for (let n = 1; n <= d.length; n++) {
        const hs = hashLeaves(d.slice(0, n));
        for (let m = 0; m <= n; m++) {
          const proof = consistencyProof(hs, m);
          const want = m === 0 || m === n ? [] : naivePROOF(m, d.slice(0, n));
          expect(proof.map(hex), `m=${m} n=${n}`).to.deep.equal(want.map(hex));
          expect(verifyConsistency(m, n, roots[m]!, roots[n]!, proof), `m=${m} n=${n}`).to.equal(true);
        }
      }
    });

    it('random trees: the proof verifies and any tampering fails', () => {
      fc.assert(
        fc.property(treeWithOldSizeArb, ({ d, m, pos, byte }) => {
          const n = d.length;
          const hs = hashLeaves(d);
          const oldRoot = rootHash(hs.slice(0, m));
          const newRoot = rootHash(hs);
          const proof = consistencyProof(hs, m);
          expect(proof).to.have.length(proofLen(m, n));
          expect(verifyConsistency(m, n, oldRoot, newRoot, proof)).to.equal(true);
          // roots: anything is consistent with the empty tree, so newRoot only matters for m > 0
          expect(verifyConsistency(m, n, flip(oldRoot, byte), newRoot, proof)).to.equal(false);
          if (m > 0) expect(verifyConsistency(m, n, oldRoot, flip(newRoot, byte), proof)).to.equal(false);
          // any byte of any proof element, dropping or adding one
          for (let j = 0; j < proof.length; j++) {
            const bad = proof.slice();
            bad[j] = flip(bad[j]!, byte + j);
            expect(verifyConsistency(m, n, oldRoot, newRoot, bad), `element ${j}`).to.equal(false);
            expect(verifyConsistency(m, n, oldRoot, newRoot, proof.toSpliced(j, 1)), `drop ${j}`).to.equal(
              false,
            );
          }
          const extra = leafHash(Uint8Array.of(byte & 0xff));
          const at = pos % (proof.length + 1);
          expect(verifyConsistency(m, n, oldRoot, newRoot, proof.toSpliced(at, 0, extra))).to.equal(false);
          // sizes: old > new always fails; otherwise a size pair whose PROOF has another length must fail
          // (the verifier consumes exactly that many elements). Same-length pairs may verify legitimately.
          const check = (m2: number, n2: number): void => {
            if (m2 === m && n2 === n) return;
            const ok = verifyConsistency(m2, n2, oldRoot, newRoot, proof);
            if (m2 > n2 || proofLen(m2, n2) !== proof.length) expect(ok, `sizes ${m2}/${n2}`).to.equal(false);
          };
          for (let m2 = 0; m2 <= n + 5; m2++) check(m2, n);
          for (let n2 = 0; n2 <= n + 40; n2++) check(m, n2);
          check(n, m);
          check(m + 1, n + 1);
        }),
        { numRuns: 60 },
      );
    });

    it('edge cases: equal sizes, empty old tree, old > new', () => {
      const hs = hashLeaves([bytes('01'), bytes('02'), bytes('03')]);
      const r2 = rootHash(hs.slice(0, 2));
      const r3 = rootHash(hs);
      const empty = rootHash([]);
      expect(verifyConsistency(3, 3, r3, r3, [])).to.equal(true);
      expect(verifyConsistency(3, 3, r3, r2, [])).to.equal(false);
      expect(verifyConsistency(3, 3, r3, r3, [r3])).to.equal(false);
      expect(verifyConsistency(0, 0, empty, empty, [])).to.equal(true);
      expect(verifyConsistency(0, 0, r3, r3, [])).to.equal(false);
      expect(verifyConsistency(0, 3, empty, r3, [])).to.equal(true);
      expect(verifyConsistency(0, 3, empty, r3, [r3])).to.equal(false);
      expect(verifyConsistency(0, 3, r2, r3, [])).to.equal(false);
      expect(verifyConsistency(3, 2, r3, r2, consistencyProof(hs, 2))).to.equal(false);
      expect(verifyConsistency(2, 3, r2, r3, [])).to.equal(false);
      expect(consistencyProof(hs, 0)).to.deep.equal([]);
      expect(consistencyProof(hs, 3)).to.deep.equal([]);
    });
  });

  describe('malformed input', () => {
    const hs = hashLeaves([bytes('01'), bytes('02'), bytes('03'), bytes('04'), bytes('05')]);
    const root = rootHash(hs);
    const proof = inclusionProof(hs, 2);
    const oldRoot = rootHash(hs.slice(0, 3));
    const cproof = consistencyProof(hs, 3);

    it('verification returns false instead of throwing', () => {
      const short = root.slice(0, 31);
      const long = new Uint8Array(33);
      const notSizes = [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60, '3' as unknown as number];
      expect(verifyInclusion(hs[2]!, 2, 5, proof, root)).to.equal(true);
      expect(verifyConsistency(3, 5, oldRoot, root, cproof)).to.equal(true);
      for (const x of [...notSizes, 5, 6]) {
        expect(verifyInclusion(hs[2]!, x, 5, proof, root), `index ${x}`).to.equal(false);
        expect(verifyConsistency(x, 5, oldRoot, root, cproof), `old ${x}`).to.equal(false);
      }
      for (const x of [...notSizes, 0, 2]) {
        expect(verifyInclusion(hs[2]!, 2, x, proof, root), `size ${x}`).to.equal(false);
        expect(verifyConsistency(3, x, oldRoot, root, cproof), `new ${x}`).to.equal(false);
      }
      for (const h of [short, long, new Uint8Array(0)]) {
        expect(verifyInclusion(h, 2, 5, proof, root)).to.equal(false);
        expect(verifyInclusion(hs[2]!, 2, 5, proof, h)).to.equal(false);
        expect(verifyInclusion(hs[2]!, 2, 5, [h, ...proof.slice(1)], root)).to.equal(false);
        expect(verifyConsistency(3, 5, h, root, cproof)).to.equal(false);
        expect(verifyConsistency(3, 5, oldRoot, h, cproof)).to.equal(false);
        expect(verifyConsistency(3, 5, oldRoot, root, [h, ...cproof.slice(1)])).to.equal(false);
        expect(verifyConsistency(5, 5, h, h, [])).to.equal(false);
      }
      expect(verifyInclusion(hs[2]!, 2, 0, [], root)).to.equal(false);
      expect(verifyInclusion(hs[2]!, 2, 5, [], root)).to.equal(false);
      const junk = [null, undefined, 'x', 3, {}, [1, 2]] as unknown[];
      for (const j of junk) {
        const u = j as Uint8Array;
        expect(verifyInclusion(u, 2, 5, proof, root)).to.equal(false);
        expect(verifyInclusion(hs[2]!, 2, 5, [u, ...proof.slice(1)], root)).to.equal(false);
        expect(verifyInclusion(hs[2]!, 2, 5, j as Uint8Array[], root)).to.equal(false);
        expect(verifyConsistency(3, 5, u, root, cproof)).to.equal(false);
        expect(verifyConsistency(3, 5, oldRoot, root, j as Uint8Array[])).to.equal(false);
        expect(verifyConsistency(3, 5, oldRoot, root, [...cproof, u])).to.equal(false);
      }
    });

    it('verification never throws on arbitrary values', () => {
      fc.assert(
        fc.property(
          fc.anything(),
          fc.anything(),
          fc.anything(),
          fc.anything(),
          fc.anything(),
          (a, b, c, e, f) => {
            const r1 = verifyInclusion(
              a as Uint8Array,
              b as number,
              c as number,
              e as Uint8Array[],
              f as Uint8Array,
            );
            const r2 = verifyConsistency(
              a as number,
              b as number,
              c as Uint8Array,
              e as Uint8Array,
              f as Uint8Array[],
            );
            return r1 === false && r2 === false;
          },
        ),
        { numRuns: 300 },
      );
    });

    it('proof generation throws RangeError on bad arguments', () => {
      for (const i of [-1, 5, 1.5, Number.NaN]) {
        expect(() => inclusionProof(hs, i), `index ${i}`).to.throw(RangeError, /index/);
      }
      expect(() => inclusionProof([], 0)).to.throw(RangeError);
      for (const m of [-1, 6, 2.5, Number.NaN]) {
        expect(() => consistencyProof(hs, m), `oldSize ${m}`).to.throw(RangeError, /oldSize/);
      }
      const bad = [...hs.slice(0, 2), new Uint8Array(31)];
      expect(() => rootHash(bad)).to.throw(RangeError, /leafHashes\[2\]/);
      expect(() => inclusionProof(bad, 0)).to.throw(RangeError, /leafHashes\[2\]/);
      expect(() => consistencyProof(bad, 1)).to.throw(RangeError, /leafHashes\[2\]/);
    });
  });
});
