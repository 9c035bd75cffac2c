// Where a registry state machine keeps its tables: the RegistryStore interface, its in-memory
// implementation (the default; the simulator and the unit tests use it) and the pieces of the record
// encoding that stores and snapshots share. Pure.
//
// The interface is synchronous on purpose: apply() must stay synchronous and deterministic, so a store
// that lives on disk (src/storage/rocks-registry-store.ts) reads synchronously and buffers its writes
// in memory until commit().

import type { ByteReader, ByteWriter, RejectCode } from './commands.ts';
import type { Instance } from './instance.ts';
import type { CommandResult } from './state-machine.ts';

/** What a store holds for one name that has instances. */
export interface NameRecord {
  /** Non-empty, sorted by id (strictly ascending); the array and the instances are frozen. */
  readonly instances: readonly Instance[];
  /** The log index of the name's last change. */
  readonly modifyIndex: number;
}

export interface NameEntry {
  readonly name: string;
  readonly record: NameRecord;
}

/** A client session's last applied seq and its result (Raft thesis §6.3). */
export interface SessionRecord {
  readonly seq: number;
  readonly result: CommandResult;
}

/** The numbers a state machine keeps next to its tables. */
export interface RegistryScalars {
  /** The index of the last applied log entry (0 before any). */
  readonly appliedIndex: number;
  /** The index of the latest removal of a name's last instance (0 while none). */
  readonly lastRemovalIndex: number;
  readonly instanceCount: number;
  readonly nameCount: number;
}

export const ZERO_SCALARS: RegistryScalars = Object.freeze({
  appliedIndex: 0,
  lastRemovalIndex: 0,
  instanceCount: 0,
  nameCount: 0,
});

/** What RegistryStore.replace hands its `fill` callback. */
export interface RegistrySink {
  /** Names in any order, each once. */
  putName(name: string, record: NameRecord): void;
  /** Sessions least recently used first: the last one put is the most recently used. */
  putSession(client: string, record: SessionRecord): void;
  /** Rows of the auxiliary table, in any order, each once. */
  putAux(key: string, value: Uint8Array): void;
}

/**
 * The tables of one scope's registry: the name records, the client sessions in recency order, and the
 * scalars. Every call is synchronous. One state machine per store: the store holds the state, the state
 * machine the rules. Reads see every write made before them, committed or not.
 */
export interface RegistryStore {
  /** The scalars as last set (all zero in a new store). */
  scalars(): RegistryScalars;
  setScalars(scalars: RegistryScalars): void;

  getName(name: string): NameRecord | undefined;
  /** Creates or replaces a name's record (instances non-empty, sorted by id, frozen). */
  putName(name: string, record: NameRecord): void;
  deleteName(name: string): void;
  /** Up to `limit` names n with `after` < n (and n < `before` when given), ascending. */
  scanNames(after: string, before: string | undefined, limit: number): NameEntry[];

  getSession(client: string): SessionRecord | undefined;
  /** Stores a client's session as the most recently used one. */
  touchSession(client: string, record: SessionRecord): void;
  deleteSession(client: string): void;
  /** The least recently used client, if any. */
  oldestSession(): string | undefined;
  readonly sessionCount: number;
  /** Every session, least recently used first. */
  sessions(): Iterable<readonly [string, SessionRecord]>;

  // The auxiliary table: opaque rows owned by the scope's governance and lineage (src/governance,
  // src/lineage), kept with the names so that they commit, snapshot and restore together. Keys are
  // printable ASCII.
  getAux(key: string): Uint8Array | undefined;
  putAux(key: string, value: Uint8Array): void;
  deleteAux(key: string): void;
  /** Rows whose key starts with `prefix` and is after `after` (whole key), ascending, at most `limit`. */
  scanAux(prefix: string, after: string, limit: number): [string, Uint8Array][];

  /**
   * Replaces the whole state, atomically: `fill` puts the new names and sessions and returns the new
   * scalars; if it throws, the store is unchanged (and the error propagates).
   */
  replace(fill: (sink: RegistrySink) => RegistryScalars): void;
  /** Makes the changes made since the last commit part of the stored state (a no-op in memory). */
  commit(): void;
}

/** The state in JS maps: today's behaviour, and what the simulator and the unit tests use. */
export class MemoryRegistryStore implements RegistryStore {
  #names = new Map<string, NameRecord>();
  /** The names sorted, for scans; null after a name was added or removed (rebuilt on the next scan). */
  #sorted: string[] | null = [];
  /** Insertion order = recency order (oldest first): a used session is moved to the end. */
  #sessions = new Map<string, SessionRecord>();
  #scalars: RegistryScalars = ZERO_SCALARS;
  #aux = new Map<string, Uint8Array>();
  #auxSorted: string[] | null = [];

  scalars(): RegistryScalars {
    return this.#scalars;
  }

  setScalars(scalars: RegistryScalars): void {
    this.#scalars = scalars;
  }

  getName(name: string): NameRecord | undefined {
    return this.#names.get(name);
  }

  putName(name: string, record: NameRecord): void {
    if (!this.#names.has(name)) this.#sorted = null;
    this.#names.set(name, record);
  }

  deleteName(name: string): void {
    if (this.#names.delete(name)) this.#sorted = null;
  }

  scanNames(after: string, before: string | undefined, limit: number): NameEntry[] {
    if (this.#sorted === null) this.#sorted = [...this.#names.keys()].sort();
    const sorted = this.#sorted;
    const out: NameEntry[] = [];
    for (let i = upperBound(sorted, after); i < sorted.length && out.length < limit; i++) {
      const name = sorted[i] as string;
      if (before !== undefined && name >= before) break;
      out.push({ name, record: this.#names.get(name) as NameRecord });
    }
    return out;
  }

  getSession(client: string): SessionRecord | undefined {
    return this.#sessions.get(client);
  }

  touchSession(client: string, record: SessionRecord): void {
    this.#sessions.delete(client);
    this.#sessions.set(client, record);
  }

  deleteSession(client: string): void {
    this.#sessions.delete(client);
  }

  oldestSession(): string | undefined {
    const first = this.#sessions.keys().next();
    return first.done === true ? undefined : first.value;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  sessions(): Iterable<readonly [string, SessionRecord]> {
    return this.#sessions.entries();
  }

  getAux(key: string): Uint8Array | undefined {
    return this.#aux.get(key);
  }

  putAux(key: string, value: Uint8Array): void {
    if (!this.#aux.has(key)) this.#auxSorted = null;
    this.#aux.set(key, value);
  }

  deleteAux(key: string): void {
    if (this.#aux.delete(key)) this.#auxSorted = null;
  }

  scanAux(prefix: string, after: string, limit: number): [string, Uint8Array][] {
    if (this.#auxSorted === null) this.#auxSorted = [...this.#aux.keys()].sort();
    const sorted = this.#auxSorted;
    const out: [string, Uint8Array][] = [];
    for (
      let i = upperBound(sorted, after < prefix ? '' : after);
      i < sorted.length && out.length < limit;
      i++
    ) {
      const key = sorted[i] as string;
      if (key < prefix) continue;
      if (!key.startsWith(prefix)) break;
      out.push([key, this.#aux.get(key) as Uint8Array]);
    }
    return out;
  }

  auxRows(): Iterable<readonly [string, Uint8Array]> {
    return this.#aux.entries();
  }

  replace(fill: (sink: RegistrySink) => RegistryScalars): void {
    const names = new Map<string, NameRecord>();
    const sessions = new Map<string, SessionRecord>();
    const aux = new Map<string, Uint8Array>();
    const scalars = fill({
      putAux: (key, value) => {
        aux.set(key, value);
      },
      putName: (name, record) => {
        names.set(name, record);
      },
      putSession: (client, record) => {
        sessions.delete(client);
        sessions.set(client, record);
      },
    });
    this.#names = names;
    this.#sorted = null;
    this.#sessions = sessions;
    this.#scalars = scalars;
    this.#aux = aux;
    this.#auxSorted = null;
  }

  commit(): void {}
}

/** @internal The first index i with sorted[i] > key. */
export function upperBound(sorted: readonly string[], key: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as string) <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// ---- command results (shared by the snapshot format and stores that encode sessions) ----
//
//   result := 1 modifyIndex | 2 removed:u8 modifyIndex | 3 code:u8 message:str | 4 changed:u8 modifyIndex
//           | 5 command:u8 lineageIndex detail:str                          (governance; lineageIndex + 1, 0 = none)
//           | 11, 12, 14: kinds 1, 2, 4 followed by lineageIndex             (a change recorded in the lineage)
//
// Kind 4 (set-health) exists from snapshot format 2 on, kinds 5 and 1x from format 3 on.

const REJECT_CODES: readonly RejectCode[] = [
  'malformed-command',
  'invalid-name',
  'invalid-instance',
  'invalid-session',
  'stale-session',
  'invalid-governance',
  'unauthenticated',
  'unknown-credential',
  'revoked',
  'expired',
  'not-yet-valid',
  'wrong-prefix',
  'wrong-scope',
  'policy-refused',
  'policy-deferred',
  'quota-exceeded',
  'no-genesis',
];
const GOVERN_COMMANDS = [
  'issue-credential',
  'revoke-credential',
  'set-policy',
  'set-quota',
  'genesis',
  'tree-head',
] as const;
const RESULT_REGISTER = 1;
const RESULT_DEREGISTER = 2;
const RESULT_REJECTED = 3;
const RESULT_SET_HEALTH = 4;
const RESULT_GOVERN = 5;
const WITH_LINEAGE = 10;

/** @internal */
export function writeCommandResult(w: ByteWriter, result: CommandResult): void {
  const lineage = 'lineageIndex' in result ? result.lineageIndex : undefined;
  const extra = lineage === undefined ? 0 : WITH_LINEAGE;
  if (result.type === 'register') {
    w.u8(RESULT_REGISTER + extra);
    w.varint(result.modifyIndex, 'modify index');
  } else if (result.type === 'deregister') {
    w.u8(RESULT_DEREGISTER + extra);
    w.u8(result.removed ? 1 : 0);
    w.varint(result.modifyIndex, 'modify index');
  } else if (result.type === 'set-health') {
    w.u8(RESULT_SET_HEALTH + extra);
    w.u8(result.changed ? 1 : 0);
    w.varint(result.modifyIndex, 'modify index');
  } else if (result.type === 'govern') {
    w.u8(RESULT_GOVERN);
    w.u8(GOVERN_COMMANDS.indexOf(result.command));
    w.varint(result.lineageIndex === undefined ? 0 : result.lineageIndex + 1, 'lineage index');
    w.str(result.detail, 'detail');
    return;
  } else {
    w.u8(RESULT_REJECTED);
    w.u8(REJECT_CODES.indexOf(result.code));
    w.str(result.message, 'message');
    return;
  }
  if (lineage !== undefined) w.varint(lineage, 'lineage index');
}

/**
 * @internal Reads a result written by writeCommandResult; `version` is the snapshot format that holds it
 * (1: no kind 4; 2: no kinds 5 and 1x).
 */
export function readCommandResult(r: ByteReader, version: number | boolean = 3): CommandResult {
  const v = version === true ? 3 : version === false ? 1 : version;
  const at = r.offset;
  let kind = r.u8('session result kind');
  let lineage = false;
  if (v >= 3 && kind > WITH_LINEAGE) {
    kind -= WITH_LINEAGE;
    lineage = true;
    if (kind !== RESULT_REGISTER && kind !== RESULT_DEREGISTER && kind !== RESULT_SET_HEALTH)
      throw r.fail(`unknown session result kind ${kind + WITH_LINEAGE}`, at);
  }
  const withLineage = <T extends object>(result: T): T =>
    Object.freeze(lineage ? { ...result, lineageIndex: r.varint('lineage index') } : result);
  if (kind === RESULT_REGISTER) {
    return withLineage({ type: 'register', ok: true, modifyIndex: r.varint('modify index') } as const);
  }
  if (kind === RESULT_DEREGISTER || (kind === RESULT_SET_HEALTH && v >= 2)) {
    const flagAt = r.offset;
    const flag = r.u8(kind === RESULT_DEREGISTER ? 'removed flag' : 'changed flag');
    if (flag > 1) {
      throw r.fail(
        `${kind === RESULT_DEREGISTER ? 'removed' : 'changed'} flag ${flag} is not 0 or 1`,
        flagAt,
      );
    }
    const modifyIndex = r.varint('modify index');
    return kind === RESULT_DEREGISTER
      ? withLineage({ type: 'deregister', ok: true, removed: flag === 1, modifyIndex } as const)
      : withLineage({ type: 'set-health', ok: true, changed: flag === 1, modifyIndex } as const);
  }
  if (kind === RESULT_REJECTED) {
    const codeAt = r.offset;
    const code = REJECT_CODES[r.u8('reject code')];
    if (code === undefined) throw r.fail('unknown reject code', codeAt);
    return Object.freeze({ type: 'rejected', ok: false, code, message: r.str('message') });
  }
  if (kind === RESULT_GOVERN && v >= 3) {
    const cAt = r.offset;
    const command = GOVERN_COMMANDS[r.u8('governance command')];
    if (command === undefined) throw r.fail('unknown governance command', cAt);
    const li = r.varint('lineage index');
    const detail = r.str('detail');
    return Object.freeze(
      li === 0
        ? { type: 'govern', ok: true, command, detail }
        : { type: 'govern', ok: true, command, lineageIndex: li - 1, detail },
    );
  }
  throw r.fail(`unknown session result kind ${kind}`, at);
}
