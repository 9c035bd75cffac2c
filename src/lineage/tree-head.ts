/**
 * Signed tree heads: the scope leader's signed statement "the lineage of scope S has `size` entries and
 * Merkle root `root`" (RFC 6962 §3.5 in spirit). Pure: no `node:` imports, no clock (the caller supplies
 * timestampMs), no randomness.
 *
 * A head binds the order and the completeness of the log: with it, an inclusion proof shows an entry is
 * at its index, and a consistency proof between two heads shows the log only grew. Two validly signed
 * heads of the same size with different roots are proof of equivocation by their signer.
 *
 *   treeHead    := "AQTH" version:u8 (=1) scopeId:32  size:varint  root:32  timestampMs:varint
 *                  (the signed bytes: treeHeadBytes)
 *   encoded     := treeHead  signer:32  signature:64          (encodeTreeHead / decodeTreeHead; canonical)
 *   JSON form   := {"scopeId":"<64 hex>","size":N,"root":"<64 hex>","timestampMs":N,
 *                   "signer":"<64 hex>","signature":"<128 hex>"}
 *                  hex is lowercase; N a non-negative safe integer; no other keys (treeHeadToJson /
 *                  treeHeadFromJson, for files such as the lineage export and the local known-heads file).
 *
 * varints are minimal unsigned LEB128 ≤ 2^53-1, as in entry.ts.
 */
import type { Signer, Verifier } from '../identity/signer.ts';
import {
  fromHex,
  KEY_BYTES,
  LineageDecodeError,
  LineageEncodeError,
  LineageReader,
  LineageWriter,
  SCOPE_ID_BYTES,
  SIGNATURE_BYTES,
  toHex,
} from './entry.ts';
import { HASH_LENGTH } from './merkle.ts';

export const TREE_HEAD_FORMAT_VERSION = 1;
const MAGIC = [0x41, 0x51, 0x54, 0x48] as const; // "AQTH"

export interface TreeHead {
  readonly scopeId: Uint8Array;
  readonly size: number;
  readonly root: Uint8Array;
  readonly timestampMs: number;
  readonly signer: Uint8Array;
  readonly signature: Uint8Array;
}

/** The unsigned part of a tree head. */
export type TreeHeadBody = Pick<TreeHead, 'scopeId' | 'size' | 'root' | 'timestampMs'>;

/** The JSON form of a tree head (see the header). */
export interface TreeHeadJson {
  scopeId: string;
  size: number;
  root: string;
  timestampMs: number;
  signer: string;
  signature: string;
}

/** Thrown by treeHeadFromJson for a value that is not exactly a tree head's JSON form. */
export class TreeHeadJsonError extends Error {
  override readonly name = 'TreeHeadJsonError';
}

const encodeFail = (message: string): Error => new LineageEncodeError(`cannot encode tree head: ${message}`);

const writeBody = (w: LineageWriter, head: TreeHeadBody): void => {
  w.raw(MAGIC);
  w.u8(TREE_HEAD_FORMAT_VERSION);
  w.fixed(head.scopeId, SCOPE_ID_BYTES, 'scope id');
  w.varint(head.size, 'size');
  w.fixed(head.root, HASH_LENGTH, 'root');
  w.varint(head.timestampMs, 'timestampMs');
};

/** The bytes the leader signs. Throws LineageEncodeError for unrepresentable values. */
export function treeHeadBytes(head: TreeHeadBody): Uint8Array {
  const w = new LineageWriter(96, encodeFail);
  writeBody(w, head);
  return w.finish();
}

/** Signs a tree head body with the leader's key. */
export function signTreeHead(body: TreeHeadBody, signer: Signer): TreeHead {
  const signature = signer.sign(treeHeadBytes(body));
  return {
    scopeId: body.scopeId,
    size: body.size,
    root: body.root,
    timestampMs: body.timestampMs,
    signer: signer.publicKey,
    signature,
  };
}

/** True when the head's signature by head.signer verifies (authorization is the caller's business). */
export function verifyTreeHead(head: TreeHead, verifier: Verifier): boolean {
  let msg: Uint8Array;
  try {
    msg = treeHeadBytes(head);
  } catch {
    return false;
  }
  return verifier.verify(head.signer, msg, head.signature);
}

/** Canonical binary form: signed bytes, signer, signature. */
export function encodeTreeHead(head: TreeHead): Uint8Array {
  const w = new LineageWriter(200, encodeFail);
  writeBody(w, head);
  w.fixed(head.signer, KEY_BYTES, 'signer');
  w.fixed(head.signature, SIGNATURE_BYTES, 'signature');
  return w.finish();
}

/** Decodes canonical tree head bytes. Throws LineageDecodeError (and nothing else) on malformed input. */
export function decodeTreeHead(bytes: Uint8Array): TreeHead {
  const what = 'tree head';
  if (!(bytes instanceof Uint8Array)) throw new LineageDecodeError(what, 'input is not a Uint8Array', 0);
  const r = new LineageReader(bytes, what);
  r.magic(MAGIC, '"AQTH"');
  const version = r.u8('format version');
  if (version !== TREE_HEAD_FORMAT_VERSION) {
    throw r.fail(
      `unsupported format version ${version} (this build reads version ${TREE_HEAD_FORMAT_VERSION})`,
      4,
    );
  }
  const scopeId = r.fixed(SCOPE_ID_BYTES, 'scope id');
  const size = r.varint('size');
  const root = r.fixed(HASH_LENGTH, 'root');
  const timestampMs = r.varint('timestampMs');
  const signer = r.fixed(KEY_BYTES, 'signer');
  const signature = r.fixed(SIGNATURE_BYTES, 'signature');
  r.end('the tree head');
  return { scopeId, size, root, timestampMs, signer, signature };
}

/** The JSON form (hex for ids, roots, keys and signatures). */
export function treeHeadToJson(head: TreeHead): TreeHeadJson {
  return {
    scopeId: toHex(head.scopeId),
    size: head.size,
    root: toHex(head.root),
    timestampMs: head.timestampMs,
    signer: toHex(head.signer),
    signature: toHex(head.signature),
  };
}

const JSON_KEYS = new Set(['scopeId', 'size', 'root', 'timestampMs', 'signer', 'signature']);

/** Parses the JSON form strictly. Throws TreeHeadJsonError naming the first bad field. */
export function treeHeadFromJson(value: unknown): TreeHead {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TreeHeadJsonError('a tree head must be a JSON object');
  }
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!JSON_KEYS.has(k)) throw new TreeHeadJsonError(`unknown tree head field ${JSON.stringify(k)}`);
  }
  const hex = (key: string, length: number): Uint8Array => {
    const b = fromHex(o[key], length);
    if (b === undefined)
      throw new TreeHeadJsonError(`tree head field "${key}" must be ${length * 2} lowercase hex digits`);
    return b;
  };
  const int = (key: string): number => {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new TreeHeadJsonError(`tree head field "${key}" must be an integer 0..2^53-1`);
    }
    return v;
  };
  return {
    scopeId: hex('scopeId', SCOPE_ID_BYTES),
    size: int('size'),
    root: hex('root', HASH_LENGTH),
    timestampMs: int('timestampMs'),
    signer: hex('signer', KEY_BYTES),
    signature: hex('signature', SIGNATURE_BYTES),
  };
}
