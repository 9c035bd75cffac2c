/**
 * The lineage log of one scope: an append-only RFC 6962 Merkle tree kept in a synchronous key-value
 * store. Pure: no `node:` imports, no clock, no randomness; all I/O goes through LineageKv.
 *
 * The scope state machine applies entries synchronously (RocksDB sync reads in production, a Map in the
 * tests and the simulator), so the log is written against a synchronous get/put interface. Like a
 * Trillian / CT log, every append stores the entry, its leaf hash and every perfect subtree hash the
 * append completes; nothing is ever recomputed from all the leaves:
 *
 *   - append: 1 leaf hash + (number of trailing 1 bits of the old size) node hashes, no reads
 *     (the right frontier of perfect subtrees is cached in memory, loaded in O(log n) reads on open);
 *   - root(size) for ANY size ≤ the current one (tree heads name earlier sizes): one stored read per
 *     1 bit of `size` (the perfect subtrees that make up the first `size` leaves);
 *   - inclusionProof / consistencyProof: O(log n) stored reads, exactly RFC 6962 §2.1.1 / §2.1.2 (the
 *     proofs merkle.ts generates from all leaves and verifies).
 *
 * Keys (short ASCII strings; numbers in base 36; the caller prefixes them, e.g. per scope):
 *
 *   s                       the size (number of leaves): minimal unsigned LEB128 varint
 *   e/<index>               the entry bytes of leaf <index> (0-based)
 *   n/<level>/<index>       the 32-byte hash of the perfect subtree of 2^level leaves
 *                           [index·2^level, (index+1)·2^level); level 0 holds the leaf hashes
 *
 * Crash safety: an append writes the entry and node keys first and the size last, so a store that
 * persisted only part of an append reopens at the old size; re-appending the same entry rewrites the
 * same values. (With RocksDB the caller puts one apply's writes into one write batch anyway.)
 * One LineageLog instance must be the only writer of its keys (it caches the frontier).
 */
import { LineageDecodeError, LineageReader, LineageWriter } from './entry.ts';
import { HASH_LENGTH, leafHash, nodeHash, rootHash } from './merkle.ts';

/** The synchronous store the log is written against. Values returned by get must not be mutated. */
export interface LineageKv {
  get(key: string): Uint8Array | undefined;
  put(key: string, value: Uint8Array): void;
}

/** The in-memory twin of the store (tests, the simulator, the offline verifier). */
export class MemoryLineageKv implements LineageKv {
  readonly map = new Map<string, Uint8Array>();
  get(key: string): Uint8Array | undefined {
    return this.map.get(key);
  }
  put(key: string, value: Uint8Array): void {
    this.map.set(key, value);
  }
}

/** A key the log wrote is missing or corrupt: the store lost or damaged data. */
export class LineageStoreError extends Error {
  override readonly name = 'LineageStoreError';
}

const SIZE_KEY = 's';
const entryKey = (index: number): string => `e/${index.toString(36)}`;
const nodeKey = (level: number, index: number): string => `n/${level.toString(36)}/${index.toString(36)}`;

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** Largest power of two strictly smaller than n (n >= 2). */
const splitPoint = (n: number): number => {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
};

/** Bit `level` of a non-negative safe integer (bitwise ops are 32-bit only). */
const bit = (n: number, level: number): boolean => Math.floor(n / 2 ** level) % 2 === 1;

/** Number of bits of n (0 for 0). */
const bitLength = (n: number): number => {
  let l = 0;
  while (2 ** l <= n) l++;
  return l;
};

const encodeSize = (size: number): Uint8Array => {
  const w = new LineageWriter(8, (m) => new RangeError(m));
  w.varint(size, 'size');
  return w.finish();
};

export class LineageLog {
  readonly #kv: LineageKv;
  #size: number;
  /** #peaks[level]: hash of the perfect subtree of 2^level leaves in the current tree (iff bit set). */
  #peaks: (Uint8Array | undefined)[] = [];

  constructor(kv: LineageKv) {
    this.#kv = kv;
    const raw = kv.get(SIZE_KEY);
    if (raw === undefined) this.#size = 0;
    else {
      try {
        const r = new LineageReader(raw, 'lineage log size');
        this.#size = r.varint('size');
        r.end('the size');
      } catch (e) {
        if (e instanceof LineageDecodeError)
          throw new LineageStoreError(`lineage log: stored size: ${e.message}`);
        throw e;
      }
    }
    // Load the frontier: the perfect subtrees making up [0, size), largest (leftmost) first.
    let offset = 0;
    for (let level = bitLength(this.#size) - 1; level >= 0; level--) {
      if (!bit(this.#size, level)) continue;
      this.#peaks[level] = this.#node(level, offset / 2 ** level);
      offset += 2 ** level;
    }
  }

  /** Number of entries (leaves). */
  get size(): number {
    return this.#size;
  }

  /** Appends one entry's bytes as the next leaf and returns its index. */
  append(entryBytes: Uint8Array): number {
    if (!(entryBytes instanceof Uint8Array))
      throw new TypeError('LineageLog.append: entry must be a Uint8Array');
    const index = this.#size;
    if (index >= Number.MAX_SAFE_INTEGER) throw new RangeError('LineageLog.append: the log is full');
    const kv = this.#kv;
    kv.put(entryKey(index), entryBytes.slice());
    let carry = leafHash(entryBytes);
    kv.put(nodeKey(0, index), carry);
    let level = 0;
    // Each 1 bit at the bottom of the old size is a perfect subtree that the new leaf now completes.
    while (bit(index, level)) {
      carry = nodeHash(this.#peaks[level]!, carry);
      this.#peaks[level] = undefined;
      level++;
      kv.put(nodeKey(level, Math.floor(index / 2 ** level)), carry);
    }
    this.#peaks[level] = carry;
    this.#size = index + 1;
    kv.put(SIZE_KEY, encodeSize(this.#size));
    return index;
  }

  /** The bytes of the entry at `index` (a copy). */
  entry(index: number): Uint8Array {
    this.#checkIndex('entry', index, this.#size);
    const v = this.#kv.get(entryKey(index));
    if (v === undefined) throw new LineageStoreError(`lineage log: entry ${index} is missing from the store`);
    return v.slice();
  }

  /** The RFC 6962 leaf hash of the entry at `index` (a copy). */
  leafHash(index: number): Uint8Array {
    this.#checkIndex('leafHash', index, this.#size);
    return this.#node(0, index).slice();
  }

  /** The Merkle tree hash of the first `size` entries (default: all), for any size ≤ the current one. */
  root(size: number = this.#size): Uint8Array {
    if (!isCount(size) || size > this.#size) {
      throw new RangeError(`LineageLog.root: size ${String(size)} is not an integer in [0, ${this.#size}]`);
    }
    if (size === 0) return rootHash([]);
    if (size === this.#size) {
      let r: Uint8Array | undefined;
      for (let level = 0; level < this.#peaks.length; level++) {
        const p = this.#peaks[level];
        if (p !== undefined) r = r === undefined ? p : nodeHash(p, r);
      }
      return r!.slice();
    }
    return this.#range(0, size).slice();
  }

  /** RFC 6962 audit path for leaf `index` in the tree of the first `size` entries (default: all). */
  inclusionProof(index: number, size: number = this.#size): Uint8Array[] {
    if (!isCount(size) || size > this.#size) {
      throw new RangeError(
        `LineageLog.inclusionProof: size ${String(size)} is not an integer in [0, ${this.#size}]`,
      );
    }
    this.#checkIndex('inclusionProof', index, size);
    // PATH(m, D[lo:hi]) unrolled: walk from the root down to the leaf, collecting each sibling.
    const out: Uint8Array[] = [];
    let lo = 0;
    let hi = size;
    while (hi - lo > 1) {
      const k = splitPoint(hi - lo);
      if (index < lo + k) {
        out.push(this.#range(lo + k, hi));
        hi = lo + k;
      } else {
        out.push(this.#range(lo, lo + k));
        lo += k;
      }
    }
    return out.reverse().map((h) => h.slice());
  }

  /**
   * RFC 6962 consistency proof between the first `oldSize` and the first `newSize` entries (default: all).
   * Empty when oldSize is 0 or equal to newSize.
   */
  consistencyProof(oldSize: number, newSize: number = this.#size): Uint8Array[] {
    if (!isCount(newSize) || newSize > this.#size) {
      throw new RangeError(
        `LineageLog.consistencyProof: newSize ${String(newSize)} is not an integer in [0, ${this.#size}]`,
      );
    }
    if (!isCount(oldSize) || oldSize > newSize) {
      throw new RangeError(
        `LineageLog.consistencyProof: oldSize ${String(oldSize)} is not an integer in [0, ${newSize}]`,
      );
    }
    if (oldSize === 0 || oldSize === newSize) return [];
    // SUBPROOF(m, D[lo:hi], b) unrolled, m relative to lo.
    const out: Uint8Array[] = [];
    let lo = 0;
    let hi = newSize;
    let m = oldSize;
    let complete = true; // b: the subtree [lo, lo+m) is the whole old tree so far
    for (;;) {
      const n = hi - lo;
      if (m === n) {
        if (!complete) out.push(this.#range(lo, hi));
        break;
      }
      const k = splitPoint(n);
      if (m <= k) {
        out.push(this.#range(lo + k, hi));
        hi = lo + k;
      } else {
        out.push(this.#range(lo, lo + k));
        lo += k;
        m -= k;
        complete = false;
      }
    }
    return out.reverse().map((h) => h.slice());
  }

  #checkIndex(fn: string, index: number, size: number): void {
    if (!isCount(index) || index >= size) {
      throw new RangeError(`LineageLog.${fn}: index ${String(index)} is not an integer in [0, ${size})`);
    }
  }

  /** A stored perfect-subtree hash (not copied). */
  #node(level: number, index: number): Uint8Array {
    const v = this.#kv.get(nodeKey(level, index));
    if (v === undefined || v.length !== HASH_LENGTH) {
      throw new LineageStoreError(
        `lineage log: node ${nodeKey(level, index)} is ${v === undefined ? 'missing from' : 'corrupt in'} the store`,
      );
    }
    return v;
  }

  /**
   * MTH(D[lo:hi]) for hi > lo, where lo is a multiple of a power of two ≥ hi - lo (true of every subtree
   * the RFC recursion visits): the right fold of the perfect subtrees in the binary decomposition of
   * hi - lo, one stored read each. Not copied.
   */
  #range(lo: number, hi: number): Uint8Array {
    const n = hi - lo;
    const pieces: Uint8Array[] = [];
    let offset = lo;
    for (let level = bitLength(n) - 1; level >= 0; level--) {
      if (!bit(n, level)) continue;
      pieces.push(this.#node(level, offset / 2 ** level));
      offset += 2 ** level;
    }
    let r = pieces[pieces.length - 1]!;
    for (let i = pieces.length - 2; i >= 0; i--) r = nodeHash(pieces[i]!, r);
    return r;
  }
}
