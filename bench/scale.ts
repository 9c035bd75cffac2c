// `make bench-scale`: a million instances (100,000 names x 10) registered into one 3-anchor scope group
// through the public Registry API, by several client processes (bench/lib/load-worker.ts). Reports the
// load rate, each anchor's peak RSS (sampled every second, and VmHWM), resolve p50/p99 after the load
// beside the same figures at 1,000 instances, a follower's catch-up by snapshot (killed while the log is
// compacted past it), and the restart-to-serving time of a killed member. Last line: one JSON object.
//
//   node bench/scale.ts [--instances 1000000] [--workers 2] [--in-flight 64] [--writes leader|all]
//                       [--resolve-seconds 5] [--updates 60000] [--keep]

import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { serviceClient } from '../src/api/proto.ts';
import {
  type Anchor,
  type AnchorGroup,
  aqCall,
  eventually,
  killAllSync,
  ROOT,
  startAnchor,
  startAnchorGroup,
  stopAll,
  track,
} from './lib/cluster.ts';
import { nameOf, SCALE_PER_NAME, SCOPE } from './lib/data.ts';
import type { LoadMessage, LoadTask } from './lib/load-worker.ts';
import { peakRssMiB, rssMiB } from './lib/procstat.ts';

const { values: flags } = parseArgs({
  options: {
    instances: { type: 'string', default: '1000000' },
    workers: { type: 'string', default: '2' },
    'in-flight': { type: 'string', default: '64' },
    writes: { type: 'string', default: 'leader' },
    'resolve-seconds': { type: 'string', default: '5' },
    'resolve-in-flight': { type: 'string', default: '16' },
    updates: { type: 'string', default: '60000' },
    small: { type: 'string', default: '1000' },
    keep: { type: 'boolean', default: false },
  },
});
const INSTANCES = Number(flags.instances);
const SMALL = Number(flags.small);
const WORKERS = Number(flags.workers);
const IN_FLIGHT = Number(flags['in-flight']);
const RESOLVE_SECONDS = Number(flags['resolve-seconds']);
const RESOLVE_IN_FLIGHT = Number(flags['resolve-in-flight']);
const UPDATES = Number(flags.updates);
if (
  ![INSTANCES, SMALL, WORKERS, IN_FLIGHT, RESOLVE_SECONDS, UPDATES].every(
    (n) => Number.isSafeInteger(n) && n > 0,
  )
) {
  console.error(
    'bench-scale: --instances, --small, --workers, --in-flight, --resolve-seconds, --updates take positive integers',
  );
  process.exit(2);
}
if (flags.writes !== 'leader' && flags.writes !== 'all') {
  console.error('bench-scale: --writes is leader or all');
  process.exit(2);
}

const log = (s: string) => console.log(`[bench-scale ${new Date().toISOString().slice(11, 19)}] ${s}`);
const root = mkdtempSync(join(tmpdir(), 'aq-bench-scale-'));
let stopping = false;

/** Per member (a1..a3): the highest RSS seen over every incarnation (a restarted member has a new PID). */
const peakRss = new Map<string, number>();
let group: AnchorGroup & { bootstrap: string };

function notePeak(a: Anchor): void {
  const hwm = peakRssMiB(a.pid);
  if (hwm !== undefined) peakRss.set(a.name, Math.max(peakRss.get(a.name) ?? 0, hwm));
}

/** Each anchor's RSS, with its V8 heap (used/total) and external memory from its /metrics. */
async function rssLine(): Promise<string> {
  const parts = await Promise.all(
    group.anchors.map(async (a) => {
      const rss = Math.round(rssMiB(a.pid) ?? 0);
      try {
        const text = await (
          await fetch(`http://${a.info.http}/metrics`, { signal: AbortSignal.timeout(2_000) })
        ).text();
        const mib = (metric: string) => {
          const m = new RegExp(`^aq_(?:process_)?${metric} (\\S+)$`, 'm').exec(text);
          return m ? Math.round(Number(m[1]) / 2 ** 20) : '?';
        };
        const space = (kind: string, name: string) =>
          mib(`nodejs_heap_space_size_${kind}_bytes\\{space="${name}"\\}`);
        return `${a.name} ${rss} MiB (heap ${mib('nodejs_heap_size_used_bytes')}/${mib('nodejs_heap_size_total_bytes')}: new ${space('total', 'new')}, old ${space('used', 'old')}/${space('total', 'old')}; ext ${mib('nodejs_external_memory_bytes')}; raft thread ${mib('raft_thread_heap_bytes\\{kind="used"\\}')}/${mib('raft_thread_heap_bytes\\{kind="total"\\}')}; rocksdb mem ${mib('rocksdb_memory_bytes\\{kind="memtables"\\}')}, readers ${mib('rocksdb_memory_bytes\\{kind="table_readers"\\}')}, cache ${mib('rocksdb_memory_bytes\\{kind="block_cache"\\}')})`;
      } catch {
        return `${a.name} ${rss} MiB`;
      }
    }),
  );
  return parts.join(', ');
}

async function health(a: Anchor): Promise<{ serving: boolean; applied: number }> {
  const res = await fetch(`http://${a.info.http}/health`, { signal: AbortSignal.timeout(2_000) });
  const body = (await res.json()) as { serving: boolean; scopes: { scope: string; applied: number }[] };
  return {
    serving: res.ok && body.serving,
    applied: body.scopes.find((s) => s.scope === SCOPE)?.applied ?? 0,
  };
}

async function commitIndex(a: Anchor): Promise<number> {
  const text = await (
    await fetch(`http://${a.info.http}/metrics`, { signal: AbortSignal.timeout(2_000) })
  ).text();
  const m = new RegExp(`^aq_raft_commit_index\\{scope="${SCOPE}"\\} (\\d+)$`, 'm').exec(text);
  if (!m) throw new Error(`anchor ${a.name}: no commit index in /metrics`);
  return Number(m[1]);
}

/** Registers instances [from, to) with WORKERS processes; resolves with the wall time in seconds. */
async function load(
  from: number,
  to: number,
  workers: number,
  what: string,
): Promise<{ seconds: number; errors: number }> {
  const anchors =
    flags.writes === 'leader' ? [group.leader.info.grpc] : group.anchors.map((a) => a.info.grpc);
  const share = Math.ceil((to - from) / workers);
  const started = performance.now();
  const progress = new Map<number, number>();
  let errors = 0;
  const children: ChildProcess[] = [];
  const runs = Array.from({ length: workers }, (_, w) => {
    const task: LoadTask = {
      anchors,
      from: from + w * share,
      to: Math.min(to, from + (w + 1) * share),
      inFlight: Math.max(1, Math.floor(IN_FLIGHT / workers)),
    };
    const child = track(
      fork(join(ROOT, 'bench', 'lib', 'load-worker.ts'), [], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    children.push(child);
    return new Promise<void>((resolve, reject) => {
      child.on('message', (m: LoadMessage) => {
        progress.set(w, m.done);
        if (m.type === 'done') {
          errors += m.errors;
          if (m.errors > 0) log(`${what}: worker ${w} retried ${m.errors} errors, e.g. ${m.errorSample}`);
          resolve();
        }
      });
      child.once('exit', (code) => {
        if (code !== 0 && !stopping) reject(new Error(`load worker ${w} exited with ${code}`));
      });
      child.send(task);
    });
  });
  const total = to - from;
  const ticker = setInterval(async () => {
    const done = [...progress.values()].reduce((x, y) => x + y, 0);
    const s = (performance.now() - started) / 1000;
    for (const a of group.anchors) notePeak(a);
    const rss = await rssLine();
    log(
      `${what}: ${done.toLocaleString('en')}/${total.toLocaleString('en')} (${Math.round(done / s)}/s); RSS ${rss}`,
    );
  }, 10_000);
  try {
    await Promise.all(runs);
  } finally {
    clearInterval(ticker);
  }
  return { seconds: (performance.now() - started) / 1000, errors };
}

type Unary = (
  r: unknown,
  m: Metadata,
  o: { deadline: number },
  cb: (e: ServiceError | null, res?: { instances?: unknown[] }) => void,
) => void;

/** Resolves random names among the first `names` for RESOLVE_SECONDS, RESOLVE_IN_FLIGHT at a time. */
async function measureResolve(names: number, consistency: 'CONSISTENCY_STALE' | 'CONSISTENCY_LINEARIZABLE') {
  const Registry = serviceClient('Registry');
  const clients = group.anchors.map(
    (a) =>
      new Registry(a.info.grpc, credentials.createInsecure()) as unknown as { Resolve: Unary; close(): void },
  );
  const latencies: number[] = [];
  let errors = 0;
  let rr = 0;
  const until = performance.now() + RESOLVE_SECONDS * 1000;
  const slot = async () => {
    while (performance.now() < until) {
      const k = Math.floor(Math.random() * names);
      const c = clients[rr++ % clients.length]!;
      const t0 = performance.now();
      const ok = await new Promise<boolean>((resolve) =>
        c.Resolve(
          { name: nameOf(k), consistency },
          new Metadata(),
          { deadline: Date.now() + 5_000 },
          (e, res) => resolve(e === null && (res?.instances?.length ?? 0) === SCALE_PER_NAME),
        ),
      );
      if (ok) latencies.push(performance.now() - t0);
      else errors++;
    }
  };
  await Promise.all(Array.from({ length: RESOLVE_IN_FLIGHT }, slot));
  for (const c of clients) c.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN;
  return {
    ops: latencies.length,
    perS: latencies.length / RESOLVE_SECONDS,
    p50: q(0.5),
    p99: q(0.99),
    errors,
  };
}

function logField<T>(a: Anchor, msg: string): T | undefined {
  for (const line of a.logs) {
    if (!line.includes(msg)) continue;
    try {
      const parsed = JSON.parse(line) as { msg?: string } & T;
      if (parsed.msg === msg) return parsed;
    } catch {}
  }
  return undefined;
}

function duMiB(path: string): number {
  return Number(execFileSync('du', ['-sm', path], { encoding: 'utf8' }).split('\t')[0]);
}

/** kill -9 `a`, then start it again from its data dir; returns the new process and the spawn instant. */
async function restart(
  a: Anchor,
  before?: () => Promise<void>,
): Promise<{ anchor: Anchor; startedAt: number; startedWall: number }> {
  notePeak(a);
  a.child.kill('SIGKILL');
  await new Promise((r) => a.child.once('exit', r));
  await before?.();
  const startedAt = performance.now();
  const startedWall = Date.now();
  const again = await startAnchor(a.name, join(root, a.name), SCOPE, [group.bootstrap], 'info', 120_000);
  group.anchors = group.anchors.map((x) => (x.name === a.name ? again : x));
  return { anchor: again, startedAt, startedWall };
}

/** The restarted anchor's first log lines, with their time since the spawn (where a restart spends it). */
function startupTimeline(a: Anchor, startedWall: number): string {
  return a.logs
    .slice(0, 12)
    .map((line) => {
      try {
        const l = JSON.parse(line) as { time: number; msg: string };
        return `+${((l.time - startedWall) / 1000).toFixed(2)}s ${l.msg}`;
      } catch {
        return line.slice(0, 80);
      }
    })
    .join('; ');
}

async function main(): Promise<void> {
  log(
    `root ${root}; ${INSTANCES.toLocaleString('en')} instances over ${(INSTANCES / SCALE_PER_NAME).toLocaleString('en')} names, ${WORKERS} client processes x ${Math.floor(IN_FLIGHT / WORKERS)} in flight, writes to ${flags.writes}`,
  );
  group = await startAnchorGroup(root, SCOPE, 'info');
  log(`group formed; leader ${group.leader.name}`);

  await load(0, SMALL, 1, 'small load');
  const smallStale = await measureResolve(SMALL / SCALE_PER_NAME, 'CONSISTENCY_STALE');
  const smallLin = await measureResolve(SMALL / SCALE_PER_NAME, 'CONSISTENCY_LINEARIZABLE');
  log(
    `at ${SMALL} instances: resolve local p50 ${smallStale.p50.toFixed(2)} p99 ${smallStale.p99.toFixed(2)} ms; linearizable p50 ${smallLin.p50.toFixed(2)} p99 ${smallLin.p99.toFixed(2)} ms`,
  );

  const loaded = await load(SMALL, INSTANCES, WORKERS, 'load');
  const loadPerS = (INSTANCES - SMALL) / loaded.seconds;
  for (const a of group.anchors) notePeak(a);
  log(`loaded in ${loaded.seconds.toFixed(0)} s (${Math.round(loadPerS)}/s); RSS ${await rssLine()}`);

  const bigStale = await measureResolve(INSTANCES / SCALE_PER_NAME, 'CONSISTENCY_STALE');
  const bigLin = await measureResolve(INSTANCES / SCALE_PER_NAME, 'CONSISTENCY_LINEARIZABLE');
  log(
    `at ${INSTANCES} instances: resolve local p50 ${bigStale.p50.toFixed(2)} p99 ${bigStale.p99.toFixed(2)} ms; linearizable p50 ${bigLin.p50.toFixed(2)} p99 ${bigLin.p99.toFixed(2)} ms`,
  );

  // A follower killed while UPDATES re-registrations go by: the log is compacted past it (every 50,000
  // applied entries), so it can only catch up from a snapshot.
  const followers = group.anchors.filter((a) => a !== group.leader);
  const lagging = followers[0]!;
  const snap = await restart(lagging, async () => {
    log(`${lagging.name} killed; ${UPDATES.toLocaleString('en')} re-registrations while it is down`);
    await load(0, UPDATES, WORKERS, 'updates');
  });
  const hwm = () => group.anchors.map((a) => `${a.name} ${Math.round(peakRssMiB(a.pid) ?? 0)}`).join(', ');
  log(`peak RSS (VmHWM, MiB) before the snapshot: ${hwm()}`);
  const target = await commitIndex(group.leader);
  const snapServing = await eventually(
    `${lagging.name} serving`,
    async () => ((await health(snap.anchor)).serving ? performance.now() : undefined),
    300_000,
  );
  const caughtUp = await eventually(
    `${lagging.name} to apply index ${target}`,
    async () => ((await health(snap.anchor)).applied >= target ? performance.now() : undefined),
    600_000,
  );
  const delivered = logField<{ bytes: number; fileMs: number; sendMs: number }>(
    group.leader,
    'snapshot delivered',
  );
  const installed = await eventually(
    `${lagging.name} to log its snapshot install`,
    async () => logField<{ ms: number; index: number }>(snap.anchor, 'installed a snapshot'),
    5_000,
  ).catch(() => undefined);
  const catchUpS = (caughtUp - snap.startedAt) / 1000;
  log(`peak RSS (VmHWM, MiB) after the snapshot: ${hwm()}`);
  log(
    `${lagging.name}: serving after ${((snapServing - snap.startedAt) / 1000).toFixed(1)} s, caught up by snapshot in ${catchUpS.toFixed(1)} s (snapshot ${delivered ? `${(delivered.bytes / 2 ** 20).toFixed(0)} MiB, dump ${delivered.fileMs} ms, send ${delivered.sendMs} ms` : 'NOT SENT'}; install ${installed?.ms ?? '?'} ms)`,
  );

  // An up-to-date member killed and restarted at once: time until it serves (and answers a resolve).
  const other = followers[1]!;
  const plain = await restart(other);
  const served = await eventually(
    `${other.name} to answer`,
    async () => {
      if (!(await health(plain.anchor)).serving) return undefined;
      await aqCall(
        plain.anchor.info.grpc,
        'Registry',
        'Resolve',
        { name: nameOf(7), consistency: 'CONSISTENCY_STALE' },
        2_000,
      );
      return performance.now();
    },
    300_000,
  );
  const restartToServingS = (served - plain.startedAt) / 1000;
  log(`${other.name} restart: ${startupTimeline(plain.anchor, plain.startedWall)}`);
  log(`${other.name}: restart to serving ${restartToServingS.toFixed(2)} s`);

  for (const a of group.anchors) notePeak(a);
  const disk = Object.fromEntries(group.anchors.map((a) => [a.name, duMiB(join(root, a.name))]));
  const peaks = [...peakRss.entries()].sort();
  const peakMax = Math.max(...peaks.map(([, v]) => v));

  const row = (k: string, v: string) => console.log(`  ${k.padEnd(44)} ${v}`);
  console.log('\naqmesh bench-scale');
  row(
    'instances / names',
    `${INSTANCES.toLocaleString('en')} / ${(INSTANCES / SCALE_PER_NAME).toLocaleString('en')}`,
  );
  row('load', `${loaded.seconds.toFixed(0)} s, ${Math.round(loadPerS)}/s (${loaded.errors} retried errors)`);
  row('peak RSS per anchor (MiB; bar < 1024)', peaks.map(([n, v]) => `${n} ${Math.round(v)}`).join(', '));
  row(
    `resolve local p50 / p99 at ${SMALL}`,
    `${smallStale.p50.toFixed(2)} / ${smallStale.p99.toFixed(2)} ms (${Math.round(smallStale.perS)}/s)`,
  );
  row(
    `resolve local p50 / p99 at ${INSTANCES}`,
    `${bigStale.p50.toFixed(2)} / ${bigStale.p99.toFixed(2)} ms (${Math.round(bigStale.perS)}/s; bar p99 <= 2x)`,
  );
  row(
    `resolve linearizable p50 / p99 at ${SMALL}`,
    `${smallLin.p50.toFixed(2)} / ${smallLin.p99.toFixed(2)} ms`,
  );
  row(
    `resolve linearizable p50 / p99 at ${INSTANCES}`,
    `${bigLin.p50.toFixed(2)} / ${bigLin.p99.toFixed(2)} ms`,
  );
  row(
    'snapshot (registry dump) size, dump, send',
    delivered
      ? `${(delivered.bytes / 2 ** 20).toFixed(1)} MiB, ${delivered.fileMs} ms, ${delivered.sendMs} ms`
      : 'not sent',
  );
  row('snapshot install on the follower', `${installed?.ms ?? '?'} ms`);
  row('follower catch-up by snapshot (restart to applied)', `${catchUpS.toFixed(1)} s`);
  row('restart to serving (kill -9, up-to-date member)', `${restartToServingS.toFixed(2)} s`);
  row(
    'data dir per anchor (MiB)',
    Object.entries(disk)
      .map(([n, v]) => `${n} ${v}`)
      .join(', '),
  );
  console.log(
    JSON.stringify({
      instances: INSTANCES,
      names: INSTANCES / SCALE_PER_NAME,
      load_s: Math.round(loaded.seconds),
      load_per_s: Math.round(loadPerS),
      peak_rss_mb: Object.fromEntries(peaks.map(([n, v]) => [n, Math.round(v)])),
      peak_rss_mb_max: Math.round(peakMax),
      resolve_p50_ms: round2(bigStale.p50),
      resolve_p99_ms: round2(bigStale.p99),
      resolve_p50_ms_small: round2(smallStale.p50),
      resolve_p99_ms_small: round2(smallStale.p99),
      resolve_lin_p99_ms: round2(bigLin.p99),
      resolve_lin_p99_ms_small: round2(smallLin.p99),
      snapshot_bytes: delivered?.bytes ?? null,
      snapshot_dump_ms: delivered?.fileMs ?? null,
      snapshot_send_ms: delivered?.sendMs ?? null,
      snapshot_install_ms: installed?.ms ?? null,
      snapshot_catch_up_s: round2(catchUpS),
      restart_to_serving_s: round2(restartToServingS),
    }),
  );
}

const round2 = (n: number) => Math.round(n * 100) / 100;

process.on('SIGINT', () => {
  stopping = true;
  killAllSync();
  process.exit(130);
});

main().then(
  async () => {
    stopping = true;
    await stopAll();
    if (!flags.keep) rmSync(root, { recursive: true, force: true });
  },
  async (error: Error) => {
    stopping = true;
    console.error(`bench-scale failed: ${error.stack ?? error.message}`);
    await stopAll();
    if (!flags.keep) rmSync(root, { recursive: true, force: true });
    process.exit(1);
  },
);
