// aqmesh against etcd, side by side on this machine in one run: `make bench` (or
// `node bench/registry-vs-etcd.ts --seconds 8 --workers 2`). A benchmark, not a test.
//
// It starts a 3-anchor aqmesh scope group (`bin/aq anchor start`, scope `bench`) and a 3-member etcd
// cluster (Debian's etcd-server, installed with apt-get when `etcd` is not on PATH) on loopback, preloads
// the same registry-shaped data into both (names bench/svc-<k>, one 300-byte instance each; etcd keys
// /registry/bench/svc-<k>/<id> holding the instance's protobuf bytes), then drives both with the same Node
// client stack (grpc-js: the project's aq.v1.Registry client, and the `etcd3` package) from several
// client processes (bench/lib/worker.ts), each a closed loop with a share of the operations in flight:
//
//   register 1 in flight, register 64 in flight   (etcd: put)
//   resolve linearizable, 64 in flight            (etcd: linearizable range get of the name's prefix)
//   resolve stale (local), 64 in flight           (etcd: serializable range get of the name's prefix)
//   the same three on the governed scope gbench   (aqmesh only: signed requests, credentials, a
//                                                  12-rule policy, lineage; reported as signed/open)
//
// Phases alternate between the systems (aqmesh then etcd for each phase) so that both see the same
// machine. Reads go round robin over the three members (etcd3 picks a member at random per call); writes
// go round robin over the three anchors too by default, followers forwarding to the leader as etcd's do
// (`--writes leader` sends them to the leader). Per phase and system: ops/s, p50/p99/max latency, server
// CPU per operation (utime+stime of the three members from /proc over the measured window, divided by the
// operations), the client processes' CPU, peak RSS (VmHWM) per member, errors. The last line of stdout is
// one JSON object. Everything started is stopped by PID at the end (also on error and SIGINT).
//
// Flags: --seconds N (measured window per phase, default 8), --warmup N (default 2), --workers N (client
// processes per system, default 2), --in-flight N (default 64), --names N (default 1000), --writes
// all|leader, --skip-etcd (aqmesh only, for profiling), --only ID[,ID] (some phases: register-seq,
// register, resolve-linearizable, resolve-stale, and their governed twins register-signed,
// resolve-linearizable-signed, resolve-stale-signed), --log-level LEVEL (the anchors'; default info,
// the lowest level that prints the address line).

import { type ChildProcess, fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import {
  BenchSigner,
  GOVERNED_SCOPE,
  type GovernedScope,
  issueBenchCredentials,
  prepareGovernedScope,
} from './lib/authority.ts';
import {
  type Anchor,
  type AnchorGroup,
  aqCall,
  type EtcdMember,
  ensureEtcd,
  etcdVersion,
  killAllSync,
  ROOT,
  startAnchorGroup,
  startEtcdCluster,
  stopAll,
  track,
  withTimeout,
} from './lib/cluster.ts';
import { encodeInstance, etcdKeyOf, INSTANCE_BYTES, instanceOf, nameOf, SCOPE } from './lib/data.ts';
import { cpuMicros, peakRssMiB } from './lib/procstat.ts';
import type { ParentMessage, PhaseKind, PhaseResult, System, WorkerMessage } from './lib/protocol.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    workers: { type: 'string', default: '2' },
    'in-flight': { type: 'string', default: '64' },
    names: { type: 'string', default: '1000' },
    writes: { type: 'string', default: 'all' },
    'skip-etcd': { type: 'boolean', default: false },
    only: { type: 'string' },
    'log-level': { type: 'string', default: 'info' },
  },
});

function positiveInt(flag: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`bench: --${flag} must be a positive integer, got ${value}`);
    process.exit(2);
  }
  return n;
}

const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
if (!(seconds > 0) || !(warmup >= 0)) {
  console.error('bench: --seconds must be > 0 and --warmup >= 0');
  process.exit(2);
}
const workersPerSystem = positiveInt('workers', values.workers);
const inFlight = positiveInt('in-flight', values['in-flight']);
const names = positiveInt('names', values.names);
function writesMode(value: string | undefined): 'all' | 'leader' {
  if (value === 'all' || value === 'leader') return value;
  console.error(`bench: --writes must be all or leader, got ${value}`);
  process.exit(2);
}
const writes = writesMode(values.writes);
const skipEtcd = values['skip-etcd'] === true;
const logLevel = values['log-level']!;
const systems: System[] = skipEtcd ? ['aqmesh'] : ['aqmesh', 'etcd'];

interface PhaseSpec {
  id: string;
  label: string;
  kind: PhaseKind;
  inFlight: number;
  /** A signed phase of the governed scope (aqmesh only), compared with this open phase of the same run. */
  openTwin?: string;
}

const ALL_PHASES: PhaseSpec[] = [
  { id: 'register-seq', label: 'register, 1 in flight', kind: 'register', inFlight: 1 },
  { id: 'register', label: `register, ${inFlight} in flight`, kind: 'register', inFlight },
  {
    id: 'resolve-linearizable',
    label: `resolve linearizable, ${inFlight} in flight`,
    kind: 'resolve-linearizable',
    inFlight,
  },
  {
    id: 'resolve-stale',
    label: `resolve stale/serializable, ${inFlight} in flight`,
    kind: 'resolve-stale',
    inFlight,
  },
  // The same phases on the governed scope (gbench): signed requests, credential and policy checks at the
  // edge and at apply, the lineage. Compared with the open scope's phases above (the cost of authority).
  {
    id: 'register-signed',
    label: `register SIGNED, ${inFlight} in flight`,
    kind: 'register-signed',
    inFlight,
    openTwin: 'register',
  },
  {
    id: 'resolve-linearizable-signed',
    label: `resolve linearizable SIGNED, ${inFlight} in flight`,
    kind: 'resolve-linearizable-signed',
    inFlight,
    openTwin: 'resolve-linearizable',
  },
  {
    id: 'resolve-stale-signed',
    label: `resolve stale SIGNED, ${inFlight} in flight`,
    kind: 'resolve-stale-signed',
    inFlight,
    openTwin: 'resolve-stale',
  },
  // Reads over the TLS client port (--grpc-tls): the credential proven once per connection by the client
  // certificate, no per-request signature; credential and policy still checked per request.
  {
    id: 'resolve-linearizable-tls',
    label: `resolve linearizable TLS-authn, ${inFlight} in flight`,
    kind: 'resolve-linearizable-tls',
    inFlight,
    openTwin: 'resolve-linearizable',
  },
  {
    id: 'resolve-stale-tls',
    label: `resolve stale TLS-authn, ${inFlight} in flight`,
    kind: 'resolve-stale-tls',
    inFlight,
    openTwin: 'resolve-stale',
  },
];

// --only ID[,ID]: a subset of the phases (for profiling one of them).
const only = values.only?.split(',').filter((id) => id !== '');
const PHASES = only === undefined ? ALL_PHASES : ALL_PHASES.filter((p) => only.includes(p.id));
if (PHASES.length === 0) {
  console.error(`bench: --only takes phase ids among ${ALL_PHASES.map((p) => p.id).join(', ')}`);
  process.exit(2);
}

function progress(s: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
}

// ---------------------------------------------------------------- workers

interface Worker {
  system: System;
  index: number;
  child: ChildProcess;
  pid: number;
  waiters: ((m: WorkerMessage) => boolean)[];
}

function startWorker(system: System, index: number): Worker {
  const child = track(
    fork(join(ROOT, 'bench', 'lib', 'worker.ts'), [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  const w: Worker = { system, index, child, pid: child.pid!, waiters: [] };
  child.on('message', (m: WorkerMessage) => {
    if (m.type === 'failed') {
      fatal(new Error(`${system} worker ${index} failed: ${m.message}`));
      return;
    }
    w.waiters = w.waiters.filter((accept) => !accept(m));
  });
  child.once('exit', (code, signal) => {
    if (!stopping) fatal(new Error(`${system} worker ${index} exited (${code ?? signal})`));
  });
  return w;
}

function next<T extends WorkerMessage['type']>(
  w: Worker,
  type: T,
  ms: number,
): Promise<Extract<WorkerMessage, { type: T }>> {
  return withTimeout(
    `${w.system} worker ${w.index} (${type})`,
    ms,
    new Promise((resolve) => {
      w.waiters.push((m) => {
        if (m.type !== type) return false;
        resolve(m as Extract<WorkerMessage, { type: T }>);
        return true;
      });
    }),
  );
}

function sendTo(w: Worker, m: ParentMessage): void {
  w.child.send(m);
}

// ---------------------------------------------------------------- measurement

interface Row {
  system: System;
  phase: string;
  label: string;
  inFlight: number;
  ops: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  max: number;
  serverCpuUsPerOp: number;
  serverCores: number;
  /** CPU cores used by each member over the window (same order as the members). */
  memberCores: number[];
  clientCores: number;
  clientCpuUsPerOp: number;
  rssMiB: number[];
  errors: number;
  errorsTotal: number;
  errorKinds: Record<string, number>;
  errorSamples: Record<string, string>;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return sorted[rank - 1]!;
}

function sumCpu(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    const v = cpuMicros(pid);
    if (v === undefined) throw new Error(`process ${pid} is gone`);
    total += v;
  }
  return total;
}

function sleepUntil(wall: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, wall - Date.now())));
}

async function runPhase(
  system: System,
  phase: PhaseSpec,
  workers: Worker[],
  serverPids: number[],
  revBase: number,
): Promise<Row> {
  // The operations in flight, shared out over the workers (1 in flight: the first worker alone).
  const shares = workers.map(
    (_, i) => Math.floor(phase.inFlight / workers.length) + (i < phase.inFlight % workers.length ? 1 : 0),
  );
  const active = workers.filter((_, i) => shares[i]! > 0);
  const startAt = Date.now() + 300;
  const measureFrom = startAt + warmup * 1000;
  const measureUntil = measureFrom + seconds * 1000;
  const results = active.map((w) => next(w, 'result', measureUntil - Date.now() + 25_000));
  workers.forEach((w, i) => {
    if (shares[i]! > 0) {
      sendTo(w, {
        type: 'run',
        kind: phase.kind,
        inFlight: shares[i]!,
        names,
        startAt,
        measureFrom,
        measureUntil,
        revBase: revBase + i * 100_000_000,
      });
    }
  });
  const clientPids = workers.map((w) => w.pid);
  await sleepUntil(measureFrom);
  const t0 = performance.now();
  const member0 = serverPids.map((pid) => cpuMicros(pid) ?? Number.NaN);
  const server0 = sumCpu(serverPids);
  const client0 = sumCpu(clientPids);
  await sleepUntil(measureUntil);
  const windowSec = (performance.now() - t0) / 1000;
  const member1 = serverPids.map((pid) => cpuMicros(pid) ?? Number.NaN);
  const server1 = sumCpu(serverPids);
  const client1 = sumCpu(clientPids);
  const done = (await Promise.all(results)) as PhaseResult[];

  let total = 0;
  for (const r of done) total += r.latenciesUs.length;
  const all = new Float64Array(total);
  let at = 0;
  for (const r of done) {
    all.set(r.latenciesUs, at);
    at += r.latenciesUs.length;
  }
  all.sort();
  const ops = done.reduce((s, r) => s + r.ok, 0);
  const opsPerSec = ops / seconds;
  const serverCores = (server1 - server0) / 1e6 / windowSec;
  const clientCores = (client1 - client0) / 1e6 / windowSec;
  const errorKinds: Record<string, number> = {};
  const errorSamples: Record<string, string> = {};
  for (const r of done) {
    for (const [k, n] of Object.entries(r.errors)) errorKinds[k] = (errorKinds[k] ?? 0) + n;
    Object.assign(errorSamples, r.errorSamples);
  }
  const errors = Object.entries(errorKinds)
    .filter(([k]) => !k.endsWith('(outside window)'))
    .reduce((s, [, n]) => s + n, 0);
  return {
    system,
    phase: phase.id,
    label: phase.label,
    inFlight: phase.inFlight,
    ops,
    opsPerSec,
    p50: percentile(all, 0.5) / 1000,
    p99: percentile(all, 0.99) / 1000,
    max: (all[all.length - 1] ?? Number.NaN) / 1000,
    serverCpuUsPerOp: opsPerSec > 0 ? (serverCores * 1e6) / opsPerSec : Number.NaN,
    serverCores,
    memberCores: serverPids.map((_, i) => (member1[i]! - member0[i]!) / 1e6 / windowSec),
    clientCores,
    clientCpuUsPerOp: opsPerSec > 0 ? (clientCores * 1e6) / opsPerSec : Number.NaN,
    rssMiB: serverPids.map((pid) => peakRssMiB(pid) ?? Number.NaN),
    errors,
    errorsTotal: done.reduce((s, r) => s + r.errorsTotal, 0),
    errorKinds,
    errorSamples,
  };
}

// ---------------------------------------------------------------- preload

async function inParallel(n: number, concurrency: number, fn: (k: number) => Promise<void>): Promise<void> {
  let nextK = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (nextK < n) await fn(nextK++);
    }),
  );
}

async function preloadAqmesh(group: AnchorGroup): Promise<void> {
  const addresses = group.anchors.map((a) => a.info.grpc);
  await inParallel(names, 16, async (k) => {
    await aqCall(addresses[k % addresses.length]!, 'Registry', 'Register', {
      name: nameOf(k),
      instance: instanceOf(k, 0),
    });
  });
  const check = await aqCall<{ instances: unknown[] }>(group.leader.info.grpc, 'Registry', 'Resolve', {
    name: nameOf(names - 1),
  });
  if (check.instances.length !== 1)
    throw new Error(`aqmesh preload: ${nameOf(names - 1)} resolves to ${check.instances.length} instances`);
}

async function preloadGoverned(group: AnchorGroup, scope: GovernedScope): Promise<void> {
  const addresses = group.anchors.map((a) => a.info.grpc);
  await issueBenchCredentials(scope, addresses);
  const signer = new BenchSigner(scope, 999);
  await inParallel(names, 16, async (k) => {
    await aqCall(
      addresses[k % addresses.length]!,
      'Registry',
      'Register',
      signer.register(nameOf(k, GOVERNED_SCOPE), instanceOf(k, 0)),
    );
  });
}

async function preloadEtcd(members: EtcdMember[]): Promise<void> {
  const client = new Etcd3({ hosts: members.map((m) => `http://${m.client}`) });
  try {
    await inParallel(names, 16, async (k) => {
      await client
        .put(etcdKeyOf(k))
        .value(encodeInstance(instanceOf(k, 0)))
        .exec();
    });
    const count = await client.getAll().prefix(`/registry/${SCOPE}/`).count();
    if (count !== names) throw new Error(`etcd preload: ${count} keys, expected ${names}`);
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------- output

function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function ratio(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0)
    return null;
  return Math.round((a / b) * 1000) / 1000;
}

function table(rows: Row[]): string {
  const header = [
    'phase',
    'system',
    'ops/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'srv CPU µs/op',
    'srv cores',
    'client cores',
    'peak RSS MiB/member',
    'errors',
  ];
  const lines: string[][] = [header];
  for (const phase of PHASES) {
    const a = rows.find((r) => r.phase === phase.id && r.system === 'aqmesh');
    const e = rows.find((r) => r.phase === phase.id && r.system === 'etcd');
    for (const r of [a, e]) {
      if (r === undefined) continue;
      lines.push([
        r === a ? phase.label : '',
        r.system,
        fmt(r.opsPerSec),
        fmt(r.p50, 2),
        fmt(r.p99, 2),
        fmt(r.max, 1),
        fmt(r.serverCpuUsPerOp),
        fmt(r.serverCores, 2),
        fmt(r.clientCores, 2),
        r.rssMiB.map((m) => fmt(m)).join('/'),
        `${r.errors}${r.errorsTotal !== r.errors ? ` (${r.errorsTotal} all)` : ''}`,
      ]);
    }
    const twin =
      phase.openTwin === undefined
        ? undefined
        : rows.find((r) => r.phase === phase.openTwin && r.system === 'aqmesh');
    if (a && twin) {
      const x = (v: number | null) => (v === null ? '-' : `${v.toFixed(2)}x`);
      lines.push([
        '',
        'signed/open',
        x(ratio(a.opsPerSec, twin.opsPerSec)),
        x(ratio(a.p50, twin.p50)),
        x(ratio(a.p99, twin.p99)),
        x(ratio(a.max, twin.max)),
        x(ratio(a.serverCpuUsPerOp, twin.serverCpuUsPerOp)),
        '',
        '',
        '',
        '',
      ]);
    }
    if (a && e) {
      const x = (v: number | null) => (v === null ? '-' : `${v.toFixed(2)}x`);
      lines.push([
        '',
        'aq/etcd',
        x(ratio(a.opsPerSec, e.opsPerSec)),
        x(ratio(a.p50, e.p50)),
        x(ratio(a.p99, e.p99)),
        x(ratio(a.max, e.max)),
        x(ratio(a.serverCpuUsPerOp, e.serverCpuUsPerOp)),
        '',
        '',
        '',
        '',
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  return lines
    .map((l, li) =>
      l
        .map((c, i) => (i <= 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
        .join('  ')
        .concat(li === 0 ? `\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : ''),
    )
    .join('\n');
}

function logSummary(group: AnchorGroup | null, etcd: EtcdMember[]): string[] {
  const out: string[] = [];
  for (const a of group?.anchors ?? []) {
    const byLevel: Record<string, number> = {};
    const notable: string[] = [];
    for (const line of a.logs) {
      let level = 'text';
      let msg = line;
      try {
        const j = JSON.parse(line) as { level?: number; msg?: string };
        level = String(j.level ?? 'text');
        msg = j.msg ?? line;
      } catch {}
      byLevel[level] = (byLevel[level] ?? 0) + 1;
      if (level !== '30' || /leadership/.test(msg)) notable.push(line.slice(0, 400));
    }
    const stderr = a.stderr.join('').trim();
    out.push(
      `anchor ${a.name} (pid ${a.pid}${a === group?.leader ? ', leader at start' : ''}): ${a.logs.length} log lines after the address line ${JSON.stringify(byLevel)} (pino levels: 30 info, 40 warn, 50 error)${stderr ? `; stderr ${stderr.length} bytes` : ''}`,
    );
    for (const l of notable.slice(-8)) out.push(`  ${l}`);
    if (stderr) out.push(`  stderr: ${stderr.slice(-1500)}`);
  }
  for (const m of etcd) {
    const text = m.stderr.join('');
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    const kinds: Record<string, number> = {};
    for (const l of lines) {
      try {
        const j = JSON.parse(l) as { level?: string; msg?: string };
        const k = `${j.level}: ${j.msg}`;
        kinds[k] = (kinds[k] ?? 0) + 1;
      } catch {
        kinds[l.slice(0, 120)] = (kinds[l.slice(0, 120)] ?? 0) + 1;
      }
    }
    out.push(
      `etcd ${m.name} (pid ${m.pid}): ${lines.length} log lines at warn or above ${JSON.stringify(kinds)}`,
    );
  }
  return out;
}

// ---------------------------------------------------------------- main

let stopping = false;
let root: string | null = null;
let group: AnchorGroup | null = null;
let etcdMembers: EtcdMember[] = [];
const workers: Worker[] = [];
let failFast: (error: Error) => void = () => {};
const failure = new Promise<never>((_, reject) => {
  failFast = reject;
});
failure.catch(() => {});

function fatal(error: Error): void {
  failFast(error);
}

async function cleanup(): Promise<void> {
  stopping = true;
  for (const w of workers) {
    try {
      if (w.child.connected) sendTo(w, { type: 'stop' });
    } catch {}
  }
  await stopAll(3_000);
  if (root !== null) await rm(root, { recursive: true, force: true });
}

process.on('exit', killAllSync);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    progress(`${signal}: stopping everything`);
    void cleanup().finally(() => process.exit(130));
  });
}

function watchServers(): void {
  for (const a of group?.anchors ?? []) {
    a.child.once('exit', (code, signal) => {
      if (!stopping)
        fatal(
          new Error(
            `anchor ${a.name} (pid ${a.pid}) exited (${code ?? signal}) during the benchmark:\n${a.stderr.join('').slice(-3000)}\n${a.logs.slice(-20).join('\n')}`,
          ),
        );
    });
  }
  for (const m of etcdMembers) {
    m.child.once('exit', (code, signal) => {
      if (!stopping)
        fatal(
          new Error(
            `etcd ${m.name} (pid ${m.pid}) exited (${code ?? signal}) during the benchmark:\n${m.stderr.join('').slice(-3000)}`,
          ),
        );
    });
  }
}

async function main(): Promise<void> {
  progress(
    `node ${process.version}, ${cpus().length} CPUs; ${seconds} s measured per phase after ${warmup} s warm-up; ${workersPerSystem} client processes per system; ${inFlight} in flight; ${names} names; writes to ${writes === 'all' ? 'all anchors round robin' : 'the leader'}`,
  );
  if (!skipEtcd) {
    ensureEtcd(progress);
    progress(`etcd ${etcdVersion()}`);
  }
  root = await mkdtemp(join(tmpdir(), 'aq-bench-'));
  const started = Date.now();
  const governed = await prepareGovernedScope(join(root, 'aq'));
  [group, etcdMembers] = await Promise.all([
    withTimeout(
      'starting the aqmesh scope group',
      90_000,
      startAnchorGroup(join(root, 'aq'), SCOPE, logLevel, [
        '--genesis',
        governed.genesisFile,
        '--grpc-tls',
        '127.0.0.1:0',
      ]),
    ),
    skipEtcd
      ? Promise.resolve([])
      : withTimeout('starting etcd', 60_000, startEtcdCluster(join(root, 'etcd'))),
  ]);
  watchServers();
  progress(
    `aqmesh: 3 anchors (pids ${group.anchors.map((a) => a.pid).join(', ')}), leader ${group.leader.name} at ${group.leader.info.grpc}, term ${group.term}` +
      (skipEtcd
        ? ''
        : `; etcd: 3 members (pids ${etcdMembers.map((m) => m.pid).join(', ')}) at ${etcdMembers.map((m) => m.client).join(', ')}`) +
      `; ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );

  const encodedSize = encodeInstance(instanceOf(0, 0)).length;
  progress(`preloading ${names} names with one ${encodedSize}-byte instance each (target ${INSTANCE_BYTES})`);
  await Promise.race([failure, withTimeout('aqmesh preload', 60_000, preloadAqmesh(group))]);
  progress(
    `governed scope ${GOVERNED_SCOPE} (${governed.scopeId.slice(0, 16)}…): issuing credentials, preloading ${names} names with signed requests`,
  );
  await Promise.race([failure, withTimeout('governed preload', 120_000, preloadGoverned(group, governed))]);
  if (!skipEtcd) await Promise.race([failure, withTimeout('etcd preload', 60_000, preloadEtcd(etcdMembers))]);

  for (const system of systems) {
    for (let i = 0; i < workersPerSystem; i++) workers.push(startWorker(system, i));
  }
  const g = group;
  await Promise.race([
    failure,
    Promise.all(
      workers.map((w) => {
        const ready = next(w, 'ready', 30_000);
        sendTo(w, {
          type: 'init',
          init: {
            index: w.index,
            system: w.system,
            anchors: g.anchors.map((a) => a.info.grpc),
            leader: g.leader.info.grpc,
            writes,
            etcd: etcdMembers.map((m) => m.client),
            names,
            signing: governed,
            anchorsTls: g.anchors.map((a) => ({ address: a.info.grpcTls as string, peerId: a.info.peerId })),
          },
        });
        return ready;
      }),
    ),
  ]);

  // What the servers burn with no load at all (heartbeats, timers), for reading the CPU figures.
  const idleSec = 3;
  const idlePids = {
    anchors: g.anchors.map((a) => a.pid),
    etcd: etcdMembers.map((m) => m.pid),
    clients: workers.map((w) => w.pid),
  };
  const idle0 = {
    anchors: sumCpu(idlePids.anchors),
    etcd: sumCpu(idlePids.etcd),
    clients: sumCpu(idlePids.clients),
  };
  const i0 = performance.now();
  await Promise.race([failure, new Promise((r) => setTimeout(r, idleSec * 1000))]);
  const iSec = (performance.now() - i0) / 1000;
  const idle = {
    anchors: (sumCpu(idlePids.anchors) - idle0.anchors) / 1e6 / iSec,
    etcd: (sumCpu(idlePids.etcd) - idle0.etcd) / 1e6 / iSec,
    clients: (sumCpu(idlePids.clients) - idle0.clients) / 1e6 / iSec,
  };
  progress(
    `idle for ${idleSec} s: anchors ${fmt(idle.anchors, 3)} cores, etcd ${fmt(idle.etcd, 3)} cores, client processes ${fmt(idle.clients, 3)} cores`,
  );

  const rows: Row[] = [];
  let revBase = 1;
  for (const phase of PHASES) {
    for (const system of systems) {
      if (phase.openTwin !== undefined && system !== 'aqmesh') continue;
      const pids = system === 'aqmesh' ? g.anchors.map((a: Anchor) => a.pid) : etcdMembers.map((m) => m.pid);
      progress(`${system}: ${phase.label} (${warmup} s warm-up + ${seconds} s)`);
      const row = await Promise.race([
        failure,
        runPhase(
          system,
          phase,
          workers.filter((w) => w.system === system),
          pids,
          revBase,
        ),
      ]);
      revBase += 1_000_000_000;
      rows.push(row);
      progress(
        `  ${fmt(row.opsPerSec)} ops/s, p50 ${fmt(row.p50, 2)} ms, p99 ${fmt(row.p99, 2)} ms, server ${fmt(row.serverCpuUsPerOp)} µs/op (${fmt(row.serverCores, 2)} cores: ${row.memberCores.map((c) => fmt(c, 2)).join('+')}), clients ${fmt(row.clientCores, 2)} cores, errors ${row.errors}` +
          (Object.keys(row.errorKinds).length
            ? ` ${JSON.stringify(row.errorKinds)} ${JSON.stringify(row.errorSamples)}`
            : ''),
      );
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  // Who leads now (a change of leader during the run shows here and in the anchors' logs).
  let leaderAfter = '?';
  try {
    const m = await aqCall<{ members: { id: string; leader: boolean }[]; term: number }>(
      g.anchors[0]!.info.grpc,
      'Membership',
      'Members',
      { scope: SCOPE },
      3_000,
    );
    const id = m.members.find((x) => x.leader)?.id;
    leaderAfter = `${g.anchors.find((a) => a.info.peerId === id)?.name ?? id ?? 'none'} (term ${m.term})`;
  } catch (error) {
    leaderAfter = `unknown: ${(error as Error).message}`;
  }
  const peakAnchor = g.anchors.map((a) => peakRssMiB(a.pid) ?? Number.NaN);
  const peakEtcd = etcdMembers.map((m) => peakRssMiB(m.pid) ?? Number.NaN);
  const logs = logSummary(g, etcdMembers);

  await cleanup();

  const get = (system: System, phase: string) => rows.find((r) => r.system === system && r.phase === phase);
  const aReg = get('aqmesh', 'register');
  const eReg = get('etcd', 'register');
  const aSeq = get('aqmesh', 'register-seq');
  const eSeq = get('etcd', 'register-seq');
  const aLin = get('aqmesh', 'resolve-linearizable');
  const eLin = get('etcd', 'resolve-linearizable');
  const aSt = get('aqmesh', 'resolve-stale');
  const eSt = get('etcd', 'resolve-stale');
  const sReg = get('aqmesh', 'register-signed');
  const sLin = get('aqmesh', 'resolve-linearizable-signed');
  const sSt = get('aqmesh', 'resolve-stale-signed');
  const tLin = get('aqmesh', 'resolve-linearizable-tls');
  const tSt = get('aqmesh', 'resolve-stale-tls');
  const r1 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? null : Math.round(v));
  const r2 = (v: number | undefined) =>
    v === undefined || !Number.isFinite(v) ? null : Math.round(v * 100) / 100;
  const summary = {
    register_per_s: r1(aReg?.opsPerSec),
    etcd_put_per_s: r1(eReg?.opsPerSec),
    register_ratio: ratio(aReg?.opsPerSec, eReg?.opsPerSec),
    resolve_per_s: r1(aSt?.opsPerSec),
    etcd_get_per_s: r1(eSt?.opsPerSec),
    resolve_ratio: ratio(aSt?.opsPerSec, eSt?.opsPerSec),
    resolve_linearizable_per_s: r1(aLin?.opsPerSec),
    etcd_get_linearizable_per_s: r1(eLin?.opsPerSec),
    resolve_linearizable_ratio: ratio(aLin?.opsPerSec, eLin?.opsPerSec),
    register_p99_ms: r2(aReg?.p99),
    etcd_put_p99_ms: r2(eReg?.p99),
    register_cpu_us: r1(aReg?.serverCpuUsPerOp),
    etcd_put_cpu_us: r1(eReg?.serverCpuUsPerOp),
    register_seq_per_s: r1(aSeq?.opsPerSec),
    etcd_put_seq_per_s: r1(eSeq?.opsPerSec),
    register_seq_p50_ms: r2(aSeq?.p50),
    etcd_put_seq_p50_ms: r2(eSeq?.p50),
    resolve_p99_ms: r2(aSt?.p99),
    etcd_get_p99_ms: r2(eSt?.p99),
    resolve_cpu_us: r1(aSt?.serverCpuUsPerOp),
    etcd_get_cpu_us: r1(eSt?.serverCpuUsPerOp),
    // The cost of authority: the governed scope's signed phases over the open scope's, same run.
    register_signed_per_s: r1(sReg?.opsPerSec),
    register_signed_ratio: ratio(sReg?.opsPerSec, aReg?.opsPerSec),
    register_signed_cpu_us: r1(sReg?.serverCpuUsPerOp),
    resolve_linearizable_signed_per_s: r1(sLin?.opsPerSec),
    resolve_linearizable_signed_ratio: ratio(sLin?.opsPerSec, aLin?.opsPerSec),
    resolve_signed_per_s: r1(sSt?.opsPerSec),
    resolve_signed_ratio: ratio(sSt?.opsPerSec, aSt?.opsPerSec),
    resolve_signed_cpu_us: r1(sSt?.serverCpuUsPerOp),
    resolve_linearizable_tls_ratio: ratio(tLin?.opsPerSec, aLin?.opsPerSec),
    resolve_tls_per_s: r1(tSt?.opsPerSec),
    resolve_tls_ratio: ratio(tSt?.opsPerSec, aSt?.opsPerSec),
    resolve_tls_cpu_us: r1(tSt?.serverCpuUsPerOp),
    anchor_idle_cores: r2(idle.anchors),
    etcd_idle_cores: skipEtcd ? null : r2(idle.etcd),
    register_client_cpu_us: r1(aReg?.clientCpuUsPerOp),
    etcd_put_client_cpu_us: r1(eReg?.clientCpuUsPerOp),
    resolve_client_cpu_us: r1(aSt?.clientCpuUsPerOp),
    etcd_get_client_cpu_us: r1(eSt?.clientCpuUsPerOp),
    anchor_peak_rss_mb: peakAnchor.map((m) => r1(m)),
    etcd_peak_rss_mb: peakEtcd.map((m) => r1(m)),
    errors: rows.filter((r) => r.system === 'aqmesh').reduce((s, r) => s + r.errorsTotal, 0),
    etcd_errors: rows.filter((r) => r.system === 'etcd').reduce((s, r) => s + r.errorsTotal, 0),
    seconds,
    workers: workersPerSystem,
    in_flight: inFlight,
    writes,
    instance_bytes: encodedSize,
  };

  const out: string[] = [];
  out.push(
    `aqmesh (3 anchors, scope ${SCOPE}) vs etcd ${skipEtcd ? '(skipped)' : etcdVersion()} (3 members), loopback, ${cpus().length} CPUs, node ${process.version}`,
  );
  out.push(
    `${names} names, one ${encodedSize}-byte instance each; ${workersPerSystem} client processes per system; ${seconds} s measured after ${warmup} s warm-up; aqmesh writes ${writes === 'all' ? 'round robin over the 3 anchors (followers forward)' : 'to the leader'}, reads round robin; etcd3 picks a member per call`,
  );
  out.push('srv CPU: utime+stime of the 3 members over the window / ops; cores = CPU seconds per second');
  out.push('');
  out.push(table(rows));
  out.push('');
  out.push(
    `peak RSS (VmHWM) at the end: anchors ${peakAnchor.map((m) => fmt(m)).join('/')} MiB; etcd ${peakEtcd.map((m) => fmt(m)).join('/') || '-'} MiB`,
  );
  out.push(
    `idle (no load, ${idleSec} s before the phases): anchors ${fmt(idle.anchors, 3)} cores, etcd ${fmt(idle.etcd, 3)} cores (summed over the 3 members)`,
  );
  out.push(`aqmesh leader at start ${g.leader.name}, at the end ${leaderAfter}`);
  out.push('CPU cores per member over each window (aqmesh a1+a2+a3, etcd e1+e2+e3) and client CPU per op:');
  for (const r of rows) {
    out.push(
      `  ${r.system.padEnd(6)} ${r.label.padEnd(40)} ${r.memberCores.map((c) => fmt(c, 2)).join(' + ')}; clients ${fmt(r.clientCpuUsPerOp)} µs/op`,
    );
  }
  for (const r of rows) {
    if (Object.keys(r.errorKinds).length > 0) {
      out.push(
        `errors ${r.system} ${r.label}: ${JSON.stringify(r.errorKinds)} e.g. ${JSON.stringify(r.errorSamples)}`,
      );
    }
  }
  out.push(...logs);
  out.push(JSON.stringify(summary));
  process.stdout.write(`${out.join('\n')}\n`);
}

const watchdogMs = 240_000 + PHASES.length * systems.length * ((warmup + seconds) * 1000 + 30_000);
const watchdog = setTimeout(() => {
  progress(`watchdog: the run took more than ${Math.round(watchdogMs / 1000)} s; stopping everything`);
  void cleanup().finally(() => process.exit(1));
}, watchdogMs);
watchdog.unref();

main().then(
  () => {
    clearTimeout(watchdog);
    process.exit(0);
  },
  async (error: unknown) => {
    if (stopping) return; // interrupted: the signal handler stops everything and exits
    progress(`failed: ${(error as Error)?.stack ?? error}`);
    for (const l of logSummary(group, etcdMembers)) progress(l);
    await cleanup();
    process.exit(1);
  },
);
