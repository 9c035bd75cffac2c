// The servers of the benchmark, as real processes on loopback: a 3-anchor aqmesh scope group
// (`bin/aq anchor start`) and a 3-member etcd cluster (Debian's etcd-server, installed if missing). Every
// child is tracked here and stopped by PID (stopAll), whatever happens.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { callOnce as aqCall } from '../../src/api/unary-call.ts';
import { loopbackAnchorArgs } from '../../src/cli/anchor-args.ts';
import { type AnchorInfo, eventually } from '../../test/integration/anchor-harness.ts';
import { commOf, programOf } from './procstat.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const AQ = join(ROOT, 'bin', 'aq');

const children = new Set<ChildProcess>();

/** Remembers a child so that stopAll() stops it. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Stops every tracked child by PID: SIGTERM, then SIGKILL after graceMs. */
export async function stopAll(graceMs = 3_000): Promise<void> {
  const waits = [...children].map(
    (c) =>
      new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return resolve();
        const timer = setTimeout(() => {
          try {
            process.kill(c.pid!, 'SIGKILL');
          } catch {}
        }, graceMs);
        c.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        try {
          process.kill(c.pid, 'SIGTERM');
        } catch {
          clearTimeout(timer);
          resolve();
        }
      }),
  );
  await Promise.all(waits);
}

/** Synchronous last resort (process 'exit'): SIGKILL every tracked child still running. */
export function killAllSync(): void {
  for (const c of children) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {}
    }
  }
}

/** Free loopback ports: bound to port 0 together (so they differ), then closed. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export function withTimeout<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Waits until the process runs `program` (/proc/<pid>/exe): a wrapper script has exec'd it, so the PID's
 * CPU and memory are the program's. (A Node process names its main thread "MainThread", so its
 * /proc/<pid>/comm is not "node".)
 */
async function verifyProgram(pid: number, program: string): Promise<void> {
  await eventually(
    `process ${pid} to run ${program}`,
    async () => (programOf(pid) === program ? true : undefined),
    5_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message} (it runs ${programOf(pid)}, comm ${commOf(pid)})`);
  });
}

// ---------------------------------------------------------------- aqmesh

export type { AnchorInfo };

export interface Anchor {
  name: string;
  pid: number;
  info: AnchorInfo;
  child: ChildProcess;
  /** Every log line after the address line, and stderr. */
  logs: string[];
  stderr: string[];
}

/** One `aq anchor start` of a 3-anchor bench group; resolves once it has printed its addresses. */
export async function startAnchor(
  name: string,
  dataDir: string,
  scope: string,
  bootstrap: string[],
  logLevel: string,
  timeoutMs: number,
  extraArgs: readonly string[] = [],
): Promise<Anchor> {
  const args = loopbackAnchorArgs({
    dataDir,
    scopes: [scope],
    bootstrapExpect: 3,
    bootstrap,
    region: 'bench',
    logLevel,
    extraArgs,
  });
  const child = track(spawn(AQ, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const logs: string[] = [];
  const stderr: string[] = [];
  child.stderr?.on('data', (b: Buffer) => stderr.push(b.toString()));
  const lines = createInterface({ input: child.stdout! });
  const info = await withTimeout(
    `anchor ${name} start`,
    timeoutMs,
    new Promise<AnchorInfo>((resolve, reject) => {
      let first = true;
      lines.on('line', (line) => {
        if (!first) {
          logs.push(line);
          return;
        }
        first = false;
        try {
          const parsed = JSON.parse(line) as { anchor?: AnchorInfo };
          if (parsed.anchor === undefined) throw new Error('no "anchor" field');
          resolve(parsed.anchor);
        } catch (error) {
          reject(
            new Error(
              `anchor ${name}: first log line is not the address line (${(error as Error).message}): ${line}`,
            ),
          );
        }
      });
      child.once('exit', (code, signal) =>
        reject(new Error(`anchor ${name} exited (${code ?? signal}) before starting:\n${stderr.join('')}`)),
      );
    }),
  );
  const pid = child.pid!;
  // bin/aq and bin/node are bash wrappers that exec node: the PID is node's after the exec.
  await verifyProgram(pid, 'node');
  return { name, pid, info, child, logs, stderr };
}

interface MembersResponse {
  members: { id: string; role: string; leader: boolean; grpc: string }[];
  term: number;
}

export interface AnchorGroup {
  anchors: Anchor[];
  leader: Anchor;
  term: number;
}

/** Three anchors forming scope group `scope`, the 2nd and 3rd bootstrapping to the 1st. */
export async function startAnchorGroup(
  root: string,
  scope: string,
  logLevel: string,
  extraArgs: readonly string[] = [],
): Promise<AnchorGroup & { bootstrap: string }> {
  const first = await startAnchor('a1', join(root, 'a1'), scope, [], logLevel, 30_000, extraArgs);
  const p2p = first.info.p2p.find((a) => a.startsWith('/ip4/127.0.0.1/')) ?? first.info.p2p[0];
  if (p2p === undefined) throw new Error(`anchor a1 printed no p2p address: ${JSON.stringify(first.info)}`);
  const bootstrap = p2p.includes('/p2p/') ? p2p : `${p2p}/p2p/${first.info.peerId}`;
  const rest = await Promise.all([
    startAnchor('a2', join(root, 'a2'), scope, [bootstrap], logLevel, 30_000, extraArgs),
    startAnchor('a3', join(root, 'a3'), scope, [bootstrap], logLevel, 30_000, extraArgs),
  ]);
  const anchors = [first, ...rest];
  // Every anchor must see three voters and a leader, so that any of them can serve and forward.
  const views = await Promise.all(
    anchors.map((a) =>
      eventually(
        `anchor ${a.name} to see a leader of scope ${scope} among 3 voters`,
        async () => {
          const r = await aqCall<MembersResponse>(a.info.grpc, 'Membership', 'Members', { scope }, 2_000);
          const voters = r.members.filter((m) => m.role === 'voter');
          const leader = voters.find((m) => m.leader);
          return voters.length === 3 && leader !== undefined ? { leader, term: r.term } : undefined;
        },
        60_000,
      ),
    ),
  );
  const leaderId = views[0]!.leader.id;
  if (views.some((v) => v.leader.id !== leaderId)) {
    throw new Error(`anchors disagree on the leader: ${views.map((v) => v.leader.id).join(', ')}`);
  }
  const leader = anchors.find((a) => a.info.peerId === leaderId);
  if (leader === undefined) throw new Error(`leader ${leaderId} is none of the three anchors`);
  return { anchors, leader, term: views[0]!.term, bootstrap };
}

// ---------------------------------------------------------------- etcd

export interface EtcdMember {
  name: string;
  pid: number;
  client: string;
  child: ChildProcess;
  stderr: string[];
}

/** Installs Debian's etcd-server and etcd-client when `etcd` is not on PATH. */
export function ensureEtcd(log: (s: string) => void): void {
  const have = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' });
  if (have.status === 0) return;
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const run = (args: string[]) => {
    const cmd = [...sudo, ...args];
    log(`etcd is not on PATH: running ${cmd.join(' ')}`);
    const r = spawnSync(cmd[0]!, cmd.slice(1), {
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: 600_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    return r.status === 0;
  };
  if (!run(['apt-get', 'install', '-y', 'etcd-server', 'etcd-client'])) {
    if (!run(['apt-get', 'update']) || !run(['apt-get', 'install', '-y', 'etcd-server', 'etcd-client'])) {
      throw new Error('could not install etcd-server (apt-get failed; see above)');
    }
  }
  if (spawnSync('sh', ['-c', 'command -v etcd']).status !== 0) {
    throw new Error('etcd-server is installed but `etcd` is still not on PATH');
  }
}

export function etcdVersion(): string {
  const r = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
  return (r.stdout.split('\n')[0] ?? '').replace('etcd Version: ', '').trim();
}

export async function startEtcdCluster(root: string): Promise<EtcdMember[]> {
  const ports = await freePorts(6);
  const names = ['e1', 'e2', 'e3'];
  const peerUrl = (i: number) => `http://127.0.0.1:${ports[2 * i + 1]}`;
  const clientAddr = (i: number) => `127.0.0.1:${ports[2 * i]}`;
  const initialCluster = names.map((n, i) => `${n}=${peerUrl(i)}`).join(',');
  const token = `aq-bench-${process.pid}-${Date.now()}`;
  const members = names.map((name, i) => {
    const args = [
      '--name',
      name,
      '--data-dir',
      join(root, name),
      '--listen-client-urls',
      `http://${clientAddr(i)}`,
      '--advertise-client-urls',
      `http://${clientAddr(i)}`,
      '--listen-peer-urls',
      peerUrl(i),
      '--initial-advertise-peer-urls',
      peerUrl(i),
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-token',
      token,
      '--initial-cluster-state',
      'new',
      '--logger',
      'zap',
      '--log-level',
      'warn',
    ];
    const child = track(spawn('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] }));
    const stderr: string[] = [];
    child.stderr?.on('data', (b: Buffer) => stderr.push(b.toString()));
    child.once('exit', (code, signal) => {
      stderr.push(`[bench] etcd ${name} exited (${code ?? signal})\n`);
    });
    return { name, pid: child.pid!, client: clientAddr(i), child, stderr };
  });
  for (const m of members) await verifyProgram(m.pid, 'etcd');
  for (const m of members) {
    await eventually(
      `etcd ${m.name} to answer a linearizable get`,
      async () => {
        if (m.child.exitCode !== null) throw new Error(`exited:\n${m.stderr.join('')}`);
        const one = new Etcd3({ hosts: `http://${m.client}` });
        try {
          await withTimeout('get', 2_000, one.get('/registry/bench-ready').exec());
          return true;
        } finally {
          one.close();
        }
      },
      30_000,
    );
  }
  return members;
}

export { aqCall, eventually };
