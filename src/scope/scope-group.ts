// One scope group at run time: drives the scope's pure RaftNode with real time, real storage and a real
// transport, following the core's Ready contract (src/consensus/types.ts):
//   send `messages` → persist (one synced write for the whole Ready: group commit) → send
//   `messagesAfterPersist` → restore/apply → serve reads → advance.
// Everything that arrives while a Ready is being persisted (proposals, peer messages, ticks) is batched
// into the next one, so one fsync covers every request that came in meanwhile.
//
// Requests are matched to their log entries by their client session (Raft thesis §6.3): every write
// carries a {client, seq} and the runtime wakes the waiters of that session key when the entry is applied
// here. That is what lets a follower forward a proposal to the leader (the core's `propose` message) and
// still answer its caller: it applies the entry like every member does. A retried proposal with the same
// session is applied once (the state machine answers the duplicate with the first result).

import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  ProposalDroppedError,
  type RaftNode,
  type RaftStorage,
  type Ready,
  type Snapshot,
  type Status,
} from '../consensus/index.ts';
import type { ApplyResult, CommandResult, RegistryStateMachine, ResolveAnswer } from '../registry/index.ts';

/** Sends a scope's Raft messages to their addressees (best effort: Raft tolerates loss). */
export interface ScopeTransport {
  send(scope: string, messages: readonly Message[]): void;
}

/**
 * Where the scope's registry state lives and how it is snapshotted, replaced and committed. The anchor's
 * is src/storage/registry-snapshots.ts (RocksDB; snapshots are markers and streamed files).
 */
export interface RegistryHost {
  /** The current state machine; restore() may replace it. */
  readonly machine: RegistryStateMachine;
  /**
   * Brings the state to the snapshot's index or later (a snapshot from the leader, or the log's own
   * snapshot on restart). May hold a later state than the snapshot's: the entries it already reflects are
   * skipped on apply.
   */
  restore(snapshot: Snapshot): void | Promise<void>;
  /** Makes the changes applied since the last commit part of the stored state, with the applied index. */
  commit(): void | Promise<void>;
  /** The snapshot data to compact the log with at the applied index (called after commit). */
  compactionData(): Uint8Array | Promise<Uint8Array>;
}

export interface ScopeGroupOptions {
  /** Milliseconds per Raft tick. Default 100 (election after 10–20 ticks, heartbeats every tick). */
  readonly tickMs?: number;
  /**
   * Compact the log once this many entries are applied after the last snapshot. Default 50,000 (etcd:
   * 100,000): the entries kept in memory until then are a few tens of MB at most. A compaction costs a
   * synced registry commit (the snapshot's data is a marker: the store holds the state).
   */
  readonly snapshotEvery?: number;
  /** Re-propose a write not yet applied after this long (a forwarded proposal may be lost). Default 1 s. */
  readonly retryMs?: number;
  /**
   * Commit the registry's applied changes to its store at least this often (ms) and after this many
   * applied entries. Default 1,000 ms / 5,000 entries. Not per Ready: a RocksDB write queues behind the
   * Raft log's fsync in progress and would block the event loop for it (measured: ~1 ms per commit, a
   * third of an anchor's CPU profile at one commit per Ready). The Raft log is the durable record; a
   * restart replays the entries applied after the last commit.
   */
  readonly registryCommitMs?: number;
  readonly registryCommitEntries?: number;
}

export interface ScopeGroupComponents {
  readonly scope: string;
  readonly node: RaftNode;
  readonly storage: RaftStorage;
  readonly registry: RegistryHost;
  readonly transport: ScopeTransport;
  readonly logger: Logger;
  /** Called after each applied Ready (metrics, TTL tracking). */
  readonly onApplied?: (group: ScopeGroup) => void;
  /** Called when the state was replaced by a snapshot (watchers must resynchronize). */
  readonly onRestored?: (group: ScopeGroup) => void;
  /** Called with the duration of each synced write, in seconds. */
  readonly onPersist?: (seconds: number) => void;
}

/** A request could not be completed; `code` maps to a gRPC status at the edge. */
export class ScopeRequestError extends Error {
  override readonly name = 'ScopeRequestError';
  readonly code: 'unavailable' | 'deadline' | 'stopped' | 'not-leader' | 'failed-precondition';
  constructor(code: ScopeRequestError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

interface WriteWaiter {
  resolve(result: CommandResult & { index: number }): void;
}

interface ApplyWaiter {
  readonly index: number;
  resolve(): void;
}

interface ReadBatch {
  readonly key: string;
  readonly waiters: ((index: number) => void)[];
  sentAt: number;
}

const DEFAULTS = {
  tickMs: 100,
  snapshotEvery: 50_000,
  retryMs: 1_000,
  registryCommitMs: 1_000,
  registryCommitEntries: 5_000,
};

export class ScopeGroup {
  readonly scope: string;
  readonly node: RaftNode;
  readonly #storage: RaftStorage;
  readonly #registry: RegistryHost;
  readonly #transport: ScopeTransport;
  readonly #log: Logger;
  readonly #components: ScopeGroupComponents;
  readonly #opts: Required<ScopeGroupOptions>;

  #ticker: NodeJS.Timeout | null = null;
  #pumpScheduled = false;
  #pumping = false;
  #stopped = false;
  #failed: Error | null = null;
  #lastSnapshotIndex = 0;
  #leader: NodeId = '';
  #role: Status['role'] = 'follower';

  readonly #writes = new Map<string, WriteWaiter[]>();
  readonly #applyWaiters: ApplyWaiter[] = [];
  /** Reads waiting for the next ReadIndex round (one round serves all of them). */
  #queuedReads: ((index: number) => void)[] = [];
  readonly #readsInFlight = new Map<string, ReadBatch>();
  readonly #leaderListeners = new Set<(leader: NodeId, role: Status['role']) => void>();
  #idle: Promise<void> = Promise.resolve();
  #proposals = 0;
  /** Entries applied since the registry's last commit, and when that was. */
  #uncommitted = 0;
  #lastRegistryCommit = Date.now();

  constructor(components: ScopeGroupComponents, options: ScopeGroupOptions = {}) {
    this.scope = components.scope;
    this.node = components.node;
    this.#storage = components.storage;
    this.#registry = components.registry;
    this.#transport = components.transport;
    this.#log = components.logger;
    this.#components = components;
    this.#opts = { ...DEFAULTS, ...options };
    this.#lastSnapshotIndex = this.node.status().firstIndex - 1;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** The error that stopped the group (a storage failure), or null. */
  get failure(): Error | null {
    return this.#failed;
  }

  /** Registry commands proposed here (each retry counts). */
  get proposals(): number {
    return this.#proposals;
  }

  get leader(): NodeId {
    return this.#leader;
  }

  get isLeader(): boolean {
    return this.#role === 'leader';
  }

  get registry(): RegistryStateMachine {
    return this.#registry.machine;
  }

  get appliedIndex(): number {
    return this.#registry.machine.appliedIndex;
  }

  conf(): ConfState {
    return this.node.confState();
  }

  start(): void {
    if (this.#ticker !== null || this.#stopped) return;
    this.#ticker = setInterval(() => this.#tick(), this.#opts.tickMs);
    this.#schedule();
  }

  /** Stops ticking and fails every waiting request; waits for the Ready being persisted. */
  async stop(): Promise<void> {
    if (this.#stopped) return this.#idle;
    this.#stopped = true;
    if (this.#ticker !== null) clearInterval(this.#ticker);
    this.#ticker = null;
    const error = new ScopeRequestError('stopped', `scope ${this.scope} is stopping`);
    for (const w of this.#applyWaiters.splice(0)) w.resolve();
    this.#writes.clear();
    this.#queuedReads = [];
    this.#readsInFlight.clear();
    this.#rejectAll(error);
    await this.#idle;
    if (this.#failed === null && this.#uncommitted > 0) {
      try {
        await this.#commitRegistry();
      } catch (e) {
        this.#log.warn({ err: e }, 'could not commit the registry on stop; the log will be replayed');
      }
    }
  }

  async #commitRegistry(): Promise<void> {
    this.#uncommitted = 0;
    this.#lastRegistryCommit = Date.now();
    await this.#registry.commit();
  }

  #rejectHooks = new Set<(e: Error) => void>();
  #rejectAll(e: Error): void {
    for (const hook of [...this.#rejectHooks]) hook(e);
    this.#rejectHooks.clear();
  }

  onLeaderChange(listener: (leader: NodeId, role: Status['role']) => void): () => void {
    this.#leaderListeners.add(listener);
    return () => this.#leaderListeners.delete(listener);
  }

  /** A Raft message from a peer (already authenticated and validated by the transport). */
  step(message: Message): void {
    if (this.#stopped) return;
    this.node.step(message);
    this.#schedule();
  }

  reportUnreachable(peer: NodeId): void {
    if (this.#stopped) return;
    this.node.reportUnreachable(peer);
    this.#schedule();
  }

  reportSnapshot(peer: NodeId, ok: boolean): void {
    if (this.#stopped) return;
    this.node.reportSnapshot(peer, ok);
    this.#schedule();
  }

  /**
   * Proposes an encoded registry command carrying the session `sessionKey` ("client#seq") and resolves
   * with its result once applied here. Retries (same bytes, same session) until `signal` aborts.
   */
  propose(
    data: Uint8Array,
    sessionKey: string,
    signal: AbortSignal,
  ): Promise<CommandResult & { index: number }> {
    return this.#withAbort(signal, (resolve, reject) => {
      const waiter: WriteWaiter = { resolve };
      const list = this.#writes.get(sessionKey);
      if (list === undefined) this.#writes.set(sessionKey, [waiter]);
      else list.push(waiter);
      const attempt = (): void => {
        if (this.#stopped) return;
        try {
          this.node.propose(data);
          this.#proposals++;
          this.#schedule();
        } catch (error) {
          if (!(error instanceof ProposalDroppedError)) {
            reject(error as Error);
            return;
          }
          // No leader yet (an election is running) or leadership is moving: try again shortly.
        }
      };
      attempt();
      const retry = setInterval(attempt, this.#opts.retryMs);
      return () => {
        clearInterval(retry);
        const waiting = this.#writes.get(sessionKey);
        if (waiting === undefined) return;
        const rest = waiting.filter((w) => w !== waiter);
        if (rest.length === 0) this.#writes.delete(sessionKey);
        else this.#writes.set(sessionKey, rest);
      };
    });
  }

  /** Waits for a linearizable read point (ReadIndex, thesis §6.4) and for this member to apply it. */
  linearizableRead(signal: AbortSignal): Promise<void> {
    return this.#withAbort(signal, (resolve) => {
      let done = false;
      const onIndex = (index: number): void => {
        if (done) return;
        done = true;
        this.#waitApplied(index, resolve);
      };
      this.#queuedReads.push(onIndex);
      this.#schedule();
      return () => {
        done = true;
        this.#queuedReads = this.#queuedReads.filter((f) => f !== onIndex);
      };
    });
  }

  /** Proposes a membership change (leader only) and resolves once `done(conf)` holds after an apply. */
  changeMembership(cc: ConfChange, done: (conf: ConfState) => boolean, signal: AbortSignal): Promise<void> {
    return this.#withAbort(signal, (resolve, reject) => {
      if (done(this.conf())) {
        resolve();
        return () => {};
      }
      try {
        this.node.proposeConfChange(cc);
        this.#schedule();
      } catch (error) {
        reject(error as Error);
        return () => {};
      }
      const check = (): void => {
        if (done(this.conf())) resolve();
      };
      const timer = setInterval(check, 50);
      return () => clearInterval(timer);
    });
  }

  #withAbort<T>(
    signal: AbortSignal,
    body: (resolve: (v: T) => void, reject: (e: Error) => void) => () => void,
  ): Promise<T> {
    return new Promise<T>((resolvePromise, rejectPromise) => {
      if (this.#stopped) {
        rejectPromise(new ScopeRequestError('stopped', `scope ${this.scope} is stopping`));
        return;
      }
      if (signal.aborted) {
        rejectPromise(abortError(signal));
        return;
      }
      let cleanup: () => void = () => {};
      let settled = false;
      const finish = (): void => {
        settled = true;
        cleanup();
        signal.removeEventListener('abort', onAbort);
        this.#rejectHooks.delete(onStop);
      };
      const onAbort = (): void => {
        if (settled) return;
        finish();
        rejectPromise(abortError(signal));
      };
      const onStop = (e: Error): void => {
        if (settled) return;
        finish();
        rejectPromise(e);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#rejectHooks.add(onStop);
      cleanup = body(
        (v) => {
          if (settled) return;
          finish();
          resolvePromise(v);
        },
        (e) => {
          if (settled) return;
          finish();
          rejectPromise(e);
        },
      );
      if (settled) cleanup();
    });
  }

  #waitApplied(index: number, resolve: () => void): void {
    if (this.appliedIndex >= index) resolve();
    else this.#applyWaiters.push({ index, resolve });
  }

  #tick(): void {
    if (this.#stopped) return;
    this.node.tick();
    const now = Date.now();
    if (
      this.#uncommitted > 0 &&
      !this.#pumping &&
      now - this.#lastRegistryCommit >= this.#opts.registryCommitMs
    ) {
      this.#pumping = true;
      this.#commitRegistry().then(
        () => {
          this.#pumping = false;
          this.#schedule();
        },
        (error: Error) => {
          this.#pumping = false;
          this.#failed = error;
          this.#log.error({ err: error }, 'scope group stopped after a storage failure');
          void this.stop();
        },
      );
    }
    // A ReadIndex round can be lost with its messages: re-ask after a few ticks (one round serves all).
    for (const [key, batch] of this.#readsInFlight) {
      if (now - batch.sentAt < this.#opts.retryMs) continue;
      this.#readsInFlight.delete(key);
      this.#queuedReads.push(...batch.waiters);
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#pumpScheduled || this.#stopped) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      if (this.#pumping || this.#stopped) return;
      this.#idle = this.#pump();
    });
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      this.#issueReads();
      while (!this.#stopped && this.node.hasReady()) {
        await this.#handleReady(this.node.ready());
        this.#issueReads();
      }
    } catch (error) {
      // A storage failure: acknowledging anything more could lose it. Stop the group; the anchor reports it.
      this.#failed = error as Error;
      this.#log.error({ err: error }, 'scope group stopped after a storage failure');
      void this.stop();
    } finally {
      this.#pumping = false;
    }
  }

  #issueReads(): void {
    if (this.#queuedReads.length === 0) return;
    const key = randomBytes(8).toString('hex');
    const batch: ReadBatch = { key, waiters: this.#queuedReads, sentAt: Date.now() };
    try {
      this.node.readIndex(Buffer.from(key, 'latin1'));
    } catch (error) {
      if (error instanceof ProposalDroppedError) return; // no leader yet: the reads stay queued
      throw error;
    }
    this.#queuedReads = [];
    this.#readsInFlight.set(key, batch);
  }

  async #handleReady(rd: Ready): Promise<void> {
    if (rd.softState.leader !== this.#leader || rd.softState.role !== this.#role) {
      this.#leader = rd.softState.leader;
      this.#role = rd.softState.role;
      this.#log.info({ leader: this.#leader, role: this.#role }, 'leadership changed');
      for (const l of this.#leaderListeners) l(this.#leader, this.#role);
    }
    if (rd.messages.length > 0) this.#transport.send(this.scope, rd.messages);
    if (rd.hardState !== null || rd.entries.length > 0 || rd.snapshot !== null) {
      const started = performance.now();
      await this.#storage.save({
        hardState: rd.hardState,
        entries: rd.entries,
        snapshot: rd.snapshot,
        sync: rd.mustSync,
      });
      if (rd.mustSync) this.#components.onPersist?.((performance.now() - started) / 1000);
    }
    if (rd.messagesAfterPersist.length > 0) this.#transport.send(this.scope, rd.messagesAfterPersist);
    if (rd.snapshot !== null) {
      const started = performance.now();
      await this.#registry.restore(rd.snapshot);
      const ms = Math.round(performance.now() - started);
      this.#log.info(
        { index: rd.snapshot.meta.index, applied: this.appliedIndex, ms },
        'installed a snapshot',
      );
      this.#lastSnapshotIndex = rd.snapshot.meta.index;
      this.#components.onRestored?.(this);
    }
    const results: [WriteWaiter[], CommandResult & { index: number }][] = [];
    for (const e of rd.committedEntries) this.#apply(e, results);
    this.#uncommitted += rd.committedEntries.length;
    if (rd.snapshot !== null || this.#uncommitted >= this.#opts.registryCommitEntries)
      await this.#commitRegistry();
    for (const [waiters, result] of results) for (const w of waiters) w.resolve(result);
    for (const rs of rd.readStates) {
      const key = Buffer.from(rs.context).toString('latin1');
      const batch = this.#readsInFlight.get(key);
      if (batch === undefined) continue;
      this.#readsInFlight.delete(key);
      for (const w of batch.waiters) w(rs.index);
    }
    this.#releaseApplied();
    this.node.advance(rd);
    if (rd.committedEntries.length > 0) {
      this.#components.onApplied?.(this);
      await this.#maybeCompact();
    }
  }

  #apply(e: Entry, results: [WriteWaiter[], CommandResult & { index: number }][]): void {
    const sm = this.#registry.machine;
    if (e.index <= sm.appliedIndex) return; // already in the stored state (restart replays from the log)
    if (e.kind !== 'normal' || e.data.length === 0) {
      // Membership changes and no-ops advance the applied index too, so a restart resumes after them; a
      // membership change is also a lineage entry.
      sm.apply(e.index, e.kind === 'conf-change' ? e.data : EMPTY, e.kind);
      return;
    }
    const result: ApplyResult = sm.apply(e.index, e.data);
    if (this.#writes.size === 0) return;
    const session = sm.lastAppliedSession; // undefined for a malformed command: nobody waits for it
    if (session === undefined) return;
    const key = `${session.client}#${session.seq}`;
    const waiters = this.#writes.get(key);
    if (waiters === undefined) return;
    this.#writes.delete(key);
    const final = result.type === 'duplicate' ? result.result : result;
    if (final.type === 'noop') return;
    results.push([waiters, { ...final, index: e.index }]);
  }

  #releaseApplied(): void {
    if (this.#applyWaiters.length === 0) return;
    const applied = this.appliedIndex;
    for (let i = this.#applyWaiters.length - 1; i >= 0; i--) {
      const w = this.#applyWaiters[i] as ApplyWaiter;
      if (w.index <= applied) {
        this.#applyWaiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  async #maybeCompact(): Promise<void> {
    const applied = this.appliedIndex;
    if (applied - this.#lastSnapshotIndex < this.#opts.snapshotEvery) return;
    await this.#commitRegistry(); // the state at `applied` is stored before the log before it is dropped
    const snapshot = this.node.compact(applied, await this.#registry.compactionData());
    if (snapshot === null) return;
    await this.#storage.compact(snapshot);
    this.#lastSnapshotIndex = applied;
    this.#log.debug({ index: applied, bytes: snapshot.data.length }, 'log compacted');
  }

  /** Reads the local state (stale unless preceded by linearizableRead). */
  resolveLocal(name: string): ResolveAnswer {
    return this.#registry.machine.resolve(name);
  }
}

const EMPTY = new Uint8Array(0);

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new ScopeRequestError('deadline', 'the request was cancelled');
}
