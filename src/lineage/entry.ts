/**
 * Lineage entries: the leaves of a scope's Merkle log (DESIGN.md §2, "Lineage"). Pure: no `node:`
 * imports, no clock, no randomness.
 *
 * One entry is one admitted structural change of a scope. Its bytes are the leaf of the scope's
 * RFC 6962 tree (merkle.ts hashes them as SHA-256(0x00 || entry)), so the encoding is canonical: in one
 * version an entry has exactly one encoding and decodeEntry rejects every other byte string (minimal
 * varints, known kind, exact lengths, no trailing bytes). For any accepted bytes b,
 * encodeEntry(decodeEntry(b)) equals b.
 *
 *   entry       := "AQLE" version:u8 (=1) scopeId:32  index:varint  logIndex:varint  kind:u8  payload:bytes
 *                  signer:32  signature:64
 *   signedBytes := "AQLS" version:u8 (=1) scopeId:32  kind:u8  payload:bytes
 *   bytes       := length:varint  raw
 *   varint      := minimal unsigned LEB128, at most 2^53-1 (at most 8 bytes)
 *   kind        := 1 genesis (payload = the scope's genesis record)
 *                | 2 command (payload = a registry/governance command, as proposed)
 *                | 3 membership (payload = a Raft configuration change, src/consensus/conf-change.ts)
 *
 * A membership entry carries no signature (signer and signature are zeros): its change is proposed by the
 * group's consensus core, in a format the core reads itself, so no anchor wraps it as it proposes; it is
 * bound, like every entry, by the leader-signed tree heads that cover it.
 *
 * `index` is the leaf index (0-based; the genesis is leaf 0) and `logIndex` the Raft log index that
 * applied the entry. The signature, by `signer` (the anchor that admitted the change), covers
 * signedBytes only: the anchor signs when it proposes, before the position exists; the position is bound
 * by the tree (the leaf bytes include it) and by the signed tree heads.
 *
 * The codec checks structure only. That a genesis sits at index 0 and nowhere else, who may sign, and
 * what a payload means are checked by the verifier (export.ts) and the governance rules it is given.
 *
 * The small byte writer/reader at the bottom is shared by the other lineage codecs (@internal); it
 * mirrors registry/commands.ts but lives here so that the lineage core depends on nothing but SHA-256.
 */
import type { Signer, Verifier } from '../identity/signer.ts';

export const ENTRY_FORMAT_VERSION = 1;
/** Length of a scope id (SHA-256 of the genesis), an ed25519 public key and signature. */
export const SCOPE_ID_BYTES = 32;
export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

const ENTRY_MAGIC = [0x41, 0x51, 0x4c, 0x45] as const; // "AQLE"
const SIGNED_MAGIC = [0x41, 0x51, 0x4c, 0x53] as const; // "AQLS"
const KIND_GENESIS = 1;
const KIND_COMMAND = 2;
const KIND_MEMBERSHIP = 3;

export type EntryKind = 'genesis' | 'command' | 'membership';

export interface LineageEntry {
  readonly scopeId: Uint8Array;
  readonly index: number;
  readonly logIndex: number;
  readonly kind: EntryKind;
  readonly payload: Uint8Array;
  readonly signer: Uint8Array;
  readonly signature: Uint8Array;
}

/** Thrown by the lineage decoders on any malformed or non-canonical input; says what and where. */
export class LineageDecodeError extends Error {
  override readonly name = 'LineageDecodeError';
  /** Byte offset at which decoding failed. */
  readonly offset: number;
  constructor(what: string, message: string, offset: number) {
    super(`cannot decode ${what} at byte ${offset}: ${message}`);
    this.offset = offset;
  }
}

/** Thrown by the lineage encoders for values that cannot be represented (wrong lengths, bad integers). */
export class LineageEncodeError extends Error {
  override readonly name = 'LineageEncodeError';
}

// ---- entries ----

const kindCode = (kind: EntryKind, fail: (m: string) => Error): number => {
  if (kind === 'genesis') return KIND_GENESIS;
  if (kind === 'command') return KIND_COMMAND;
  if (kind === 'membership') return KIND_MEMBERSHIP;
  throw fail(`unknown entry kind ${JSON.stringify(String(kind))}`);
};

const entryEncodeFail = (message: string): Error =>
  new LineageEncodeError(`cannot encode lineage entry: ${message}`);

/** The bytes an admitting anchor signs for an entry: they do not include the position (see header). */
export function entrySignedBytes(scopeId: Uint8Array, kind: EntryKind, payload: Uint8Array): Uint8Array {
  const w = new LineageWriter(48 + payload.length, entryEncodeFail);
  w.raw(SIGNED_MAGIC);
  w.u8(ENTRY_FORMAT_VERSION);
  w.fixed(scopeId, SCOPE_ID_BYTES, 'scope id');
  w.u8(kindCode(kind, entryEncodeFail));
  w.bytes(payload, 'payload');
  return w.finish();
}

/** Signs an entry's signedBytes: what an anchor attaches to a change it proposes. */
export function signEntry(
  scopeId: Uint8Array,
  kind: EntryKind,
  payload: Uint8Array,
  signer: Signer,
): { signer: Uint8Array; signature: Uint8Array } {
  return { signer: signer.publicKey, signature: signer.sign(entrySignedBytes(scopeId, kind, payload)) };
}

/** True when the entry's signature by entry.signer verifies (authorization is the caller's business). */
export function verifyEntrySignature(entry: LineageEntry, verifier: Verifier): boolean {
  let msg: Uint8Array;
  try {
    msg = entrySignedBytes(entry.scopeId, entry.kind, entry.payload);
  } catch {
    return false;
  }
  return verifier.verify(entry.signer, msg, entry.signature);
}

/** Canonical bytes of an entry (the Merkle leaf). Throws LineageEncodeError for unrepresentable values. */
export function encodeEntry(entry: LineageEntry): Uint8Array {
  const w = new LineageWriter(160 + entry.payload.length, entryEncodeFail);
  w.raw(ENTRY_MAGIC);
  w.u8(ENTRY_FORMAT_VERSION);
  w.fixed(entry.scopeId, SCOPE_ID_BYTES, 'scope id');
  w.varint(entry.index, 'index');
  w.varint(entry.logIndex, 'log index');
  w.u8(kindCode(entry.kind, entryEncodeFail));
  w.bytes(entry.payload, 'payload');
  w.fixed(entry.signer, KEY_BYTES, 'signer');
  w.fixed(entry.signature, SIGNATURE_BYTES, 'signature');
  return w.finish();
}

/** Decodes canonical entry bytes. Throws LineageDecodeError (and nothing else) on any malformed input. */
export function decodeEntry(bytes: Uint8Array): LineageEntry {
  const what = 'lineage entry';
  if (!(bytes instanceof Uint8Array)) throw new LineageDecodeError(what, 'input is not a Uint8Array', 0);
  const r = new LineageReader(bytes, what);
  r.magic(ENTRY_MAGIC, '"AQLE"');
  const version = r.u8('format version');
  if (version !== ENTRY_FORMAT_VERSION) {
    throw r.fail(
      `unsupported format version ${version} (this build reads version ${ENTRY_FORMAT_VERSION})`,
      4,
    );
  }
  const scopeId = r.fixed(SCOPE_ID_BYTES, 'scope id');
  const index = r.varint('index');
  const logIndex = r.varint('log index');
  const kindAt = r.offset;
  const code = r.u8('kind');
  let kind: EntryKind;
  if (code === KIND_GENESIS) kind = 'genesis';
  else if (code === KIND_COMMAND) kind = 'command';
  else if (code === KIND_MEMBERSHIP) kind = 'membership';
  else throw r.fail(`unknown entry kind ${code} (1 genesis, 2 command, 3 membership)`, kindAt);
  const payload = r.bytes('payload');
  const signer = r.fixed(KEY_BYTES, 'signer');
  const signature = r.fixed(SIGNATURE_BYTES, 'signature');
  r.end('the entry');
  return { scopeId, index, logIndex, kind, payload, signer, signature };
}

// ---- small helpers shared by the lineage modules ----

/** @internal Byte equality (not constant-time: everything compared here is public). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** @internal Lowercase hex. */
export function toHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += HEX[b[i]!];
  return s;
}

/** @internal Strict lowercase hex of exactly `length` bytes, or undefined. */
export function fromHex(s: unknown, length: number): Uint8Array | undefined {
  if (typeof s !== 'string' || s.length !== length * 2 || !/^[0-9a-f]*$/.test(s)) return undefined;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Number.parseInt(s.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** @internal Growable byte buffer: u8, fixed-length fields, minimal varints, length-prefixed bytes. */
export class LineageWriter {
  #buf: Uint8Array;
  #pos = 0;
  readonly #fail: (message: string) => Error;

  constructor(initialSize: number, fail: (message: string) => Error) {
    this.#buf = new Uint8Array(Math.max(16, initialSize));
    this.#fail = fail;
  }

  #reserve(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
  }

  u8(v: number): void {
    this.#reserve(1);
    this.#buf[this.#pos++] = v;
  }

  raw(b: ArrayLike<number>): void {
    this.#reserve(b.length);
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
  }

  /** A field of exactly `length` bytes. */
  fixed(b: Uint8Array, length: number, what: string): void {
    if (!(b instanceof Uint8Array) || b.length !== length) {
      throw this.#fail(
        `${what} must be ${length} bytes, got ${b instanceof Uint8Array ? b.length : typeof b}`,
      );
    }
    this.raw(b);
  }

  varint(v: number, what: string): void {
    if (!Number.isSafeInteger(v) || v < 0)
      throw this.#fail(`${what} ${String(v)} is not an integer 0..2^53-1`);
    this.#reserve(8);
    let n = v;
    while (n >= 0x80) {
      this.#buf[this.#pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.#buf[this.#pos++] = n;
  }

  /** Length-prefixed bytes. */
  bytes(b: Uint8Array, what: string): void {
    if (!(b instanceof Uint8Array)) throw this.#fail(`${what} is not a Uint8Array`);
    this.varint(b.length, `${what} length`);
    this.raw(b);
  }

  /** The bytes written (a copy sized exactly). */
  finish(): Uint8Array {
    return this.#buf.slice(0, this.#pos);
  }
}

/** @internal Bounds-checked canonical reader; every failure is a LineageDecodeError naming `what`. */
export class LineageReader {
  readonly #buf: Uint8Array;
  readonly #what: string;
  #pos = 0;

  constructor(buf: Uint8Array, what: string) {
    this.#buf = buf;
    this.#what = what;
  }

  get offset(): number {
    return this.#pos;
  }

  get remaining(): number {
    return this.#buf.length - this.#pos;
  }

  fail(message: string, offset: number = this.#pos): LineageDecodeError {
    return new LineageDecodeError(this.#what, message, offset);
  }

  magic(expected: readonly number[], name: string): void {
    for (let i = 0; i < expected.length; i++) {
      if (this.#buf[this.#pos + i] !== expected[i]) throw this.fail(`does not start with ${name}`, this.#pos);
    }
    this.#pos += expected.length;
  }

  u8(what: string): number {
    const v = this.#buf[this.#pos];
    if (v === undefined) throw this.fail(`input ends where ${what} was expected (truncated?)`);
    this.#pos++;
    return v;
  }

  /** A fixed-length field, copied (the input buffer may be reused by the caller). */
  fixed(n: number, what: string): Uint8Array {
    if (n > this.remaining) {
      throw this.fail(`${what} needs ${n} bytes but only ${this.remaining} remain (truncated?)`);
    }
    const out = this.#buf.slice(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  /** Minimal unsigned LEB128, at most 2^53-1. */
  varint(what: string): number {
    const start = this.#pos;
    let result = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      const b = this.#buf[this.#pos];
      if (b === undefined) throw this.fail(`input ends inside ${what} (truncated?)`, start);
      this.#pos++;
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) throw this.fail(`${what} is not minimally encoded`, start);
        if (result > Number.MAX_SAFE_INTEGER) throw this.fail(`${what} is larger than 2^53-1`, start);
        return result;
      }
      if (i === 7) throw this.fail(`${what} is longer than 8 bytes`, start);
      scale *= 0x80;
    }
  }

  /** Length-prefixed bytes, copied. */
  bytes(what: string): Uint8Array {
    const len = this.varint(`${what} length`);
    return this.fixed(len, what);
  }

  end(what: string): void {
    if (this.#pos !== this.#buf.length) {
      throw this.fail(`${this.#buf.length - this.#pos} unexpected trailing bytes after ${what}`);
    }
  }
}
