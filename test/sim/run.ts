// One seeded run of the simulator: a pure function of (seed, options) to a report. Everything — the cluster's
// shape, every delay, every fault, every client's choice — is drawn from streams forked off the seed in a
// fixed order, and the only clock is the event queue's, so a run replays exactly from its seed.
//
// Phases:
//   fault phase     `ticks` ticks of simulated time with the scenario's faults, clients running throughout;
//   liveness phase  the network heals, crashed hosts restart, faults stop; within `livenessTicks` every group
//                   must have a leader and every client's final write must succeed.
// Safety checkers run throughout (the run stops at the first violation); at the end the clients' history is
// checked for linearizability.

import type { Mutation } from '../../src/consensus/index.ts';
import { governedRegistryModel } from '../checker/governed-registry-model.ts';
import { checkLinearizability } from '../checker/linearizability.ts';
import { type ClientStats, Clients } from './clients.ts';
import { Cluster } from './cluster.ts';
import { StorageContractError } from './disk.ts';
import { EventQueue } from './events.ts';
import { Faults } from './faults.ts';
import {
  type AuthorityMutation,
  type EdgeAdmission,
  type SignatureMode,
  SimGovernance,
} from './governance.ts';
import { Invariants, type Violation } from './invariants.ts';
import { Rng } from './rng.ts';
import { describeScenario, makeScenario } from './scenario.ts';
import { Trace } from './trace.ts';

export interface RunOptions {
  /** Length of the fault phase, in ticks (of the nominal tick period). */
  readonly ticks: number;
  /** Bound on the liveness phase, in ticks. */
  readonly livenessTicks: number;
  /** false: no faults at all (no crashes, partitions, loss...), only delays and reordering. */
  readonly faults: boolean;
  /** One deliberately broken variant of the core, switched on for every node. */
  readonly mutation: Mutation | null;
  /** One deliberately broken enforcement of the scope's authority (governance.ts), in the simulator's driver. */
  readonly authorityMutation: AuthorityMutation | null;
  /** How per-operation signatures are made (governance.ts): real ed25519, or a cheap deterministic digest. */
  readonly signatures: SignatureMode;
  /**
   * Run src/api's edge check (Admission.check) at the member each request reaches, from its applied state,
   * before proposing it or taking the read index, as src/api/registry-service.ts does (governance.ts).
   */
  readonly edgeAdmission: EdgeAdmission;
  /** Record every line (messages, writes, core logs) instead of a ring buffer of the last `traceLines`. */
  readonly fullTrace: boolean;
  readonly traceLines: number;
  /** Budget of the linearizability search, per name. */
  readonly checkerMaxSteps: number;
  /**
   * Check at send time that acknowledgements and votes are backed by the disk (ack-durability). Off, an
   * acknowledgement given too early is caught only by its consequences (a lost committed entry, two leaders).
   */
  readonly ackDurability: boolean;
  /** Simulated events allowed per simulated second before the run is declared a message storm. */
  readonly maxEventsPerSecond: number;
  /**
   * Record writes that timed out as indeterminate (return +Infinity), as a client alone would, instead of
   * resolving them from what the members applied (Clients.resolveIndeterminate). Much slower to check.
   */
  readonly blackBox: boolean;
}

export const DEFAULT_OPTIONS: RunOptions = {
  ticks: 2000,
  livenessTicks: 400,
  faults: true,
  mutation: null,
  authorityMutation: null,
  signatures: 'digest',
  edgeAdmission: 'off',
  fullTrace: false,
  traceLines: 200,
  checkerMaxSteps: 2_000_000,
  blackBox: false,
  ackDurability: true,
  maxEventsPerSecond: 100_000,
};

export interface RunReport {
  readonly seed: number;
  readonly options: RunOptions;
  readonly scenario: string;
  readonly ops: Readonly<ClientStats>;
  /** Faults injected, by kind (message loss, duplication and cut drops included). */
  readonly faults: Readonly<Record<string, number>>;
  readonly violations: readonly Violation[];
  /** 'ok', 'unknown' (search budget exhausted: not a violation, but not a proof either) or 'skipped'. */
  readonly linearizability: 'ok' | 'unknown' | 'skipped';
  readonly stats: {
    readonly simMs: number;
    readonly events: number;
    readonly messages: number;
    readonly readies: number;
    readonly writes: number;
    readonly applied: number;
    readonly snapshotsTaken: number;
    readonly snapshotsInstalled: number;
    readonly maxTerm: number;
    /** Signed tree heads the leaders proposed, and how the first member to apply each decided. */
    readonly treeHeads: { proposed: number; accepted: number; refused: number };
    readonly historyOps: number;
    /** Time the liveness phase took until every client's final write succeeded (-1: not reached). */
    readonly livenessMs: number;
    /** How much the checkers looked at (evidence they ran). */
    readonly checks: {
      leaderClaims: number;
      logChecks: number;
      completenessChecks: number;
      applied: number;
      lineageRoots: number;
      audited: number;
    };
    /** ed25519 signatures computed (auth blocks, admitting signatures, the geneses). */
    readonly signatures: number;
  };
  readonly trace: readonly string[];
}

/** How often the log-matching checker runs, in simulated ms. */
const LOG_CHECK_MS = 100;
/** Every how many log-matching rounds the members' lineage roots are compared too. */
const LINEAGE_CHECK_ROUNDS = 3;
/** Every how many log-matching rounds each group's leader publishes a signed tree head. */
const TREE_HEAD_ROUNDS = 10;

export function runSeed(seed: number, options: Partial<RunOptions> = {}): RunReport {
  const opts: RunOptions = { ...DEFAULT_OPTIONS, ...options };
  const master = new Rng(seed);
  const scenario = makeScenario(master.fork(), { faults: opts.faults });
  const clusterRng = master.fork();
  const faultRng = master.fork();
  const clientRng = master.fork();
  const keyRng = master.fork();

  const queue = new EventQueue();
  const trace = new Trace(opts.traceLines, opts.fullTrace);
  const checks = new Invariants(() => queue.now);
  let stopped = false;
  checks.onViolation = (v) => {
    stopped = true;
    trace.add(queue.now, `VIOLATION ${v.property}: ${v.message}`);
  };
  const mutations: ReadonlySet<Mutation> = new Set(opts.mutation ? [opts.mutation] : []);
  const gov = new SimGovernance(scenario, keyRng, opts.signatures);
  const cluster = new Cluster({
    queue,
    trace,
    checks,
    scenario,
    rng: clusterRng,
    mutations,
    gov,
    authorityMutation: opts.authorityMutation,
  });
  cluster.ackDurability = opts.ackDurability;
  cluster.edgeAdmission = opts.edgeAdmission;
  const clients = new Clients(cluster, clientRng, {
    attemptMs: 12 * scenario.tickMs,
    operationMs: 30 * scenario.tickMs,
  });
  const faults = new Faults(cluster, faultRng);
  trace.add(
    0,
    `seed ${seed}${opts.mutation ? ` mutation ${opts.mutation}` : ''}${opts.authorityMutation ? ` authority mutation ${opts.authorityMutation}` : ''}: ${describeScenario(scenario)}`,
  );

  const guarded = (f: () => void): void => {
    if (stopped) return;
    try {
      f();
    } catch (err) {
      const e = err as Error;
      const property =
        e.name === 'RaftInvariantError'
          ? 'raft-invariant'
          : e instanceof StorageContractError
            ? 'storage-contract'
            : 'exception';
      const where = (e.stack ?? '').split('\n').slice(1, 4).join(' |').replace(/\s+/g, ' ');
      checks.fail(property, `${e.name}: ${e.message} at${where}`);
    }
  };
  // A run normally executes 5–15k events per simulated second; far more means messages multiply (a
  // livelock between two nodes, amplified by duplication), which would otherwise run forever.
  const stormCheck = (): boolean => {
    if (queue.executed <= opts.maxEventsPerSecond * (1 + queue.now / 1000)) return false;
    checks.fail(
      'message-storm',
      `${queue.executed} events by ${(queue.now / 1000).toFixed(3)}s simulated (budget ${opts.maxEventsPerSecond}/s): messages multiply without progress`,
    );
    return true;
  };
  const run = (until: number, done: () => boolean = () => false): void => {
    while (!stopped && queue.now < until && !done()) {
      guarded(() =>
        queue.runUntil(until, () => stopped || done() || ((queue.executed & 0xfff) === 0 && stormCheck())),
      );
    }
  };

  const faultEnd = opts.ticks * scenario.tickMs;
  let livenessMs = -1;
  const livenessEnd = faultEnd + opts.livenessTicks * scenario.tickMs;
  let round = 0;
  const logCheck = (): void => {
    cluster.checkLogs(++round % LINEAGE_CHECK_ROUNDS === 0);
    if (round % TREE_HEAD_ROUNDS === 0) cluster.publishTreeHeads();
    if (queue.now + LOG_CHECK_MS <= livenessEnd) queue.after(LOG_CHECK_MS, logCheck);
  };

  guarded(() => {
    cluster.start();
    clients.start();
    if (opts.faults) faults.start();
    queue.after(LOG_CHECK_MS, logCheck);
  });
  run(faultEnd);

  if (!stopped) {
    guarded(() => {
      faults.stop();
      clients.enterFinalPhase(livenessEnd);
    });
    // Done when every final write succeeded and every group has a leader at the same moment (a leader may
    // step down late in the phase, e.g. when a change removing it applies).
    const everyGroupLed = (): boolean =>
      scenario.groups.every((g) => cluster.leaderOf(g.scope) !== undefined);
    run(livenessEnd, () => clients.allFinalDone && everyGroupLed());
    livenessMs = queue.now - faultEnd;
    guarded(() => {
      cluster.checkLogs();
      cluster.auditLineage();
    });
    if (!stopped) {
      const failures = clients.finalFailures();
      for (const g of scenario.groups) {
        if (cluster.leaderOf(g.scope) === undefined) failures.push(`group ${g.scope} has no leader`);
      }
      if (failures.length > 0) {
        checks.fail(
          'liveness',
          `${opts.livenessTicks} ticks after faults stopped: ${failures.slice(0, 5).join('; ')}${failures.length > 5 ? ` (+${failures.length - 5})` : ''}`,
        );
      }
    }
  }

  let linearizability: RunReport['linearizability'] = 'skipped';
  if (checks.violations.length === 0) {
    clients.resolveIndeterminate(opts.blackBox ? null : cluster.effects);
    const result = checkLinearizability(governedRegistryModel, clients.history, {
      maxSteps: opts.checkerMaxSteps,
    });
    if (result.ok === true) linearizability = 'ok';
    else if (result.ok === 'unknown') {
      linearizability = 'unknown';
      trace.add(queue.now, `linearizability unknown: ${result.reason}`);
    } else {
      stopped = false;
      checks.fail('linearizability', result.reason);
    }
  }

  const net = cluster.net.stats;
  const faultCounts: Record<string, number> = { ...cluster.faults };
  if (net.lost > 0) faultCounts['msg-loss'] = net.lost;
  if (net.duplicated > 0) faultCounts['msg-dup'] = net.duplicated;
  if (net.cut > 0) faultCounts['msg-cut'] = net.cut;
  const sortedFaults: Record<string, number> = {};
  for (const k of Object.keys(faultCounts).sort()) sortedFaults[k] = faultCounts[k] as number;

  return {
    seed,
    options: opts,
    scenario: describeScenario(scenario),
    ops: { ...clients.stats },
    faults: sortedFaults,
    violations: checks.violations.slice(),
    linearizability,
    stats: {
      simMs: queue.now,
      events: queue.executed,
      messages: net.sent,
      readies: cluster.stats.readies,
      writes: cluster.stats.writes,
      applied: cluster.stats.applied,
      snapshotsTaken: cluster.stats.snapshotsTaken,
      snapshotsInstalled: cluster.stats.snapshotsInstalled,
      maxTerm: cluster.stats.maxTerm,
      treeHeads: {
        proposed: cluster.stats.treeHeadsProposed,
        accepted: cluster.stats.treeHeadsAccepted,
        refused: cluster.stats.treeHeadsRefused,
      },
      historyOps: clients.history.length,
      livenessMs,
      checks: { ...checks.counts },
      signatures: gov.signatures,
    },
    trace: trace.toArray(),
  };
}
