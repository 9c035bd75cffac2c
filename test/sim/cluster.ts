// The simulated cluster: hosts, each a multi-raft host running several scope groups, and the driver of each
// (host, group) pair, which follows the Ready contract of src/consensus/types.ts to the letter:
//
//   1. send `messages` at once;
//   2. start the disk write (snapshot, entries, hard state), which completes after a simulated fsync;
//   3. only when it completes: send `messagesAfterPersist`, restore the state machine from `snapshot`, apply
//      `committedEntries`, serve the reads whose index is applied, then `advance(ready)`.
//
// While a write is in flight the driver keeps stepping messages and ticking, but does not ask for another
// Ready. A crash throws away the host's memory (nodes, state machines, pending requests) and the writes in
// flight; a restart rebuilds every group from what its disk holds durably.

import { bytesToHex } from '@noble/hashes/utils.js';
import { Admission } from '../../src/api/admission.ts';
import { ApiError } from '../../src/api/api-error.ts';
import { LAG_SENSITIVE } from '../../src/api/registry-service.ts';
import { decodeConfChange } from '../../src/consensus/conf-change.ts';
import {
  bootstrapState,
  type Entry,
  type Envelope,
  emptyState,
  type Message,
  MultiRaft,
  type Mutation,
  type NodeId,
  type PersistedState,
  ProposalDroppedError,
  RaftNode,
  type Ready,
  type Role,
} from '../../src/consensus/index.ts';
import { actionOf } from '../../src/governance/authority.ts';
import { equalBytes } from '../../src/governance/genesis.ts';
import { verifyRequestSignature } from '../../src/governance/request.ts';
import type { Signer } from '../../src/identity/signer.ts';
import { decodeEntry, type LineageEntry, verifyEntrySignature } from '../../src/lineage/entry.ts';
import {
  ByteReader,
  ByteWriter,
  type CommandAuth,
  commandSignedBody,
  decodeCommand,
  type RejectCode,
} from '../../src/registry/commands.ts';
import { type CommandResult, RegistryStateMachine } from '../../src/registry/index.ts';
import { type RegistryOptions, splitAdmitted } from '../../src/registry/state-machine.ts';
import { SimDisk } from './disk.ts';
import type { EventQueue } from './events.ts';
import { type AuthorityMutation, type EdgeAdmission, EPOCH_MS, type SimGovernance } from './governance.ts';
import { describeEntry, type Invariants, type LogView } from './invariants.ts';
import { SimNetwork } from './network.ts';
import type { Rng } from './rng.ts';
import type { Scenario } from './scenario.ts';
import type { Trace } from './trace.ts';

/** A client's request as it reaches a host. */
export interface ClientRequest {
  readonly client: number;
  readonly opId: number;
  readonly attempt: number;
  readonly scope: string;
  readonly host: string;
  readonly kind: 'write' | 'read';
  /** write: the encoded registry command. */
  readonly data: Uint8Array;
  /** write: `${session.client}#${session.seq}`, to match the applied entry. */
  readonly sessionKey: string;
  /** read: the name to resolve. */
  readonly name: string;
  /** read: the caller's signed auth block (a write carries its own inside `data`). */
  readonly auth?: CommandAuth;
}

export type ClientReply =
  | { readonly kind: 'write'; readonly result: CommandResult }
  | { readonly kind: 'read'; readonly instances: [string, string][] }
  /** The serving member's authority refused the read (after its ReadIndex, at an applied index >= it). */
  | { readonly kind: 'read-refused'; readonly code: string; readonly message: string }
  /** Definitely not proposed (ProposalDroppedError) or the host does not serve the scope. */
  | { readonly kind: 'dropped'; readonly reason: string };

export interface ClusterStats {
  readies: number;
  writes: number;
  applied: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  maxTerm: number;
  /** Tree heads proposed by leaders; of those applied, accepted and refused (by the first member to apply). */
  treeHeadsProposed: number;
  treeHeadsAccepted: number;
  treeHeadsRefused: number;
}

/** Snapshots are at least lineage size >> this many entries apart (see GroupDriver.maybeCompact). */
const SNAPSHOT_LINEAGE_SHIFT = 2;

const utf8 = new TextEncoder();

const LEADER_ONLY = new Set(['append', 'heartbeat', 'snapshot', 'timeout-now']);

function ctxKey(ctx: Uint8Array): string {
  let s = '';
  for (let i = 0; i < ctx.length; i++) s += String.fromCharCode(ctx[i] as number);
  return s;
}

function ctxBytes(key: string): Uint8Array {
  const b = new Uint8Array(key.length);
  for (let i = 0; i < key.length; i++) b[i] = key.charCodeAt(i) & 0xff;
  return b;
}

export class GroupDriver {
  readonly cluster: Cluster;
  readonly host: Host;
  readonly scope: string;
  readonly node: RaftNode;
  sm: RegistryStateMachine;
  private readonly smOptions: RegistryOptions;
  /** Last index applied (state machine entries, no-ops and membership changes alike). */
  applied: number;
  /** Index of the last snapshot (taken here or installed). */
  snapIndex: number;
  term: number;
  role: Role = 'follower';
  leader: NodeId = '';
  private writing = false;
  private completenessCheckedTerm = -1;
  private pumpScheduled = false;
  private readonly waitingWrites = new Map<string, ClientRequest[]>();
  /** Read indexes under way: for a resolve, or for a write whose edge check must catch up first. */
  private readonly readsByCtx = new Map<string, { req: ClientRequest; purpose: 'read' | 'catch-up' }>();
  private waitingReads: { index: number; req: ClientRequest; purpose: 'read' | 'catch-up' }[] = [];
  /** The applied index at which this member's lineage root was last compared. */
  private lineageCheckedAt = -1;
  /** The term in which this member (as leader) last proposed the genesis. */
  private genesisTerm = -1;
  /** The edge check of src/api, per boot (its nonce memory is the anchor's): only with edgeAdmission. */
  private admission: Admission | undefined;
  /** late-revocation mutation: a revocation this member has applied but does not enforce yet. */
  private lateRevocation: { key: string; row: Uint8Array } | null = null;

  constructor(cluster: Cluster, host: Host, scope: string, state: PersistedState) {
    this.cluster = cluster;
    this.host = host;
    this.scope = scope;
    const s = cluster.scenario;
    const logger = cluster.trace.full
      ? (line: string) => cluster.trace.add(cluster.queue.now, `  core ${host.id}/${scope}: ${line}`)
      : undefined;
    this.node = new RaftNode(
      {
        id: host.id,
        electionTick: s.electionTick,
        heartbeatTick: s.heartbeatTick,
        random: (n) => host.rng.int(n),
        preVote: true,
        checkQuorum: true,
        maxEntriesPerMsg: s.maxEntriesPerMsg,
        maxInflightMsgs: s.maxInflightMsgs,
        applied: 0,
        mutations: cluster.mutations,
        ...(logger ? { logger } : {}),
      },
      state,
    );
    this.smOptions = cluster.gov.group(scope).smOptions;
    this.sm = state.snapshot
      ? RegistryStateMachine.restore(state.snapshot.data, this.smOptions)
      : new RegistryStateMachine(this.smOptions);
    this.applied = state.snapshot?.meta.index ?? 0;
    this.snapIndex = this.applied;
    this.term = state.hardState.term;
  }

  private get alive(): boolean {
    return this.host.up && this.host.drivers.get(this.scope) === this;
  }

  /** Ask for a Ready soon (all inputs arriving meanwhile are batched into it). */
  schedulePump(): void {
    if (this.pumpScheduled || this.writing) return;
    this.pumpScheduled = true;
    this.cluster.queue.after(this.cluster.processingDelay(), () => {
      this.pumpScheduled = false;
      if (this.alive) this.pump();
    });
  }

  private pump(): void {
    if (this.writing || !this.node.hasReady()) return;
    const c = this.cluster;
    const rd = this.node.ready();
    c.stats.readies++;
    this.observe(rd);
    for (const m of rd.messages) this.send(m);
    if (rd.hardState === null && rd.entries.length === 0 && rd.snapshot === null) {
      this.afterPersist(rd);
      return;
    }
    const disk = this.host.disks.get(this.scope) as SimDisk;
    const w = disk.begin({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot });
    this.writing = true;
    if (c.trace.full) {
      const ents = rd.entries.length ? ` entries ${rd.entries.map(describeEntry).join(' ')}` : '';
      const hs = rd.hardState
        ? ` hs t${rd.hardState.term} v${rd.hardState.vote || '-'} c${rd.hardState.commit}`
        : '';
      const snap = rd.snapshot ? ` snapshot ${rd.snapshot.meta.index}@${rd.snapshot.meta.term}` : '';
      c.trace.add(c.queue.now, `${this.host.id}/${this.scope} write#${w.id}${snap}${ents}${hs}`);
    }
    const incarnation = this.host.incarnation;
    const latency = rd.mustSync
      ? c.rng.uniform(c.scenario.fsyncMin, c.scenario.fsyncMax)
      : c.scenario.fsyncMin;
    c.queue.after(latency, () => {
      if (this.host.incarnation !== incarnation || !this.alive) return;
      if (!disk.complete(w)) return;
      c.stats.writes++;
      this.writing = false;
      this.afterPersist(rd);
    });
  }

  private observe(rd: Ready): void {
    const c = this.cluster;
    if (rd.hardState !== null) {
      this.term = rd.hardState.term;
      if (this.term > c.stats.maxTerm) c.stats.maxTerm = this.term;
    }
    const { role, leader } = rd.softState;
    if (role !== this.role || leader !== this.leader) {
      c.trace.add(
        c.queue.now,
        `${this.host.id}/${this.scope} ${role} term ${this.term} leader ${leader || '-'}`,
      );
      const elected = role === 'leader' && this.role !== 'leader';
      const campaigning = role === 'candidate' && this.role !== 'candidate';
      this.role = role;
      this.leader = leader;
      if (elected) c.onLeaderElected(this);
      if (campaigning) c.onCampaign(this);
    }
    if (role === 'leader') {
      if (this.genesisTerm !== this.term && this.sm.authority.genesis === undefined) this.proposeGenesis();
      c.checks.leaderClaim(this.scope, this.term, this.host.id, 'its Ready says leader');
      if (rd.hardState !== null) c.checks.commitMark(this.scope, this.term, rd.hardState.commit);
      if (this.completenessCheckedTerm !== this.term) {
        this.completenessCheckedTerm = this.term;
        const st = this.node.status();
        const view: LogView = {
          node: this.host.id,
          entries: this.node.entries(st.firstIndex, st.lastIndex + 1),
        };
        c.checks.leaderCompleteness(this.scope, this.term, this.host.id, st.firstIndex - 1, view);
      }
    }
  }

  /**
   * A leader whose state machine has no genesis proposes it (src/scope/scope-host.ts #govern): the first
   * leader's proposal becomes the group's first command; a later duplicate is refused by the state machine
   * ('invalid-governance': the scope already has a genesis). Once per term, a moment after the Ready.
   */
  private proposeGenesis(): void {
    const c = this.cluster;
    this.genesisTerm = this.term;
    const term = this.term;
    c.queue.after(c.processingDelay(), () => {
      if (!this.alive || this.role !== 'leader' || this.term !== term) return;
      if (this.sm.authority.genesis !== undefined) return;
      const session = { client: `~${this.host.id}.${this.scope}.g`, seq: term };
      try {
        this.node.propose(c.gov.genesisEntry(this.host.id, this.scope, session));
      } catch (err) {
        if (!(err instanceof ProposalDroppedError)) throw err;
        this.genesisTerm = -1; // e.g. a leadership transfer in progress: try again at the next Ready
        return;
      }
      c.trace.add(c.queue.now, `${this.host.id}/${this.scope} proposes the genesis (term ${term})`);
      this.schedulePump();
    });
  }

  private send(m: Message): void {
    this.checkMessage(m);
    this.cluster.net.send(this.host.id, m.to, { scope: this.scope, message: m });
  }

  /** Checks on what a message claims (see invariants.ts). */
  private checkMessage(m: Message): void {
    const c = this.cluster;
    if (LEADER_ONLY.has(m.type))
      c.checks.leaderClaim(this.scope, m.term, m.from, `it sent ${m.type} to ${m.to}`);
    else if ((m.type === 'append-resp' || m.type === 'vote-resp') && !m.reject) {
      // An answer of an earlier term than ours is stale: we moved on (a newer leader may have replaced the
      // entries it was about, even in this very Ready's write). As an answer that is still in the network
      // when its sender moves on, it promises nothing about now, and Raft does not need it to (a leader of
      // the old term can count it only if no newer leader lacking those entries could be elected).
      if (m.term !== this.node.status().term) return;
      if (c.ackDurability) this.checkPromise(m);
      if (m.type === 'append-resp' && m.index > 0) this.checkAckConsistency(m);
    }
  }

  /** A message that promises durable state must be backed by the disk (see invariants.ts, ack-durability). */
  private checkPromise(m: Message): void {
    const disk = this.host.disks.get(this.scope) as SimDisk;
    const c = this.cluster;
    if (m.type === 'vote-resp') {
      const hs = disk.durableHardState();
      if (hs.term < m.term || (hs.term === m.term && hs.vote !== m.to)) {
        c.checks.fail(
          'ack-durability',
          `${this.host.id}/${this.scope} grants its vote to ${m.to} in term ${m.term} but its disk holds term ${hs.term} vote ${hs.vote || '-'}`,
        );
      }
      return;
    }
    if (m.index === 0 || m.index <= disk.snapshotIndex()) return;
    const durable = disk.durableTerm(m.index);
    const mine = this.node.entries(m.index, m.index + 1)[0]?.term;
    if (durable === undefined || (mine !== undefined && durable !== mine)) {
      c.checks.fail(
        'ack-durability',
        `${this.host.id}/${this.scope} acknowledges entries up to ${m.index} to ${m.to} (term ${m.term}) but its disk holds ${durable === undefined ? `only up to ${disk.lastIndex()}` : `term ${durable} there, not ${mine}`}`,
      );
    }
  }

  /**
   * An accepted append-resp for index i tells the leader "my log matches yours up to i". If the addressee
   * still leads the message's term (its log has only grown since it sent the append), its entry at i must
   * have the term ours has there (see invariants.ts, ack-consistency).
   */
  private checkAckConsistency(m: Message): void {
    const c = this.cluster;
    const h = c.hosts.get(m.to);
    const d = h?.up ? h.drivers.get(this.scope) : undefined;
    if (d === undefined || d.role !== 'leader') return;
    const st = d.node.status();
    if (st.role !== 'leader' || st.term !== m.term) return;
    const mine = this.node.entries(m.index, m.index + 1)[0];
    if (mine === undefined || m.index < st.firstIndex) return; // compacted on either side: committed, agreed
    const theirs = d.node.entries(m.index, m.index + 1)[0];
    if (theirs === undefined || theirs.term !== mine.term) {
      c.checks.fail(
        'ack-consistency',
        `${this.host.id}/${this.scope} acknowledges index ${m.index} to leader ${m.to} (term ${m.term}) holding ${describeEntry(mine)}, but the leader holds ${theirs ? describeEntry(theirs) : `nothing there (last index ${st.lastIndex})`}`,
      );
    }
  }

  private afterPersist(rd: Ready): void {
    const c = this.cluster;
    for (const m of rd.messagesAfterPersist) this.send(m);
    if (rd.snapshot !== null) {
      const meta = rd.snapshot.meta;
      c.checks.snapshotInstalled(this.scope, this.host.id, meta, rd.snapshot.data);
      this.sm = RegistryStateMachine.restore(rd.snapshot.data, this.smOptions);
      this.applied = meta.index;
      this.snapIndex = meta.index;
      this.lateRevocation = null;
      this.checkLineageRoot();
      c.stats.snapshotsInstalled++;
      c.trace.add(c.queue.now, `${this.host.id}/${this.scope} installed snapshot ${meta.index}@${meta.term}`);
    }
    for (const e of rd.committedEntries) this.apply(e);
    for (const rs of rd.readStates) {
      const key = ctxKey(rs.context);
      const read = this.readsByCtx.get(key);
      if (read === undefined) continue;
      this.readsByCtx.delete(key);
      this.waitingReads.push({ index: rs.index, ...read });
    }
    if (this.waitingReads.length > 0) this.serveReads();
    this.node.advance(rd);
    this.maybeCompact();
    this.schedulePump();
  }

  private apply(e: Entry): void {
    const c = this.cluster;
    c.checks.applied(this.scope, this.host.id, e);
    if (e.index !== this.applied + 1) {
      c.checks.fail(
        'apply-order',
        `${this.host.id}/${this.scope} applied ${describeEntry(e)} after ${this.applied} (a gap or a repeat)`,
      );
    }
    this.applied = e.index;
    c.stats.applied++;
    if (e.kind !== 'normal' || e.data.length === 0) {
      if (e.kind === 'conf-change') {
        // As src/scope/scope-group.ts: a membership change is a lineage entry on every member.
        this.sm.apply(e.index, e.data, 'conf-change');
        c.checks.lineageSize(this.scope, this.host.id, e.index, this.sm.lineage.size);
        c.trace.add(c.queue.now, `${this.host.id}/${this.scope} applied conf ${e.index}`);
      }
      return;
    }
    const res = this.applyCommand(e.index, e.data);
    c.checks.lineageSize(this.scope, this.host.id, e.index, this.sm.lineage.size);
    const session = this.sm.lastAppliedSession;
    if (session === undefined) return;
    const key = `${session.client}#${session.seq}`;
    if (res.type !== 'duplicate' && res.type !== 'noop') c.recordEffect(key, res, this.host.id, e.index);
    const reqs = this.waitingWrites.get(key);
    if (reqs === undefined) return;
    this.waitingWrites.delete(key);
    let result = res.type === 'duplicate' ? res.result : res;
    if (result.type === 'noop') return;
    if (c.authorityMutation === 'leader-ignores-refusals' && this.role === 'leader')
      result = acceptedInstead(result, e.data);
    for (const req of reqs) c.reply(req, this, { kind: 'write', result });
  }

  /** sm.apply, with the authority mutations of governance.ts when one is switched on. */
  private applyCommand(index: number, data: Uint8Array): ReturnType<RegistryStateMachine['apply']> {
    const c = this.cluster;
    if (c.authorityMutation === 'revoked-may-deregister') return this.applyRevokedMayDeregister(index, data);
    if (c.authorityMutation !== 'late-revocation' || this.host.id !== c.mutatedMember(this.scope))
      return this.sm.apply(index, data);
    // late-revocation: the member applies a revocation, then puts the credential's record back as it was
    // until it has applied the next command.
    const pending = this.lateRevocation;
    this.lateRevocation = null;
    let revoked: { key: string; before: Uint8Array } | null = null;
    try {
      const cmd = decodeCommand(splitAdmitted(data).command);
      if (cmd.type === 'revoke-credential') {
        const key = `g/c/${bytesToHex(cmd.credentialId)}`;
        const before = this.sm.store.getAux(key);
        if (before !== undefined) revoked = { key, before };
      }
    } catch {
      // not a command: nothing to delay
    }
    const res = this.sm.apply(index, data);
    if (pending !== null) {
      this.sm.store.putAux(pending.key, pending.row);
      this.sm.authority.reload();
    }
    if (revoked !== null && res.type === 'govern') {
      const row = this.sm.store.getAux(revoked.key) as Uint8Array;
      this.sm.store.putAux(revoked.key, revoked.before);
      this.sm.authority.reload();
      this.lateRevocation = { key: revoked.key, row };
    }
    return res;
  }

  /**
   * revoked-may-deregister (every member alike): a deregistration signed with a revoked credential is
   * applied as if the credential were active — the record is unrevoked for that one command.
   */
  private applyRevokedMayDeregister(
    index: number,
    data: Uint8Array,
  ): ReturnType<RegistryStateMachine['apply']> {
    let key: string | undefined;
    try {
      const cmd = decodeCommand(splitAdmitted(data).command);
      if (cmd.type === 'deregister' && cmd.auth !== undefined)
        key = `g/c/${bytesToHex(cmd.auth.credentialId)}`;
    } catch {
      // not a command
    }
    const row = key === undefined ? undefined : this.sm.store.getAux(key);
    if (key === undefined || row === undefined || !isRevokedRow(row)) return this.sm.apply(index, data);
    this.sm.store.putAux(key, unrevokedRow(row));
    this.sm.authority.reload();
    const res = this.sm.apply(index, data);
    this.sm.store.putAux(key, row);
    this.sm.authority.reload();
    return res;
  }

  private serveReads(): void {
    const still: { index: number; req: ClientRequest; purpose: 'read' | 'catch-up' }[] = [];
    const waiting = this.waitingReads;
    this.waitingReads = [];
    for (const w of waiting) {
      if (w.index > this.applied) {
        still.push(w);
        continue;
      }
      if (w.purpose === 'catch-up') {
        // The write's edge check again, on a state at least as new as the leader's commit index.
        const refusal = this.edgeCheck(w.req);
        if (refusal !== null) this.cluster.reply(w.req, this, refusal);
        else this.proposeWrite(w.req);
        continue;
      }
      const auth = w.req.auth;
      if (auth !== undefined) {
        const ignore = this.cluster.authorityMutation === 'leader-ignores-refusals' && this.role === 'leader';
        // With edge admission the real Admission.check runs here, at the read index (as Resolve does).
        const refusal =
          this.cluster.edgeAdmission !== 'off'
            ? this.edgeCheck(w.req)
            : (() => {
                const decision = this.sm.authority.authorizeAuth(auth, 'resolve', w.req.name);
                return decision.ok
                  ? null
                  : ({
                      kind: 'read-refused',
                      code: decision.rejection.code,
                      message: decision.rejection.message,
                    } as const);
              })();
        if (refusal !== null && !ignore) {
          this.cluster.reply(w.req, this, refusal);
          continue;
        }
      }
      const answer = this.sm.resolve(w.req.name);
      const instances = answer.instances.map((i): [string, string] => [i.id, `${i.address}:${i.port}`]);
      this.cluster.reply(w.req, this, { kind: 'read', instances });
    }
    this.waitingReads = [...still, ...this.waitingReads];
  }

  private maybeCompact(): void {
    const c = this.cluster;
    // A governed scope's snapshot carries its whole lineage (every admitted change, ~0.5 KB each), so its
    // size grows with the run: snapshots are spaced by at least a quarter of the lineage's length, which
    // keeps the work of taking, fingerprinting and installing them linear in the run's length (the
    // scenario's small thresholds still apply while the lineage is short).
    const every = Math.max(c.scenario.snapshotThreshold, this.sm.lineage.size >> SNAPSHOT_LINEAGE_SHIFT);
    if (this.applied - this.snapIndex <= every) return;
    const data = this.sm.snapshot();
    // Null when a snapshot from the leader replaced the log while this Ready was being persisted.
    const snap = this.node.compact(this.applied, data);
    if (snap === null) return;
    (this.host.disks.get(this.scope) as SimDisk).compact(snap);
    c.checks.snapshotTaken(this.scope, this.host.id, this.applied, data);
    this.checkLineageRoot();
    this.snapIndex = this.applied;
    c.stats.snapshotsTaken++;
    if (c.trace.full) c.trace.add(c.queue.now, `${this.host.id}/${this.scope} compacted to ${this.applied}`);
  }

  /** A client request arrived at this host. */
  submit(req: ClientRequest): void {
    const c = this.cluster;
    // As src/api/admission.ts: nothing is proposed or served before this member has applied the genesis. A
    // member that has applied it knows it is committed, so whatever it proposes now lands after it.
    if (this.sm.authority.scopeId === undefined) {
      c.reply(req, this, { kind: 'dropped', reason: 'no-genesis' });
      return;
    }
    // As src/api/registry-service.ts: a write is checked at the edge before it is proposed, and a refusal a
    // lagging member could make wrongly is checked again after a read index (catching up); a resolve is
    // authorized when it is served, on the state at its read index.
    if (c.edgeAdmission !== 'off' && req.kind === 'write') {
      const refusal = this.edgeCheck(req);
      if (refusal !== null && c.edgeAdmission === 'full') {
        if (!lagSensitive(refusal)) {
          c.reply(req, this, refusal);
          return;
        }
        this.readIndexFor(req, 'catch-up');
        return;
      }
    }
    if (req.kind === 'write') this.proposeWrite(req);
    else this.readIndexFor(req, 'read');
  }

  /** Proposes a write (admitted by this member) and waits for its session's entry. */
  private proposeWrite(req: ClientRequest): void {
    const c = this.cluster;
    try {
      this.node.propose(c.gov.admit(this.host.id, this.scope, req.data));
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
      c.reply(req, this, { kind: 'dropped', reason: err.reason });
      return;
    }
    const list = this.waitingWrites.get(req.sessionKey);
    if (list) list.push(req);
    else this.waitingWrites.set(req.sessionKey, [req]);
    this.schedulePump();
  }

  /** Starts a read index for a resolve, or for a write's edge check to catch up with the leader. */
  private readIndexFor(req: ClientRequest, purpose: 'read' | 'catch-up'): void {
    const c = this.cluster;
    const key = `r${c.nextReadId++}`;
    this.readsByCtx.set(key, { req, purpose });
    try {
      this.node.readIndex(ctxBytes(key));
    } catch (err) {
      this.readsByCtx.delete(key);
      if (!(err instanceof ProposalDroppedError)) throw err;
      c.reply(req, this, { kind: 'dropped', reason: err.reason });
      return;
    }
    this.schedulePump();
  }

  /**
   * The edge check of src/api (Admission.check, the real one), in the order src/api/registry-service.ts and
   * governance-service.ts run it: before proposing a write, or before the read index of a resolve, the
   * receiving member checks the request (signature, clock skew, nonce replay) and authorizes it against its
   * own applied state. Returns null when it admits the request, else the refusal to answer with. Only with
   * the run option `edgeAdmission`: that state may be stale (see README.md).
   */
  private edgeCheck(req: ClientRequest): ClientReply | null {
    const c = this.cluster;
    this.admission ??= new Admission({
      signer: c.gov.hostSigners.get(this.host.id) as Signer,
      verifier: c.gov.auditVerifier,
      now: () => EPOCH_MS + Math.floor(c.queue.now),
    });
    try {
      if (req.kind === 'read') {
        const name = req.name;
        this.admission.check(this.sm, req.auth, 'resolve', name, () => utf8.encode(name));
      } else {
        const cmd = decodeCommand(req.data);
        // A retry of a write this member already applied: its request is checked, not its authorization
        // (the state machine answers the first application's result), as src/api/registry-service.ts.
        const applied = cmd.session === undefined ? undefined : this.sm.store.getSession(cmd.session.client);
        const retry = applied !== undefined && cmd.session !== undefined && applied.seq >= cmd.session.seq;
        this.admission.check(this.sm, cmd.auth, actionOf(cmd), cmd.name, () => commandSignedBody(cmd), {
          retry,
        });
      }
      return null;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      const code = err.metadata?.get('aq-reason')[0]?.toString() ?? `status ${err.code}`;
      const message = err.message;
      return req.kind === 'read'
        ? { kind: 'read-refused', code, message }
        : { kind: 'write', result: { type: 'rejected', ok: false, code: code as RejectCode, message } };
    }
  }

  /**
   * A leader publishes a signed tree head of its lineage when it grew since the last one applied
   * (src/scope/scope-host.ts #govern): every member checks the head against its own lineage at apply, and
   * refuses one whose root differs ('invalid-governance': divergence) — state-machine-safety compares the
   * results. The session's seq is the simulated millisecond, so it only grows across restarts.
   */
  publishTreeHead(): void {
    const c = this.cluster;
    if (!this.alive || this.role !== 'leader') return;
    const sm = this.sm;
    const size = sm.lineage.size;
    if (sm.authority.scopeId === undefined || size === 0 || (sm.treeHead?.size ?? 0) >= size) return;
    const now = Math.floor(c.queue.now);
    const session = { client: `~${this.host.id}.${this.scope}.t`, seq: now };
    const data = c.gov.treeHeadCommand(
      this.host.id,
      this.scope,
      size,
      sm.lineage.root(size),
      EPOCH_MS + now,
      session,
    );
    try {
      this.node.propose(data);
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
      return;
    }
    c.stats.treeHeadsProposed++;
    this.schedulePump();
  }

  /** lineage-agreement: this member's lineage size and root at its applied index. */
  checkLineageRoot(): void {
    if (this.applied === this.lineageCheckedAt) return; // nothing applied since the last comparison
    this.lineageCheckedAt = this.applied;
    const l = this.sm.lineage;
    this.cluster.checks.lineageRoot(this.scope, this.host.id, this.applied, l.size, bytesToHex(l.root()));
  }

  /** The live log, for the log-matching checker. */
  logView(): LogView {
    const st = this.node.status();
    return { node: this.host.id, entries: this.node.entries(st.firstIndex, st.lastIndex + 1) };
  }
}

export class Host {
  readonly id: string;
  readonly rng: Rng;
  readonly period: number;
  up = true;
  incarnation = 0;
  multi = new MultiRaft();
  readonly drivers = new Map<string, GroupDriver>();
  /** Disks survive crashes; a host has one per group it ever joined. */
  readonly disks = new Map<string, SimDisk>();
  pausedUntil = 0;
  missedTicks = 0;
  ticks = 0;

  constructor(id: string, rng: Rng, period: number) {
    this.id = id;
    this.rng = rng;
    this.period = period;
  }
}

export class Cluster {
  readonly queue: EventQueue;
  readonly trace: Trace;
  readonly checks: Invariants;
  readonly scenario: Scenario;
  readonly rng: Rng;
  readonly mutations: ReadonlySet<Mutation>;
  /** A deliberately broken variant of the authority's enforcement (governance.ts), or null. */
  readonly authorityMutation: AuthorityMutation | null;
  readonly gov: SimGovernance;
  readonly net: SimNetwork<Envelope>;
  readonly hosts = new Map<string, Host>();
  readonly faults: Record<string, number> = {};
  readonly stats: ClusterStats = {
    readies: 0,
    writes: 0,
    applied: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    maxTerm: 0,
    treeHeadsProposed: 0,
    treeHeadsAccepted: 0,
    treeHeadsRefused: 0,
  };
  /** A member just became leader (its first Ready as leader); the fault injector may act on it. */
  onLeaderElected: (d: GroupDriver) => void = () => {};
  /** A member just became a candidate (its first Ready as one); the fault injector may act on it. */
  onCampaign: (d: GroupDriver) => void = () => {};
  /** Replies travel back to clients through this (set by the clients). */
  onReply: (req: ClientRequest, reply: ClientReply, leaderHint: string) => void = () => {};
  clientLoss: number;
  nextReadId = 1;
  /** Check the promises of acknowledgements and votes against the disk (invariants.ts, ack-durability). */
  ackDurability = true;
  /** The edge check of src/api at the receiving member (GroupDriver.edgeCheck): see RunOptions. */
  edgeAdmission: EdgeAdmission = 'off';
  /**
   * Session key -> the first time some member applied the command with an effect (not as a duplicate), and
   * its result. Every member applies the same entries in the same order, so every member computes the same
   * result; the first application is an upper bound of the command's linearization point (its commit).
   */
  readonly effects = new Map<
    string,
    { time: number; result: CommandResult; node: string; index: number; json: string }
  >();
  /** `${session key}@${index}` -> the result of the command applied there (by whichever member first). */
  private readonly resultsAt = new Map<string, { node: string; json: string }>();

  constructor(opts: {
    queue: EventQueue;
    trace: Trace;
    checks: Invariants;
    scenario: Scenario;
    rng: Rng;
    mutations: ReadonlySet<Mutation>;
    gov: SimGovernance;
    authorityMutation?: AuthorityMutation | null;
  }) {
    this.queue = opts.queue;
    this.trace = opts.trace;
    this.checks = opts.checks;
    this.scenario = opts.scenario;
    this.rng = opts.rng;
    this.mutations = opts.mutations;
    this.gov = opts.gov;
    this.authorityMutation = opts.authorityMutation ?? null;
    this.clientLoss = opts.scenario.clientLoss;
    this.net = new SimNetwork<Envelope>(this.queue, this.rng.fork(), opts.scenario.network, (from, to, env) =>
      this.deliver(from, to, env),
    );
    for (const id of this.scenario.hosts) {
      this.hosts.set(id, new Host(id, this.rng.fork(), this.scenario.tickPeriod[id] ?? this.scenario.tickMs));
    }
    for (const g of this.scenario.groups) {
      const boot = bootstrapState(g.voters);
      for (const v of g.voters) this.host(v).disks.set(g.scope, SimDisk.from(boot));
    }
  }

  host(id: string): Host {
    const h = this.hosts.get(id);
    if (h === undefined) throw new RangeError(`no host ${id}`);
    return h;
  }

  start(): void {
    for (const h of this.hosts.values()) {
      this.boot(h);
      this.scheduleTick(h);
    }
  }

  countFault(kind: string, n = 1): void {
    this.faults[kind] = (this.faults[kind] ?? 0) + n;
  }

  processingDelay(): number {
    return this.rng.uniform(0.01, 0.2);
  }

  /** Hosts that serve (or once served) a scope: where its clients may send requests. */
  groupHosts(scope: string): string[] {
    const out: string[] = [];
    for (const h of this.hosts.values()) if (h.disks.has(scope)) out.push(h.id);
    return out;
  }

  /** The current leader of a scope among live hosts (the highest term wins), if any. */
  leaderOf(scope: string): GroupDriver | undefined {
    let best: GroupDriver | undefined;
    for (const h of this.hosts.values()) {
      const d = h.drivers.get(scope);
      if (d && h.up && d.role === 'leader' && (best === undefined || d.term > best.term)) best = d;
    }
    return best;
  }

  drivers(scope: string): GroupDriver[] {
    const out: GroupDriver[] = [];
    for (const h of this.hosts.values()) {
      const d = h.up ? h.drivers.get(scope) : undefined;
      if (d) out.push(d);
    }
    return out;
  }

  /** Build every group of `h` from its disk. */
  private boot(h: Host): void {
    h.multi = new MultiRaft();
    h.drivers.clear();
    for (const [scope, disk] of h.disks) this.startGroup(h, scope, disk.load());
  }

  private startGroup(h: Host, scope: string, state: PersistedState): GroupDriver {
    const d = new GroupDriver(this, h, scope, state);
    h.multi.add(scope, d.node);
    h.drivers.set(scope, d);
    d.schedulePump();
    return d;
  }

  /** A new member for `scope` on host `id`, starting empty (it learns everything from the leader). */
  join(id: string, scope: string): boolean {
    const h = this.host(id);
    if (!h.up || h.disks.has(scope)) return false;
    const state = emptyState();
    h.disks.set(scope, SimDisk.from(state));
    this.startGroup(h, scope, state);
    return true;
  }

  crash(id: string, why: string): void {
    const h = this.host(id);
    if (!h.up) return;
    h.up = false;
    h.incarnation++;
    const parts: string[] = [];
    for (const [scope, disk] of h.disks) {
      const out = disk.crash(this.rng, this.scenario.tearProbability);
      if (out.lost > 0) {
        this.countFault('lost-write', out.lost);
        parts.push(`${scope}: lost ${out.lost} write(s)${out.torn ? `, torn: kept ${out.detail}` : ''}`);
      }
      if (out.torn) this.countFault('torn-write');
    }
    h.drivers.clear();
    h.multi = new MultiRaft();
    h.pausedUntil = 0;
    h.missedTicks = 0;
    this.trace.add(
      this.queue.now,
      `FAULT crash ${id} (${why})${parts.length ? `; ${parts.join('; ')}` : ''}`,
    );
  }

  restart(id: string): void {
    const h = this.host(id);
    if (h.up) return;
    h.up = true;
    h.incarnation++;
    this.boot(h);
    const desc = [...h.drivers.values()].map((d) => {
      const st = d.node.status();
      return `${d.scope}: t${st.term} log ${st.firstIndex}..${st.lastIndex} c${st.commit}`;
    });
    this.trace.add(this.queue.now, `FAULT restart ${id} (${desc.join('; ')})`);
  }

  /** Pause a host's clock: its ticks pile up and arrive all at once at the end. */
  pauseClock(id: string, ms: number): void {
    const h = this.host(id);
    if (!h.up) return;
    const until = this.queue.now + ms;
    if (until <= h.pausedUntil) return;
    h.pausedUntil = until;
    this.trace.add(this.queue.now, `FAULT clock-pause ${id} for ${ms.toFixed(1)}ms`);
    const inc = h.incarnation;
    this.queue.at(until, () => {
      if (h.incarnation !== inc || h.pausedUntil !== until) return;
      this.resumeClock(h);
    });
  }

  resumeClock(h: Host): void {
    if (h.pausedUntil === 0) return;
    h.pausedUntil = 0;
    const n = h.missedTicks;
    h.missedTicks = 0;
    if (!h.up) return;
    this.trace.add(this.queue.now, `${h.id} clock resumes: ${n} ticks at once`);
    for (let i = 0; i < n; i++) h.multi.tick();
    for (const d of h.drivers.values()) d.schedulePump();
  }

  private scheduleTick(h: Host): void {
    const jitter = this.rng.uniform(-0.3, 0.3);
    this.queue.after(h.period + jitter, () => {
      this.scheduleTick(h);
      if (!h.up) return;
      if (h.pausedUntil > 0) {
        h.missedTicks++;
        return;
      }
      h.ticks++;
      h.multi.tick();
      for (const d of h.drivers.values()) d.schedulePump();
    });
  }

  private deliver(from: string, to: string, env: Envelope): void {
    const h = this.hosts.get(to);
    if (h === undefined || !h.up) return;
    if (this.trace.full) {
      const m = env.message;
      const ents = m.entries.length ? ` [${m.entries.map(describeEntry).join(' ')}]` : '';
      const snap = m.snapshot ? ` snap ${m.snapshot.meta.index}@${m.snapshot.meta.term}` : '';
      this.trace.add(
        this.queue.now,
        `  ${from}->${to} ${env.scope} ${m.type} t${m.term} i${m.index} lt${m.logTerm} c${m.commit}${m.reject ? ` reject hint ${m.rejectHint}` : ''}${ents}${snap}`,
      );
    }
    if (!h.multi.step(env)) return;
    h.drivers.get(env.scope)?.schedulePump();
  }

  /** A client request reaches host `req.host`. A dead host says nothing. */
  submit(req: ClientRequest): void {
    const h = this.hosts.get(req.host);
    if (h === undefined || !h.up) return;
    const d = h.drivers.get(req.scope);
    if (d === undefined) {
      this.sendReply(req, { kind: 'dropped', reason: 'not-hosted' }, '');
      return;
    }
    d.submit(req);
  }

  reply(req: ClientRequest, d: GroupDriver, reply: ClientReply): void {
    this.sendReply(req, reply, d.leader);
  }

  private sendReply(req: ClientRequest, reply: ClientReply, leaderHint: string): void {
    if (this.rng.chance(this.clientLoss)) return;
    const s = this.scenario;
    this.queue.after(this.rng.uniform(s.clientDelayMin, s.clientDelayMax), () =>
      this.onReply(req, reply, leaderHint),
    );
  }

  /** The member on which an authority mutation acts: the group's first founding voter. */
  mutatedMember(scope: string): string {
    return this.scenario.groups.find((g) => g.scope === scope)?.voters[0] ?? '';
  }

  /**
   * One result per session command: every member that applies the entry holding it (not as a duplicate)
   * computes the same result — admitted or refused, with the same reason, the same lineage index and
   * modifyIndex — and the command takes effect at one index only: another entry carrying it (a retry that
   * also reached a log) is applied as a duplicate, or refused as a stale session once its client moved on.
   */
  recordEffect(key: string, result: CommandResult, node: string, index: number): void {
    const json = resultKey(result);
    const at = `${key}@${index}`;
    const same = this.resultsAt.get(at);
    if (same === undefined) this.resultsAt.set(at, { node, json });
    else if (same.json !== json) {
      this.checks.fail(
        'state-machine-safety',
        `command ${key} at index ${index}: ${same.node} applied it with ${same.json}, ${node} with ${json}`,
      );
      return;
    }
    if (result.type === 'rejected' && result.code === 'stale-session') return;
    const seen = this.effects.get(key);
    if (seen === undefined) {
      this.effects.set(key, { time: this.queue.now, result, node, index, json });
      if (key.includes('.t#')) {
        if (result.type === 'govern') this.stats.treeHeadsAccepted++;
        else this.stats.treeHeadsRefused++;
      }
      return;
    }
    if (seen.index !== index) {
      this.checks.fail(
        'state-machine-safety',
        `command ${key} took effect twice: ${seen.node} applied it at ${seen.index} with ${JSON.stringify(seen.result)}, ${node} at ${index} with ${JSON.stringify(result)}`,
      );
    }
  }

  /** Every group's leader publishes a tree head (GroupDriver.publishTreeHead). */
  publishTreeHeads(): void {
    for (const g of this.scenario.groups) this.leaderOf(g.scope)?.publishTreeHead();
  }

  /** Log Matching over the live members of every group; lineage agreement at their applied indexes. */
  checkLogs(lineage = true): void {
    for (const g of this.scenario.groups) {
      const drivers = this.drivers(g.scope);
      this.checks.logMatching(
        g.scope,
        drivers.map((d) => d.logView()),
      );
      if (lineage) for (const d of drivers) d.checkLineageRoot();
    }
  }

  /**
   * lineage-audit, at the end of a run: the lineage of each group (as its most advanced live member holds
   * it) is what an auditor checks offline (aq verify): leaves numbered 0.., the genesis first and only
   * there, every entry admitted (signed) by one of the scope's hosts, every command signed by the holder of
   * the credential it names, for the action it performs.
   */
  auditLineage(): void {
    const verifier = this.gov.auditVerifier;
    const hostKeys = [...this.gov.hostSigners.values()].map((s) => s.publicKey);
    for (const g of this.scenario.groups) {
      let d: GroupDriver | undefined;
      for (const x of this.drivers(g.scope)) if (d === undefined || x.applied > d.applied) d = x;
      if (d === undefined) continue;
      const scopeId = this.gov.group(g.scope).scopeId;
      const sm = d.sm;
      const audit = (i: number, e: LineageEntry): string | null => {
        if (e.index !== i) return `it says it is leaf ${e.index}`;
        if ((e.kind === 'genesis') !== (i === 0)) return 'the genesis is leaf 0, and only leaf 0';
        if (e.kind === 'membership') {
          // Unsigned by design: the log's configuration change itself (src/lineage/entry.ts).
          if (e.signer.some((b) => b !== 0)) return 'a membership entry with a signer';
          decodeConfChange(e.payload);
          return null;
        }
        if (!hostKeys.some((k) => equalBytes(k, e.signer))) return 'admitted by a key that is no host';
        if (!verifyEntrySignature(e, verifier)) return 'its admitting signature does not verify';
        if (e.kind === 'genesis') return null;
        const cmd = decodeCommand(e.payload);
        if (cmd.auth === undefined) return `an admitted ${cmd.type} without an auth block`;
        const record = sm.authority.credential(cmd.auth.credentialId);
        if (record === undefined) return 'signed with a credential the scope does not know';
        const subject = record.credential.subject;
        if (
          !verifyRequestSignature(verifier, subject, scopeId, cmd.auth, actionOf(cmd), commandSignedBody(cmd))
        )
          return `the ${cmd.type}'s auth signature does not verify under its credential's key`;
        return null;
      };
      for (let i = 0; i < sm.lineage.size; i++) {
        this.checks.counts.audited++;
        const e = decodeEntry(sm.lineage.entry(i));
        const why = audit(i, e);
        if (why !== null) {
          this.checks.fail(
            'lineage-audit',
            `group ${g.scope} (${d.host.id}) lineage entry ${i} (log index ${e.logIndex}, ${e.kind}): ${why}`,
          );
          return;
        }
      }
    }
  }
}

/**
 * What a member that ignores refusals (the 'leader-ignores-refusals' mutation) answers instead of a refusal
 * of authorization: the success the client hoped for.
 */
function acceptedInstead(result: CommandResult, data: Uint8Array): CommandResult {
  if (result.type !== 'rejected') return result;
  const cmd = decodeCommand(splitAdmitted(data).command);
  if (cmd.type === 'register') return { type: 'register', ok: true, modifyIndex: 0 };
  if (cmd.type === 'deregister') return { type: 'deregister', ok: true, removed: false, modifyIndex: 0 };
  if (cmd.type === 'issue-credential' || cmd.type === 'revoke-credential')
    return { type: 'govern', ok: true, command: cmd.type, detail: '' };
  return result;
}

/** Every field of a command result, as one string (JSON.stringify's cost showed in profiles). */
function resultKey(r: CommandResult): string {
  switch (r.type) {
    case 'register':
      return `register m${r.modifyIndex} l${r.lineageIndex ?? '-'}`;
    case 'deregister':
      return `deregister ${r.removed} m${r.modifyIndex} l${r.lineageIndex ?? '-'}`;
    case 'set-health':
      return `set-health ${r.changed} m${r.modifyIndex} l${r.lineageIndex ?? '-'}`;
    case 'govern':
      return `govern ${r.command} ${r.detail} l${r.lineageIndex ?? '-'}`;
    case 'rejected':
      return `rejected ${r.code}: ${r.message}`;
  }
}

/** Whether a credential record (authority.ts: issuedAt varint, revokedAt varint, ...) is revoked. */
function isRevokedRow(row: Uint8Array): boolean {
  const r = new ByteReader(row, (m) => new Error(`credential record: ${m}`));
  r.varint('issuedAt');
  return r.varint('revokedAt') !== 0;
}

/**
 * A credential record (authority.ts: issuedAt varint, revokedAt varint, reason str, credential bytes) as it
 * was before its revocation.
 */
function unrevokedRow(row: Uint8Array): Uint8Array {
  const fail = (m: string): Error => new Error(`credential record: ${m}`);
  const r = new ByteReader(row, fail);
  const issuedAt = r.varint('issuedAt');
  r.varint('revokedAt');
  r.str('reason');
  const credential = r.bytes(r.remaining, 'credential');
  const w = new ByteWriter(row.length, fail);
  w.varint(issuedAt, 'issuedAt');
  w.varint(0, 'revokedAt');
  w.str('', 'reason');
  w.bytes(credential);
  return w.finish();
}

/** The refusals src/api/registry-service.ts checks again after catching up (LAG_SENSITIVE there). */
function lagSensitive(reply: ClientReply): boolean {
  const code =
    reply.kind === 'read-refused'
      ? reply.code
      : reply.kind === 'write' && reply.result.type === 'rejected'
        ? reply.result.code
        : '';
  return LAG_SENSITIVE.has(code);
}
