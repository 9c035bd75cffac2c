// The real `bin/aq`, run as a child process: help, usage errors, an unreachable anchor, a bad config file.
// Each run is bounded by a timeout and killed in `finally` if it is still alive.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { validateName } from '../../src/registry/names.ts';

const AQ = fileURLToPath(new URL('../../bin/aq', import.meta.url));
const RUN_TIMEOUT_MS = 15_000;

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

async function aq(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  const { AQ_ANCHOR: _anchor, AQ_DEBUG: _debug, ...base } = process.env;
  let child: ChildProcess | null = null;
  let timer: NodeJS.Timeout | undefined;
  try {
    // From another directory: bin/aq must find the project through its own path.
    child = spawn(AQ, [...args], {
      cwd: tmpdir(),
      env: { ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const proc = child;
    let stdout = '';
    let stderr = '';
    proc.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    proc.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    return await new Promise<Result>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`aq ${args.join(' ')}: no exit within ${RUN_TIMEOUT_MS}ms`)),
        RUN_TIMEOUT_MS,
      );
      proc.on('error', reject);
      proc.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
  } finally {
    clearTimeout(timer);
    if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** One line on stderr, no stack trace. */
function expectOneLine(stderr: string): void {
  expect(stderr.endsWith('\n'), JSON.stringify(stderr)).to.equal(true);
  expect(stderr.trimEnd().split('\n'), JSON.stringify(stderr)).to.have.length(1);
  expect(stderr).to.not.match(/\n\s+at /);
  expect(stderr.startsWith('aq: ')).to.equal(true);
}

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

describe('aq CLI as a process (bin/aq)', function () {
  this.timeout(RUN_TIMEOUT_MS * 2);

  it('aq --help exits 0 and shows the usage and the commands', async () => {
    const result = await aq(['--help']);
    expect(result.code).to.equal(0);
    expect(result.stdout).to.include('Usage: aq');
    for (const command of ['anchor', 'register', 'resolve', 'watch', 'members'])
      expect(result.stdout).to.include(command);
    expect(result.stderr).to.equal('');
  });

  it('aq register --help exits 0 and shows its flags', async () => {
    const result = await aq(['register', '--help']);
    expect(result.code).to.equal(0);
    expect(result.stdout).to.include('Usage: aq register');
    for (const flag of [
      '--id <ID>',
      '--address',
      '--port',
      '--tag',
      '--meta',
      '--ttl',
      '--anchor',
      '--json',
      '--timeout',
    ]) {
      expect(result.stdout).to.include(flag);
    }
  });

  it('a missing required flag exits 2 with one line on stderr', async () => {
    const result = await aq(['register', 'eu/payments', '--address', '10.0.0.1', '--port', '80']);
    expect(result.code).to.equal(2);
    expectOneLine(result.stderr);
    expect(result.stderr).to.include("'--id <ID>'");
    expect(result.stderr).to.include("see 'aq register --help'");
    expect(result.stdout).to.equal('');
  });

  it("an invalid name exits 2 with the name's reason", async () => {
    const result = await aq([
      'register',
      'EU/payments',
      '--id',
      'a',
      '--address',
      '10.0.0.1',
      '--port',
      '80',
    ]);
    expect(result.code).to.equal(2);
    expectOneLine(result.stderr);
    expect(result.stderr).to.include(validateName('EU/payments')!.message);
  });

  it('resolve against a closed port exits 4 (DEFER) with one line naming the address', async () => {
    const port = await closedPort();
    const result = await aq(['resolve', 'eu/payments', '--anchor', `127.0.0.1:${port}`]);
    expect(result.code).to.equal(4);
    expectOneLine(result.stderr);
    expect(result.stderr).to.include(`127.0.0.1:${port}`);
    expect(result.stderr).to.include('--anchor');
    const viaEnv = await aq(['resolve', 'eu/payments'], { AQ_ANCHOR: `127.0.0.1:${port}` });
    expect(viaEnv.code).to.equal(4);
    expect(viaEnv.stderr).to.include('AQ_ANCHOR');
  });

  describe('anchor start', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'aq-cli-usage-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('a config file with an unknown key exits 2, naming the key and the file', async () => {
      const config = join(dir, 'anchor.json');
      writeFileSync(config, JSON.stringify({ 'data-dir': join(dir, 'data'), 'bootstrap-expected': 3 }));
      const result = await aq(['anchor', 'start', '--config', config]);
      expect(result.code).to.equal(2);
      expectOneLine(result.stderr);
      expect(result.stderr).to.include('"bootstrap-expected"');
      expect(result.stderr).to.include(config);
    });
  });
});
