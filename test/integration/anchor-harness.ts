// Real anchor processes on loopback for integration tests: `bin/aq anchor start` children with port 0
// everywhere, their addresses read from the first log line, stopped by PID (SIGKILL when asked, or at the
// end of the test, always).

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { serviceClient } from '../../src/api/proto.ts';
import { loopbackAnchorArgs } from '../../src/cli/anchor-args.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const AQ = join(ROOT, 'bin', 'aq');

export interface AnchorInfo {
  peerId: string;
  grpc: string;
  /** The TLS client port, when started with --grpc-tls. */
  grpcTls?: string;
  peer: string;
  http: string;
  p2p: string[];
}

export interface AnchorProcess {
  readonly dataDir: string;
  readonly child: ChildProcess;
  readonly info: AnchorInfo;
  readonly logs: string[];
  readonly exited: Promise<number | null>;
}

export interface StartAnchorOptions {
  dataDir: string;
  scopes: string[];
  bootstrapExpect?: number;
  bootstrap?: string[];
  region?: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
}

const children = new Set<ChildProcess>();

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `aq-${prefix}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Starts `aq anchor start` and resolves once it has printed its addresses (first log line). */
/** The arguments of `aq anchor start` for these options (ports 0 everywhere). */
export function anchorStartArgs(o: StartAnchorOptions): string[] {
  return loopbackAnchorArgs({ region: 'test', ...o });
}

export async function startAnchorProcess(o: StartAnchorOptions, timeoutMs = 20_000): Promise<AnchorProcess> {
  const args = anchorStartArgs(o);
  const child = spawn(AQ, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
  children.add(child);
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  child.stderr?.on('data', (b: Buffer) => logs.push(`stderr: ${b.toString()}`));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const info = await new Promise<AnchorInfo>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`anchor did not start in ${timeoutMs} ms:\n${logs.join('\n')}`)),
      timeoutMs,
    );
    let first = true;
    lines.on('line', (line) => {
      logs.push(line);
      if (!first) return;
      first = false;
      clearTimeout(timer);
      try {
        const parsed = JSON.parse(line) as { anchor?: AnchorInfo };
        if (parsed.anchor === undefined) throw new Error('no "anchor" field');
        resolve(parsed.anchor);
      } catch (error) {
        reject(new Error(`first log line is not the address line (${(error as Error).message}): ${line}`));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`anchor exited with ${code} before starting:\n${logs.join('\n')}`));
    });
  });
  return { dataDir: o.dataDir, child, info, logs, exited };
}

export async function kill(a: AnchorProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill(signal);
  await a.exited;
}

/** Kills every child still running (call in after()). */
export async function killAll(): Promise<void> {
  const waits = [...children].map(
    (c) =>
      new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
      }),
  );
  await Promise.all(waits);
}

type Callback = (error: ServiceError | null, response: unknown) => void;
type Unary = (
  request: unknown,
  metadata: Metadata,
  options: { deadline: number },
  callback: Callback,
) => void;

/** A promisified client of one service on one anchor's client port. */
export function client(address: string, service: 'Registry' | 'Membership' | 'Governance' | 'Lineage') {
  const Ctor = serviceClient(service);
  const c = new Ctor(address, credentials.createInsecure()) as unknown as Record<string, Unary> & {
    close(): void;
  };
  const call = <T = Record<string, unknown>>(
    method: string,
    request: unknown,
    deadlineMs = 10_000,
  ): Promise<T> =>
    new Promise((resolve, reject) => {
      (c[method] as Unary).call(
        c,
        request,
        new Metadata(),
        { deadline: Date.now() + deadlineMs },
        (error, response) => {
          if (error) reject(error);
          else resolve(response as T);
        },
      );
    });
  return { raw: c, call, close: () => c.close() };
}

/** Polls `check` until it returns a value (not undefined) or the time runs out. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (error) {
      last = error;
    }
    if (Date.now() > until) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs bin/aq with arguments; resolves with its exit code and output (killed after timeoutMs). */
export function runAq(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 20_000) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(AQ, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

export async function metricsText(http: string): Promise<string> {
  const res = await fetch(`http://${http}/metrics`);
  return res.text();
}

/** The value of one sample in Prometheus text, e.g. metric('aq_raft_term{scope="a"}'). */
export function metricValue(text: string, sample: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return undefined;
}
