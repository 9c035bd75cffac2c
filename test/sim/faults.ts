// The fault injector of the fault phase. Every kind the scenario switches on fires as a Poisson process at
// its own mean interval; each fault draws its targets and its duration from the fault stream of the seed.
// Membership changes and leadership transfers are "faults" too: they are what a running group must
// survive, and they go through the same core entry points (proposeConfChange, transferLeadership) an
// operator would use.

import { ProposalDroppedError } from '../../src/consensus/index.ts';
import type { Cluster, GroupDriver } from './cluster.ts';
import type { Rng } from './rng.ts';
import type { FaultRates } from './scenario.ts';

type Membership =
  | { readonly phase: 'idle' }
  /** `node` is being removed, then comes back as a learner, then as a voter. */
  | { readonly phase: 'remove'; readonly node: string }
  | { readonly phase: 'learner'; readonly node: string }
  | { readonly phase: 'promote'; readonly node: string };

export class Faults {
  private readonly cluster: Cluster;
  private readonly rng: Rng;
  private active = false;
  private readonly membership = new Map<string, Membership>();

  constructor(cluster: Cluster, rng: Rng) {
    this.cluster = cluster;
    this.rng = rng;
  }

  start(): void {
    this.active = true;
    if (this.cluster.scenario.flakyNewLeader > 0) this.cluster.onLeaderElected = (d) => this.flakyLeader(d);
    if (this.cluster.scenario.crashVoterOnCampaign > 0) this.cluster.onCampaign = (d) => this.crashVoter(d);
    const rates = this.cluster.scenario.faults;
    for (const kind of Object.keys(rates) as (keyof FaultRates)[]) {
      if (rates[kind] > 0) this.schedule(kind, rates[kind]);
    }
  }

  private schedule(kind: keyof FaultRates, mean: number): void {
    this.cluster.queue.after(this.rng.exp(mean), () => {
      if (!this.active) return;
      this.fire(kind);
      this.schedule(kind, mean);
    });
  }

  /** The end of the fault phase: heal every link, restart every host, resume every clock, stop losing messages. */
  stop(): void {
    const c = this.cluster;
    this.active = false;
    c.net.healAll();
    c.net.config = { ...c.net.config, lossProbability: 0, dupProbability: 0, spikeProbability: 0 };
    c.clientLoss = 0;
    for (const h of c.hosts.values()) {
      if (!h.up) c.restart(h.id);
      else c.resumeClock(h);
    }
    c.trace.add(c.queue.now, 'LIVENESS phase: network healed, hosts restarted, faults stopped');
  }

  private get upHosts(): string[] {
    return [...this.cluster.hosts.values()].filter((h) => h.up).map((h) => h.id);
  }

  /** A random group's leader host with probability `p`, else a random live host. */
  private target(p: number): string | undefined {
    const c = this.cluster;
    if (this.rng.chance(p)) {
      const g = this.rng.pick(c.scenario.groups);
      const l = c.leaderOf(g.scope);
      if (l) return l.host.id;
    }
    const up = this.upHosts;
    return up.length > 0 ? this.rng.pick(up) : undefined;
  }

  private fire(kind: keyof FaultRates): void {
    const c = this.cluster;
    const r = this.rng;
    const q = c.queue;
    const s = c.scenario;
    switch (kind) {
      case 'crash': {
        const h = this.target(s.targetLeader);
        if (h === undefined) return;
        c.countFault('crash');
        c.crash(h, 'crash');
        q.after(r.uniform(...s.downtime), () => c.restart(h));
        return;
      }
      case 'crashMajority': {
        const g = r.pick(c.scenario.groups);
        const members = c.drivers(g.scope);
        const leader = c.leaderOf(g.scope);
        if (leader === undefined || members.length < 2) return;
        const voters = leader.node.status().conf.voters;
        const need = Math.floor(voters.length / 2) + 1;
        const others = r.shuffle(voters.filter((v) => v !== leader.host.id));
        const victims = [leader.host.id, ...others.slice(0, need - 1)];
        c.countFault('crash-majority');
        for (const v of victims) c.crash(v, `majority of ${g.scope}`);
        q.after(r.uniform(...s.leaderDowntime), () => c.restart(leader.host.id));
        for (const v of victims.slice(1)) q.after(r.uniform(...s.downtime), () => c.restart(v));
        return;
      }
      case 'partition': {
        const hosts = r.shuffle([...c.hosts.keys()]);
        const cut = r.range(1, hosts.length - 1);
        const left = hosts.slice(0, cut).sort();
        const right = hosts.slice(cut).sort();
        c.countFault('partition');
        const handle = c.net.partition(left, right);
        c.trace.add(q.now, `FAULT partition {${left.join(',')}} | {${right.join(',')}}`);
        q.after(r.uniform(...s.cutDuration), () => {
          c.net.heal(handle);
          c.trace.add(q.now, `heal partition {${left.join(',')}} | {${right.join(',')}}`);
        });
        return;
      }
      case 'isolateLeader': {
        const g = r.pick(c.scenario.groups);
        const l = c.leaderOf(g.scope);
        if (l === undefined) return;
        const others = [...c.hosts.keys()].filter((h) => h !== l.host.id);
        c.countFault('isolate-leader');
        const handle = c.net.partition([l.host.id], others);
        c.trace.add(q.now, `FAULT isolate ${l.host.id} (leader of ${g.scope} term ${l.term})`);
        q.after(r.uniform(...s.cutDuration), () => {
          c.net.heal(handle);
          c.trace.add(q.now, `heal isolation of ${l.host.id}`);
        });
        return;
      }
      case 'freezeLeader': {
        const g = r.pick(c.scenario.groups);
        const l = c.leaderOf(g.scope);
        if (l === undefined) return;
        const id = l.host.id;
        const others = [...c.hosts.keys()].filter((h) => h !== id);
        const ms = r.uniform(...s.cutDuration);
        c.countFault('freeze-leader');
        const handle = c.net.partition([id], others);
        c.trace.add(
          q.now,
          `FAULT freeze ${id} (leader of ${g.scope} term ${l.term}): isolated, clock stopped`,
        );
        c.pauseClock(id, ms);
        q.after(ms, () => {
          c.net.heal(handle);
          c.trace.add(q.now, `heal isolation of ${id}`);
        });
        return;
      }
      case 'oneWay': {
        const hosts = [...c.hosts.keys()];
        const links: [string, string][] = [];
        const n = r.range(1, 3);
        for (let i = 0; i < n; i++) {
          const [a, b] = r.shuffle(hosts);
          if (a !== undefined && b !== undefined) links.push([a, b]);
        }
        c.countFault('one-way-cut');
        const handle = c.net.cut(links);
        const text = links.map(([a, b]) => `${a}->${b}`).join(' ');
        c.trace.add(q.now, `FAULT cut ${text}`);
        q.after(r.uniform(...s.cutDuration), () => {
          c.net.heal(handle);
          c.trace.add(q.now, `heal cut ${text}`);
        });
        return;
      }
      case 'clockPause': {
        const h = this.target(0.5);
        if (h === undefined) return;
        c.countFault('clock-pause');
        c.pauseClock(h, r.uniform(50, 800));
        return;
      }
      case 'transfer': {
        const g = r.pick(c.scenario.groups);
        const l = c.leaderOf(g.scope);
        if (l === undefined) return;
        const voters = l.node.status().conf.voters.filter((v) => v !== l.host.id);
        if (voters.length === 0) return;
        const to = r.pick(voters);
        c.countFault('transfer');
        c.trace.add(q.now, `FAULT transfer ${g.scope} leadership ${l.host.id} -> ${to}`);
        l.node.transferLeadership(to);
        l.schedulePump();
        return;
      }
      case 'confChange':
        this.membershipStep(r.pick(c.scenario.groups).scope);
        return;
    }
  }

  /** A new leader fails soon after its election: cut off from everyone, or crashed. */
  private flakyLeader(d: GroupDriver): void {
    const c = this.cluster;
    const r = this.rng;
    const s = c.scenario;
    if (!this.active || !r.chance(s.flakyNewLeader)) return;
    const id = d.host.id;
    const term = d.term;
    const delay = r.uniform(0, 6 * s.network.delayMax);
    const crash = r.chance(0.3);
    c.queue.after(delay, () => {
      if (!this.active || !c.host(id).up) return;
      c.countFault('flaky-leader');
      if (crash) {
        c.crash(id, `new leader of ${d.scope} term ${term}`);
        c.queue.after(r.uniform(...s.downtime), () => c.restart(id));
        return;
      }
      const others = [...c.hosts.keys()].filter((h) => h !== id);
      const handle = c.net.partition([id], others);
      c.trace.add(c.queue.now, `FAULT isolate ${id} (new leader of ${d.scope} term ${term})`);
      c.queue.after(r.uniform(...s.cutDuration), () => {
        c.net.heal(handle);
        c.trace.add(c.queue.now, `heal isolation of ${id}`);
      });
    });
  }

  /** A candidate asks for votes: a voter loses power about when the request (and its vote's write) lands. */
  private crashVoter(d: GroupDriver): void {
    const c = this.cluster;
    const r = this.rng;
    const s = c.scenario;
    if (!this.active || !r.chance(s.crashVoterOnCampaign)) return;
    const voters = d.node.status().conf.voters.filter((v) => v !== d.host.id && c.hosts.get(v)?.up);
    if (voters.length === 0) return;
    const victim = r.pick(voters);
    const term = d.term;
    c.queue.after(r.uniform(s.network.delayMin, s.network.delayMax + s.fsyncMax), () => {
      if (!this.active) return;
      c.countFault('crash-voter');
      c.crash(victim, `voter of ${d.scope} while ${d.host.id} campaigns in term ${term}`);
      c.queue.after(r.uniform(...s.downtime), () => c.restart(victim));
    });
  }

  /**
   * One step of a group's membership scenario, driven from the leader's applied configuration: remove a
   * voter, re-add it as a learner, promote it; or add the spare host as a learner, then promote it. A change
   * that was lost (leader deposed before commit) is proposed again at the next step.
   */
  private membershipStep(scope: string): void {
    const c = this.cluster;
    const r = this.rng;
    const l = c.leaderOf(scope);
    if (l === undefined) return;
    const conf = l.node.status().conf;
    const state = this.membership.get(scope) ?? { phase: 'idle' };
    const propose = (type: 'add-learner' | 'add-voter' | 'remove', node: string, next: Membership): void => {
      try {
        l.node.proposeConfChange({ type, node });
      } catch (err) {
        if (err instanceof ProposalDroppedError) return; // not now: try again at the next step
        throw err;
      }
      this.membership.set(scope, next);
      c.countFault('conf-change');
      c.trace.add(
        c.queue.now,
        `FAULT conf-change ${scope}: ${type} ${node} (leader ${l.host.id} term ${l.term})`,
      );
      l.schedulePump();
    };
    switch (state.phase) {
      case 'idle': {
        const spare = c.scenario.spare;
        if (
          spare !== null &&
          !conf.voters.includes(spare) &&
          !conf.learners.includes(spare) &&
          r.chance(0.5)
        ) {
          c.join(spare, scope);
          if (c.host(spare).drivers.has(scope))
            propose('add-learner', spare, { phase: 'learner', node: spare });
          return;
        }
        if (conf.voters.length < 3) return;
        const candidates = r.chance(0.2) ? conf.voters : conf.voters.filter((v) => v !== l.host.id);
        if (candidates.length === 0) return;
        const v = r.pick(candidates);
        propose('remove', v, { phase: 'remove', node: v });
        return;
      }
      case 'remove':
        if (conf.voters.includes(state.node)) propose('remove', state.node, state);
        else propose('add-learner', state.node, { phase: 'learner', node: state.node });
        return;
      case 'learner':
        if (conf.learners.includes(state.node))
          propose('add-voter', state.node, { phase: 'promote', node: state.node });
        else if (!conf.voters.includes(state.node)) propose('add-learner', state.node, state);
        else this.membership.set(scope, { phase: 'idle' });
        return;
      case 'promote':
        if (conf.voters.includes(state.node)) this.membership.set(scope, { phase: 'idle' });
        else propose('add-voter', state.node, state);
        return;
    }
  }
}
