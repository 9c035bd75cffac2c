// The Raft core: a deterministic state machine in the manner of etcd's raft. It does no I/O, reads no
// clock and draws no randomness of its own. Inputs are step(message), tick(), propose(), readIndex(),
// membership and transfer requests; the output is a Ready (see types.ts for the order in which the driver
// must act on it) and advance() once the driver has acted. Written by hand because it is the project's
// core: every later guarantee (durability, linearizability, authority) rests on it.

import { applyConfChange, decodeConfChange, encodeConfChange, isVoter, quorum } from './conf-change.ts';
import { ProposalDroppedError, RaftInvariantError } from './errors.ts';
import { RaftLog } from './log.ts';
import { makeMessage, malformed } from './message.ts';
import type { Mutation } from './mutations.ts';
import { Progress } from './progress.ts';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  NO_NODE,
  type NodeId,
  type PersistedState,
  type ProgressStatus,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
  type SoftState,
  type Status,
} from './types.ts';

export interface RaftConfig {
  readonly id: NodeId;
  /** Ticks without hearing from a leader before campaigning; the timeout is drawn in [e, 2e). */
  readonly electionTick: number;
  /** Ticks between a leader's heartbeats; must be well below electionTick. */
  readonly heartbeatTick: number;
  /** Integer in [0, n): the only randomness the core uses (election jitter). Injected for determinism. */
  readonly random: (n: number) => number;
  /** Raft thesis §9.6: a partitioned node cannot disrupt the group when it rejoins. Default true. */
  readonly preVote?: boolean;
  /** A leader steps down when it has not heard from a quorum for electionTick. Default true. */
  readonly checkQuorum?: boolean;
  /** Appends in flight per follower in the replicate state. Default 256. */
  readonly maxInflightMsgs?: number;
  /** Entries in one append. Default 512. */
  readonly maxEntriesPerMsg?: number;
  /** Approximate payload bytes in one append. Default 1 MiB. */
  readonly maxBytesPerMsg?: number;
  /** Committed entries handed out by one Ready. Default 4096. */
  readonly maxCommittedPerReady?: number;
  /** Index the state machine has durably applied (0 when it is rebuilt from the snapshot on restart). */
  readonly applied?: number;
  /** Test-only: deliberately broken variants, switched on by the simulator alone. */
  readonly mutations?: ReadonlySet<Mutation>;
  readonly logger?: (line: string) => void;
}

const TRANSFER_CONTEXT = new TextEncoder().encode('transfer');
const TRANSFER_KEY = 'transfer';

/** The state every founder of a new group starts from: one committed add-voter entry per founder. */
export function bootstrapState(voters: readonly NodeId[]): PersistedState {
  const entries: Entry[] = voters.map((node, i) => ({
    term: 1,
    index: i + 1,
    kind: 'conf-change',
    data: encodeConfChange({ type: 'add-voter', node }),
  }));
  return { hardState: { term: 1, vote: NO_NODE, commit: entries.length }, snapshot: null, entries };
}

/** The state of a node that joins an existing group: it learns everything from the leader. */
export function emptyState(): PersistedState {
  return { hardState: { term: 0, vote: NO_NODE, commit: 0 }, snapshot: null, entries: [] };
}

function contextKey(ctx: Uint8Array): string {
  let s = '';
  for (const b of ctx) s += String.fromCharCode(b);
  return s;
}

interface PendingRead {
  readonly key: string;
  readonly context: Uint8Array;
  readonly index: number;
  readonly from: NodeId;
  readonly acks: Set<NodeId>;
}

export class RaftNode {
  readonly id: NodeId;
  private readonly cfg: Required<Omit<RaftConfig, 'logger' | 'mutations' | 'applied'>>;
  private readonly mutations: ReadonlySet<Mutation>;
  private readonly log: (line: string) => void;

  private term: number;
  private vote: NodeId;
  private role: Role = 'follower';
  private lead: NodeId = NO_NODE;
  private readonly raftLog: RaftLog;
  private conf: ConfState;
  /** Index of the last conf change reflected in `conf`. */
  private confIndex = 0;
  private readonly progress = new Map<NodeId, Progress>();
  private readonly votes = new Map<NodeId, boolean>();

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private transferee: NodeId = NO_NODE;
  /** Index of the last conf change proposed by this leader; the next waits until it is applied. */
  private pendingConfIndex = 0;

  private readonly pendingReads: PendingRead[] = [];
  /** Reads that arrived before this leader committed an entry of its own term (thesis §6.4 step 1). */
  private readonly readsBeforeCommit: { context: Uint8Array; from: NodeId }[] = [];
  private readStates: ReadState[] = [];

  private msgs: Message[] = [];
  private msgsAfterPersist: Message[] = [];
  /** Proposals arrived since the last Ready: broadcast once, in one append per follower (batching). */
  private needBroadcast = false;

  /** Malformed messages refused since start (reported in status). */
  private droppedMessages = 0;

  private prevHardState: HardState;
  private prevSoftState: SoftState;

  constructor(config: RaftConfig, state: PersistedState) {
    if (config.heartbeatTick >= config.electionTick) {
      throw new RangeError('raft: heartbeatTick must be smaller than electionTick');
    }
    this.id = config.id;
    this.cfg = {
      id: config.id,
      electionTick: config.electionTick,
      heartbeatTick: config.heartbeatTick,
      random: config.random,
      preVote: config.preVote ?? true,
      checkQuorum: config.checkQuorum ?? true,
      maxInflightMsgs: config.maxInflightMsgs ?? 256,
      maxEntriesPerMsg: config.maxEntriesPerMsg ?? 512,
      maxBytesPerMsg: config.maxBytesPerMsg ?? 1 << 20,
      maxCommittedPerReady: config.maxCommittedPerReady ?? 4096,
    };
    this.mutations = config.mutations ?? new Set();
    this.log = config.logger ?? (() => {});
    const hs = state.hardState;
    this.term = hs.term;
    this.vote = hs.vote;
    this.raftLog = RaftLog.restore(state.snapshot, state.entries, hs.commit, config.applied ?? 0);
    // Membership is what the committed prefix says: the snapshot's, then every committed conf change. A
    // committed change is certain to be applied, so a restarted node need not wait for its state machine
    // to replay it; the replay then skips changes at or below confIndex.
    let conf: ConfState = state.snapshot?.meta.conf ?? { voters: [], learners: [] };
    this.confIndex = state.snapshot?.meta.index ?? 0;
    for (const e of state.entries) {
      if (e.index > this.raftLog.committed) break;
      if (e.kind === 'conf-change' && e.index > this.confIndex) {
        conf = applyConfChange(conf, decodeConfChange(e.data));
        this.confIndex = e.index;
      }
    }
    this.conf = conf;
    this.prevHardState = { term: this.term, vote: this.vote, commit: this.raftLog.committed };
    this.prevSoftState = { leader: this.lead, role: this.role };
    this.becomeFollower(this.term, NO_NODE);
  }

  // ---- inputs -------------------------------------------------------------------------------------------

  tick(): void {
    if (this.role === 'leader') this.tickLeader();
    else this.tickElection();
  }

  /** Start an election now (tests, and a node told to by leadership transfer). */
  campaign(): void {
    if (this.role === 'leader') return;
    this.hup(false);
  }

  step(m: Message): void {
    const why = malformed(m);
    if (why !== null) {
      // A malformed message from a peer must not take the node down or corrupt it: refuse it.
      this.droppedMessages++;
      this.log(`${this.id} drops a malformed message from ${String(m.from)}: ${why}`);
      return;
    }
    if (m.to !== this.id) return;
    this.stepInner(m);
  }

  propose(data: Uint8Array): void {
    this.proposeEntries([{ term: 0, index: 0, kind: 'normal', data }]);
  }

  proposeConfChange(cc: ConfChange): void {
    if (this.role !== 'leader')
      throw new ProposalDroppedError('not-leader', 'raft: conf changes go to the leader');
    if (this.pendingConfIndex > this.raftLog.applied) {
      throw new ProposalDroppedError('change-pending', 'raft: a membership change is still pending');
    }
    if (!this.committedEntryInCurrentTerm()) {
      throw new ProposalDroppedError(
        'change-pending',
        'raft: leader has not committed an entry of its term yet',
      );
    }
    this.proposeEntries([{ term: 0, index: 0, kind: 'conf-change', data: encodeConfChange(cc) }]);
    this.pendingConfIndex = this.raftLog.lastIndex();
  }

  /** Linearizable read (thesis §6.4): the answer is a ReadState with this context, or none (time out). */
  readIndex(context: Uint8Array): void {
    if (this.role === 'leader') {
      this.leaderReadIndex(context, this.id);
      return;
    }
    if (this.lead === NO_NODE)
      throw new ProposalDroppedError('no-leader', 'raft: no leader known for a read');
    this.send(makeMessage('read-index', this.id, this.lead, 0, { context }));
  }

  transferLeadership(to: NodeId): void {
    if (this.role !== 'leader' || to === this.id || !isVoter(this.conf, to)) return;
    if (this.transferee === to) return;
    this.transferee = to;
    this.electionElapsed = 0; // the transfer must finish within one election timeout
    const pr = this.progress.get(to)!;
    if (pr.match === this.raftLog.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
  }

  /** The transport could not reach `id`: stop pipelining to it until it answers. */
  reportUnreachable(id: NodeId): void {
    const pr = this.progress.get(id);
    if (this.role === 'leader' && pr?.state === 'replicate') pr.becomeProbe();
  }

  /** The transport finished (or failed) sending a snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.progress.get(id);
    if (this.role !== 'leader' || pr?.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    pr.probeSent = true; // wait for the follower's answer (or a heartbeat) before probing again
  }

  /**
   * The application applied everything up to `index` and serialized its state as `data`. Log entries up to
   * `index` are dropped from memory; the returned snapshot is what the driver gives storage.compact().
   * Returns null when the log has already moved past `index` — a snapshot from the leader replaced it
   * while the driver was applying — so there is nothing to compact.
   */
  compact(index: number, data: Uint8Array): Snapshot | null {
    if (index !== this.raftLog.applied) {
      throw new RaftInvariantError(`raft: compact at ${index} but applied is ${this.raftLog.applied}`);
    }
    const term = this.raftLog.term(index);
    if (term === undefined || this.raftLog.pendingSnapshot !== null) return null;
    const snapshot: Snapshot = { meta: { index, term, conf: this.conf }, data };
    this.raftLog.compact(snapshot);
    return snapshot;
  }

  // ---- output -------------------------------------------------------------------------------------------

  hasReady(): boolean {
    if (this.needBroadcast) return true;
    if (this.msgs.length > 0 || this.msgsAfterPersist.length > 0 || this.readStates.length > 0) return true;
    if (this.raftLog.pendingSnapshot !== null || this.raftLog.unstableFrom <= this.raftLog.lastIndex())
      return true;
    if (this.raftLog.hasNextCommitted()) return true;
    const hs = this.hardState();
    const p = this.prevHardState;
    if (hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit) return true;
    return this.lead !== this.prevSoftState.leader || this.role !== this.prevSoftState.role;
  }

  ready(): Ready {
    if (this.needBroadcast) {
      this.needBroadcast = false;
      if (this.role === 'leader') this.bcastAppend();
    }
    const hs = this.hardState();
    const p = this.prevHardState;
    const hardStateChanged = hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit;
    const snapshot = this.raftLog.pendingSnapshot;
    const entries = this.raftLog.unstableEntries();
    let committedEntries: Entry[] = [];
    if (snapshot === null) {
      committedEntries = this.raftLog.nextCommitted(this.cfg.maxCommittedPerReady);
      const last = committedEntries.at(-1);
      if (last) this.raftLog.applying = last.index;
    } else {
      this.raftLog.applying = snapshot.meta.index;
    }
    const rd: Ready = {
      softState: { leader: this.lead, role: this.role },
      hardState: hardStateChanged ? hs : null,
      entries,
      snapshot,
      committedEntries,
      messages: this.msgs,
      messagesAfterPersist: this.msgsAfterPersist,
      readStates: this.readStates,
      // As etcd: a new commit index alone need not be synced (Raft keeps commit volatile; a restart
      // relearns it from the leader), only entries, snapshots, term and vote.
      mustSync: hs.term !== p.term || hs.vote !== p.vote || entries.length > 0 || snapshot !== null,
    };
    this.msgs = [];
    this.msgsAfterPersist = [];
    this.readStates = [];
    this.prevHardState = hs;
    this.prevSoftState = rd.softState;
    return rd;
  }

  advance(rd: Ready): void {
    if (rd.snapshot) {
      this.raftLog.stableSnapTo(rd.snapshot);
      this.raftLog.applied = Math.max(this.raftLog.applied, rd.snapshot.meta.index);
      this.conf = rd.snapshot.meta.conf;
      this.confIndex = rd.snapshot.meta.index;
      this.resetProgressToConf();
    }
    const lastWritten = rd.entries.at(-1);
    if (lastWritten) this.raftLog.stableTo(lastWritten.index, lastWritten.term);
    for (const e of rd.committedEntries) {
      this.raftLog.applied = e.index;
      if (e.kind === 'conf-change') this.applyConfEntry(e);
    }
    if (this.role === 'leader') {
      // The leader counts its own log towards commit only once it is durable.
      const self = this.progress.get(this.id);
      if (self?.maybeUpdate(this.raftLog.stable) && this.maybeCommit()) this.needBroadcast = true;
    }
  }

  /** The membership in effect (what status().conf reports), without building a status: a hot-path read. */
  confState(): ConfState {
    return this.conf;
  }

  status(): Status {
    const progress = new Map<NodeId, ProgressStatus>();
    if (this.role === 'leader') for (const [id, pr] of this.progress) progress.set(id, pr.status());
    return {
      id: this.id,
      term: this.term,
      vote: this.vote,
      role: this.role,
      leader: this.lead,
      commit: this.raftLog.committed,
      applied: this.raftLog.applied,
      firstIndex: this.raftLog.firstIndex(),
      lastIndex: this.raftLog.lastIndex(),
      conf: this.conf,
      transferee: this.transferee,
      droppedMessages: this.droppedMessages,
      progress,
    };
  }

  /** Entries in [lo, hi) still in memory (for checkers and tests). */
  entries(lo: number, hi: number): Entry[] {
    return this.raftLog.slice(Math.max(lo, this.raftLog.firstIndex()), hi);
  }

  // ---- roles --------------------------------------------------------------------------------------------

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NO_NODE;
    }
    this.lead = NO_NODE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.cfg.electionTick + this.cfg.random(this.cfg.electionTick);
    this.votes.clear();
    this.transferee = NO_NODE;
    this.pendingReads.length = 0;
    this.readsBeforeCommit.length = 0;
    this.needBroadcast = false;
    this.resetProgressToConf();
  }

  private resetProgressToConf(): void {
    const members = new Set([...this.conf.voters, ...this.conf.learners]);
    for (const id of [...this.progress.keys()]) if (!members.has(id)) this.progress.delete(id);
    for (const id of members) {
      const learner = this.conf.learners.includes(id);
      const pr = this.progress.get(id);
      if (pr) pr.learner = learner;
      else
        this.progress.set(id, new Progress(this.raftLog.lastIndex() + 1, this.cfg.maxInflightMsgs, learner));
    }
  }

  private becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.role = 'follower';
    this.lead = lead;
  }

  private becomePreCandidate(): void {
    // Pre-vote changes neither term nor vote: a node that cannot win does not disturb the group.
    this.votes.clear();
    this.role = 'pre-candidate';
    this.lead = NO_NODE;
  }

  private becomeCandidate(): void {
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(): void {
    this.reset(this.term);
    this.role = 'leader';
    this.lead = this.id;
    for (const pr of this.progress.values()) {
      pr.next = this.raftLog.lastIndex() + 1;
      pr.match = 0;
      pr.state = 'probe';
      pr.probeSent = false;
      pr.recentActive = true;
    }
    const self = this.progress.get(this.id);
    if (self) {
      self.match = this.raftLog.stable;
      self.becomeReplicate();
    }
    // Conf changes wait until this leader's first entry is applied (pendingConfIndex = its index).
    this.raftLog.append([
      { term: this.term, index: this.raftLog.lastIndex() + 1, kind: 'normal', data: new Uint8Array(0) },
    ]);
    this.pendingConfIndex = this.raftLog.lastIndex();
    this.needBroadcast = true;
    this.log(`${this.id} became leader at term ${this.term}`);
  }

  private promotable(): boolean {
    return isVoter(this.conf, this.id) && this.raftLog.pendingSnapshot === null;
  }

  // ---- elections ----------------------------------------------------------------------------------------

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    for (const [id, pr] of this.progress) {
      if (id !== this.id && pr.state === 'snapshot' && ++pr.snapshotTicks >= this.cfg.electionTick) {
        pr.becomeProbe(); // the snapshot or its answer was lost: try again
      }
    }
    if (this.electionElapsed >= this.cfg.electionTick) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum && !this.quorumActive()) {
        this.log(`${this.id} steps down at term ${this.term}: no quorum heard from`);
        this.becomeFollower(this.term, NO_NODE);
        return;
      }
      this.transferee = NO_NODE; // a transfer that did not finish in an election timeout is abandoned
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTick) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(null);
    }
  }

  private quorumActive(): boolean {
    let active = 0;
    for (const [id, pr] of this.progress) {
      if (pr.learner) continue;
      if (id === this.id || pr.recentActive) active++;
      pr.recentActive = false;
    }
    return active >= quorum(this.conf);
  }

  private hup(transfer: boolean): void {
    if (!this.promotable()) return;
    // A conf change committed but not yet in effect may remove us; wait until it is applied.
    if (this.raftLog.committed > this.confIndex) {
      for (const e of this.entries(
        Math.max(this.confIndex, this.raftLog.applied) + 1,
        this.raftLog.committed + 1,
      )) {
        if (e.kind === 'conf-change') return;
      }
    }
    if (this.cfg.preVote && !transfer) this.campaignPre();
    else this.campaignVote(transfer);
  }

  private campaignPre(): void {
    this.becomePreCandidate();
    this.requestVotes('prevote', this.term + 1, null);
  }

  private campaignVote(transfer: boolean): void {
    this.becomeCandidate();
    this.requestVotes('vote', this.term, transfer ? TRANSFER_CONTEXT : null);
  }

  private requestVotes(type: 'prevote' | 'vote', term: number, context: Uint8Array | null): void {
    this.recordVote(this.id, true);
    if (this.tallyVotes() === 'won') {
      this.onElectionWon(type);
      return;
    }
    for (const id of this.conf.voters) {
      if (id === this.id) continue;
      this.send(
        makeMessage(type, this.id, id, term, {
          index: this.raftLog.lastIndex(),
          logTerm: this.raftLog.lastTerm(),
          context,
        }),
      );
    }
  }

  private recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  private tallyVotes(): 'won' | 'lost' | 'pending' {
    let granted = 0;
    let rejected = 0;
    for (const id of this.conf.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    const q = quorum(this.conf);
    if (granted >= q) return 'won';
    if (rejected > this.conf.voters.length - q) return 'lost';
    return 'pending';
  }

  private onElectionWon(type: 'prevote' | 'vote'): void {
    if (type === 'prevote') this.campaignVote(false);
    else this.becomeLeader();
  }

  private handleVoteRequest(m: Message): void {
    const pre = m.type === 'prevote';
    const respType = pre ? 'prevote-resp' : 'vote-resp';
    // We can vote for m.from if we already did in this term, or have not voted and know no leader; a
    // pre-vote for a later term is always considered (it changes nothing).
    const canVote =
      this.vote === m.from || (this.vote === NO_NODE && this.lead === NO_NODE) || (pre && m.term > this.term);
    const upToDate =
      this.mutations.has('vote-without-log-check') || this.raftLog.isUpToDate(m.index, m.logTerm);
    if (canVote && upToDate) {
      // A pre-vote grant answers with the candidate's future term, so it is not mistaken for stale.
      this.send(makeMessage(respType, this.id, m.from, m.term, {}));
      if (!pre) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send(makeMessage(respType, this.id, m.from, this.term, { reject: true }));
    }
  }

  // ---- step ---------------------------------------------------------------------------------------------

  private stepInner(m: Message): void {
    // Propose and read-index from a follower carry no term: they are requests, not protocol state.
    if (m.term === 0 && (m.type === 'propose' || m.type === 'read-index')) {
      this.stepByRole(m);
      return;
    }
    if (m.term > this.term) {
      if (m.type === 'prevote' || m.type === 'vote') {
        const force = m.context !== null && contextKey(m.context) === TRANSFER_KEY;
        const inLease =
          this.cfg.checkQuorum && this.lead !== NO_NODE && this.electionElapsed < this.cfg.electionTick;
        // Thesis §4.2.3: a node that hears from a current leader ignores disruptive candidates.
        if (!force && inLease) return;
      }
      if (m.type === 'prevote') {
        // Do not change term for a pre-vote.
      } else if (m.type === 'prevote-resp' && !m.reject) {
        // A grant of our pre-vote carries the future term; we move to it only when we really campaign.
      } else if (m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NO_NODE);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === 'heartbeat' || m.type === 'append')) {
        // A stale leader (e.g. isolated, with CheckQuorum keeping our term from reaching it) learns our term.
        this.send(makeMessage('append-resp', this.id, m.from, this.term, {}));
      } else if (m.type === 'prevote') {
        this.send(makeMessage('prevote-resp', this.id, m.from, this.term, { reject: true }));
      }
      return;
    }

    if (m.type === 'prevote' || m.type === 'vote') {
      this.handleVoteRequest(m);
      return;
    }
    this.stepByRole(m);
  }

  private stepByRole(m: Message): void {
    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        return;
      case 'candidate':
      case 'pre-candidate':
        this.stepCandidate(m);
        return;
      case 'follower':
        this.stepFollower(m);
        return;
    }
  }

  private stepLeader(m: Message): void {
    if (m.type === 'propose') {
      if (this.transferee === NO_NODE && isVoter(this.conf, this.id)) this.appendEntries(m.entries);
      return;
    }
    if (m.type === 'read-index') {
      if (m.context) this.leaderReadIndex(m.context, m.from);
      return;
    }
    const pr = this.progress.get(m.from);
    if (!pr || m.from === this.id) return;
    switch (m.type) {
      case 'append-resp':
        pr.recentActive = true;
        this.handleAppendResponse(m, pr);
        return;
      case 'heartbeat-resp':
        pr.recentActive = true;
        pr.onHeartbeatResponse();
        if (pr.match < this.raftLog.lastIndex()) this.sendAppend(m.from, false);
        if (m.context) this.handleReadAck(m.context, m.from);
        return;
      default:
        return;
    }
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    if (m.reject) {
      // The follower's log matches ours at most up to the last index where our term is at most the term
      // it reported at its hint: probe there next, skipping whole terms of divergence.
      const next =
        m.logTerm > 0 ? this.raftLog.findConflictByTerm(m.rejectHint, m.logTerm).index : m.rejectHint;
      if (pr.maybeDecrTo(m.index, next)) this.sendAppend(m.from, false);
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) {
      if (wasPaused && !pr.isPaused()) this.sendAppend(m.from, false);
      return;
    }
    if (pr.state === 'probe') pr.becomeReplicate();
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    }
    if (this.maybeCommit()) this.bcastAppend();
    else if (wasPaused) this.sendAppend(m.from, true); // it may not know the commit index yet
    while (this.sendAppend(m.from, false)) {}
    if (m.from === this.transferee && pr.match === this.raftLog.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // A leader of our term exists: Raft §5.2.
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        return;
      case 'prevote-resp':
      case 'vote-resp': {
        const mine = this.role === 'pre-candidate' ? 'prevote-resp' : 'vote-resp';
        if (m.type !== mine) return;
        this.recordVote(m.from, !m.reject);
        const result = this.tallyVotes();
        if (result === 'won') this.onElectionWon(this.role === 'pre-candidate' ? 'prevote' : 'vote');
        else if (result === 'lost') this.becomeFollower(this.term, NO_NODE);
        return;
      }
      default:
        return;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'propose':
        if (this.lead !== NO_NODE)
          this.send(makeMessage('propose', this.id, this.lead, 0, { entries: m.entries }));
        return;
      case 'append':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.raftLog.commitTo(Math.min(m.commit, this.raftLog.lastIndex()));
        this.send(makeMessage('heartbeat-resp', this.id, m.from, this.term, { context: m.context }));
        return;
      case 'snapshot':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case 'timeout-now':
        // Leadership transfer (thesis §3.10): campaign at once, skipping pre-vote.
        this.hup(true);
        return;
      case 'read-index-resp':
        if (m.context) this.readStates.push({ index: m.index, context: m.context });
        return;
      default:
        return;
    }
  }

  // ---- replication --------------------------------------------------------------------------------------

  private proposeEntries(entries: Entry[]): void {
    if (this.role === 'leader') {
      if (this.transferee !== NO_NODE) {
        throw new ProposalDroppedError('transferring', `raft: leadership is moving to ${this.transferee}`);
      }
      if (!isVoter(this.conf, this.id)) {
        throw new ProposalDroppedError('not-member', 'raft: this leader is being removed from the group');
      }
      this.appendEntries(entries);
      return;
    }
    if (this.lead === NO_NODE) throw new ProposalDroppedError('no-leader', 'raft: no leader known');
    if (this.role !== 'follower') throw new ProposalDroppedError('no-leader', 'raft: election in progress');
    this.send(makeMessage('propose', this.id, this.lead, 0, { entries }));
  }

  private appendEntries(entries: readonly Entry[]): void {
    let index = this.raftLog.lastIndex();
    const stamped = entries.map((e) => ({ term: this.term, index: ++index, kind: e.kind, data: e.data }));
    this.raftLog.append(stamped);
    this.needBroadcast = true;
    if (this.conf.voters.length === 1 && this.progress.size === 1) {
      // Alone: commit follows our own disk (advance), nothing to send.
      this.needBroadcast = false;
    }
  }

  private bcastAppend(): void {
    for (const id of this.progress.keys()) {
      if (id === this.id) continue;
      // Pipeline: in the replicate state keep sending until the in-flight window or the log runs out.
      if (this.sendAppend(id, true)) while (this.sendAppend(id, false)) {}
    }
  }

  private bcastHeartbeat(context: Uint8Array | null): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      const commit = Math.min(pr.match, this.raftLog.committed);
      this.send(makeMessage('heartbeat', this.id, id, this.term, { commit, context }));
    }
  }

  /** Send the next append (or snapshot) to `to`. Returns whether something was sent. */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.raftLog.term(prevIndex);
    if (prevTerm === undefined || pr.next < this.raftLog.firstIndex()) return this.sendSnapshot(to, pr);
    const entries = this.raftLog.slice(
      pr.next,
      this.raftLog.lastIndex() + 1,
      this.cfg.maxEntriesPerMsg,
      this.cfg.maxBytesPerMsg,
    );
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send(
      makeMessage('append', this.id, to, this.term, {
        index: prevIndex,
        logTerm: prevTerm,
        entries,
        commit: this.raftLog.committed,
      }),
    );
    pr.sent(prevIndex + entries.length, entries.length);
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    const snapshot = this.raftLog.snapshot;
    if (!pr.recentActive || snapshot === null) return false;
    this.send(makeMessage('snapshot', this.id, to, this.term, { snapshot }));
    pr.becomeSnapshot(snapshot.meta.index);
    return true;
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(makeMessage('timeout-now', this.id, to, this.term));
  }

  private handleAppend(m: Message): void {
    if (m.index < this.raftLog.committed) {
      this.send(makeMessage('append-resp', this.id, m.from, this.term, { index: this.raftLog.committed }));
      return;
    }
    const lastNew = this.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send(makeMessage('append-resp', this.id, m.from, this.term, { index: lastNew }));
    } else {
      const hint = this.raftLog.findConflictByTerm(m.index, m.logTerm);
      this.send(
        makeMessage('append-resp', this.id, m.from, this.term, {
          index: m.index,
          reject: true,
          rejectHint: hint.index,
          logTerm: hint.term,
        }),
      );
    }
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (!s) return;
    if (s.meta.index <= this.raftLog.committed) {
      this.send(makeMessage('append-resp', this.id, m.from, this.term, { index: this.raftLog.committed }));
      return;
    }
    if (this.raftLog.matchTerm(s.meta.index, s.meta.term)) {
      // We already hold the snapshot's last entry: just move commit (Raft §7: keep the suffix). Only the
      // prefix up to the snapshot is known to match the leader, so that is what we acknowledge.
      this.raftLog.commitTo(s.meta.index);
    } else {
      this.raftLog.restoreSnapshot(s);
    }
    this.send(makeMessage('append-resp', this.id, m.from, this.term, { index: s.meta.index }));
  }

  /** Raft §5.4.2: commit only by counting replicas of an entry of the current term. */
  private maybeCommit(): boolean {
    const matches: number[] = [];
    for (const id of this.conf.voters) matches.push(this.progress.get(id)?.match ?? 0);
    if (matches.length === 0) return false;
    matches.sort((a, b) => b - a);
    const index = matches[quorum(this.conf) - 1]!;
    if (index <= this.raftLog.committed) return false;
    if (this.raftLog.term(index) !== this.term && !this.mutations.has('commit-prior-term-by-count'))
      return false;
    this.raftLog.commitTo(index);
    if (this.raftLog.term(index) === this.term) this.releaseReadsBeforeCommit();
    return true;
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.raftLog.term(this.raftLog.committed) === this.term;
  }

  // ---- reads --------------------------------------------------------------------------------------------

  private leaderReadIndex(context: Uint8Array, from: NodeId): void {
    if (this.conf.voters.length === 1 || this.mutations.has('read-without-quorum')) {
      this.answerRead(context, this.raftLog.committed, from);
      return;
    }
    if (!this.committedEntryInCurrentTerm()) {
      this.readsBeforeCommit.push({ context, from });
      return;
    }
    const key = contextKey(context);
    this.pendingReads.push({ key, context, index: this.raftLog.committed, from, acks: new Set([this.id]) });
    this.bcastHeartbeat(context);
  }

  private releaseReadsBeforeCommit(): void {
    const waiting = this.readsBeforeCommit.splice(0);
    for (const r of waiting) this.leaderReadIndex(r.context, r.from);
  }

  private handleReadAck(context: Uint8Array, from: NodeId): void {
    if (!isVoter(this.conf, from)) return;
    const key = contextKey(context);
    const at = this.pendingReads.findIndex((r) => r.key === key);
    if (at < 0) return;
    const read = this.pendingReads[at]!;
    read.acks.add(from);
    let acked = 0;
    for (const id of read.acks) if (isVoter(this.conf, id)) acked++;
    if (acked < quorum(this.conf)) return;
    // A quorum confirmed leadership after this read arrived, so every earlier read is confirmed too.
    for (const r of this.pendingReads.splice(0, at + 1)) this.answerRead(r.context, r.index, r.from);
  }

  private answerRead(context: Uint8Array, index: number, from: NodeId): void {
    if (from === this.id) this.readStates.push({ index, context });
    else this.send(makeMessage('read-index-resp', this.id, from, this.term, { index, context }));
  }

  // ---- membership ---------------------------------------------------------------------------------------

  private applyConfEntry(e: Entry): void {
    if (e.index <= this.confIndex) return;
    this.confIndex = e.index;
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch {
      return; // an undecodable change is a no-op on every member alike
    }
    this.conf = applyConfChange(this.conf, cc);
    this.resetProgressToConf();
    if (this.role !== 'leader') return;
    if (cc.type === 'remove' && cc.node === this.id) {
      this.becomeFollower(this.term, NO_NODE);
      return;
    }
    if (this.transferee !== NO_NODE && !isVoter(this.conf, this.transferee)) this.transferee = NO_NODE;
    // The quorum may have shrunk (commit can move) and new members need their first append.
    this.maybeCommit();
    this.needBroadcast = true;
  }

  // ---- messages -----------------------------------------------------------------------------------------

  private send(m: Message): void {
    // Answers that promise durable state (vote grants, append acknowledgements) and anything a non-leader
    // sends after changing term or vote wait for the persist; a leader's own traffic need not.
    const immediate =
      m.type === 'prevote' ||
      m.type === 'prevote-resp' ||
      m.type === 'heartbeat-resp' ||
      m.type === 'read-index' ||
      m.type === 'propose' ||
      (this.role === 'leader' &&
        (m.type === 'append' ||
          m.type === 'heartbeat' ||
          m.type === 'snapshot' ||
          m.type === 'timeout-now' ||
          m.type === 'read-index-resp')) ||
      this.mutations.has('ack-before-persist');
    if (immediate) this.msgs.push(m);
    else this.msgsAfterPersist.push(m);
  }
}
