// `aq dev --json`: the local region comes up as real processes, its first stdout line lists every anchor,
// the samples resolve, and Ctrl-C (SIGINT) stops every child process it started.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { expect } from 'chai';
import { AQ, client, killAll } from './anchor-harness.ts';

interface DevAnchor {
  peerId: string;
  scopes: string[];
  grpc: string;
  http: string;
  dns: string | null;
  p2p: string;
  pid: number;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('aq dev', function () {
  this.timeout(90_000);
  after(() => killAll());

  it('prints the endpoints as JSON first, serves the samples, and stops every anchor on Ctrl-C', async () => {
    const child = spawn(AQ, ['dev', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const first = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`aq dev printed nothing in 60 s:\n${stderr}`)),
          60_000,
        );
        createInterface({ input: child.stdout }).once('line', (line) => {
          clearTimeout(timer);
          resolve(line);
        });
      });
      const { anchors } = JSON.parse(first) as { anchors: DevAnchor[] };
      expect(anchors).to.have.length(5);
      expect(anchors.filter((a) => a.scopes.includes('eu-central'))).to.have.length(3);
      for (const a of anchors) {
        expect(a).to.include.keys('peerId', 'scopes', 'grpc', 'http', 'dns', 'p2p');
        expect(alive(a.pid)).to.equal(true);
      }
      for (const [scope, name, count] of [
        ['eu-central', 'eu-central/payments/checkout', 2],
        ['us-east', 'us-east/search', 1],
        ['ap-south', 'ap-south/cache', 1],
      ] as const) {
        const a = anchors.find((x) => x.scopes.includes(scope)) as DevAnchor;
        const c = client(a.grpc, 'Registry');
        const answer = await c.call<{ instances: unknown[] }>('Resolve', { name });
        c.close();
        expect(answer.instances, name).to.have.length(count);
      }
      expect(stderr).to.include('serving; Ctrl-C stops every anchor');
      child.kill('SIGINT');
      expect(await exited).to.equal(0);
      for (const a of anchors) expect(alive(a.pid), `anchor pid ${a.pid}`).to.equal(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
