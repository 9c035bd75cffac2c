// `aq dev`: a local region on loopback in one command. It starts real `aq anchor start` processes (the
// same code operators run): a scope group of three anchors (eu-central) and two single-anchor scopes
// (us-east, ap-south), all finding each other through the first anchor as their bootstrap peer; it
// registers sample services, prints every endpoint and a few commands to try, and serves until Ctrl-C,
// then stops every child it started (by PID) and removes its temporary data.
//
// Not built yet, and so not started here: cross-scope traversal and adjacencies, DNS, the Consul HTTP
// API. The banner says so.

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { callOnce } from '../api/unary-call.ts';
import { loopbackAnchorArgs } from './anchor-args.ts';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), 'main.ts');
/** The CLI's default --anchor: the first anchor takes it when free, so `aq resolve` works with no flags. */
const DEFAULT_GRPC = '127.0.0.1:7400';

export interface DevOptions {
  readonly json: boolean;
  /** Keep data here (kept on exit) instead of a temporary directory (removed on exit). */
  readonly dataDir?: string;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

interface DevAnchor {
  readonly name: string;
  readonly scopes: readonly string[];
  readonly child: ChildProcess;
  readonly info: { peerId: string; grpc: string; peer: string; http: string; p2p: string[] };
}

interface Plan {
  readonly name: string;
  readonly scope: string;
  readonly expect: number;
}

const PLAN: readonly Plan[] = [
  { name: 'eu-1', scope: 'eu-central', expect: 3 },
  { name: 'eu-2', scope: 'eu-central', expect: 3 },
  { name: 'eu-3', scope: 'eu-central', expect: 3 },
  { name: 'us-1', scope: 'us-east', expect: 1 },
  { name: 'ap-1', scope: 'ap-south', expect: 1 },
];

const SAMPLES = [
  {
    name: 'eu-central/payments/checkout',
    instance: {
      id: 'checkout-1',
      address: '10.0.1.11',
      port: 8443,
      tags: ['v2'],
      meta: { zone: 'eu-central-1a' },
    },
  },
  {
    name: 'eu-central/payments/checkout',
    instance: {
      id: 'checkout-2',
      address: '10.0.1.12',
      port: 8443,
      tags: ['v2'],
      meta: { zone: 'eu-central-1b' },
    },
  },
  {
    name: 'eu-central/web',
    instance: { id: 'web-1', address: '10.0.1.20', port: 443, tags: ['blue'], meta: {} },
  },
  {
    name: 'us-east/search',
    instance: { id: 'search-1', address: '10.1.0.5', port: 9200, tags: [], meta: { tier: 'hot' } },
  },
  {
    name: 'ap-south/cache',
    instance: { id: 'cache-1', address: '10.2.0.9', port: 6379, tags: ['primary'], meta: {} },
  },
];

export class DevError extends Error {
  override readonly name = 'DevError';
}

/** Runs the local region until `signal` aborts; resolves with the exit code. */
export async function runDev(options: DevOptions, signal: AbortSignal): Promise<number> {
  const keep = options.dataDir !== undefined;
  const root = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'aq-dev-')));
  const anchors: DevAnchor[] = [];
  let failed: string | null = null;
  const onChildExit = (a: { name: string }, code: number | null) => {
    if (!signal.aborted && failed === null)
      failed = `anchor ${a.name} exited unexpectedly (code ${code}); its log is in ${join(root, `${a.name}.log`)}`;
  };
  try {
    const firstGrpc = (await portFree(DEFAULT_GRPC)) ? DEFAULT_GRPC : '127.0.0.1:0';
    for (const plan of PLAN) {
      const bootstrap = anchors[0]?.info.p2p[0];
      const a = await startChild(
        plan,
        root,
        anchors.length === 0 ? firstGrpc : '127.0.0.1:0',
        bootstrap,
        onChildExit,
      );
      anchors.push(a);
    }
    await waitForLeaders(anchors, signal);
    await registerSamples(anchors);
    print(options, anchors, root, keep);
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
      const poll = setInterval(() => {
        if (failed !== null) {
          clearInterval(poll);
          resolve();
        }
      }, 200);
      signal.addEventListener('abort', () => clearInterval(poll), { once: true });
    });
    if (failed !== null) {
      options.err(`aq: dev: ${failed}\n`);
      return 1;
    }
    return 0;
  } finally {
    await stopAll(anchors);
    if (!keep) await rm(root, { recursive: true, force: true });
  }
}

async function startChild(
  plan: Plan,
  root: string,
  grpc: string,
  bootstrap: string | undefined,
  onExit: (a: { name: string }, code: number | null) => void,
): Promise<DevAnchor> {
  const args = [
    MAIN,
    ...loopbackAnchorArgs({
      dataDir: join(root, plan.name),
      scopes: [plan.scope],
      bootstrapExpect: plan.expect,
      bootstrap: bootstrap ? [bootstrap] : [],
      grpc,
    }),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(join(root, `${plan.name}.log`));
  child.stderr?.pipe(log);
  child.on('exit', (code) => onExit(plan, code));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const info = await new Promise<DevAnchor['info']>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new DevError(
            `anchor ${plan.name} did not start within 30 s; see ${join(root, `${plan.name}.log`)}`,
          ),
        ),
      30_000,
    );
    let first = true;
    lines.on('line', (line) => {
      log.write(`${line}\n`);
      if (!first) return;
      first = false;
      clearTimeout(timer);
      try {
        resolve((JSON.parse(line) as { anchor: DevAnchor['info'] }).anchor);
      } catch {
        reject(new DevError(`anchor ${plan.name} printed an unexpected first line: ${line.slice(0, 200)}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(
        new DevError(
          `anchor ${plan.name} exited with code ${code} while starting; see ${join(root, `${plan.name}.log`)}`,
        ),
      );
    });
  });
  return { name: plan.name, scopes: [plan.scope], child, info };
}

async function waitForLeaders(anchors: readonly DevAnchor[], signal: AbortSignal): Promise<void> {
  const until = Date.now() + 60_000;
  for (const a of anchors) {
    for (;;) {
      signal.throwIfAborted();
      try {
        const m = await callOnce<{ members: { leader: boolean; role: string }[] }>(
          a.info.grpc,
          'Membership',
          'Members',
          {
            scope: a.scopes[0],
          },
        );
        if (m.members.some((x) => x.leader)) break;
      } catch {
        // not formed yet
      }
      if (Date.now() > until) throw new DevError(`scope ${a.scopes[0]} did not elect a leader within 60 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function registerSamples(anchors: readonly DevAnchor[]): Promise<void> {
  for (const s of SAMPLES) {
    const owner = anchors.find((a) => s.name.startsWith(`${a.scopes[0]}/`)) as DevAnchor;
    await callOnce(owner.info.grpc, 'Registry', 'Register', s, 5_000);
  }
}

function print(o: DevOptions, anchors: readonly DevAnchor[], root: string, keep: boolean): void {
  const rows = anchors.map((a) => ({
    peerId: a.info.peerId,
    scopes: [...a.scopes],
    grpc: a.info.grpc,
    http: a.info.http,
    dns: null,
    p2p: a.info.p2p[0] ?? '',
    peer: a.info.peer,
    pid: a.child.pid ?? 0,
  }));
  if (o.json) o.out(`${JSON.stringify({ region: 'local', anchors: rows })}\n`);
  const first = anchors[0] as DevAnchor;
  const anchorFlag = first.info.grpc === DEFAULT_GRPC ? '' : ` --anchor ${first.info.grpc}`;
  const table = [
    ['ANCHOR', 'SCOPE', 'GRPC', 'HTTP (/metrics /health)', 'PEER', 'P2P'],
    ...anchors.map((a) => [
      `${a.name} ${a.info.peerId.slice(-8)}`,
      a.scopes.join(','),
      a.info.grpc,
      a.info.http,
      a.info.peer,
      a.info.p2p[0] ?? '',
    ]),
  ];
  const widths = (table[0] as string[]).map((_, i) => Math.max(...table.map((r) => (r[i] as string).length)));
  const lines = table.map((r) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number))).join('  '),
  );
  const text = [
    'aqmesh dev: one local region on loopback (development mode: open scopes with the PERMISSIVE development policy — no credentials needed, anything is admitted; found a governed scope with aq scope create + aq anchor start --genesis. DNS, Consul API and cross-scope traversal are not built yet)',
    '',
    ...lines,
    '',
    `samples: ${[...new Set(SAMPLES.map((s) => s.name))].join(', ')}`,
    `data and anchor logs: ${root}${keep ? '' : ' (removed on exit)'}`,
    '',
    'try, from another shell:',
    `  bin/aq resolve eu-central/payments/checkout${anchorFlag}`,
    `  bin/aq members eu-central${anchorFlag}`,
    `  bin/aq register eu-central/web --id web-2 --address 10.0.1.21 --port 443 --ttl 30s${anchorFlag}`,
    `  bin/aq watch eu-central/web${anchorFlag}`,
    `  bin/aq resolve us-east/search --anchor ${anchors.find((a) => a.scopes[0] === 'us-east')?.info.grpc ?? ''}`,
    `  curl -s http://${first.info.http}/metrics | grep aq_raft`,
    '',
    'serving; Ctrl-C stops every anchor',
    '',
  ].join('\n');
  (o.json ? o.err : o.out)(text);
}

async function stopAll(anchors: readonly DevAnchor[]): Promise<void> {
  await Promise.all(
    anchors.map(
      (a) =>
        new Promise<void>((resolve) => {
          const c = a.child;
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const force = setTimeout(() => c.kill('SIGKILL'), 5_000);
          c.once('exit', () => {
            clearTimeout(force);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
}

function portFree(address: string): Promise<boolean> {
  const at = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(Number(address.slice(at + 1)), address.slice(0, at), () => s.close(() => resolve(true)));
  });
}

/** `aq dev [--json] [--data-dir DIR]`: runs until SIGINT or SIGTERM. */
export async function devCommand(
  flags: { json?: boolean; dataDir?: string },
  io: { out: (text: string) => void; err: (text: string) => void },
): Promise<0 | 1> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    return (await runDev(
      {
        json: flags.json === true,
        ...(flags.dataDir ? { dataDir: flags.dataDir } : {}),
        out: io.out,
        err: io.err,
      },
      controller.signal,
    )) as 0 | 1;
  } catch (error) {
    if (controller.signal.aborted) return 0;
    io.err(`aq: dev: ${(error as Error).message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
