// The multi-raft host of one anchor at run time: one ScopeGroup per scope it serves, over one storage,
// one transport and one clock. It founds, restarts or joins each group, routes authenticated peer traffic
// to the right group, and keeps per-group watches and TTL checks. Formation policy (when to found, whom to
// ask to join) is the anchor's (src/anchor/formation.ts); this host only executes it.

import { randomBytes, randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import {
  bootstrapState,
  type Envelope,
  type Mutation,
  type NodeId,
  type PersistedState,
  ProposalDroppedError,
  RaftNode,
  type RaftStorage,
} from '../consensus/index.ts';
import { encodeGenesis, type Genesis, scopeIdOf } from '../governance/genesis.ts';
import { publicKeyOfPeerId } from '../identity/peer-id.ts';
import type { Signer } from '../identity/signer.ts';
import { entrySignedBytes } from '../lineage/entry.ts';
import { encodeTreeHead, signTreeHead } from '../lineage/tree-head.ts';
import { encodeCommand, type Health, isUnder, type RegistryStateMachine } from '../registry/index.ts';
import { admittedEntry } from '../registry/state-machine.ts';
import type { ConsensusReceiver } from '../transport/peer-transport.ts';
import { type RegistryHost, ScopeGroup, type ScopeGroupOptions, type ScopeTransport } from './scope-group.ts';
import { TtlMonitor } from './ttl-monitor.ts';
import { type NameChange, WatchHub } from './watch-hub.ts';

export interface ScopeHostComponents {
  readonly self: NodeId;
  readonly transport: ScopeTransport;
  readonly logger: Logger;
  /** The Raft storage of a scope (one key space per scope in the anchor's store). */
  readonly storageFor: (scope: string) => RaftStorage;
  /** The registry state of a scope; `onChange` must be called for every applied change. */
  readonly registryFor: (scope: string, onChange: (change: NameChange) => void) => Promise<RegistryHost>;
  readonly now?: () => number;
  readonly onPersist?: (seconds: number) => void;
  /** The anchor's key: it admits (signs) what it proposes, and signs tree heads when it leads. */
  readonly signer?: Signer;
  /**
   * The genesis this anchor would found `scope` with (its --genesis file, or the open genesis of the
   * name). The group's first leader proposes it; undefined: this anchor never proposes one (a joiner).
   */
  readonly genesisFor?: (scope: string) => Genesis | undefined;
}

export interface ScopeHostOptions {
  readonly group?: ScopeGroupOptions;
  /** Raft ticks before a follower campaigns (the timeout is drawn in [e, 2e) ticks). Default 10. */
  readonly electionTick?: number;
  /** How often the leader checks TTLs and learners, in ms. Default 250. */
  readonly sweepMs?: number;
  /** Test-only: deliberately broken Raft variants (src/consensus/mutations.ts), set from AQ_TEST_MUTATIONS. */
  readonly mutations?: ReadonlySet<Mutation>;
  /** How often a leader publishes a signed tree head when its lineage grew, in ms. Default 1000. */
  readonly treeHeadMs?: number;
}

/** A hosted scope: its group plus what the anchor keeps beside it. */
export interface HostedScope {
  readonly name: string;
  readonly group: ScopeGroup;
  readonly watches: WatchHub;
  readonly ttl: TtlMonitor;
}

export class ScopeNotServedError extends Error {
  override readonly name = 'ScopeNotServedError';
}

/** An unknown scope's name for storage keys: names contain '/', storage scope ids may not. */
export function storageScopeId(scope: string): string {
  return scope.replaceAll('/', ':');
}

export class ScopeHost implements ConsensusReceiver {
  readonly #c: ScopeHostComponents;
  readonly #opts: Required<Omit<ScopeHostOptions, 'group'>> & { group: ScopeGroupOptions };
  readonly #scopes = new Map<string, HostedScope>();
  readonly #now: () => number;
  #sweeper: NodeJS.Timeout | null = null;
  readonly #bootId = randomBytes(4).toString('hex');
  /**
   * A joiner starts with an empty log and so knows no members: until its log gives it a membership, it
   * accepts consensus traffic from the anchors that announced the group (its leader is one of them).
   */
  readonly #joinVia = new Map<string, Set<NodeId>>();
  #internalSeq = 0;
  /** Scopes with a governance proposal in flight (one at a time). */
  readonly #governing = new Set<string>();
  /** When each scope's last tree head was proposed. */
  readonly #treeHeadAt = new Map<string, number>();

  constructor(components: ScopeHostComponents, options: ScopeHostOptions = {}) {
    this.#c = components;
    this.#opts = {
      electionTick: 10,
      sweepMs: 250,
      group: {},
      mutations: new Set(),
      treeHeadMs: 1000,
      ...options,
    };
    this.#now = components.now ?? Date.now;
  }

  get self(): NodeId {
    return this.#c.self;
  }

  scopes(): HostedScope[] {
    return [...this.#scopes.values()];
  }

  get(scope: string): HostedScope | undefined {
    return this.#scopes.get(scope);
  }

  /** The served scope that owns `name`: the longest served scope equal to or above it. */
  owner(name: string): HostedScope | undefined {
    let best: HostedScope | undefined;
    for (const s of this.#scopes.values()) {
      if (
        (name === s.name || isUnder(name, s.name)) &&
        (best === undefined || s.name.length > best.name.length)
      ) {
        best = s;
      }
    }
    return best;
  }

  /** True when this anchor has Raft state for `scope` on disk (it is or was a member). */
  async hasState(scope: string): Promise<boolean> {
    const st = await this.#c.storageFor(scope).load();
    return !isFresh(st);
  }

  /**
   * Opens a scope group: from its data on disk when there is some (restart), else founded with `founders`
   * (every founder starts from the same bootstrap state), else empty (a joiner: it learns everything from
   * the leader once added).
   */
  async open(
    scope: string,
    founders: readonly NodeId[] | null,
    joinVia: readonly NodeId[] = [],
  ): Promise<HostedScope> {
    const existing = this.#scopes.get(scope);
    if (existing !== undefined) {
      for (const peer of joinVia) this.#joinVia.get(scope)?.add(peer);
      return existing;
    }
    this.#joinVia.set(scope, new Set(joinVia));
    const log = this.#c.logger.child({ scope });
    const storage = this.#c.storageFor(scope);
    let persisted = await storage.load();
    if (isFresh(persisted) && founders !== null) {
      persisted = bootstrapState([...founders].sort());
      await storage.save({ hardState: persisted.hardState, entries: persisted.entries, snapshot: null });
      log.info({ founders }, 'founded the scope group');
    }
    let hosted: HostedScope | undefined;
    const onChange = (change: NameChange): void => {
      if (hosted === undefined) return;
      hosted.watches.publish(change);
      hosted.ttl.observe(change);
    };
    const registry = await this.#c.registryFor(scope, onChange);
    if (persisted.snapshot !== null && persisted.snapshot.meta.index > registry.machine.appliedIndex) {
      await registry.restore(persisted.snapshot);
    }
    const node = new RaftNode(
      {
        id: this.#c.self,
        electionTick: this.#opts.electionTick,
        heartbeatTick: 1,
        random: (n) => randomInt(n),
        applied: registry.machine.appliedIndex,
        logger: (line) => log.trace(line),
        mutations: this.#opts.mutations,
      },
      persisted,
    );
    const ttl = new TtlMonitor({
      now: this.#now,
      proposeHealth: (name, id, health) => this.#proposeHealth(scope, name, id, health),
      lookup: (name) => registry.machine.resolve(name),
    });
    const group = new ScopeGroup(
      {
        scope,
        node,
        storage,
        registry,
        transport: this.#c.transport,
        logger: log,
        onRestored: (g) => {
          if (hosted === undefined) return;
          hosted.watches.reset(g.appliedIndex);
          rebuildTtl(hosted.ttl, g.registry);
        },
        ...(this.#c.onPersist ? { onPersist: this.#c.onPersist } : {}),
      },
      this.#opts.group,
    );
    hosted = { name: scope, group, watches: new WatchHub(registry.machine.appliedIndex), ttl };
    rebuildTtl(ttl, registry.machine);
    group.onLeaderChange((_leader, role) => {
      ttl.setLeading(role === 'leader');
      // A new leader of a group without a genesis proposes it at once (not at the next sweep).
      if (role === 'leader' && hosted !== undefined) queueMicrotask(() => hosted && this.#govern(hosted));
    });
    this.#scopes.set(scope, hosted);
    // A group of one need not wait an election timeout to lead (a development scope, or a lone founder).
    const conf = node.status().conf;
    if (conf.voters.length === 1 && conf.voters[0] === this.#c.self) node.campaign();
    group.start();
    if (this.#sweeper === null) this.#sweeper = setInterval(() => this.#sweep(), this.#opts.sweepMs);
    return hosted;
  }

  async stop(): Promise<void> {
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
    for (const s of this.#scopes.values()) s.watches.closeAll('the anchor is stopping');
    await Promise.all([...this.#scopes.values()].map((s) => s.group.stop()));
  }

  // ---- ConsensusReceiver ----

  isMember(scope: string, peer: NodeId): boolean {
    const s = this.#scopes.get(scope);
    if (s === undefined) return false;
    const conf = s.group.conf();
    if (conf.voters.length === 0) return this.#joinVia.get(scope)?.has(peer) ?? false;
    return conf.voters.includes(peer) || conf.learners.includes(peer);
  }

  deliver(envelope: Envelope): void {
    this.#scopes.get(envelope.scope)?.group.step(envelope.message);
  }

  async join(scope: string, peer: NodeId, signal: AbortSignal): Promise<number> {
    const s = this.#scopes.get(scope);
    if (s === undefined)
      throw withCode(new ScopeNotServedError(`this anchor does not serve scope ${scope}`), 5);
    const group = s.group;
    if (!group.isLeader) {
      const error = withCode(
        new Error(`not the leader of ${scope}; the leader is ${group.leader || 'unknown'}`),
        9,
      );
      (error as Error & { leader?: string }).leader = group.leader;
      throw error;
    }
    const conf = group.conf();
    if (conf.voters.includes(peer) || conf.learners.includes(peer)) return group.appliedIndex;
    // A governed scope admits as members only anchors it credentialed (the genesis founders, or an
    // `anchor` credential issued through its log): that is also how an anchor's key is rotated.
    const authority = group.registry.authority;
    if (!authority.open && !authority.isAnchorKey(publicKeyOfPeerId(peer))) {
      throw withCode(
        new Error(
          `${peer} holds no anchor credential of scope ${scope}: an admin must issue one (aq credential issue ${scope} --role anchor --subject ${peer}) before it joins`,
        ),
        7,
      );
    }
    await retryChange(signal, () =>
      group.changeMembership(
        { type: 'add-learner', node: peer },
        (c) => c.learners.includes(peer) || c.voters.includes(peer),
        signal,
      ),
    );
    this.#c.logger.info({ scope, peer }, 'added a learner');
    return group.appliedIndex;
  }

  /** Removes an anchor from a group (leader only). */
  async remove(scope: string, peer: NodeId, signal: AbortSignal): Promise<number> {
    const s = this.#scopes.get(scope);
    if (s === undefined) throw new ScopeNotServedError(`this anchor does not serve scope ${scope}`);
    await retryChange(signal, () =>
      s.group.changeMembership(
        { type: 'remove', node: peer },
        (c) => !c.voters.includes(peer) && !c.learners.includes(peer),
        signal,
      ),
    );
    return s.group.appliedIndex;
  }

  #proposeHealth(scope: string, name: string, id: string, health: Health): void {
    const s = this.#scopes.get(scope);
    if (s === undefined) return;
    const client = `~${this.#bootId}.h${++this.#internalSeq}`;
    const command = encodeCommand({ type: 'set-health', name, id, health, session: { client, seq: 1 } });
    const data = this.admit(s.group.registry, command) ?? command;
    const signal = AbortSignal.timeout(10_000);
    s.group.propose(data, `${client}#1`, signal).then(
      () => this.#c.logger.info({ scope, name, id, health }, 'health changed'),
      (error: Error) =>
        this.#c.logger.debug({ scope, name, id, err: error.message }, 'health change not applied'),
    );
  }

  /** Leader housekeeping: TTL expiries and promotion of caught-up learners. */
  /**
   * Wraps a command with this anchor's admitting signature (registry/state-machine.ts admittedEntry), over
   * the scope id of `machine`'s genesis; undefined while the scope has no genesis or the host no key.
   */
  admit(
    machine: RegistryStateMachine,
    command: Uint8Array,
    scopeId = machine.authority.scopeId,
  ): Uint8Array | undefined {
    const signer = this.#c.signer;
    if (signer === undefined || scopeId === undefined) return undefined;
    return admittedEntry(
      signer.publicKey,
      signer.sign(entrySignedBytes(scopeId, 'command', command)),
      command,
    );
  }

  /** A leader's governance duties: propose the genesis the group lacks, publish signed tree heads. */
  #govern(s: HostedScope): void {
    const machine = s.group.registry;
    const signer = this.#c.signer;
    if (signer === undefined || this.#governing.has(s.name)) return;
    const track = (what: string, work: Promise<unknown>): void => {
      this.#governing.add(s.name);
      work
        .then(
          () => this.#c.logger.debug({ scope: s.name }, what),
          (error: Error) => this.#c.logger.warn({ scope: s.name, err: error.message }, `${what} failed`),
        )
        .finally(() => this.#governing.delete(s.name));
    };
    const client = `~${this.#bootId}.g${++this.#internalSeq}`;
    if (machine.authority.genesis === undefined) {
      const genesis = this.#c.genesisFor?.(s.name);
      if (genesis === undefined) return;
      const bytes = encodeGenesis(genesis);
      const command = encodeCommand({
        type: 'genesis',
        name: '',
        genesis: bytes,
        session: { client, seq: 1 },
      });
      const scopeId = scopeIdOf(genesis);
      const data = admittedEntry(
        signer.publicKey,
        signer.sign(entrySignedBytes(scopeId, 'genesis', bytes)),
        command,
      );
      track('proposed the genesis', s.group.propose(data, `${client}#1`, AbortSignal.timeout(10_000)));
      return;
    }
    const size = machine.lineage.size;
    const now = this.#now();
    const last = this.#treeHeadAt.get(s.name) ?? 0;
    if (size === 0 || (machine.treeHead?.size ?? 0) >= size || now - last < this.#opts.treeHeadMs) return;
    this.#treeHeadAt.set(s.name, now);
    const head = signTreeHead(
      {
        scopeId: machine.authority.scopeId as Uint8Array,
        size,
        root: machine.lineage.root(size),
        timestampMs: Date.now(),
      },
      signer,
    );
    const command = encodeCommand({
      type: 'tree-head',
      name: '',
      treeHead: encodeTreeHead(head),
      session: { client, seq: 1 },
    });
    track('published a tree head', s.group.propose(command, `${client}#1`, AbortSignal.timeout(10_000)));
  }

  #sweep(): void {
    for (const s of this.#scopes.values()) {
      const group = s.group;
      if (!group.isLeader || group.stopped) continue;
      this.#govern(s);
      s.ttl.sweep();
      const status = group.node.status();
      for (const learner of status.conf.learners) {
        const pr = status.progress.get(learner);
        if (pr === undefined || pr.match < status.commit) continue;
        try {
          group.node.proposeConfChange({ type: 'add-voter', node: learner });
          this.#c.logger.info({ scope: s.name, peer: learner }, 'promoting a caught-up learner to voter');
        } catch (error) {
          if (!(error instanceof ProposalDroppedError)) throw error;
        }
        break; // one change at a time
      }
    }
  }
}

function isFresh(st: PersistedState): boolean {
  return st.hardState.term === 0 && st.entries.length === 0 && st.snapshot === null;
}

/** The rebuild under way per monitor: a newer one (after a snapshot install) supersedes it. */
const rebuilds = new WeakMap<TtlMonitor, number>();

/**
 * Tracks every instance with a TTL check after a restart or a snapshot install. Scanning the registry
 * decodes every record (~10 s for a million instances), so it runs a page at a time between other work,
 * never blocking the event loop: until it reaches a name, that name's TTL instances are not tracked (they
 * cannot expire yet, and a heartbeat for one looks it up directly: TtlMonitorComponents.lookup). Changes
 * applied meanwhile are observed as usual; a page read later sees the state after them.
 */
function rebuildTtl(ttl: TtlMonitor, machine: RegistryStateMachine): void {
  const generation = (rebuilds.get(ttl) ?? 0) + 1;
  rebuilds.set(ttl, generation);
  ttl.clear();
  let after = '';
  const step = (): void => {
    if (rebuilds.get(ttl) !== generation) return; // superseded
    const page = machine.list('', after, TTL_REBUILD_PAGE);
    for (const answer of page) ttl.observe(answer);
    if (page.length < TTL_REBUILD_PAGE) return;
    after = (page.at(-1) as { name: string }).name;
    setImmediate(step);
  };
  step();
}

/** Names per step of the TTL rebuild (~20 ms of decoding with ten instances per name). */
const TTL_REBUILD_PAGE = 200;

function withCode<E extends Error>(error: E, grpcCode: number): E {
  (error as E & { grpcCode: number }).grpcCode = grpcCode;
  return error;
}

/** Membership changes are refused while another is pending; retry until the signal ends. */
async function retryChange(signal: AbortSignal, attempt: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      await attempt();
      return;
    } catch (error) {
      if (!(error instanceof ProposalDroppedError) || error.reason !== 'change-pending') throw error;
      signal.throwIfAborted();
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
