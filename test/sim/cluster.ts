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
import { type CommandResult, decodeCommand, RegistryStateMachine } from '../../src/registry/index.ts';
import { SimDisk } from './disk.ts';
import type { EventQueue } from './events.ts';
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
}

export type ClientReply =
  | { readonly kind: 'write'; readonly result: CommandResult }
  | { readonly kind: 'read'; readonly instances: [string, string][] }
  /** Definitely not proposed (ProposalDroppedError) or the host does not serve the scope. */
  | { readonly kind: 'dropped'; readonly reason: string };

export interface ClusterStats {
  readies: number;
  writes: number;
  applied: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  maxTerm: number;
}

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
  private readonly readsByCtx = new Map<string, ClientRequest>();
  private waitingReads: { index: number; req: ClientRequest }[] = [];

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
    this.sm = state.snapshot ? RegistryStateMachine.restore(state.snapshot.data) : new RegistryStateMachine();
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
      this.sm = RegistryStateMachine.restore(rd.snapshot.data);
      this.applied = meta.index;
      this.snapIndex = meta.index;
      c.stats.snapshotsInstalled++;
      c.trace.add(c.queue.now, `${this.host.id}/${this.scope} installed snapshot ${meta.index}@${meta.term}`);
    }
    for (const e of rd.committedEntries) this.apply(e);
    for (const rs of rd.readStates) {
      const key = ctxKey(rs.context);
      const req = this.readsByCtx.get(key);
      if (req === undefined) continue;
      this.readsByCtx.delete(key);
      this.waitingReads.push({ index: rs.index, req });
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
      if (e.kind === 'conf-change')
        c.trace.add(c.queue.now, `${this.host.id}/${this.scope} applied conf ${e.index}`);
      return;
    }
    const res = this.sm.apply(e.index, e.data);
    const cmd = decodeCommand(e.data);
    if (cmd.session === undefined) return;
    const key = `${cmd.session.client}#${cmd.session.seq}`;
    if (res.type === 'register' || res.type === 'deregister') c.recordEffect(key, res, this.host.id, e.index);
    const reqs = this.waitingWrites.get(key);
    if (reqs === undefined) return;
    this.waitingWrites.delete(key);
    const result = res.type === 'duplicate' ? res.result : res;
    if (result.type === 'noop') return;
    for (const req of reqs) c.reply(req, this, { kind: 'write', result });
  }

  private serveReads(): void {
    const still: { index: number; req: ClientRequest }[] = [];
    for (const w of this.waitingReads) {
      if (w.index > this.applied) {
        still.push(w);
        continue;
      }
      const answer = this.sm.resolve(w.req.name);
      const instances = answer.instances.map((i): [string, string] => [i.id, `${i.address}:${i.port}`]);
      this.cluster.reply(w.req, this, { kind: 'read', instances });
    }
    this.waitingReads = still;
  }

  private maybeCompact(): void {
    const c = this.cluster;
    if (this.applied - this.snapIndex <= c.scenario.snapshotThreshold) return;
    const data = this.sm.snapshot();
    // Null when a snapshot from the leader replaced the log while this Ready was being persisted.
    const snap = this.node.compact(this.applied, data);
    if (snap === null) return;
    (this.host.disks.get(this.scope) as SimDisk).compact(snap);
    c.checks.snapshotTaken(this.scope, this.host.id, this.applied, data);
    this.snapIndex = this.applied;
    c.stats.snapshotsTaken++;
    if (c.trace.full) c.trace.add(c.queue.now, `${this.host.id}/${this.scope} compacted to ${this.applied}`);
  }

  /** A client request arrived at this host. */
  submit(req: ClientRequest): void {
    const c = this.cluster;
    try {
      if (req.kind === 'write') {
        this.node.propose(req.data);
        const list = this.waitingWrites.get(req.sessionKey);
        if (list) list.push(req);
        else this.waitingWrites.set(req.sessionKey, [req]);
      } else {
        const key = `r${c.nextReadId++}`;
        this.readsByCtx.set(key, req);
        try {
          this.node.readIndex(ctxBytes(key));
        } catch (err) {
          this.readsByCtx.delete(key);
          throw err;
        }
      }
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
      c.reply(req, this, { kind: 'dropped', reason: err.reason });
      return;
    }
    this.schedulePump();
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
  /**
   * Session key -> the first time some member applied the command with an effect (not as a duplicate), and
   * its result. Every member applies the same entries in the same order, so every member computes the same
   * result; the first application is an upper bound of the command's linearization point (its commit).
   */
  readonly effects = new Map<string, { time: number; result: CommandResult; node: string; index: number }>();

  constructor(opts: {
    queue: EventQueue;
    trace: Trace;
    checks: Invariants;
    scenario: Scenario;
    rng: Rng;
    mutations: ReadonlySet<Mutation>;
  }) {
    this.queue = opts.queue;
    this.trace = opts.trace;
    this.checks = opts.checks;
    this.scenario = opts.scenario;
    this.rng = opts.rng;
    this.mutations = opts.mutations;
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

  recordEffect(key: string, result: CommandResult, node: string, index: number): void {
    const seen = this.effects.get(key);
    if (seen === undefined) {
      this.effects.set(key, { time: this.queue.now, result, node, index });
      return;
    }
    const same =
      seen.index === index &&
      seen.result.type === result.type &&
      (result.type !== 'deregister' ||
        (seen.result.type === 'deregister' && seen.result.removed === result.removed));
    if (!same) {
      this.checks.fail(
        'state-machine-safety',
        `command ${key}: ${seen.node} applied it at ${seen.index} with ${JSON.stringify(seen.result)}, ${node} at ${index} with ${JSON.stringify(result)}`,
      );
    }
  }

  /** Log Matching over the live members of every group. */
  checkLogs(): void {
    for (const g of this.scenario.groups) {
      this.checks.logMatching(
        g.scope,
        this.drivers(g.scope).map((d) => d.logView()),
      );
    }
  }
}
