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
// dropped from the store; so that its modifyIndex never goes backwards (blocking queries and watches
// wait for "modifyIndex > X"), the index of the latest such removal is kept as one number and
// reported as the modifyIndex of every name that has no instances (0 while nothing was ever removed).
// That is an upper bound of the real last change, as Consul does with its table indexes.
//
// Health: an instance carries its health and an optional TTL (ttlMs). The state machine has no clock:
// the scope's leader proposes `set-health` when a TTL expires or a heartbeat revives a critical instance
// (src/scope), and every member applies it like any command. Registering an existing id replaces the
// instance, health included.
//
// Storage: the tables live in a RegistryStore (store.ts): a MemoryRegistryStore by default, or RocksDB
// (src/storage/rocks-registry-store.ts) so that a scope can hold millions of instances in bounded memory.
// The state machine reads its scalars (appliedIndex first) from the store when it is built, so a store
// reopened after a restart resumes where its last commit left it. onChange reports every applied change
// of a name, synchronously, after the state (sessions included) is updated.

import { bytesToHex } from '@noble/hashes/utils.js';
import { actionOf, type Principal, ScopeAuthority, tagsOf } from '../governance/authority.ts';
import { equalBytes } from '../governance/genesis.ts';
import type { Verifier } from '../identity/signer.ts';
import { encodeEntry } from '../lineage/entry.ts';
import { LineageLog } from '../lineage/log.ts';
import { decodeTreeHead, type TreeHead, verifyTreeHead } from '../lineage/tree-head.ts';
import {
  ByteReader,
  ByteWriter,
  CommandDecodeError,
  type CommandRejection,
  decodeCommand,
  GOVERNANCE_TYPES,
  type GovernanceCommand,
  type RejectCode,
  readInstance,
  type Session,
  validateCommand,
  writeInstance,
} from './commands.ts';
import { type Health, type Instance, validateInstance } from './instance.ts';
import { quote, validateName } from './names.ts';
import {
  MemoryRegistryStore,
  type NameRecord,
  type RegistryScalars,
  type RegistryStore,
  readCommandResult,
  type SessionRecord,
  writeCommandResult,
} from './store.ts';

export interface NoopResult {
  readonly type: 'noop';
}

export interface RegisterResult {
  readonly type: 'register';
  readonly ok: true;
  /** The change's lineage entry (absent before the scope has a genesis, or when nothing changed). */
  readonly lineageIndex?: number;
  /** The name's modifyIndex after the command: the entry's index, unless the instance was already identical. */
  readonly modifyIndex: number;
}

export interface DeregisterResult {
  readonly type: 'deregister';
  readonly ok: true;
  readonly lineageIndex?: number;
  readonly removed: boolean;
  /** The name's modifyIndex after the command: the entry's index if removed, else unchanged. */
  readonly modifyIndex: number;
}

export interface SetHealthResult {
  readonly type: 'set-health';
  readonly ok: true;
  readonly lineageIndex?: number;
  /** False when the instance does not exist or already had that health (nothing changed). */
  readonly changed: boolean;
  /** The name's modifyIndex after the command: the entry's index if changed, else unchanged. */
  readonly modifyIndex: number;
}

/** A governance command applied (genesis, credential issue/revoke, policy, quota, tree head). */
export interface GovernResult {
  readonly type: 'govern';
  readonly ok: true;
  readonly command: GovernanceCommand['type'];
  readonly lineageIndex?: number;
  /** What it did, e.g. the issued credential's id (hex). */
  readonly detail: string;
}

export interface RejectedResult {
  readonly type: 'rejected';
  readonly ok: false;
  readonly code: RejectCode;
  readonly message: string;
}

/** The result of a command, as cached in its client's session. */
export type CommandResult =
  | RegisterResult
  | DeregisterResult
  | SetHealthResult
  | GovernResult
  | RejectedResult;

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

/** One applied change of a name, as reported to onChange. */
export interface RegistryChange {
  readonly name: string;
  /** The name's instances after the change, sorted by id (empty when its last instance was removed); frozen. */
  readonly instances: readonly Instance[];
  /** The index of the entry that made the change. */
  readonly modifyIndex: number;
}

export interface RegistryStats {
  readonly names: number;
  readonly instances: number;
}

export interface RegistryOptions {
  /** Most client sessions remembered. Must be the same on every member of the scope. */
  readonly maxSessions?: number;
  /**
   * Where the tables live. Default: a new MemoryRegistryStore. The state machine starts from the store's
   * state (a reopened store resumes after its applied index). One state machine per store.
   */
  readonly store?: RegistryStore;
  /**
   * Called synchronously by apply() for every command that really changed a name (a register that was
   * not identical, a deregister that removed, a set-health that changed), once the state is updated.
   * Not called by restore() (the whole state changes: read it again with list()).
   */
  readonly onChange?: (change: RegistryChange) => void;
  /**
   * Checks genesis and tree-head signatures (src/identity/signer.ts: NodeVerifier in an anchor). Without
   * one, only an open genesis can be applied.
   */
  readonly verifier?: Verifier;
  /** The scope id the group was formed for: a genesis certifying another is rejected ('wrong-scope'). */
  readonly expectedScopeId?: Uint8Array;
}

/** First byte of an *admitted* entry: the admitting anchor's key and signature wrap the command. */
export const ADMITTED_ENTRY_MARK = 0xa5;
const NO_KEY = new Uint8Array(32);
const NO_SIGNATURE = new Uint8Array(64);

/**
 * Wraps command bytes with the admitting anchor's signature (lineage/entry.ts: over the scope id, the
 * kind and the command bytes), as an anchor proposes them:
 *   admitted := 0xA5 signer:32 signature:64 command
 */
export function admittedEntry(signer: Uint8Array, signature: Uint8Array, command: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + 32 + 64 + command.length);
  out[0] = ADMITTED_ENTRY_MARK;
  out.set(signer, 1);
  out.set(signature, 33);
  out.set(command, 97);
  return out;
}

/** Splits an entry into its admitting signature (zeros when absent) and its command bytes. */
export function splitAdmitted(data: Uint8Array): {
  signer: Uint8Array;
  signature: Uint8Array;
  command: Uint8Array;
} {
  if (data[0] !== ADMITTED_ENTRY_MARK || data.length < 97)
    return { signer: NO_KEY, signature: NO_SIGNATURE, command: data };
  return { signer: data.subarray(1, 33), signature: data.subarray(33, 97), command: data.subarray(97) };
}

export const DEFAULT_MAX_SESSIONS = 65_536;
/** The snapshot format version snapshot() writes; restore() reads versions 1 and 2. */
export const SNAPSHOT_FORMAT_VERSION = 3;
/** "AQRS": aqmesh registry snapshot. */
const SNAPSHOT_MAGIC = [0x41, 0x51, 0x52, 0x53] as const;
/** Names read from the store per scan while writing a snapshot. */
const SNAPSHOT_SCAN_PAGE = 1024;

/** Thrown by RegistryStateMachine.restore on malformed or inconsistent snapshot bytes. */
export class SnapshotDecodeError extends Error {
  override readonly name = 'SnapshotDecodeError';
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`cannot restore registry snapshot at byte ${offset}: ${message}`);
    this.offset = offset;
  }
}

const NOOP: NoopResult = Object.freeze({ type: 'noop' });
/** Without a verifier, no signature is accepted (only an open genesis needs none). */
const REFUSE_ALL: Verifier = { verify: () => false };
const NO_INSTANCES: readonly Instance[] = Object.freeze([]);

export class RegistryStateMachine {
  readonly #store: RegistryStore;
  readonly #maxSessions: number;
  readonly #onChange: ((change: RegistryChange) => void) | undefined;
  #lastSession: Session | undefined;
  #appliedIndex: number;
  #lastRemovalIndex: number;
  #instanceCount: number;
  #nameCount: number;
  /** The change made by the command being applied, reported once apply() is done. */
  #change: RegistryChange | null = null;
  readonly #authority: ScopeAuthority;
  readonly #lineage: LineageLog;
  readonly #verifier: Verifier | undefined;
  readonly #expectedScopeId: Uint8Array | undefined;
  /** The admitting signature of the entry being applied. */
  #admit: { signer: Uint8Array; signature: Uint8Array; command: Uint8Array } | null = null;

  constructor(options: RegistryOptions = {}) {
    const max = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError(`maxSessions ${String(max)} is not valid: use a positive integer`);
    }
    this.#maxSessions = max;
    this.#onChange = options.onChange;
    this.#store = options.store ?? new MemoryRegistryStore();
    const s = this.#store.scalars();
    this.#appliedIndex = s.appliedIndex;
    this.#lastRemovalIndex = s.lastRemovalIndex;
    this.#instanceCount = s.instanceCount;
    this.#nameCount = s.nameCount;
    this.#verifier = options.verifier;
    this.#expectedScopeId = options.expectedScopeId;
    this.#authority = new ScopeAuthority(this.#store, options.verifier ?? REFUSE_ALL);
    const store = this.#store;
    this.#lineage = new LineageLog({
      get: (key) => store.getAux(`l/${key}`),
      put: (key, value) => store.putAux(`l/${key}`, value),
    });
    // A store written with a larger bound: forget the least recently used, as apply would.
    this.#trimSessions();
  }

  /** The scope's governance state (genesis, credentials, policy, quota) and admission rules. */
  get authority(): ScopeAuthority {
    return this.#authority;
  }

  /** The scope's lineage log (empty until the genesis is applied). */
  get lineage(): LineageLog {
    return this.#lineage;
  }

  /** The latest tree head applied (signed by a leader), if any. */
  get treeHead(): TreeHead | undefined {
    const row = this.#store.getAux('g/th');
    return row === undefined ? undefined : decodeTreeHead(row);
  }

  /** The tree head of `size` applied earlier, if any. */
  treeHeadOfSize(size: number): TreeHead | undefined {
    const row = this.#store.getAux(`g/ths/${size.toString(36).padStart(11, '0')}`);
    return row === undefined ? undefined : decodeTreeHead(row);
  }

  /** The index of the last applied log entry (0 before any). */
  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  /** The store this state machine reads and writes. */
  get store(): RegistryStore {
    return this.#store;
  }

  /**
   * Applies the committed entry at `index` (strictly after appliedIndex). `data` is an encoded command;
   * empty data (a leader's no-op entry) only advances appliedIndex; a `conf-change` entry (membership,
   * applied by the consensus core) only advances it and is recorded in the lineage. Never throws for bad
   * data (a store that cannot read its own records throws, leaving appliedIndex where it was).
   */
  /**
   * The client session of the command the last apply() decoded (undefined for a no-op, a malformed
   * command or one without a session): lets the caller match the entry to a waiting request without
   * decoding it a second time.
   */
  get lastAppliedSession(): Session | undefined {
    return this.#lastSession;
  }

  apply(index: number, data: Uint8Array, kind: 'normal' | 'conf-change' = 'normal'): ApplyResult {
    if (!Number.isSafeInteger(index) || index <= this.#appliedIndex) {
      throw new RangeError(
        `apply index ${String(index)} is not after the applied index ${this.#appliedIndex}: entries are applied once, in log order`,
      );
    }
    this.#change = null;
    this.#lastSession = undefined;
    let result: ApplyResult = NOOP;
    if (kind === 'conf-change') this.#recordMembership(index, data);
    else if (data.length > 0) result = this.#applyCommand(index, data);
    this.#appliedIndex = index;
    this.#store.setScalars({
      appliedIndex: index,
      lastRemovalIndex: this.#lastRemovalIndex,
      instanceCount: this.#instanceCount,
      nameCount: this.#nameCount,
    });
    const change = this.#change;
    if (change !== null) {
      this.#change = null;
      this.#onChange?.(change);
    }
    return result;
  }

  #applyCommand(index: number, entry: Uint8Array): ApplyResult {
    const admit = splitAdmitted(entry);
    this.#admit = admit;
    const data = admit.command;
    let cmd: ReturnType<typeof decodeCommand>;
    try {
      cmd = decodeCommand(data);
    } catch (error) {
      if (error instanceof CommandDecodeError)
        return rejected({ code: 'malformed-command', message: error.message });
      throw error;
    }

    const session = cmd.session;
    this.#lastSession = session;
    if (session === undefined) {
      const rejection = validateCommand(cmd);
      if (rejection !== null) return rejected(rejection);
      return this.#run(index, cmd);
    }

    const rejection = validateCommand(cmd);
    // A command whose session itself is malformed cannot be tracked: reject without touching sessions.
    if (rejection !== null && rejection.code === 'invalid-session') return rejected(rejection);
    const last = this.#store.getSession(session.client);
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
    const result = rejection !== null ? rejected(rejection) : this.#run(index, cmd);
    this.#touchSession(session.client, { seq: session.seq, result });
    return result;
  }

  #run(index: number, cmd: ReturnType<typeof decodeCommand>): CommandResult {
    if (cmd.type === 'genesis') return this.#applyGenesis(index, cmd.genesis);
    if (cmd.type === 'tree-head') return this.#applyTreeHead(cmd.treeHead);
    const governed = this.#authority.genesis !== undefined;
    if (!governed && GOVERNANCE_TYPES.has(cmd.type))
      return rejected({ code: 'no-genesis', message: `a ${cmd.type} command needs a scope with a genesis` });
    // Admission: the scope's own authority, at this index, identically on every member.
    const action = actionOf(cmd);
    let principal: Principal | null = null;
    if (cmd.type === 'set-health' && cmd.auth === undefined) {
      // Proposed by a leader's TTL monitor: admitted by an anchor of the scope, not by a caller.
      if (!this.#authority.open && !this.#authority.isAnchorKey(this.#admit?.signer ?? NO_KEY))
        return rejected({
          code: 'unauthenticated',
          message: 'a health change must be admitted by an anchor of the scope',
        });
    } else {
      const decision = this.#authority.authorize(cmd, action, tagsOf(cmd));
      if (!decision.ok) return rejected(decision.rejection);
      principal = decision.principal;
    }
    let result: CommandResult;
    if (cmd.type === 'register') {
      const quota = this.#checkQuota(cmd.name, cmd.instance, principal, cmd.auth?.timestampMs);
      if (quota !== null) return rejected(quota);
      result = this.#register(index, cmd.name, cmd.instance);
    } else if (cmd.type === 'deregister') result = this.#deregister(index, cmd.name, cmd.id);
    else if (cmd.type === 'set-health') result = this.#setHealth(index, cmd.name, cmd.id, cmd.health);
    else {
      const outcome = this.#govern(index, cmd, principal);
      if (outcome.type === 'rejected') return outcome;
      result = outcome;
    }
    return this.#record(index, result);
  }

  /** Appends the applied command to the lineage (once the scope has a genesis) and notes its index. */
  #record<T extends CommandResult>(index: number, result: T): T {
    const scopeId = this.#authority.scopeId;
    if (scopeId === undefined || result.type === 'rejected') return result;
    if (result.type === 'set-health' && !result.changed) return result;
    if (result.type === 'deregister' && !result.removed) return result;
    const admit = this.#admit;
    const lineageIndex = this.#lineage.append(
      encodeEntry({
        scopeId,
        index: this.#lineage.size,
        logIndex: index,
        kind: 'command',
        payload: admit?.command ?? new Uint8Array(0),
        signer: admit?.signer ?? NO_KEY,
        signature: admit?.signature ?? NO_SIGNATURE,
      }),
    );
    return Object.freeze({ ...result, lineageIndex }) as unknown as T;
  }

  /**
   * A Raft configuration change (a member added, promoted or removed) is a lineage entry too, once the
   * scope has a genesis. Its payload is the change as the log holds it; it is unsigned (lineage/entry.ts).
   */
  #recordMembership(index: number, change: Uint8Array): void {
    const scopeId = this.#authority.scopeId;
    if (scopeId === undefined || change.length === 0) return;
    this.#lineage.append(
      encodeEntry({
        scopeId,
        index: this.#lineage.size,
        logIndex: index,
        kind: 'membership',
        payload: change,
        signer: NO_KEY,
        signature: NO_SIGNATURE,
      }),
    );
  }

  #applyGenesis(index: number, bytes: Uint8Array): CommandResult {
    const outcome = this.#authority.applyGenesis(bytes, this.#expectedScopeId);
    if ('code' in outcome) return rejected(outcome);
    const scopeId = this.#authority.scopeId as Uint8Array;
    const admit = this.#admit;
    const lineageIndex = this.#lineage.append(
      encodeEntry({
        scopeId,
        index: this.#lineage.size,
        logIndex: index,
        kind: 'genesis',
        payload: bytes,
        signer: admit?.signer ?? NO_KEY,
        signature: admit?.signature ?? NO_SIGNATURE,
      }),
    );
    return Object.freeze({
      type: 'govern',
      ok: true,
      command: 'genesis',
      lineageIndex,
      detail: bytesToHex(scopeId),
    });
  }

  /** A leader's signed tree head: checked against this member's own tree, then kept. Not a lineage entry. */
  #applyTreeHead(bytes: Uint8Array): CommandResult {
    const scopeId = this.#authority.scopeId;
    if (scopeId === undefined)
      return rejected({ code: 'no-genesis', message: 'a tree head needs a scope with a genesis' });
    let head: TreeHead;
    try {
      head = decodeTreeHead(bytes);
    } catch (error) {
      return rejected({ code: 'invalid-governance', message: (error as Error).message });
    }
    if (!equalBytes(head.scopeId, scopeId))
      return rejected({ code: 'wrong-scope', message: 'the tree head names another scope' });
    if (head.size > this.#lineage.size || head.size < 1)
      return rejected({
        code: 'invalid-governance',
        message: `the tree head's size ${head.size} is not in 1..${this.#lineage.size}`,
      });
    if (!equalBytes(this.#lineage.root(head.size), head.root))
      return rejected({
        code: 'invalid-governance',
        message: `the tree head's root for size ${head.size} differs from this member's lineage (divergence)`,
      });
    if (!this.#authority.open && !this.#authority.isAnchorKey(head.signer))
      return rejected({
        code: 'unauthenticated',
        message: 'the tree head is not signed by an anchor of the scope',
      });
    if (this.#verifier !== undefined && !verifyTreeHead(head, this.#verifier))
      return rejected({ code: 'invalid-governance', message: 'the tree head signature does not verify' });
    const latest = this.treeHead;
    if (latest !== undefined && head.size <= latest.size)
      return rejected({
        code: 'invalid-governance',
        message: `a tree head of size ${latest.size} is already recorded`,
      });
    this.#store.putAux('g/th', bytes);
    this.#store.putAux(`g/ths/${head.size.toString(36).padStart(11, '0')}`, bytes);
    return Object.freeze({ type: 'govern', ok: true, command: 'tree-head', detail: String(head.size) });
  }

  #govern(index: number, cmd: GovernanceCommand, principal: Principal | null): GovernResult | RejectedResult {
    const done = (detail: string): GovernResult =>
      Object.freeze({ type: 'govern', ok: true, command: cmd.type, detail });
    if (cmd.type === 'issue-credential') {
      const outcome = this.#authority.issue(cmd.credential, index, principal);
      return outcome instanceof Uint8Array ? done(bytesToHex(outcome)) : rejected(outcome);
    }
    if (cmd.type === 'revoke-credential') {
      const outcome = this.#authority.revoke(cmd.credentialId, cmd.reason, index, principal);
      return outcome === null ? done(bytesToHex(cmd.credentialId)) : rejected(outcome);
    }
    if (
      (cmd.type === 'set-policy' || cmd.type === 'set-quota') &&
      principal !== null &&
      principal.prefix !== ''
    )
      return rejected({
        code: 'wrong-prefix',
        message: `the ${cmd.type === 'set-policy' ? 'policy' : 'quota'} covers the whole scope: it needs a scope-admin credential for every name (prefix ""), not ${JSON.stringify(principal.prefix)}`,
      });
    if (cmd.type === 'set-policy') {
      const outcome = this.#authority.setPolicy(cmd.policy);
      return outcome === null ? done('policy set') : rejected(outcome);
    }
    if (cmd.type === 'set-quota') {
      const outcome = this.#authority.setQuota(cmd.quota, (prefix) => this.#countUnder(prefix));
      return outcome === null ? done('quota set') : rejected(outcome);
    }
    return rejected({ code: 'invalid-governance', message: `${cmd.type} is applied elsewhere` });
  }

  #checkQuota(
    name: string,
    instance: Instance,
    principal: Principal | null,
    timestampMs: number | undefined,
  ): CommandRejection | null {
    if (this.#authority.quota === undefined) return null;
    const record = this.#store.getName(name);
    const exists =
      record !== undefined && record.instances[indexOfId(record.instances, instance.id)]?.id === instance.id;
    return this.#authority.checkRegistration(
      name,
      {
        addsInstance: !exists,
        addsName: record === undefined,
        instances: this.#instanceCount,
        names: this.#nameCount,
      },
      principal,
      timestampMs,
    );
  }

  /** Instances of names starting with `prefix` (a plain string prefix), by one scan. */
  #countUnder(prefix: string): number {
    let n = 0;
    // Every name starting with `prefix` sorts after the prefix without its last character.
    let after = prefix.slice(0, -1);
    for (;;) {
      const page = this.#store.scanNames(after, undefined, SNAPSHOT_SCAN_PAGE);
      for (const { name, record } of page) {
        if (name < prefix) continue;
        if (!name.startsWith(prefix)) return n;
        n += record.instances.length;
      }
      const last = page.at(-1);
      if (last === undefined || page.length < SNAPSHOT_SCAN_PAGE) return n;
      after = last.name;
    }
  }

  #touchSession(client: string, entry: SessionRecord): void {
    this.#store.touchSession(client, entry);
    this.#trimSessions();
  }

  #trimSessions(): void {
    while (this.#store.sessionCount > this.#maxSessions) {
      const oldest = this.#store.oldestSession();
      if (oldest === undefined) break;
      this.#store.deleteSession(oldest);
    }
  }

  #put(index: number, name: string, instances: readonly Instance[]): void {
    Object.freeze(instances);
    this.#store.putName(name, { instances, modifyIndex: index });
    this.#change = { name, instances, modifyIndex: index };
  }

  #register(index: number, name: string, instance: Instance): RegisterResult {
    const record = this.#store.getName(name);
    const instances = record?.instances ?? NO_INSTANCES;
    const at = indexOfId(instances, instance.id);
    const previous = instances[at];
    const exists = previous !== undefined && previous.id === instance.id;
    if (exists && instancesEqual(previous, instance)) {
      return Object.freeze({ type: 'register', ok: true, modifyIndex: record?.modifyIndex ?? index });
    }
    const next = instances.slice();
    if (exists) next[at] = freezeInstance(instance);
    else {
      next.splice(at, 0, freezeInstance(instance));
      this.#instanceCount++;
      this.#authority.countInstance(name, 1);
      if (record === undefined) this.#nameCount++;
    }
    this.#put(index, name, next);
    return Object.freeze({ type: 'register', ok: true, modifyIndex: index });
  }

  #deregister(index: number, name: string, id: string): DeregisterResult {
    const record = this.#store.getName(name);
    const instances = record?.instances ?? NO_INSTANCES;
    const at = indexOfId(instances, id);
    if (record === undefined || instances[at]?.id !== id) {
      return Object.freeze({
        type: 'deregister',
        ok: true,
        removed: false,
        modifyIndex: record?.modifyIndex ?? this.#lastRemovalIndex,
      });
    }
    this.#instanceCount--;
    this.#authority.countInstance(name, -1);
    if (instances.length === 1) {
      this.#store.deleteName(name);
      this.#nameCount--;
      this.#lastRemovalIndex = index;
      this.#change = { name, instances: NO_INSTANCES, modifyIndex: index };
    } else {
      const next = instances.slice();
      next.splice(at, 1);
      this.#put(index, name, next);
    }
    return Object.freeze({ type: 'deregister', ok: true, removed: true, modifyIndex: index });
  }

  #setHealth(index: number, name: string, id: string, health: Health): SetHealthResult {
    const record = this.#store.getName(name);
    const instances = record?.instances ?? NO_INSTANCES;
    const at = indexOfId(instances, id);
    const previous = instances[at];
    if (record === undefined || previous === undefined || previous.id !== id || previous.health === health) {
      return Object.freeze({
        type: 'set-health',
        ok: true,
        changed: false,
        modifyIndex: record?.modifyIndex ?? this.#lastRemovalIndex,
      });
    }
    const next = instances.slice();
    // The tags and meta are already frozen; the new instance shares them.
    next[at] = Object.freeze({ ...previous, health });
    this.#put(index, name, next);
    return Object.freeze({ type: 'set-health', ok: true, changed: true, modifyIndex: index });
  }

  /** The instances of a name, sorted by id, and the name's modifyIndex. */
  resolve(name: string): ResolveAnswer {
    const record = this.#store.getName(name);
    if (record === undefined) return { name, instances: [], modifyIndex: this.#lastRemovalIndex };
    return { name, instances: record.instances.slice(), modifyIndex: record.modifyIndex };
  }

  /**
   * Up to `limit` names that are `prefix` or lie under it label-wise (`a/b` covers `a/b` and `a/b/c`,
   * not `a/bc`; the empty prefix covers every name), in name order, strictly after `after` ('' = from
   * the start): pass the last name of a page to get the next one. Only names with instances are listed.
   */
  list(prefix: string, after: string, limit: number): ResolveAnswer[] {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`list limit ${String(limit)} is not valid: use a positive integer`);
    }
    const out: ResolveAnswer[] = [];
    const push = (name: string, record: NameRecord): void => {
      out.push({ name, instances: record.instances.slice(), modifyIndex: record.modifyIndex });
    };
    if (prefix === '') {
      for (const { name, record } of this.#store.scanNames(after, undefined, limit)) push(name, record);
      return out;
    }
    // Under `p` means `p` itself, then the key range [p + '/', p + '0') ('0' is the character after '/').
    // Names such as `p-x` sort between the two and are not under `p`.
    if (after < prefix) {
      const record = this.#store.getName(prefix);
      if (record !== undefined) push(prefix, record);
    }
    if (out.length < limit) {
      const below = `${prefix}/`;
      // `p/` is not a name, so "after p/" is the whole range.
      const from = after < below ? below : after;
      for (const { name, record } of this.#store.scanNames(from, `${prefix}0`, limit - out.length)) {
        push(name, record);
      }
    }
    return out;
  }

  stats(): RegistryStats {
    return { names: this.#nameCount, instances: this.#instanceCount };
  }

  /**
   * The whole state as deterministic bytes: equal states give equal bytes. Format version 2:
   *
   *   snapshot := "AQRS" version:u8 (=2) appliedIndex lastRemovalIndex
   *               nnames (name:str modifyIndex ninstances instance*)*   names and ids strictly ascending
   *               nsessions (client:str seq result)*                     least recently used first
   *   result   := 1 modifyIndex | 2 removed:u8 modifyIndex | 3 code:u8 message:str | 4 changed:u8 modifyIndex
   *
   * with the varints, strings and (format 2) instance encoding of the command codec (commands.ts).
   * Version 3 (governance and lineage) adds result kinds 5 and 1x and, at the end, the auxiliary table:
   *   naux (key:str value:bytes)*   keys strictly ascending
   * Version 1 is the same without the instances' ttlMs and without result kind 4; restore() reads all three.
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
    w.varint(this.#nameCount, 'name count');
    let written = 0;
    let after = '';
    for (;;) {
      const page = this.#store.scanNames(after, undefined, SNAPSHOT_SCAN_PAGE);
      for (const { name, record } of page) {
        w.str(name, 'name');
        w.varint(record.modifyIndex, 'modify index');
        w.varint(record.instances.length, 'instance count');
        for (const instance of record.instances) writeInstance(w, instance);
      }
      written += page.length;
      const last = page.at(-1);
      if (last === undefined || page.length < SNAPSHOT_SCAN_PAGE) break;
      after = last.name;
    }
    if (written !== this.#nameCount) {
      throw new Error(
        `cannot write snapshot: the store holds ${written} names, its count says ${this.#nameCount}`,
      );
    }
    w.varint(this.#store.sessionCount, 'session count');
    for (const [client, { seq, result }] of this.#store.sessions()) {
      w.str(client, 'session client');
      w.varint(seq, 'session seq');
      writeCommandResult(w, result);
    }
    const aux: [string, Uint8Array][] = [];
    for (let after = ''; ; ) {
      const page = this.#store.scanAux('', after, SNAPSHOT_SCAN_PAGE);
      aux.push(...page);
      const last = page.at(-1);
      if (last === undefined || page.length < SNAPSHOT_SCAN_PAGE) break;
      after = last[0];
    }
    w.varint(aux.length, 'aux row count');
    for (const [key, value] of aux) {
      w.str(key, 'aux key');
      w.varint(value.length, 'aux value length');
      w.bytes(value);
    }
    return w.finish();
  }

  /**
   * Rebuilds a state machine from snapshot() bytes (format 1 or 2), into `options.store` (default: a new
   * MemoryRegistryStore), whose previous state is replaced atomically (a RocksRegistryStore writes it as
   * one batch, pending changes dropped). Throws SnapshotDecodeError on malformed or inconsistent bytes,
   * and then leaves the store as it was. A state machine built on the store before is stale afterwards:
   * use the one returned. onChange is not called for the restored names.
   */
  static restore(bytes: Uint8Array, options: RegistryOptions = {}): RegistryStateMachine {
    if (!(bytes instanceof Uint8Array)) throw new SnapshotDecodeError('input is not a Uint8Array', 0);
    const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (!Number.isSafeInteger(maxSessions) || maxSessions < 1) {
      throw new RangeError(`maxSessions ${String(maxSessions)} is not valid: use a positive integer`);
    }
    const store = options.store ?? new MemoryRegistryStore();
    store.replace((sink) => decodeSnapshot(bytes, maxSessions, sink.putName, sink.putSession, sink.putAux));
    return new RegistryStateMachine({ ...options, store });
  }
}

/** Reads snapshot bytes, handing names and (at most maxSessions, the most recent) sessions over as it goes. */
function decodeSnapshot(
  bytes: Uint8Array,
  maxSessions: number,
  putName: (name: string, record: NameRecord) => void,
  putSession: (client: string, record: SessionRecord) => void,
  putAux: (key: string, value: Uint8Array) => void,
): RegistryScalars {
  const r = new ByteReader(bytes, (message, offset) => new SnapshotDecodeError(message, offset));
  for (const b of SNAPSHOT_MAGIC) {
    if (r.u8('magic') !== b) throw r.fail('not a registry snapshot (bad magic)', 0);
  }
  const version = r.u8('format version');
  if (version !== 1 && version !== 2 && version !== 3) {
    throw r.fail(
      `unsupported snapshot version ${version} (this build reads versions 1..${SNAPSHOT_FORMAT_VERSION})`,
      4,
    );
  }
  const withTtl = version >= 2;
  const appliedIndex = r.varint('applied index');
  const lastRemovalIndex = r.varint('last removal index');
  if (lastRemovalIndex > appliedIndex) throw r.fail('last removal index is after the applied index');

  const nnames = r.count('name count', 3);
  let instanceCount = 0;
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
    const instances: Instance[] = new Array(ninstances);
    let previousId: string | undefined;
    for (let j = 0; j < ninstances; j++) {
      const instanceAt = r.offset;
      const instance = freezeInstance(readInstance(r, withTtl));
      if (previousId !== undefined && !(previousId < instance.id)) {
        throw r.fail(`instance ${quote(instance.id)} of ${quote(name)} is out of order`, instanceAt);
      }
      previousId = instance.id;
      const instanceError = validateInstance(instance);
      if (instanceError !== null) throw r.fail(instanceError.message, instanceAt);
      instances[j] = instance;
    }
    putName(name, { instances: Object.freeze(instances), modifyIndex });
    instanceCount += ninstances;
  }

  const nsessions = r.count('session count', 4);
  // A smaller bound than the snapshot's writer had: forget the least recently used, as apply would.
  const skip = Math.max(0, nsessions - maxSessions);
  const seen = new Set<string>();
  for (let i = 0; i < nsessions; i++) {
    const at = r.offset;
    const client = r.str('session client');
    if (seen.has(client)) throw r.fail(`session ${quote(client)} appears twice`, at);
    seen.add(client);
    const seq = r.varint('session seq');
    const result = readCommandResult(r, version);
    if (
      (result.type === 'register' || result.type === 'deregister' || result.type === 'set-health') &&
      result.modifyIndex > appliedIndex
    ) {
      throw r.fail(`session ${quote(client)} result modify index is after the applied index`, at);
    }
    if (i >= skip) putSession(client, { seq, result });
  }
  if (version >= 3) {
    const naux = r.count('aux row count', 2);
    let previousKey: string | undefined;
    for (let i = 0; i < naux; i++) {
      const at = r.offset;
      const key = r.str('aux key');
      if (previousKey !== undefined && !(previousKey < key))
        throw r.fail(`aux key ${quote(key)} is out of order`, at);
      previousKey = key;
      const length = r.varint('aux value length');
      putAux(key, r.bytes(length, 'aux value').slice());
    }
  }
  r.end('the snapshot');
  return { appliedIndex, lastRemovalIndex, instanceCount, nameCount: nnames };
}

function rejected(rejection: CommandRejection): RejectedResult {
  return Object.freeze({ type: 'rejected', ok: false, code: rejection.code, message: rejection.message });
}

/** The position of `id` in instances sorted by id, or where it would be inserted. */
function indexOfId(instances: readonly Instance[], id: string): number {
  let lo = 0;
  let hi = instances.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((instances[mid] as Instance).id < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
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
  if (a.address !== b.address || a.port !== b.port || a.health !== b.health || a.ttlMs !== b.ttlMs) {
    return false;
  }
  if (a.tags.length !== b.tags.length) return false;
  for (let i = 0; i < a.tags.length; i++) if (a.tags[i] !== b.tags[i]) return false;
  const aKeys = Object.keys(a.meta);
  if (aKeys.length !== Object.keys(b.meta).length) return false;
  for (const key of aKeys) {
    if (!Object.hasOwn(b.meta, key) || a.meta[key] !== b.meta[key]) return false;
  }
  return true;
}
