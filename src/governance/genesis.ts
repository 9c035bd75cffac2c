// The genesis record: the first record of a scope (DESIGN.md §2). It names the scope, its founding
// anchors, its admins and its initial policy and quota, and is signed by every founder (each founding
// anchor and each admin). The scope id is SHA-256 of the genesis body: self-certifying, so two groups that
// claim the same name from different geneses are different scopes, and anyone holding the genesis can
// check that a signed statement names the scope it claims. Pure (no `node:` imports: `aq verify` checks a
// genesis offline with the portable verifier).
//
// Canonical binary encoding (strings and integers as in src/registry/commands.ts: minimal LEB128 varints,
// length-prefixed UTF-8):
//
//   body      := "AQGN" version:u8 (=1) name:str createdMs:varint
//                nfounders:varint founder:32* nadmins:varint admin:32* policy:str quota:str
//   signed    := body nsig:varint (key:32 signature:64)*
//
// Founder and admin keys are raw ed25519 public keys, strictly ascending (so one set has one encoding);
// the signatures are sorted by key, one per founder and admin, each over the body bytes. `policy` and
// `quota` are the canonical JSON documents of src/governance/policy.ts and quota.ts, or "" for none. A
// genesis with no admins and no founders is an *open* scope (the development mode of `aq anchor start
// --scope NAME` without `--genesis`): it needs no signature and its policy is permissive.

import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { Signer, Verifier } from '../identity/signer.ts';
import { ByteReader, ByteWriter } from '../registry/commands.ts';
import { validateName } from '../registry/names.ts';

export const GENESIS_FORMAT_VERSION = 1;
const MAGIC = [0x41, 0x51, 0x47, 0x4e] as const; // "AQGN"
const KEY = 32;
const SIG = 64;
/** Most founders or admins a genesis names. */
export const MAX_GENESIS_KEYS = 64;

export interface GenesisBody {
  /** The scope's name: the prefix of the names it owns. */
  readonly name: string;
  /** When the founders wrote it (ms since the epoch); informative. */
  readonly createdMs: number;
  /** Founding anchors' ed25519 public keys, ascending. */
  readonly founders: readonly Uint8Array[];
  /** Admins' ed25519 public keys, ascending. */
  readonly admins: readonly Uint8Array[];
  /** Canonical policy JSON, or "" (open scopes: permissive; governed scopes: default deny). */
  readonly policy: string;
  /** Canonical quota JSON, or "" (no budgets). */
  readonly quota: string;
}

export interface GenesisSignature {
  readonly key: Uint8Array;
  readonly signature: Uint8Array;
}

export interface Genesis extends GenesisBody {
  readonly signatures: readonly GenesisSignature[];
}

/** Thrown for a genesis that cannot be encoded, decoded or verified; the message is one line. */
export class GenesisError extends Error {
  override readonly name = 'GenesisError';
}

const encodeFail = (m: string): Error => new GenesisError(`cannot encode genesis: ${m}`);
const decodeFail = (m: string, offset: number): Error =>
  new GenesisError(`cannot decode genesis at byte ${offset}: ${m}`);

/** Compares two byte strings (lexicographic). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0;
}

/** Sorts and deduplicates keys (the canonical order of founders and admins). */
export function sortKeys(keys: readonly Uint8Array[]): Uint8Array[] {
  const out = [...keys].sort(compareBytes);
  return out.filter((k, i) => i === 0 || !equalBytes(k, out[i - 1] as Uint8Array));
}

function writeKeys(w: ByteWriter, keys: readonly Uint8Array[], what: string): void {
  if (keys.length > MAX_GENESIS_KEYS) throw w.fail(`more than ${MAX_GENESIS_KEYS} ${what}`);
  w.varint(keys.length, `${what} count`);
  let prev: Uint8Array | undefined;
  for (const k of keys) {
    if (k.length !== KEY) throw w.fail(`a ${what} key is ${k.length} bytes, not ${KEY}`);
    if (prev !== undefined && compareBytes(prev, k) >= 0)
      throw w.fail(`${what} keys are not strictly ascending (sort and deduplicate them)`);
    w.bytes(k);
    prev = k;
  }
}

function readKeys(r: ByteReader, what: string): Uint8Array[] {
  const n = r.count(`${what} count`, KEY);
  if (n > MAX_GENESIS_KEYS) throw r.fail(`more than ${MAX_GENESIS_KEYS} ${what}`);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const at = r.offset;
    const k = r.bytes(KEY, `${what} key`).slice();
    const prev = out[out.length - 1];
    if (prev !== undefined && compareBytes(prev, k) >= 0)
      throw r.fail(`${what} keys are not strictly ascending`, at);
    out.push(k);
  }
  return out;
}

/** The canonical body bytes: what founders sign and what the scope id hashes. */
export function genesisBodyBytes(body: GenesisBody): Uint8Array {
  const nameError = validateName(body.name);
  if (nameError !== null) throw encodeFail(`scope name: ${nameError.message}`);
  const w = new ByteWriter(256, encodeFail);
  for (const b of MAGIC) w.u8(b);
  w.u8(GENESIS_FORMAT_VERSION);
  w.str(body.name, 'name');
  w.varint(body.createdMs, 'createdMs');
  writeKeys(w, body.founders, 'founder');
  writeKeys(w, body.admins, 'admin');
  w.str(body.policy, 'policy');
  w.str(body.quota, 'quota');
  return w.finish();
}

/** The scope id: SHA-256 of the genesis body. */
export function scopeIdOf(body: GenesisBody): Uint8Array {
  return sha256(genesisBodyBytes(body));
}

export function scopeIdHex(body: GenesisBody): string {
  return bytesToHex(scopeIdOf(body));
}

/** The signed record: body then the founders' signatures (sorted by key). */
export function encodeGenesis(g: Genesis): Uint8Array {
  const body = genesisBodyBytes(g);
  const w = new ByteWriter(body.length + 8 + g.signatures.length * (KEY + SIG), encodeFail);
  w.bytes(body);
  const sigs = [...g.signatures].sort((a, b) => compareBytes(a.key, b.key));
  w.varint(sigs.length, 'signature count');
  let prev: Uint8Array | undefined;
  for (const s of sigs) {
    if (s.key.length !== KEY || s.signature.length !== SIG) throw encodeFail('a signature is malformed');
    if (prev !== undefined && equalBytes(prev, s.key)) throw encodeFail('two signatures by one key');
    w.bytes(s.key);
    w.bytes(s.signature);
    prev = s.key;
  }
  return w.finish();
}

/** Decodes a signed genesis (canonical only); throws GenesisError. Does not check the signatures. */
export function decodeGenesis(bytes: Uint8Array): Genesis {
  const r = new ByteReader(bytes, decodeFail);
  for (const b of MAGIC) if (r.u8('magic') !== b) throw r.fail('not a genesis record (bad magic)', 0);
  const version = r.u8('format version');
  if (version !== GENESIS_FORMAT_VERSION) throw r.fail(`unsupported genesis format version ${version}`, 4);
  const name = r.str('name');
  const createdMs = r.varint('createdMs');
  const founders = readKeys(r, 'founder');
  const admins = readKeys(r, 'admin');
  const policy = r.str('policy');
  const quota = r.str('quota');
  const n = r.count('signature count', KEY + SIG);
  const signatures: GenesisSignature[] = [];
  for (let i = 0; i < n; i++) {
    const at = r.offset;
    const key = r.bytes(KEY, 'signature key').slice();
    const signature = r.bytes(SIG, 'signature').slice();
    const prev = signatures[signatures.length - 1];
    if (prev !== undefined && compareBytes(prev.key, key) >= 0)
      throw r.fail('signatures are not sorted by key', at);
    signatures.push({ key, signature });
  }
  r.end('the genesis');
  const nameError = validateName(name);
  if (nameError !== null) throw new GenesisError(`genesis scope name: ${nameError.message}`);
  return { name, createdMs, founders, admins, policy, quota, signatures };
}

/** Whether the genesis names no admins and no founders: an open (development) scope. */
export function isOpenScope(body: GenesisBody): boolean {
  return body.admins.length === 0 && body.founders.length === 0;
}

/** The open genesis of a scope name: what `--scope NAME` without `--genesis` runs (same id everywhere). */
export function openGenesis(name: string): Genesis {
  return { name, createdMs: 0, founders: [], admins: [], policy: '', quota: '', signatures: [] };
}

/** Adds `signer`'s signature (replacing an earlier one by the same key). */
export function signGenesis(g: Genesis, signer: Signer): Genesis {
  const sig = signer.sign(genesisBodyBytes(g));
  const others = g.signatures.filter((s) => !equalBytes(s.key, signer.publicKey));
  return {
    ...g,
    signatures: [...others, { key: signer.publicKey, signature: sig }].sort((a, b) =>
      compareBytes(a.key, b.key),
    ),
  };
}

/**
 * The founders (anchors and admins) whose valid signature the genesis lacks, and the signatures by keys
 * that are not founders. A genesis is complete when both are empty.
 */
export function genesisSignatureStatus(
  g: Genesis,
  verifier: Verifier,
): { missing: Uint8Array[]; invalid: Uint8Array[]; strangers: Uint8Array[] } {
  const body = genesisBodyBytes(g);
  const required = sortKeys([...g.founders, ...g.admins]);
  const missing: Uint8Array[] = [];
  const invalid: Uint8Array[] = [];
  for (const key of required) {
    const s = g.signatures.find((x) => equalBytes(x.key, key));
    if (s === undefined) missing.push(key);
    else if (!verifier.verify(key, body, s.signature)) invalid.push(key);
  }
  const strangers = g.signatures.filter((s) => !required.some((k) => equalBytes(k, s.key))).map((s) => s.key);
  return { missing, invalid, strangers };
}

/** Throws GenesisError (one line) unless every founder signed the body validly and nobody else did. */
export function verifyGenesis(g: Genesis, verifier: Verifier): void {
  const { missing, invalid, strangers } = genesisSignatureStatus(g, verifier);
  if (invalid.length > 0)
    throw new GenesisError(
      `genesis of ${g.name}: the signature of ${bytesToHex(invalid[0] as Uint8Array)} does not verify (altered or forged)`,
    );
  if (missing.length > 0)
    throw new GenesisError(
      `genesis of ${g.name} lacks the signature of ${missing.length} founder(s), first ${bytesToHex(missing[0] as Uint8Array)}: run aq scope sign FILE --key KEYFILE with each founder's key`,
    );
  if (strangers.length > 0)
    throw new GenesisError(
      `genesis of ${g.name} carries a signature by ${bytesToHex(strangers[0] as Uint8Array)}, which is not a founder`,
    );
}
