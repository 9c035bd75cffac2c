/**
 * RFC 6962 (Certificate Transparency) Merkle tree hashing over SHA-256.
 *
 * This is the lineage core: every lineage record is a leaf of an append-only log, and peers
 * exchange tree heads plus inclusion / consistency proofs. It is hand-written on purpose: it is
 * a few dozen lines against the RFC, with no dependency whose semantics we would have to trust
 * beyond SHA-256 (@noble/hashes), and no `node:` imports, so the same code verifies offline in
 * any JS runtime.
 *
 * Sections implemented:
 * - RFC 6962 §2.1     Merkle Tree Hash (MTH), leaf / node domain separation (0x00 / 0x01).
 * - RFC 6962 §2.1.1   Merkle audit paths (PATH) -> `inclusionProof`.
 * - RFC 6962 §2.1.2   Merkle consistency proofs (PROOF / SUBPROOF) -> `consistencyProof`.
 * - RFC 9162 §2.1.3.2 inclusion verification from the proof alone -> `verifyInclusion`.
 * - RFC 9162 §2.1.4.2 consistency verification from the proof alone -> `verifyConsistency`.
 *
 * Tree functions take leaf *hashes* (see `leafHash` / `hashLeaves`). Proof generation throws a
 * RangeError on bad arguments; verification never throws and returns false on malformed input.
 */
import { sha256 } from '@noble/hashes/sha2.js';

/** Length in bytes of every hash in this module. */
export const HASH_LENGTH = 32;

/** MTH({}) = SHA-256() — the root of the empty tree (private: Uint8Arrays are mutable). */
const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

const concat = (prefix: number, ...parts: Uint8Array[]): Uint8Array => {
  let len = 1;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  out[0] = prefix;
  let off = 1;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
};

/** Leaf hash: SHA-256(0x00 || entry). */
export function leafHash(entry: Uint8Array): Uint8Array {
  return sha256(concat(0x00, entry));
}

/** Interior node hash: SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(concat(0x01, left, right));
}

/** Hashes raw entries into leaf hashes, the input of the tree functions below. */
export function hashLeaves(entries: readonly Uint8Array[]): Uint8Array[] {
  return entries.map(leafHash);
}

/** Largest power of two strictly smaller than n (n >= 2). */
const splitPoint = (n: number): number => {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
};

const isHash = (h: unknown): h is Uint8Array => h instanceof Uint8Array && h.length === HASH_LENGTH;

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
};

const isSize = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

const checkLeafHashes = (fn: string, leafHashes: readonly Uint8Array[]): void => {
  if (!Array.isArray(leafHashes)) throw new RangeError(`${fn}: leafHashes must be an array`);
  for (let i = 0; i < leafHashes.length; i++) {
    if (!isHash(leafHashes[i])) {
      throw new RangeError(`${fn}: leafHashes[${i}] is not a ${HASH_LENGTH}-byte hash`);
    }
  }
};

/** MTH(D[lo:hi]) over leaf hashes, hi > lo. */
const subtreeHash = (hashes: readonly Uint8Array[], lo: number, hi: number): Uint8Array => {
  if (hi - lo === 1) return hashes[lo]!;
  const k = splitPoint(hi - lo);
  return nodeHash(subtreeHash(hashes, lo, lo + k), subtreeHash(hashes, lo + k, hi));
};

/** Merkle Tree Hash (RFC 6962 §2.1) of a list of leaf hashes. */
export function rootHash(leafHashes: readonly Uint8Array[]): Uint8Array {
  checkLeafHashes('rootHash', leafHashes);
  if (leafHashes.length === 0) return EMPTY_ROOT.slice();
  return subtreeHash(leafHashes, 0, leafHashes.length);
}

/** PATH(m, D[lo:hi]) appended to `out` (leaf-to-root order). */
const path = (hashes: readonly Uint8Array[], m: number, lo: number, hi: number, out: Uint8Array[]): void => {
  if (hi - lo <= 1) return;
  const k = splitPoint(hi - lo);
  if (m < k) {
    path(hashes, m, lo, lo + k, out);
    out.push(subtreeHash(hashes, lo + k, hi));
  } else {
    path(hashes, m - k, lo + k, hi, out);
    out.push(subtreeHash(hashes, lo, lo + k));
  }
};

/** Audit path (RFC 6962 §2.1.1) for the leaf at `index`. */
export function inclusionProof(leafHashes: readonly Uint8Array[], index: number): Uint8Array[] {
  checkLeafHashes('inclusionProof', leafHashes);
  const n = leafHashes.length;
  if (!isSize(index) || index >= n) {
    throw new RangeError(`inclusionProof: index ${String(index)} is not an integer in [0, ${n})`);
  }
  const out: Uint8Array[] = [];
  path(leafHashes, index, 0, n, out);
  return out;
}

/** SUBPROOF(m, D[lo:hi], b) appended to `out`. */
const subproof = (
  hashes: readonly Uint8Array[],
  m: number,
  lo: number,
  hi: number,
  b: boolean,
  out: Uint8Array[],
): void => {
  const n = hi - lo;
  if (m === n) {
    if (!b) out.push(subtreeHash(hashes, lo, hi));
    return;
  }
  const k = splitPoint(n);
  if (m <= k) {
    subproof(hashes, m, lo, lo + k, b, out);
    out.push(subtreeHash(hashes, lo + k, hi));
  } else {
    subproof(hashes, m - k, lo + k, hi, false, out);
    out.push(subtreeHash(hashes, lo, lo + k));
  }
};

/**
 * Consistency proof (RFC 6962 §2.1.2) between the first `oldSize` leaves and the whole list.
 * Empty when oldSize is 0 or equal to the tree size.
 */
export function consistencyProof(leafHashes: readonly Uint8Array[], oldSize: number): Uint8Array[] {
  checkLeafHashes('consistencyProof', leafHashes);
  const n = leafHashes.length;
  if (!isSize(oldSize) || oldSize > n) {
    throw new RangeError(`consistencyProof: oldSize ${String(oldSize)} is not an integer in [0, ${n}]`);
  }
  const out: Uint8Array[] = [];
  if (oldSize === 0 || oldSize === n) return out;
  subproof(leafHashes, oldSize, 0, n, true, out);
  return out;
}

/** Inclusion verification (RFC 9162 §2.1.3.2). Returns false on any malformed input. */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  treeSize: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isHash(leaf) || !isHash(root) || !Array.isArray(proof)) return false;
  if (!isSize(index) || !isSize(treeSize) || index >= treeSize) return false;
  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (!isHash(p) || sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(r, root);
}

const isPowerOfTwo = (n: number): boolean => {
  let k = 1;
  while (k < n) k *= 2;
  return k === n;
};

/**
 * Consistency verification (RFC 9162 §2.1.4.2). Returns false on any malformed input.
 * oldSize == newSize: the proof must be empty and the roots equal. oldSize == 0: the proof must
 * be empty and oldRoot must be the empty-tree root (anything is consistent with the empty tree).
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isHash(oldRoot) || !isHash(newRoot) || !Array.isArray(proof)) return false;
  if (!isSize(oldSize) || !isSize(newSize) || oldSize > newSize) return false;
  if (oldSize === newSize) {
    return (
      proof.length === 0 && bytesEqual(oldRoot, newRoot) && (oldSize > 0 || bytesEqual(oldRoot, EMPTY_ROOT))
    );
  }
  if (oldSize === 0) return proof.length === 0 && bytesEqual(oldRoot, EMPTY_ROOT);
  if (proof.length === 0) return false;
  for (const p of proof) if (!isHash(p)) return false;
  const path = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : proof;
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(fr, oldRoot) && bytesEqual(sr, newRoot);
}
