// Short fault runs over real processes (the long one is `make jepsen`, see README.md): a 3-anchor group
// under kill -9, SIGSTOP/SIGCONT and partitions keeps a linearizable history and every acknowledged
// registration; and the same run catches a bug planted in the real anchor (read-without-quorum through
// AQ_TEST_MUTATIONS), so a pass of the first test means something.

import { rmSync } from 'node:fs';
import { expect } from 'chai';
import { killAll } from '../integration/anchor-harness.ts';
import { stopLiveClusters } from './cluster.ts';
import { DEFAULTS, formatReport, type JepsenOptions, type JepsenReport, runJepsen } from './run.ts';

describe('jepsen: real anchors under kill -9, pauses and partitions', function () {
  this.timeout(120_000);
  let abort = new AbortController();
  let running: Promise<JepsenReport> | null = null;

  /** Runs one fault run; keeps its directory only when the expectation fails (to study the history). */
  async function run(options: Partial<JepsenOptions>): Promise<{ report: JepsenReport; text: string }> {
    abort = new AbortController();
    const lines: string[] = [];
    running = runJepsen({ ...DEFAULTS, ...options, log: (l) => lines.push(l), signal: abort.signal });
    const report = await running;
    running = null;
    return { report, text: `${formatReport(report)}\n--- run log ---\n${lines.join('\n')}` };
  }

  afterEach(async () => {
    // A timed-out test: end its run (faults healed, every anchor killed by PID), then the safety nets.
    abort.abort();
    await running?.catch(() => {});
    running = null;
    await stopLiveClusters();
    await killAll();
  });

  it('keeps the history linearizable and every acknowledged registration (3 anchors, 40 s of faults)', async () => {
    const { report, text } = await run({ seconds: 40, seed: 11, gapMs: [1_000, 3_000] });
    expect(report.passed, text).to.equal(true);
    expect(report.faults.kill, text).to.be.at.least(1);
    expect(report.faults.pause, text).to.be.at.least(1);
    expect(report.faults.partition, text).to.be.at.least(1);
    expect(report.ops.register.ok, text).to.be.greaterThan(100);
    expect(report.ops.resolve.ok, text).to.be.greaterThan(100);
    rmSync(report.dir, { recursive: true, force: true });
  });

  it('catches read-without-quorum planted in the real anchors (stale leader isolated and paused)', async () => {
    const { report, text } = await run({
      seconds: 16,
      seed: 3,
      mutations: ['read-without-quorum'],
      nemesis: 'stale-leader',
      gapMs: [500, 1_000],
      finalKill: false,
    });
    expect(report.verdict, text).to.equal('not linearizable');
    expect(report.violation?.faultsAround.join('\n'), text).to.include('stale leader');
    rmSync(report.dir, { recursive: true, force: true });
  });
});
