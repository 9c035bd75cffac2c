// Registry commands and their binary codec. Pure.
//
// Every committed Raft entry of a scope carries one encoded command, so the codec sits on the hot path
// of every proposal and every apply on every member. It is written by hand (no protobuf runtime, no
// JSON): a small writer/reader of bytes, unsigned LEB128 varints and length-prefixed UTF-8 strings.
// The format is compact and *canonical*: in one format version a command has exactly one encoding (meta
// keys sorted, minimal varints, no unused flag bits) and the decoder rejects every other byte string, so
// equal commands give equal bytes and, for any accepted bytes b, encodeCommand(decodeCommand(b), b[0])
// equals b. encodeCommand writes the current version (2) unless told otherwise.
//
// Format version 2 (all integers are minimal unsigned LEB128 varints ≤ 2^53-1 unless noted):
//
//   command    := version:u8 (=2)  type:u8  flags:u8  name:str  body  [session]
//   type       := 1 register   -> body = instance
//               | 2 deregister -> body = id:str
//               | 3 set-health -> body = id:str  health:u8
//   flags      := bit 0: a session follows the body; all other bits are 0
//   session    := client:str  seq:varint
//   instance   := id:str  address:str  port:varint  health:u8 (0 passing, 1 warning, 2 critical)  ttlMs:varint
//                 ntags:varint  tag:str*  nmeta:varint  (key:str value:str)*   keys strictly ascending
//   str        := length:varint  UTF-8 bytes (well-formed; no BOM stripping)
//
// Format version 3 (written by encodeCommand; versions 1 and 2 are still read) adds the scope's governance
// (src/governance) to the log. Everything above holds, plus:
//
//   flags      := bit 0 session, bit 1: an auth block follows the session; all other bits are 0
//   type       := 4 issue-credential  -> name = "" , body = credential:bytes   (src/governance/credential.ts)
//               | 5 revoke-credential -> name = "" , body = credentialId:32 reason:str
//               | 6 set-policy        -> name = "" , body = policy:str   (canonical JSON, src/governance/policy.ts)
//               | 7 set-quota         -> name = "" , body = quota:str    (canonical JSON, src/governance/quota.ts)
//               | 8 genesis           -> name = "" , body = genesis:bytes (src/governance/genesis.ts)
//               | 9 tree-head         -> name = "" , body = treeHead:bytes (src/lineage/tree-head.ts)
//   auth       := credentialId:32 timestampMs:varint nonce:16 signature:64   (src/governance/request.ts)
//   bytes      := length:varint raw
//
// The caller's signature covers the command encoded *without* its auth block (flag bit 1 clear), so the
// log entry itself is what was signed and an auditor re-checks it from the lineage alone.
//
// Format version 1 (still decoded: entries written before the upgrade stay in logs and snapshots) is the
// same without type 3 and without the instance's ttlMs; a version 1 instance has ttlMs 0. A group whose
// members do not all read version 2 yet can be fed encodeCommand(cmd, 1), which refuses what version 1
// cannot say (set-health, a TTL).
//
// The decoder checks structure only (types, lengths, UTF-8, order, trailing bytes); the registry rules
// (name syntax, limits) are checked by validateCommand, so that the state machine can reject a
// well-formed but invalid command with the precise reason, identically on every member.

import {
  HEALTH_VALUES,
  type Health,
  type Instance,
  validateInstance,
  validateInstanceId,
} from './instance.ts';
import { quote, validateName } from './names.ts';

/** The command format version encodeCommand writes. */
export const COMMAND_FORMAT_VERSION = 3;
/** The oldest command format version decodeCommand reads (and encodeCommand can still write). */
export const MIN_COMMAND_FORMAT_VERSION = 1;

/** A client session (Raft thesis §6.3): `seq` increases per command of `client`; retries reuse it. */
export interface Session {
  readonly client: string;
  readonly seq: number;
}

export interface RegisterCommand {
  readonly type: 'register';
  readonly name: string;
  readonly instance: Instance;
  readonly session?: Session;
}

export interface DeregisterCommand {
  readonly type: 'deregister';
  readonly name: string;
  readonly id: string;
  readonly session?: Session;
}

/**
 * Sets one instance's health. The scope's leader proposes it when an instance's TTL expires (critical)
 * or when a heartbeat revives a critical instance (passing). A no-op when the instance does not exist or
 * already has that health.
 */
export interface SetHealthCommand {
  readonly type: 'set-health';
  readonly name: string;
  readonly id: string;
  readonly health: Health;
  readonly session?: Session;
}

/** How a command proves its caller (src/governance/request.ts). */
export interface CommandAuth {
  readonly credentialId: Uint8Array;
  readonly timestampMs: number;
  readonly nonce: Uint8Array;
  readonly signature: Uint8Array;
}

/** A governance command (format 3): its name is "" and its body one typed value. */
export type GovernanceCommand =
  | {
      readonly type: 'issue-credential';
      readonly name: '';
      readonly credential: Uint8Array;
      readonly session?: Session;
      readonly auth?: CommandAuth;
    }
  | {
      readonly type: 'revoke-credential';
      readonly name: '';
      readonly credentialId: Uint8Array;
      readonly reason: string;
      readonly session?: Session;
      readonly auth?: CommandAuth;
    }
  | {
      readonly type: 'set-policy';
      readonly name: '';
      readonly policy: string;
      readonly session?: Session;
      readonly auth?: CommandAuth;
    }
  | {
      readonly type: 'set-quota';
      readonly name: '';
      readonly quota: string;
      readonly session?: Session;
      readonly auth?: CommandAuth;
    }
  | {
      readonly type: 'genesis';
      readonly name: '';
      readonly genesis: Uint8Array;
      readonly session?: Session;
      readonly auth?: CommandAuth;
    }
  | {
      readonly type: 'tree-head';
      readonly name: '';
      readonly treeHead: Uint8Array;
      readonly session?: Session;
      readonly auth?: CommandAuth;
    };

export type RegistryCommand = RegisterCommand | DeregisterCommand | SetHealthCommand;
export type Command = (RegistryCommand & { readonly auth?: CommandAuth }) | GovernanceCommand;

/** Command types that change the governance of the scope rather than its names. */
export const GOVERNANCE_TYPES: ReadonlySet<Command['type']> = new Set([
  'issue-credential',
  'revoke-credential',
  'set-policy',
  'set-quota',
  'genesis',
  'tree-head',
]);

/** Largest governance body (a policy document is at most 64 KiB). */
export const MAX_GOVERNANCE_BODY_BYTES = 64 * 1024;

/** A session client id is 1..MAX_SESSION_CLIENT_LENGTH printable ASCII characters without spaces. */
export const MAX_SESSION_CLIENT_LENGTH = 128;

const TYPE_REGISTER = 1;
const TYPE_DEREGISTER = 2;
const TYPE_SET_HEALTH = 3;
const GOVERNANCE_CODES = [
  'issue-credential',
  'revoke-credential',
  'set-policy',
  'set-quota',
  'genesis',
  'tree-head',
] as const;
const FIRST_GOVERNANCE_TYPE = 4;
const FLAG_SESSION = 1;
const FLAG_AUTH = 2;
const AUTH_NONCE_BYTES = 16;

/** Thrown by decodeCommand on any malformed input; the message says what was wrong and where. */
export class CommandDecodeError extends Error {
  override readonly name = 'CommandDecodeError';
  /** Byte offset at which decoding failed. */
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`cannot decode registry command at byte ${offset}: ${message}`);
    this.offset = offset;
  }
}

/** Thrown by encodeCommand when a value cannot be represented (negative or fractional number, lone surrogate, unknown health). */
export class CommandEncodeError extends Error {
  override readonly name = 'CommandEncodeError';
}

// ---- byte writer / reader (shared with the snapshot codec; not part of the package API) ----

/** @internal Growable byte buffer with varint and string writers. */
export class ByteWriter {
  #buf: Uint8Array;
  #pos = 0;
  readonly #fail: (message: string) => Error;

  constructor(initialSize: number, fail: (message: string) => Error) {
    this.#buf = new Uint8Array(initialSize);
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

  fail(message: string): Error {
    return this.#fail(message);
  }

  u8(v: number): void {
    this.#reserve(1);
    this.#buf[this.#pos++] = v;
  }

  bytes(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
  }

  varint(v: number, what: string): void {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw this.#fail(`${what} ${String(v)} is not an integer 0..2^53-1`);
    }
    this.#reserve(8);
    const buf = this.#buf;
    let n = v;
    while (n >= 0x80) {
      buf[this.#pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    buf[this.#pos++] = n;
  }

  /** Writes a length-prefixed UTF-8 string. Lone surrogates are refused: they would not round-trip. */
  str(s: string, what: string): void {
    if (typeof s !== 'string') throw this.#fail(`${what} is not a string`);
    // First pass: byte length (and well-formedness), so the length prefix can be written first.
    let len = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) len += 1;
      else if (c < 0x800) len += 2;
      else if (c >= 0xd800 && c <= 0xdfff) {
        const d = s.charCodeAt(i + 1);
        if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff)) {
          throw this.#fail(`${what} ${quote(s)} has a lone UTF-16 surrogate at position ${i}`);
        }
        len += 4;
        i++;
      } else len += 3;
    }
    this.varint(len, `${what} length`);
    this.#reserve(len);
    const buf = this.#buf;
    let p = this.#pos;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) buf[p++] = c;
      else if (c < 0x800) {
        buf[p++] = 0xc0 | (c >> 6);
        buf[p++] = 0x80 | (c & 0x3f);
      } else if (c >= 0xd800 && c <= 0xdbff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
        buf[p++] = 0xf0 | (cp >> 18);
        buf[p++] = 0x80 | ((cp >> 12) & 0x3f);
        buf[p++] = 0x80 | ((cp >> 6) & 0x3f);
        buf[p++] = 0x80 | (cp & 0x3f);
      } else {
        buf[p++] = 0xe0 | (c >> 12);
        buf[p++] = 0x80 | ((c >> 6) & 0x3f);
        buf[p++] = 0x80 | (c & 0x3f);
      }
    }
    this.#pos = p;
  }

  /** The bytes written so far (a copy sized exactly). */
  finish(): Uint8Array {
    return this.#buf.slice(0, this.#pos);
  }
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** @internal Bounds-checked reader; every failure goes through `fail(message, offset)`. */
export class ByteReader {
  readonly #buf: Uint8Array;
  #pos = 0;
  readonly #fail: (message: string, offset: number) => Error;

  constructor(buf: Uint8Array, fail: (message: string, offset: number) => Error) {
    this.#buf = buf;
    this.#fail = fail;
  }

  get offset(): number {
    return this.#pos;
  }

  get remaining(): number {
    return this.#buf.length - this.#pos;
  }

  fail(message: string, offset: number = this.#pos): Error {
    return this.#fail(message, offset);
  }

  u8(what: string): number {
    const v = this.#buf[this.#pos];
    if (v === undefined) throw this.#fail(`input ends where ${what} was expected (truncated?)`, this.#pos);
    this.#pos++;
    return v;
  }

  bytes(n: number, what: string): Uint8Array {
    if (n > this.remaining) {
      throw this.#fail(`${what} needs ${n} bytes but only ${this.remaining} remain (truncated?)`, this.#pos);
    }
    const out = this.#buf.subarray(this.#pos, this.#pos + n);
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
      if (b === undefined) throw this.#fail(`input ends inside ${what} (truncated?)`, start);
      this.#pos++;
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) throw this.#fail(`${what} is not minimally encoded`, start);
        if (result > Number.MAX_SAFE_INTEGER) throw this.#fail(`${what} is larger than 2^53-1`, start);
        return result;
      }
      if (i === 7) throw this.#fail(`${what} is longer than 8 bytes`, start);
      scale *= 0x80;
    }
  }

  str(what: string): string {
    const start = this.#pos;
    const len = this.varint(`${what} length`);
    const bytes = this.bytes(len, what);
    // Fast path for short ASCII strings, the common case (names, ids, addresses, keys).
    if (len <= 64) {
      let ascii = true;
      for (let i = 0; i < len; i++) {
        if ((bytes[i] ?? 0) >= 0x80) {
          ascii = false;
          break;
        }
      }
      if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
    }
    try {
      return utf8Decoder.decode(bytes);
    } catch {
      throw this.#fail(`${what} is not valid UTF-8`, start);
    }
  }

  /** A count of items that each take at least `minBytes` bytes: bounded by what remains. */
  count(what: string, minBytes: number): number {
    const start = this.#pos;
    const n = this.varint(what);
    if (n * minBytes > this.remaining) {
      throw this.#fail(
        `${what} ${n} cannot fit in the ${this.remaining} bytes that remain (truncated?)`,
        start,
      );
    }
    return n;
  }

  end(what: string): void {
    if (this.#pos !== this.#buf.length) {
      throw this.#fail(`${this.#buf.length - this.#pos} unexpected trailing bytes after ${what}`, this.#pos);
    }
  }
}

// ---- instances (shared with the snapshot codec) ----

/** @internal Writes a health as its wire code. */
export function writeHealth(w: ByteWriter, health: Health, what: string): void {
  const code = HEALTH_VALUES.indexOf(health);
  if (code < 0) throw w.fail(`${what} ${quote(String(health))} is unknown`);
  w.u8(code);
}

/** @internal Reads a health wire code. */
export function readHealth(r: ByteReader, what: string): Health {
  const at = r.offset;
  const code = r.u8(what);
  const health: Health | undefined = HEALTH_VALUES[code];
  if (health === undefined) throw r.fail(`unknown ${what} code ${code}`, at);
  return health;
}

/**
 * @internal Writes an instance; `withTtl` selects the encoding of command format 2 (and snapshot format 2),
 * false the one of format 1, which cannot carry a TTL.
 */
export function writeInstance(w: ByteWriter, instance: Instance, withTtl = true): void {
  w.str(instance.id, 'instance id');
  w.str(instance.address, 'instance address');
  w.varint(instance.port, 'instance port');
  writeHealth(w, instance.health, 'instance health');
  if (withTtl) w.varint(instance.ttlMs, 'instance ttl');
  else if (instance.ttlMs !== 0) {
    throw w.fail(`instance ttl ${String(instance.ttlMs)} cannot be written in format version 1 (no TTLs)`);
  }
  if (!Array.isArray(instance.tags)) throw w.fail('instance tags is not a list');
  if (typeof instance.meta !== 'object' || instance.meta === null)
    throw w.fail('instance meta is not an object');
  w.varint(instance.tags.length, 'tag count');
  for (const tag of instance.tags) w.str(tag, 'tag');
  // Canonical order: keys sorted by UTF-16 code units (the decoder checks the same order).
  const keys = Object.keys(instance.meta).sort();
  w.varint(keys.length, 'meta count');
  for (const key of keys) {
    w.str(key, 'meta key');
    w.str(instance.meta[key] as string, 'meta value');
  }
}

/** @internal Reads an instance written by writeInstance with the same `withTtl`. */
export function readInstance(r: ByteReader, withTtl = true): Instance {
  const id = r.str('instance id');
  const address = r.str('instance address');
  const port = r.varint('instance port');
  const health = readHealth(r, 'instance health');
  const ttlMs = withTtl ? r.varint('instance ttl') : 0;
  const ntags = r.count('tag count', 1);
  const tags: string[] = new Array(ntags);
  for (let i = 0; i < ntags; i++) tags[i] = r.str('tag');
  const nmeta = r.count('meta count', 2);
  const entries: [string, string][] = new Array(nmeta);
  let previous: string | undefined;
  for (let i = 0; i < nmeta; i++) {
    const keyOffset = r.offset;
    const key = r.str('meta key');
    if (previous !== undefined && !(previous < key)) {
      throw r.fail(
        `meta key ${quote(key)} is not after ${quote(previous)}: keys must be unique and sorted`,
        keyOffset,
      );
    }
    previous = key;
    entries[i] = [key, r.str('meta value')];
  }
  // fromEntries defines own properties, so a key such as "__proto__" stays an ordinary key.
  return { id, address, port, tags, meta: Object.fromEntries(entries), health, ttlMs };
}

// ---- commands ----

function encodeFail(message: string): Error {
  return new CommandEncodeError(`cannot encode registry command: ${message}`);
}

function decodeFail(message: string, offset: number): Error {
  return new CommandDecodeError(message, offset);
}

/**
 * Encodes a command to its canonical bytes in format `version` (default: the current one). Throws
 * CommandEncodeError for values that cannot be represented (in that version).
 */
export function encodeCommand(cmd: Command, version: number = COMMAND_FORMAT_VERSION): Uint8Array {
  if (
    version < MIN_COMMAND_FORMAT_VERSION ||
    version > COMMAND_FORMAT_VERSION ||
    !Number.isInteger(version)
  ) {
    throw encodeFail(
      `unknown format version ${String(version)} (this build writes versions ${MIN_COMMAND_FORMAT_VERSION}..${COMMAND_FORMAT_VERSION})`,
    );
  }
  const w = new ByteWriter(128, encodeFail);
  w.u8(version);
  const governance = GOVERNANCE_CODES.indexOf(cmd.type as (typeof GOVERNANCE_CODES)[number]);
  if (cmd.type === 'register') w.u8(TYPE_REGISTER);
  else if (cmd.type === 'deregister') w.u8(TYPE_DEREGISTER);
  else if (cmd.type === 'set-health') {
    if (version === 1) throw encodeFail('a set-health command cannot be written in format version 1');
    w.u8(TYPE_SET_HEALTH);
  } else if (governance >= 0) {
    if (version < 3) throw encodeFail(`a ${cmd.type} command cannot be written in format version ${version}`);
    w.u8(FIRST_GOVERNANCE_TYPE + governance);
  } else
    throw encodeFail(`unknown command type ${quote(String((cmd as unknown as { type: unknown }).type))}`);
  const auth = cmd.auth;
  if (auth !== undefined && version < 3)
    throw encodeFail(`an auth block cannot be written in format version ${version}`);
  w.u8((cmd.session === undefined ? 0 : FLAG_SESSION) | (auth === undefined ? 0 : FLAG_AUTH));
  w.str(cmd.name, 'name');
  if (cmd.type === 'register') writeInstance(w, cmd.instance, version >= 2);
  else if (cmd.type === 'deregister' || cmd.type === 'set-health') {
    w.str(cmd.id, 'instance id');
    if (cmd.type === 'set-health') writeHealth(w, cmd.health, 'health');
  } else {
    if ((cmd.name as string) !== '') throw encodeFail('a governance command has an empty name');
    if (cmd.type === 'issue-credential') writeBytes(w, cmd.credential, 'credential');
    else if (cmd.type === 'genesis') writeBytes(w, cmd.genesis, 'genesis');
    else if (cmd.type === 'tree-head') writeBytes(w, cmd.treeHead, 'tree head');
    else if (cmd.type === 'revoke-credential') {
      if (cmd.credentialId.length !== 32) throw encodeFail('a credential id is 32 bytes');
      w.bytes(cmd.credentialId);
      w.str(cmd.reason, 'reason');
    } else if (cmd.type === 'set-policy') w.str(cmd.policy, 'policy');
    else w.str(cmd.quota, 'quota');
  }
  if (cmd.session !== undefined) {
    w.str(cmd.session.client, 'session client');
    w.varint(cmd.session.seq, 'session seq');
  }
  if (auth !== undefined) {
    if (auth.credentialId.length !== 32) throw encodeFail('auth credential id must be 32 bytes');
    if (auth.nonce.length !== AUTH_NONCE_BYTES)
      throw encodeFail(`auth nonce must be ${AUTH_NONCE_BYTES} bytes`);
    if (auth.signature.length !== 64) throw encodeFail('auth signature must be 64 bytes');
    w.bytes(auth.credentialId);
    w.varint(auth.timestampMs, 'auth timestamp');
    w.bytes(auth.nonce);
    w.bytes(auth.signature);
  }
  return w.finish();
}

/** The bytes a caller signs for `cmd`: its encoding without the auth block (src/governance/request.ts). */
export function commandSignedBody(cmd: Command): Uint8Array {
  const { auth: _auth, ...bare } = cmd;
  return encodeCommand(bare as Command);
}

function writeBytes(w: ByteWriter, b: Uint8Array, what: string): void {
  if (b.length > MAX_GOVERNANCE_BODY_BYTES)
    throw w.fail(`${what} is larger than ${MAX_GOVERNANCE_BODY_BYTES} bytes`);
  w.varint(b.length, `${what} length`);
  w.bytes(b);
}

function readBytes(r: ByteReader, what: string): Uint8Array {
  const at = r.offset;
  const n = r.varint(`${what} length`);
  if (n > MAX_GOVERNANCE_BODY_BYTES)
    throw r.fail(`${what} is larger than ${MAX_GOVERNANCE_BODY_BYTES} bytes`, at);
  return r.bytes(n, what).slice();
}

/** Decodes canonical command bytes (format 1, 2 or 3). Throws CommandDecodeError (and nothing else) on any malformed input. */
export function decodeCommand(bytes: Uint8Array): Command {
  if (!(bytes instanceof Uint8Array)) throw new CommandDecodeError('input is not a Uint8Array', 0);
  const r = new ByteReader(bytes, decodeFail);
  const version = r.u8('format version');
  if (version < MIN_COMMAND_FORMAT_VERSION || version > COMMAND_FORMAT_VERSION) {
    throw r.fail(
      `unsupported format version ${version} (this build reads versions ${MIN_COMMAND_FORMAT_VERSION}..${COMMAND_FORMAT_VERSION})`,
      0,
    );
  }
  const type = r.u8('command type');
  if (type === TYPE_SET_HEALTH && version < 2) {
    throw r.fail(`command type ${type} (set-health) does not exist in format version ${version}`, 1);
  }
  const governance = GOVERNANCE_CODES[type - FIRST_GOVERNANCE_TYPE];
  if (governance !== undefined && version < 3) {
    throw r.fail(`command type ${type} (${governance}) does not exist in format version ${version}`, 1);
  }
  if (
    type !== TYPE_REGISTER &&
    type !== TYPE_DEREGISTER &&
    type !== TYPE_SET_HEALTH &&
    governance === undefined
  ) {
    throw r.fail(`unknown command type ${type}`, 1);
  }
  const flags = r.u8('flags');
  const known = version >= 3 ? FLAG_SESSION | FLAG_AUTH : FLAG_SESSION;
  if ((flags & ~known) !== 0) throw r.fail(`unknown flag bits 0x${flags.toString(16)}`, 2);
  const nameAt = r.offset;
  const name = r.str('name');
  if (governance !== undefined && name !== '')
    throw r.fail(`a ${governance} command has an empty name`, nameAt);
  let cmd: Command;
  if (type === TYPE_REGISTER) cmd = { type: 'register', name, instance: readInstance(r, version >= 2) };
  else if (type === TYPE_DEREGISTER) cmd = { type: 'deregister', name, id: r.str('instance id') };
  else if (type === TYPE_SET_HEALTH) {
    const id = r.str('instance id');
    cmd = { type: 'set-health', name, id, health: readHealth(r, 'health') };
  } else if (governance === 'issue-credential')
    cmd = { type: governance, name: '', credential: readBytes(r, 'credential') };
  else if (governance === 'genesis') cmd = { type: governance, name: '', genesis: readBytes(r, 'genesis') };
  else if (governance === 'tree-head')
    cmd = { type: governance, name: '', treeHead: readBytes(r, 'tree head') };
  else if (governance === 'revoke-credential') {
    const credentialId = r.bytes(32, 'credential id').slice();
    cmd = { type: governance, name: '', credentialId, reason: r.str('reason') };
  } else if (governance === 'set-policy') cmd = { type: governance, name: '', policy: r.str('policy') };
  else cmd = { type: 'set-quota', name: '', quota: r.str('quota') };
  let session: Session | undefined;
  if ((flags & FLAG_SESSION) !== 0) {
    const client = r.str('session client');
    session = { client, seq: r.varint('session seq') };
  }
  let auth: CommandAuth | undefined;
  if ((flags & FLAG_AUTH) !== 0) {
    const credentialId = r.bytes(32, 'auth credential id').slice();
    const timestampMs = r.varint('auth timestamp');
    const nonce = r.bytes(AUTH_NONCE_BYTES, 'auth nonce').slice();
    auth = { credentialId, timestampMs, nonce, signature: r.bytes(64, 'auth signature').slice() };
  }
  r.end('the command');
  // Optional properties are omitted, never set to undefined (exactOptionalPropertyTypes).
  if (session !== undefined) cmd = { ...cmd, session };
  if (auth !== undefined) cmd = { ...cmd, auth };
  return cmd;
}

// ---- validation ----

export type RejectCode =
  | 'malformed-command'
  | 'invalid-name'
  | 'invalid-instance'
  | 'invalid-session'
  | 'stale-session'
  // governance (src/governance): why the scope's authority refused a command
  | 'invalid-governance'
  | 'unauthenticated'
  | 'unknown-credential'
  | 'revoked'
  | 'expired'
  | 'not-yet-valid'
  | 'wrong-prefix'
  | 'wrong-scope'
  | 'policy-refused'
  | 'policy-deferred'
  | 'quota-exceeded'
  | 'no-genesis';

/** Why a command is rejected: a stable code (mapped to API errors at the edge) and one clear line. */
export interface CommandRejection {
  readonly code: RejectCode;
  readonly message: string;
}

const CLIENT_RULE = `a session client is 1..${MAX_SESSION_CLIENT_LENGTH} printable ASCII characters without spaces`;

/** Validates a session alone. */
export function validateSession(session: Session): CommandRejection | null {
  const { client, seq } = session;
  if (typeof client !== 'string' || client.length === 0 || client.length > MAX_SESSION_CLIENT_LENGTH) {
    return {
      code: 'invalid-session',
      message: `session client ${quote(String(client))} is not valid: ${CLIENT_RULE}`,
    };
  }
  for (let i = 0; i < client.length; i++) {
    const c = client.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) {
      return {
        code: 'invalid-session',
        message: `session client ${quote(client)} is not valid: ${CLIENT_RULE}`,
      };
    }
  }
  if (!Number.isSafeInteger(seq) || seq < 0) {
    return {
      code: 'invalid-session',
      message: `session ${quote(client)} seq ${String(seq)} is not valid: a seq is an integer 0..2^53-1`,
    };
  }
  return null;
}

/**
 * Checks a command against the registry rules (name syntax, instance limits, session shape).
 * API edges call it before proposing; the state machine calls it again on apply, so that a command
 * that slipped through is rejected the same way on every member.
 */
export function validateCommand(cmd: Command): CommandRejection | null {
  if (cmd.session !== undefined) {
    const sessionError = validateSession(cmd.session);
    if (sessionError !== null) return sessionError;
  }
  // Governance bodies are validated by the state machine, which knows the scope (src/governance).
  if (GOVERNANCE_TYPES.has(cmd.type)) return null;
  const nameError = validateName(cmd.name);
  if (nameError !== null) return { code: 'invalid-name', message: nameError.message };
  if (cmd.type !== 'register' && cmd.type !== 'deregister' && cmd.type !== 'set-health') return null;
  const instanceError = cmd.type === 'register' ? validateInstance(cmd.instance) : validateInstanceId(cmd.id);
  if (instanceError !== null) return { code: 'invalid-instance', message: instanceError.message };
  if (cmd.type === 'set-health' && !HEALTH_VALUES.includes(cmd.health)) {
    return {
      code: 'invalid-instance',
      message: `health ${quote(String(cmd.health))} for instance ${quote(cmd.id)} is not one of ${HEALTH_VALUES.join(', ')}`,
    };
  }
  return null;
}
