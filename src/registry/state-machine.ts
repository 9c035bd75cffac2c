// The registry state machine of one scope: what the scope's Raft log builds. Pure and deterministic:
// no I/O, no clock, no randomness, no iteration over anything whose order is not itself determined by
// the log. Every member applies the same committed entries in the same order and ends in the same
// state, byte for byte (see snapshot()).
//
// apply() is total: undecodable bytes, invalid names, invalid instances and stale sessions are
// *rejected* (a result, not an exception), identically everywhere, and still advance appliedIndex.
// The only exception is a caller bug: applying an index that is not after appliedIndex.
//
// Client sessions (Raft thesis §6.3): a command may carry {client, seq}. The state machine remembers,
// per client, the last seq applied and its result. A command with seq == last seq is a retry or a
// network duplicate: it is not applied again and gets the cached result as {type: 'duplicate'}. A
// command with seq < last seq is rejected as 'stale-session'. Sessions are bounded (maxSessions):
// when a new client would exceed the bound, the client used least recently (in log order) is
// forgotten — deterministic, because recency is a function of the log alone.
//
// modifyIndex: each name records the log index of its last change. An identical re-registration and a
// deregistration that removes nothing are not changes. A name whose last instance is removed is
// dropped from memory; so that its modifyIndex never goes backwards (blocking queries and watches
// wait for "modifyIndex > X"), the index of the latest such removal is kept as one number and
// reported as the modifyIndex of every name that has no instances (0 while nothing was ever removed).
// That is an upper bound of the real last change, as Consul does with its table indexes.

import {
  ByteReader,
  ByteWriter,
  CommandDecodeError,
  type CommandRejection,
  decodeCommand,
  type RejectCode,
  readInstance,
  validateCommand,
  writeInstance,
} from './commands.ts';
import { type Instance, validateInstance } from './instance.ts';
import { quote, validateName } from './names.ts';

export interface NoopResult {
  readonly type: 'noop';
}

export interface RegisterResult {
  readonly type: 'register';
  readonly ok: true;
  /** The name's modifyIndex after the command: the entry's index, unless the instance was already identical. */
  readonly modifyIndex: number;
}

export interface DeregisterResult {
  readonly type: 'deregister';
  readonly ok: true;
  readonly removed: boolean;
  /** The name's modifyIndex after the command: the entry's index if removed, else unchanged. */
  readonly modifyIndex: number;
}

export interface RejectedResult {
  readonly type: 'rejected';
  readonly ok: false;
  readonly code: RejectCode;
  readonly message: string;
}

/** The result of a command, as cached in its client's session. */
export type CommandResult = RegisterResult | DeregisterResult | RejectedResult;

export interface DuplicateResult {
  readonly type: 'duplicate';
  /** The result of the first application of this (client, seq). */
  readonly result: CommandResult;
}

export type ApplyResult = NoopResult | CommandResult | DuplicateResult;

export interface ResolveAnswer {
  readonly name: string;
  /** Sorted by id. The instances are frozen; the array is the caller's. */
  readonly instances: Instance[];
  /** The log index of the last change to the name (see the header comment for names without instances). */
  readonly modifyIndex: number;
}

export interface RegistryStats {
  readonly names: number;
  readonly instances: number;
}

export interface RegistryOptions {
  /** Most client sessions remembered. Must be the same on every member of the scope. */
  readonly maxSessions?: number;
}

export const DEFAULT_MAX_SESSIONS = 65_536;
export const SNAPSHOT_FORMAT_VERSION = 1;
/** "AQRS": aqmesh registry snapshot. */
const SNAPSHOT_MAGIC = [0x41, 0x51, 0x52, 0x53] as const;

/** Thrown by RegistryStateMachine.restore on malformed or inconsistent snapshot bytes. */
export class SnapshotDecodeError extends Error {
  override readonly name = 'SnapshotDecodeError';
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`cannot restore registry snapshot at byte ${offset}: ${message}`);
    this.offset = offset;
  }
}

interface NameEntry {
  readonly instances: Map<string, Instance>;
  modifyIndex: number;
  /** resolve() cache: the instances sorted by id; undefined after a change. */
  sorted: Instance[] | undefined;
}

interface SessionEntry {
  readonly seq: number;
  readonly result: CommandResult;
}

const REJECT_CODES: readonly RejectCode[] = [
  'malformed-command',
  'invalid-name',
  'invalid-instance',
  'invalid-session',
  'stale-session',
];
const RESULT_REGISTER = 1;
const RESULT_DEREGISTER = 2;
const RESULT_REJECTED = 3;

const NOOP: NoopResult = Object.freeze({ type: 'noop' });

export class RegistryStateMachine {
  readonly #names = new Map<string, NameEntry>();
  /** Insertion order = recency order (oldest first): a used session is moved to the end. */
  readonly #sessions = new Map<string, SessionEntry>();
  readonly #maxSessions: number;
  #appliedIndex = 0;
  #lastRemovalIndex = 0;
  #instanceCount = 0;

  constructor(options: RegistryOptions = {}) {
    const max = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError(`maxSessions ${String(max)} is not valid: use a positive integer`);
    }
    this.#maxSessions = max;
  }

  /** The index of the last applied log entry (0 before any). */
  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  /**
   * Applies the committed entry at `index` (strictly after appliedIndex). `data` is an encoded command;
   * empty data (a leader's no-op entry) only advances appliedIndex. Never throws for bad data.
   */
  apply(index: number, data: Uint8Array): ApplyResult {
    if (!Number.isSafeInteger(index) || index <= this.#appliedIndex) {
      throw new RangeError(
        `apply index ${String(index)} is not after the applied index ${this.#appliedIndex}: entries are applied once, in log order`,
      );
    }
    this.#appliedIndex = index;
    if (data.length === 0) return NOOP;

    let cmd: ReturnType<typeof decodeCommand>;
    try {
      cmd = decodeCommand(data);
    } catch (error) {
      if (error instanceof CommandDecodeError)
        return rejected({ code: 'malformed-command', message: error.message });
      throw error;
    }

    const session = cmd.session;
    if (session === undefined) {
      const rejection = validateCommand(cmd);
      if (rejection !== null) return rejected(rejection);
      return cmd.type === 'register'
        ? this.#register(index, cmd.name, cmd.instance)
        : this.#deregister(index, cmd.name, cmd.id);
    }

    const rejection = validateCommand(cmd);
    // A command whose session itself is malformed cannot be tracked: reject without touching sessions.
    if (rejection !== null && rejection.code === 'invalid-session') return rejected(rejection);
    const last = this.#sessions.get(session.client);
    if (last !== undefined) {
      if (session.seq === last.seq) {
        this.#touchSession(session.client, last);
        return Object.freeze({ type: 'duplicate', result: last.result });
      }
      if (session.seq < last.seq) {
        return rejected({
          code: 'stale-session',
          message: `session ${quote(session.client)} seq ${session.seq} is older than its last applied seq ${last.seq}: the command was already applied or superseded`,
        });
      }
    }
    let result: CommandResult;
    if (rejection !== null) result = rejected(rejection);
    else if (cmd.type === 'register') result = this.#register(index, cmd.name, cmd.instance);
    else result = this.#deregister(index, cmd.name, cmd.id);
    this.#touchSession(session.client, { seq: session.seq, result });
    return result;
  }

  #touchSession(client: string, entry: SessionEntry): void {
    this.#sessions.delete(client);
    this.#sessions.set(client, entry);
    if (this.#sessions.size > this.#maxSessions) {
      const oldest = this.#sessions.keys().next();
      if (oldest.done !== true) this.#sessions.delete(oldest.value);
    }
  }

  #register(index: number, name: string, instance: Instance): RegisterResult {
    let entry = this.#names.get(name);
    if (entry === undefined) {
      entry = { instances: new Map(), modifyIndex: 0, sorted: undefined };
      this.#names.set(name, entry);
    }
    const previous = entry.instances.get(instance.id);
    if (previous === undefined) this.#instanceCount++;
    else if (instancesEqual(previous, instance)) {
      return Object.freeze({ type: 'register', ok: true, modifyIndex: entry.modifyIndex });
    }
    entry.instances.set(instance.id, freezeInstance(instance));
    entry.modifyIndex = index;
    entry.sorted = undefined;
    return Object.freeze({ type: 'register', ok: true, modifyIndex: index });
  }

  #deregister(index: number, name: string, id: string): DeregisterResult {
    const entry = this.#names.get(name);
    if (entry === undefined || !entry.instances.delete(id)) {
      return Object.freeze({
        type: 'deregister',
        ok: true,
        removed: false,
        modifyIndex: this.#modifyIndexOf(name),
      });
    }
    this.#instanceCount--;
    if (entry.instances.size === 0) {
      this.#names.delete(name);
      this.#lastRemovalIndex = index;
    } else {
      entry.modifyIndex = index;
      entry.sorted = undefined;
    }
    return Object.freeze({ type: 'deregister', ok: true, removed: true, modifyIndex: index });
  }

  #modifyIndexOf(name: string): number {
    return this.#names.get(name)?.modifyIndex ?? this.#lastRemovalIndex;
  }

  /** The instances of a name, sorted by id, and the name's modifyIndex. */
  resolve(name: string): ResolveAnswer {
    const entry = this.#names.get(name);
    if (entry === undefined) return { name, instances: [], modifyIndex: this.#lastRemovalIndex };
    if (entry.sorted === undefined) {
      entry.sorted = [...entry.instances.values()].sort(byId);
    }
    return { name, instances: entry.sorted.slice(), modifyIndex: entry.modifyIndex };
  }

  stats(): RegistryStats {
    return { names: this.#names.size, instances: this.#instanceCount };
  }

  /**
   * The whole state as deterministic bytes: equal states give equal bytes. Format version 1:
   *
   *   snapshot := "AQRS" version:u8 (=1) appliedIndex lastRemovalIndex
   *               nnames (name:str modifyIndex ninstances instance*)*   names and ids strictly ascending
   *               nsessions (client:str seq result)*                     least recently used first
   *   result   := 1 modifyIndex | 2 removed:u8 modifyIndex | 3 code:u8 message:str
   *
   * with the varints, strings and instance encoding of the command codec (commands.ts).
   */
  snapshot(): Uint8Array {
    const w = new ByteWriter(
      64 + this.#instanceCount * 48,
      (message) => new Error(`cannot write snapshot: ${message}`),
    );
    for (const b of SNAPSHOT_MAGIC) w.u8(b);
    w.u8(SNAPSHOT_FORMAT_VERSION);
    w.varint(this.#appliedIndex, 'applied index');
    w.varint(this.#lastRemovalIndex, 'last removal index');
    const names = [...this.#names.keys()].sort();
    w.varint(names.length, 'name count');
    for (const name of names) {
      const entry = this.#names.get(name) as NameEntry;
      w.str(name, 'name');
      w.varint(entry.modifyIndex, 'modify index');
      const instances = entry.sorted ?? [...entry.instances.values()].sort(byId);
      entry.sorted = instances;
      w.varint(instances.length, 'instance count');
      for (const instance of instances) writeInstance(w, instance);
    }
    w.varint(this.#sessions.size, 'session count');
    for (const [client, { seq, result }] of this.#sessions) {
      w.str(client, 'session client');
      w.varint(seq, 'session seq');
      if (result.type === 'register') {
        w.u8(RESULT_REGISTER);
        w.varint(result.modifyIndex, 'modify index');
      } else if (result.type === 'deregister') {
        w.u8(RESULT_DEREGISTER);
        w.u8(result.removed ? 1 : 0);
        w.varint(result.modifyIndex, 'modify index');
      } else {
        w.u8(RESULT_REJECTED);
        w.u8(REJECT_CODES.indexOf(result.code));
        w.str(result.message, 'message');
      }
    }
    return w.finish();
  }

  /** Rebuilds a state machine from snapshot() bytes. Throws SnapshotDecodeError on malformed or inconsistent bytes. */
  static restore(bytes: Uint8Array, options: RegistryOptions = {}): RegistryStateMachine {
    if (!(bytes instanceof Uint8Array)) throw new SnapshotDecodeError('input is not a Uint8Array', 0);
    const sm = new RegistryStateMachine(options);
    const r = new ByteReader(bytes, (message, offset) => new SnapshotDecodeError(message, offset));
    for (const b of SNAPSHOT_MAGIC) {
      if (r.u8('magic') !== b) throw r.fail('not a registry snapshot (bad magic)', 0);
    }
    const version = r.u8('format version');
    if (version !== SNAPSHOT_FORMAT_VERSION) {
      throw r.fail(
        `unsupported snapshot version ${version} (this build reads version ${SNAPSHOT_FORMAT_VERSION})`,
        4,
      );
    }
    const appliedIndex = r.varint('applied index');
    const lastRemovalIndex = r.varint('last removal index');
    if (lastRemovalIndex > appliedIndex) throw r.fail('last removal index is after the applied index');
    sm.#appliedIndex = appliedIndex;
    sm.#lastRemovalIndex = lastRemovalIndex;

    const nnames = r.count('name count', 3);
    let previousName: string | undefined;
    for (let i = 0; i < nnames; i++) {
      const at = r.offset;
      const name = r.str('name');
      if (previousName !== undefined && !(previousName < name))
        throw r.fail(`name ${quote(name)} is out of order`, at);
      previousName = name;
      const nameError = validateName(name);
      if (nameError !== null) throw r.fail(nameError.message, at);
      const modifyIndex = r.varint('modify index');
      if (modifyIndex < 1 || modifyIndex > appliedIndex) {
        throw r.fail(`name ${quote(name)} modify index ${modifyIndex} is outside 1..${appliedIndex}`, at);
      }
      const ninstances = r.count('instance count', 6);
      if (ninstances === 0) throw r.fail(`name ${quote(name)} has no instances`, at);
      const instances = new Map<string, Instance>();
      const sorted: Instance[] = new Array(ninstances);
      let previousId: string | undefined;
      for (let j = 0; j < ninstances; j++) {
        const instanceAt = r.offset;
        const instance = freezeInstance(readInstance(r));
        if (previousId !== undefined && !(previousId < instance.id)) {
          throw r.fail(`instance ${quote(instance.id)} of ${quote(name)} is out of order`, instanceAt);
        }
        previousId = instance.id;
        const instanceError = validateInstance(instance);
        if (instanceError !== null) throw r.fail(instanceError.message, instanceAt);
        instances.set(instance.id, instance);
        sorted[j] = instance;
      }
      sm.#names.set(name, { instances, modifyIndex, sorted });
      sm.#instanceCount += ninstances;
    }

    const nsessions = r.count('session count', 4);
    for (let i = 0; i < nsessions; i++) {
      const at = r.offset;
      const client = r.str('session client');
      if (sm.#sessions.has(client)) throw r.fail(`session ${quote(client)} appears twice`, at);
      const seq = r.varint('session seq');
      const kind = r.u8('session result kind');
      let result: CommandResult;
      if (kind === RESULT_REGISTER) {
        result = { type: 'register', ok: true, modifyIndex: r.varint('modify index') };
      } else if (kind === RESULT_DEREGISTER) {
        const removed = r.u8('removed flag');
        if (removed > 1) throw r.fail(`removed flag ${removed} is not 0 or 1`);
        result = {
          type: 'deregister',
          ok: true,
          removed: removed === 1,
          modifyIndex: r.varint('modify index'),
        };
      } else if (kind === RESULT_REJECTED) {
        const codeAt = r.offset;
        const code = REJECT_CODES[r.u8('reject code')];
        if (code === undefined) throw r.fail('unknown reject code', codeAt);
        result = { type: 'rejected', ok: false, code, message: r.str('message') };
      } else {
        throw r.fail(`unknown session result kind ${kind}`, at);
      }
      if (result.type !== 'rejected' && result.modifyIndex > appliedIndex) {
        throw r.fail(`session ${quote(client)} result modify index is after the applied index`, at);
      }
      sm.#sessions.set(client, { seq, result: Object.freeze(result) });
    }
    r.end('the snapshot');
    // A smaller bound than the snapshot's writer had: forget the least recently used, as apply would.
    while (sm.#sessions.size > sm.#maxSessions) {
      const oldest = sm.#sessions.keys().next();
      if (oldest.done === true) break;
      sm.#sessions.delete(oldest.value);
    }
    return sm;
  }
}

function rejected(rejection: CommandRejection): RejectedResult {
  return Object.freeze({ type: 'rejected', ok: false, code: rejection.code, message: rejection.message });
}

function byId(a: Instance, b: Instance): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Stored instances are frozen (with their tags and meta), so resolve() can hand them out without
 * copies. The instances passed here are always fresh objects from the decoder, frozen in place.
 */
function freezeInstance(instance: Instance): Instance {
  Object.freeze(instance.tags);
  Object.freeze(instance.meta);
  return Object.freeze(instance);
}

function instancesEqual(a: Instance, b: Instance): boolean {
  if (a.address !== b.address || a.port !== b.port || a.health !== b.health) return false;
  if (a.tags.length !== b.tags.length) return false;
  for (let i = 0; i < a.tags.length; i++) if (a.tags[i] !== b.tags[i]) return false;
  const aKeys = Object.keys(a.meta);
  if (aKeys.length !== Object.keys(b.meta).length) return false;
  for (const key of aKeys) {
    if (!Object.hasOwn(b.meta, key) || a.meta[key] !== b.meta[key]) return false;
  }
  return true;
}
