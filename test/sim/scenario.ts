// Everything a seed decides before the run starts: the cluster's shape, the network's and the disks' timing
// distributions, and which faults are switched on at which rates ("swarm testing": each seed enables a
// different mix, so that rare combinations get tried without tuning one global probability for all bugs).

import type { NetworkConfig } from './network.ts';
import type { Rng } from './rng.ts';

export interface GroupSpec {
  readonly scope: string;
  /** The founding voters (host ids, which are also the Raft node ids). */
  readonly voters: readonly string[];
  readonly names: readonly string[];
  readonly clients: number;
}

/** Mean interval between two faults of a kind, in simulated milliseconds; 0 = this kind is off. */
export interface FaultRates {
  readonly crash: number;
  /** Crash a majority of one group at once (its leader among them). */
  readonly crashMajority: number;
  readonly partition: number;
  readonly isolateLeader: number;
  /** Isolate a leader and stop its clock for as long: a stale leader that cannot notice it was deposed. */
  readonly freezeLeader: number;
  readonly oneWay: number;
  readonly clockPause: number;
  readonly confChange: number;
  readonly transfer: number;
}

/** A [min, max] range of simulated milliseconds. */
export type Range = readonly [number, number];

/**
 * The family a seed's scenario is drawn from. `mixed` switches each fault kind on or off at random; the
 * others concentrate on one shape of trouble that random mixing reaches too rarely:
 *   churn         leaders deposed every few hundred ms while appends travel one entry at a time, so logs
 *                 diverge across terms (the histories of Raft's Figure 8);
 *   power         a majority loses power at once while fsyncs are slow: writes in flight are lost or torn;
 *   stale-leader  a leader is cut off with its clock stopped, so it believes it still leads.
 */
export type Archetype = 'mixed' | 'churn' | 'power' | 'stale-leader';

export interface Scenario {
  readonly archetype: Archetype;
  readonly hosts: readonly string[];
  /** A host that starts with no group and may join one (membership growth), or null. */
  readonly spare: string | null;
  readonly groups: readonly GroupSpec[];
  readonly tickMs: number;
  /** Per host: its tick period (drift) in simulated milliseconds. */
  readonly tickPeriod: Readonly<Record<string, number>>;
  readonly electionTick: number;
  readonly heartbeatTick: number;
  readonly maxEntriesPerMsg: number;
  readonly maxInflightMsgs: number;
  readonly network: NetworkConfig;
  /** Client <-> host link: delay range and loss (clients are not behind partitions). */
  readonly clientDelayMin: number;
  readonly clientDelayMax: number;
  readonly clientLoss: number;
  /** fsync latency range, ms. */
  readonly fsyncMin: number;
  readonly fsyncMax: number;
  /** Probability that a crash tears the write in flight (a prefix survives). */
  readonly tearProbability: number;
  /** Take a state-machine snapshot when applied - last snapshot index exceeds this. */
  readonly snapshotThreshold: number;
  readonly faults: FaultRates;
  /** How long a partition, an isolation or a link cut lasts. */
  readonly cutDuration: Range;
  /** How long a crashed host stays down. */
  readonly downtime: Range;
  /** How long a crashed leader stays down after a majority crash (its followers come back within `downtime`). */
  readonly leaderDowntime: Range;
  /** Probability that a crash targets a leader. */
  readonly targetLeader: number;
  /**
   * Probability that a newly elected leader is cut off (or crashed) a few milliseconds after its election,
   * while its first appends are only partly replicated: leaders of successive terms then leave divergent
   * uncommitted suffixes behind them, as in Raft's Figure 8.
   */
  readonly flakyNewLeader: number;
  /**
   * Probability that, when a member starts an election, another voter of the group loses power while the
   * vote request reaches it (and while the vote it grants is being written).
   */
  readonly crashVoterOnCampaign: number;
  /** Time a client waits between two operations, ms. */
  readonly thinkMin: number;
  readonly thinkMax: number;
}

export interface ScenarioOptions {
  /** false: no faults of any kind (no loss, no duplication, no crash...), only delays and reordering. */
  readonly faults: boolean;
}

const TICK_MS = 10;

const NO_FAULTS: FaultRates = {
  crash: 0,
  crashMajority: 0,
  partition: 0,
  isolateLeader: 0,
  freezeLeader: 0,
  oneWay: 0,
  clockPause: 0,
  confChange: 0,
  transfer: 0,
};

export function makeScenario(rng: Rng, opts: ScenarioOptions): Scenario {
  const hosts = ['h1', 'h2', 'h3', 'h4', 'h5'];
  const small = rng.shuffle(hosts).slice(0, 3).sort();
  const groups: GroupSpec[] = [
    { scope: 'a', voters: small, names: names('a', rng.range(2, 4)), clients: rng.range(3, 6) },
    { scope: 'b', voters: hosts, names: names('b', rng.range(2, 4)), clients: rng.range(3, 5) },
  ];
  if (rng.chance(0.25)) {
    const other = rng.shuffle(hosts).slice(0, 3).sort();
    groups.push({ scope: 'c', voters: other, names: names('c', 2), clients: rng.range(2, 3) });
  }
  const f = opts.faults;
  const archetype: Archetype = f
    ? rng.pick(['mixed', 'mixed', 'churn', 'churn', 'power', 'stale-leader'])
    : 'mixed';
  const on = (p: number, lo: number, hi: number): number => (f && rng.chance(p) ? rng.uniform(lo, hi) : 0);

  let faults: FaultRates = NO_FAULTS;
  let cutDuration: Range = [100, 1500];
  let downtime: Range = [20, 800];
  let leaderDowntime: Range = [10, 600];
  let targetLeader = 0.4;
  let flakyNewLeader = 0;
  let crashVoterOnCampaign = 0;
  let maxEntriesPerMsg = rng.pick([1, 4, 64, 512]);
  let maxInflightMsgs = rng.pick([1, 4, 256]);
  const delayMin = rng.uniform(0.1, 1.5);
  let delaySpan = rng.chance(0.3) ? rng.uniform(5, 25) : rng.uniform(0.5, 6);
  let fsyncMin = rng.uniform(0.05, 1);
  let fsyncMax: number = rng.pick([1, 3, 8, 20]);
  let tearProbability = f ? rng.pick([0, 0.3, 0.7]) : 0;
  let thinkMax: number = rng.pick([60, 150, 300]);
  // Mostly the 10..60 of a real deployment; sometimes tiny, so that leaders compact past lagging followers
  // and snapshots travel often (InstallSnapshot on followers that hold part of the log, or a divergent one).
  let snapshotThreshold = rng.chance(0.3) ? rng.range(2, 9) : rng.range(10, 60);
  switch (archetype) {
    case 'mixed':
      faults = {
        crash: on(0.7, 600, 3000),
        crashMajority: on(0.4, 1000, 4000),
        partition: on(0.6, 400, 2500),
        isolateLeader: on(0.5, 500, 2500),
        freezeLeader: on(0.3, 1000, 4000),
        oneWay: on(0.4, 500, 3000),
        clockPause: on(0.5, 400, 2500),
        confChange: on(0.5, 150, 600),
        transfer: on(0.4, 300, 2000),
      };
      break;
    case 'churn':
      faults = {
        ...NO_FAULTS,
        crash: on(0.8, 300, 900),
        isolateLeader: rng.uniform(150, 500),
        partition: on(0.5, 300, 1000),
        transfer: on(0.3, 300, 1000),
        confChange: on(0.2, 200, 600),
      };
      cutDuration = [50, 400];
      downtime = [20, 300];
      targetLeader = 0.8;
      flakyNewLeader = rng.pick([0.6, 0.9]);
      maxEntriesPerMsg = 1;
      if (rng.chance(0.5)) snapshotThreshold = rng.range(2, 12);
      maxInflightMsgs = rng.pick([1, 2, 256]);
      delaySpan = rng.uniform(2, 12);
      thinkMax = rng.pick([20, 60]);
      break;
    case 'power':
      faults = {
        ...NO_FAULTS,
        crash: on(0.6, 400, 1500),
        crashMajority: rng.uniform(300, 1200),
        isolateLeader: on(0.3, 500, 2000),
      };
      downtime = [10, 150];
      leaderDowntime = [150, 800];
      crashVoterOnCampaign = rng.pick([0, 0.3, 0.6]);
      fsyncMin = rng.uniform(1, 5);
      fsyncMax = rng.pick([10, 20, 40]);
      delaySpan = rng.uniform(0.3, 2);
      tearProbability = rng.pick([0.3, 0.7, 1]);
      thinkMax = rng.pick([20, 60]);
      break;
    case 'stale-leader':
      faults = {
        ...NO_FAULTS,
        freezeLeader: rng.uniform(300, 1200),
        crash: on(0.3, 800, 3000),
        partition: on(0.3, 800, 3000),
      };
      cutDuration = [200, 1000];
      break;
  }
  const spare = faults.confChange > 0 && rng.chance(0.6) ? 'h6' : null;
  const all = spare ? [...hosts, spare] : hosts;
  const drift = f ? rng.pick([0, 0.02, 0.05, 0.15]) : 0.01;
  const tickPeriod: Record<string, number> = {};
  for (const h of all) tickPeriod[h] = TICK_MS * (1 + rng.uniform(-drift, drift));
  return {
    archetype,
    hosts: all,
    spare,
    groups,
    tickMs: TICK_MS,
    tickPeriod,
    electionTick: 10,
    heartbeatTick: 1,
    maxEntriesPerMsg,
    maxInflightMsgs,
    network: {
      delayMin,
      delayMax: delayMin + delaySpan,
      spikeProbability: f ? rng.pick([0, 0.01, 0.05]) : 0,
      spikeFactor: rng.uniform(2, 20),
      lossProbability: f ? rng.pick([0, 0.005, 0.02, 0.08]) : 0,
      dupProbability: f ? rng.pick([0, 0.01, 0.05]) : 0,
    },
    clientDelayMin: 0.2,
    clientDelayMax: rng.uniform(1, 4),
    clientLoss: f ? rng.pick([0, 0.01, 0.03]) : 0,
    fsyncMin,
    fsyncMax,
    tearProbability,
    snapshotThreshold,
    faults,
    cutDuration,
    downtime,
    leaderDowntime,
    targetLeader,
    flakyNewLeader,
    crashVoterOnCampaign,
    thinkMin: 5,
    thinkMax,
  };
}

function names(scope: string, n: number): string[] {
  const pool = ['web', 'db', 'cache', 'queue'];
  return pool.slice(0, n).map((x) => `${scope}/${x}`);
}

/** One line for the report. */
export function describeScenario(s: Scenario): string {
  const groups = s.groups
    .map((g) => `${g.scope}[${g.voters.join(',')}] ${g.clients}c ${g.names.length}n`)
    .join('; ');
  const faults = Object.entries(s.faults)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k}/${Math.round(v)}ms`)
    .join(' ');
  const n = s.network;
  return (
    `${s.archetype}: groups ${groups}${s.spare ? `; spare ${s.spare}` : ''} | net ${n.delayMin.toFixed(1)}-${n.delayMax.toFixed(1)}ms ` +
    `loss ${n.lossProbability} dup ${n.dupProbability} spike ${n.spikeProbability} | fsync ${s.fsyncMin.toFixed(2)}-${s.fsyncMax}ms ` +
    `tear ${s.tearProbability} | snap ${s.snapshotThreshold} | msg ${s.maxEntriesPerMsg}/${s.maxInflightMsgs} | faults ${faults || 'none'}`
  );
}
