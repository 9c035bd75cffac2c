// Seeds that once failed, replayed on every test run so that a fixed bug stays fixed.
//
// To add one: when `node test/sim/cli.ts --seeds N` (or the simulator tests) report a failing seed and the
// bug behind it is fixed, append an entry below with the seed, the options it needs (the same flags the
// CLI printed in its replay line: mutation, ticks, faults), the property that failed and a one-line
// account of the bug. Keep the entry even after the fix: the test asserts the seed now passes.
//
// Note that a seed's meaning depends on the simulator's code (scenario drawing, fault streams): when the
// simulator itself changes, an old seed may no longer reach the old bug. Then keep it anyway (it costs a
// few milliseconds), and if a fresh seed reproduces the bug with the old core, add that one too.

import { expect } from 'chai';
import { formatFailure } from './report.ts';
import { type RunOptions, runSeed } from './run.ts';

interface Regression {
  readonly seed: number;
  readonly options?: Partial<RunOptions>;
  /** The property that used to fail. */
  readonly property: string;
  /** What the bug was, and where it was fixed. */
  readonly note: string;
}

const COMPACT_RACE =
  'compact() threw when a leader snapshot replaced the log while the driver applied an older Ready; now returns null';

const REGRESSIONS: readonly Regression[] = [
  { seed: 6, property: 'raft-invariant', note: COMPACT_RACE },
  { seed: 9, property: 'raft-invariant', note: COMPACT_RACE },
  { seed: 11, property: 'raft-invariant', note: COMPACT_RACE },
  {
    seed: 4,
    options: { faults: false, edgeAdmission: 'full' },
    property: 'linearizability',
    note: "src/api refused a just-issued credential as 'unknown-credential' on a member that had not applied the issue yet; now a state-dependent refusal is checked again after a read index (registry-service.ts checkCurrent)",
  },
  {
    seed: 8,
    options: { edgeAdmission: 'admissions-only' },
    property: 'linearizability',
    note: 'Resolve authorized before its read index, so a lagging member served a revoked credential; now a linearizable read is authorized at its read index',
  },
  {
    seed: 32,
    options: { edgeAdmission: 'full' },
    property: 'linearizability',
    note: 'a retried write whose first attempt was applied was refused at the edge (credential revoked since): the caller saw a refusal for a change that took effect; now a retry of an applied session skips the edge check (registry-service.ts retryOfApplied)',
  },
  {
    seed: 100788,
    property: 'liveness',
    note: 'the liveness phase ended the instant the final writes completed, as a leader removed itself; now it waits for a leader too',
  },
];

describe('simulator regressions', function () {
  this.timeout(60_000);

  for (const r of REGRESSIONS) {
    it(`seed ${r.seed} (${r.property}) passes: ${r.note}`, () => {
      const report = runSeed(r.seed, r.options ?? {});
      expect(report.violations, formatFailure(report, 40)).to.deep.equal([]);
    });
  }
});
