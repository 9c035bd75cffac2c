// One fault run over real processes ("jepsen"): a 3- or 5-anchor group, concurrent clients, a nemesis;
// then every fault healed, the whole group killed -9 and restarted from its data dirs, one final
// linearizable read per name, and the project's linearizability checker over the whole history.
//
// The final reads are part of the checked history: "every acknowledged registration survives" is then
// the checker's business (a register acknowledged before the final read, and not possibly undone by a
// deregister, must be in it). The same loss is also looked for explicitly, in plain words (`lost`).

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkLinearizability } from '../checker/linearizability.ts';
import {
  describeRegistryOp,
  type RegistryInput,
  type RegistryOperation,
  registryModel,
} from '../checker/registry-model.ts';
import { killAll } from '../integration/anchor-harness.ts';
import { Rng } from '../sim/rng.ts';
import { type OpStatus, type RecordedOp, sleep, Workload } from './clients.ts';
import { Cluster } from './cluster.ts';
import { type FaultKind, Nemesis, type NemesisMode } from './nemesis.ts';

export const SCOPE = 'jepsen';

export interface JepsenOptions {
  readonly seconds: number;
  readonly anchors: number;
  readonly clients: number;
  readonly seed: number;
  /** AQ_TEST_MUTATIONS for every anchor: a planted bug the run should catch. */
  readonly mutations: readonly string[];
  /**
   * The anchors' --snapshot-count: small, so that the log is compacted often and an anchor that was
   * down or cut off catches up by snapshot (the streamed registry dump) under faults, not only by log.
   */
  readonly snapshotCount: number;
  readonly kinds: ReadonlySet<FaultKind>;
  readonly nemesis: NemesisMode;
  readonly gapMs: readonly [number, number];
  readonly namesPerGeneration: number;
  readonly generationMs: number;
  readonly attemptMs: number;
  readonly opMs: number;
  readonly thinkMs: number;
  /** Checker budget: model steps per name before the answer is 'unknown'. */
  readonly checkSteps: number;
  /** Kill -9 the whole group and restart it before the final reads (durability of everything acked). */
  readonly finalKill: boolean;
  /** Keep the anchors' data dirs even when the run passes. */
  readonly keep: boolean;
  /** Progress and fault lines. */
  readonly log: (line: string) => void;
  /** Ends the run early (a test's timeout): faults healed, processes stopped, what was recorded checked. */
  readonly signal?: AbortSignal;
}

export const DEFAULTS: Omit<JepsenOptions, 'log' | 'signal'> = {
  seconds: 180,
  anchors: 3,
  clients: 8,
  seed: 1,
  mutations: [],
  snapshotCount: 200,
  kinds: new Set<FaultKind>(['kill', 'pause', 'partition']),
  nemesis: 'mixed',
  gapMs: [2_000, 6_000],
  namesPerGeneration: 4,
  generationMs: 15_000,
  attemptMs: 1_000,
  opMs: 3_000,
  thinkMs: 10,
  checkSteps: 5_000_000,
  finalKill: true,
  keep: false,
};

type Counts = Record<OpStatus, number>;

export interface JepsenReport {
  readonly options: Omit<JepsenOptions, 'log' | 'kinds' | 'signal'> & { kinds: FaultKind[] };
  readonly dir: string;
  readonly historyFile: string;
  readonly wallMs: number;
  readonly faultPhaseMs: number;
  readonly ops: Record<RegistryInput['kind'], Counts>;
  readonly finalReads: { names: number; ok: number };
  readonly faults: Nemesis['injected'];
  readonly partitions: string[];
  readonly proxy: { forwarded: number; refused: number };
  readonly unexpectedExits: number;
  /** Snapshots the anchors installed (catch-up by snapshot under faults), from their logs. */
  readonly snapshotsInstalled: number;
  readonly verdict: 'linearizable' | 'not linearizable' | 'unknown' | 'not checked';
  readonly checkerReason?: string;
  readonly checkMs: number;
  /** On a violation: the name, and the earliest time by which its history is already not linearizable. */
  readonly violation?: { name: string; byMs: number; faultsAround: string[] };
  /** Acknowledged registrations absent from the final read and never (possibly) deregistered. */
  readonly lost: string[];
  readonly errors: string[];
  readonly passed: boolean;
}

export async function runJepsen(o: JepsenOptions): Promise<JepsenReport> {
  const started = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'aq-jepsen-'));
  const errors: string[] = [];
  let t0 = performance.now();
  const now = (): number => Math.round((performance.now() - t0) * 1000) / 1000;
  const log = (line: string) => o.log(line);
  const rng = new Rng(o.seed);
  const cluster = new Cluster({
    anchors: o.anchors,
    dir,
    scope: SCOPE,
    mutations: o.mutations,
    snapshotCount: o.snapshotCount,
    log,
  });
  // Whatever happens to this process, no anchor outlives it (paused ones included).
  const onExit = () => cluster.killNow();
  process.on('exit', onExit);
  const workload = new Workload(
    cluster,
    {
      clients: o.clients,
      namesPerGeneration: o.namesPerGeneration,
      generationMs: o.generationMs,
      attemptMs: o.attemptMs,
      opMs: o.opMs,
      thinkMs: o.thinkMs,
    },
    rng.fork(),
    now,
    `${o.seed}-${process.pid}`,
  );
  const nemesis = new Nemesis(
    cluster,
    { kinds: o.kinds, mode: o.nemesis, gapMs: o.gapMs },
    rng.fork(),
    now,
    log,
  );
  const onAbort = () => {
    workload.stop();
    nemesis.stop();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let faultPhaseMs = 0;
  let finalOk = 0;
  const finalOps: RecordedOp[] = [];
  try {
    log(`run dir ${dir}`);
    await cluster.start();
    await waitForLeader(cluster, 60_000, o.signal);
    log(`group of ${o.anchors} formed; faults for ${o.seconds} s (seed ${o.seed})`);
    t0 = performance.now();
    const until = o.seconds * 1000;
    const progress = setInterval(() => log(progressLine(now(), workload.ops, nemesis)), 10_000);
    try {
      await Promise.all([nemesis.run(until), workload.run(until)]);
    } finally {
      clearInterval(progress);
    }
    faultPhaseMs = now();
    o.signal?.throwIfAborted();
    log(`faults over at t=${(faultPhaseMs / 1000).toFixed(1)}s: everything healed`);
    if (o.finalKill) {
      await Promise.all(cluster.slots.map((s) => cluster.kill(s.index)));
      log('whole group killed -9; restarting it from its data dirs');
      await cluster.startAnchor(0);
      await Promise.all(cluster.slots.slice(1).map((s) => cluster.startAnchor(s.index)));
    }
    await waitForLeader(cluster, 60_000, o.signal);
    // One final linearizable read per name, each retried for up to 30 s, all of them within 90 s.
    const finalRng = rng.fork();
    const finalUntil = now() + 90_000;
    for (const name of workload.names) {
      o.signal?.throwIfAborted();
      if (now() > finalUntil) {
        errors.push(`final read of ${name} not tried: the final reads ran out of time`);
        continue;
      }
      const op = await workload.perform(
        FINAL_CLIENT,
        { kind: 'resolve', name },
        'Resolve',
        { name, consistency: 'CONSISTENCY_LINEARIZABLE' },
        finalRng,
        undefined,
        Math.min(30_000, finalUntil - now()),
      );
      finalOps.push(op);
      if (op.status === 'ok') finalOk++;
      else errors.push(`final read of ${name} got no answer (${op.attempts.slice(-3).join(' ')})`);
    }
  } catch (error) {
    errors.push(`run aborted: ${(error as Error).message.split('\n')[0]}`);
  } finally {
    workload.stop();
    workload.close();
    await cluster.stop();
    await killAll();
    process.off('exit', onExit);
    o.signal?.removeEventListener('abort', onAbort);
  }

  // ---- check ----
  const history: RegistryOperation[] = workload.ops
    .filter((op) => op.status !== 'failed')
    .map((op) => ({
      clientId: op.client,
      input: op.input,
      call: op.call,
      return: op.return,
      output: op.output,
    }));
  const checkStarted = performance.now();
  let verdict: JepsenReport['verdict'] = 'not checked';
  let checkerReason: string | undefined;
  let violation: JepsenReport['violation'];
  if (history.length > 0) {
    const result = checkLinearizability(registryModel, history, { maxSteps: o.checkSteps });
    if (result.ok === true) verdict = 'linearizable';
    else if (result.ok === 'unknown') {
      verdict = 'unknown';
      checkerReason = result.reason;
    } else {
      verdict = 'not linearizable';
      checkerReason = result.reason;
      const partition = registryModel.partition!(history)[result.partition]!;
      const name = partition[0]!.input.name;
      const byMs = earliestViolation(partition, o.checkSteps);
      violation = {
        name,
        byMs,
        faultsAround: nemesis.events
          .filter((e) => e.t > byMs - 8_000 && e.t < byMs + 2_000)
          .map(
            (e) =>
              `t=${(e.t / 1000).toFixed(1)}s ${e.event} ${e.anchors.join(',')}${e.detail ? ` (${e.detail})` : ''}`,
          ),
      };
    }
  }
  const checkMs = performance.now() - checkStarted;
  const lost = lostRegistrations(workload.ops, finalOps);
  const unexpectedExits = cluster.slots.reduce((n, s) => n + s.unexpectedExits, 0);
  if (unexpectedExits > 0)
    errors.push(`${unexpectedExits} anchor exit(s) the nemesis did not cause (see a*.log)`);

  const ops = { register: counts(), deregister: counts(), resolve: counts() };
  for (const op of workload.ops) if (op.client !== FINAL_CLIENT) ops[op.input.kind][op.status]++;
  const passed = verdict === 'linearizable' && lost.length === 0 && errors.length === 0;
  const historyFile = join(dir, 'history.json');
  const report: JepsenReport = {
    options: { ...withoutLog(o), kinds: [...o.kinds] },
    dir,
    historyFile,
    wallMs: performance.now() - started,
    faultPhaseMs,
    ops,
    finalReads: { names: workload.names.length, ok: finalOk },
    faults: { ...nemesis.injected },
    partitions: nemesis.events.filter((e) => e.event === 'partition').map((e) => e.detail ?? ''),
    proxy: cluster.proxyStats(),
    unexpectedExits,
    snapshotsInstalled: countLogLines(dir, '"msg":"installed a snapshot"'),
    verdict,
    ...(checkerReason !== undefined ? { checkerReason } : {}),
    checkMs,
    ...(violation !== undefined ? { violation } : {}),
    lost,
    errors,
    passed,
  };
  writeFileSync(
    historyFile,
    JSON.stringify(
      {
        note: 'times in ms since the start of the fault phase (monotonic clock); return null = indeterminate',
        report,
        faults: nemesis.events,
        history: workload.ops.map((op) => ({
          ...op,
          return: Number.isFinite(op.return) ? op.return : null,
          describe: describeRegistryOp({ ...op, clientId: op.client }),
        })),
      },
      null,
      1,
    ),
  );
  if (passed && !o.keep) {
    for (const s of cluster.slots) rmSync(s.dataDir, { recursive: true, force: true });
  }
  return report;
}

/** The client id of the final reads in the history. */
const FINAL_CLIENT = 9999;

function counts(): Counts {
  return { ok: 0, failed: 0, indeterminate: 0 };
}

function withoutLog(o: JepsenOptions): Omit<JepsenOptions, 'log' | 'kinds' | 'signal'> {
  const { log: _log, kinds: _kinds, signal: _signal, ...rest } = o;
  return rest;
}

async function waitForLeader(cluster: Cluster, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    signal?.throwIfAborted();
    if ((await cluster.leader()) !== undefined) return;
    await sleep(200);
  }
  throw new Error(`no leader within ${timeoutMs / 1000} s`);
}

/**
 * The earliest time T by which one name's history is already not linearizable: the operations invoked
 * before T, those still running at T counted as indeterminate. (A linearizable history stays so when cut
 * this way, so the answer is monotonic in T and a binary search over completion times finds it.)
 */
function earliestViolation(ops: readonly RegistryOperation[], maxSteps: number): number {
  const cut = (t: number): RegistryOperation[] =>
    ops
      .filter((op) => op.call < t)
      .map((op) => (op.return <= t ? op : { ...op, return: Number.POSITIVE_INFINITY, output: undefined }));
  const times = [...new Set(ops.map((op) => op.return).filter(Number.isFinite))].sort((a, b) => a - b);
  let lo = 0;
  let hi = times.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (checkLinearizability(registryModel, cut(times[mid]!), { maxSteps }).ok === false) hi = mid;
    else lo = mid + 1;
  }
  return times[lo] ?? 0;
}

/**
 * Registrations acknowledged during the run whose instance id is missing from the name's final read,
 * although no deregister of that id (acknowledged or indeterminate) could have come after them.
 */
function lostRegistrations(ops: readonly RecordedOp[], finalOps: readonly RecordedOp[]): string[] {
  const finalIds = new Map<string, Set<string>>();
  for (const f of finalOps) {
    if (f.output?.kind === 'resolve')
      finalIds.set(f.input.name, new Set(f.output.instances.map(([id]) => id)));
  }
  const lost: string[] = [];
  for (const r of ops) {
    if (r.status !== 'ok' || r.input.kind !== 'register') continue;
    const present = finalIds.get(r.input.name);
    if (present === undefined || present.has(r.input.id)) continue;
    const { name, id } = r.input;
    const undone = ops.some(
      (d) =>
        d.input.kind === 'deregister' &&
        d.input.name === name &&
        d.input.id === id &&
        d.status !== 'failed' &&
        d.return > r.call,
    );
    if (!undone)
      lost.push(
        `${describeRegistryOp({ ...r, clientId: r.client })} acked at t=${(r.return / 1000).toFixed(3)}s`,
      );
  }
  return lost;
}

function progressLine(t: number, ops: readonly RecordedOp[], nemesis: Nemesis): string {
  let ok = 0;
  let indeterminate = 0;
  let failed = 0;
  for (const op of ops) {
    if (op.status === 'ok') ok++;
    else if (op.return === Number.POSITIVE_INFINITY) indeterminate++;
    else failed++;
  }
  const f = nemesis.injected;
  return `t=${(t / 1000).toFixed(0)}s ops ok ${ok}, indeterminate/in flight ${indeterminate}, failed ${failed}; faults kill ${f.kill}, pause ${f.pause}, partition ${f.partition}`;
}

/** "a | b,c ×3; ..." in order of first appearance. */
function tally(items: readonly string[]): string {
  const n = new Map<string, number>();
  for (const i of items) n.set(i, (n.get(i) ?? 0) + 1);
  return [...n].map(([i, k]) => (k > 1 ? `${i} ×${k}` : i)).join('; ');
}

/** Lines containing `text` in the anchors' saved logs (`<dir>/*.log`). */
function countLogLines(dir: string, text: string): number {
  let n = 0;
  try {
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.log')) continue;
      for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) if (line.includes(text)) n++;
    }
  } catch {
    // no logs
  }
  return n;
}

/** The summary a person reads. */
export function formatReport(r: JepsenReport): string {
  const o = r.options;
  const line = (kind: string, c: Counts) =>
    `  ${kind.padEnd(10)} ${String(c.ok + c.failed + c.indeterminate).padStart(7)}  ok ${c.ok}, failed ${c.failed}, indeterminate ${c.indeterminate}`;
  const out = [
    `jepsen: ${o.anchors} anchors, ${o.clients} clients, seed ${o.seed}, nemesis ${o.nemesis === 'stale-leader' ? 'stale-leader only' : `mixed (${o.kinds.join(', ') || 'no faults'})`}${o.mutations.length ? `, PLANTED BUG ${o.mutations.join(',')}` : ''}`,
    `duration: ${(r.faultPhaseMs / 1000).toFixed(1)} s of faults, ${(r.wallMs / 1000).toFixed(1)} s wall`,
    'operations:',
    line('register', r.ops.register),
    line('deregister', r.ops.deregister),
    line('resolve', r.ops.resolve),
    `  final reads ${r.finalReads.ok}/${r.finalReads.names} names`,
    `faults: kill ${r.faults.kill}, pause ${r.faults.pause}, partition ${r.faults.partition} (of which stale-leader ${r.faults.staleLeader}); proxy connections forwarded ${r.proxy.forwarded}, refused ${r.proxy.refused}`,
    `partitions: ${r.partitions.length === 0 ? 'none' : tally(r.partitions)}`,
    `snapshots installed by lagging anchors: ${r.snapshotsInstalled}`,
    `checker: ${r.verdict} (${(r.checkMs / 1000).toFixed(1)} s)`,
  ];
  if (r.violation) {
    out.push(
      `violation on ${r.violation.name}, already by t=${(r.violation.byMs / 1000).toFixed(3)}s; faults around it:`,
    );
    out.push(...r.violation.faultsAround.map((f) => `  ${f}`));
  }
  if (r.checkerReason) out.push(r.checkerReason);
  out.push(`lost acknowledged registrations: ${r.lost.length}`);
  out.push(...r.lost.slice(0, 20).map((l) => `  ${l}`));
  for (const e of r.errors) out.push(`error: ${e}`);
  out.push(`history and fault log: ${r.historyFile}`);
  out.push(r.passed ? 'PASS' : 'FAIL');
  return out.join('\n');
}
