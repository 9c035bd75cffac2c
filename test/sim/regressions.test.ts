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
