// The seeded simulator as part of `make test`: a healthy core passes hundreds of seeds with every fault
// kind in play; every deliberately broken core (src/consensus/mutations.ts) is caught within a bounded
// number of seeds; and a seed replays to the identical report and trace.
//
// A failing seed prints its violations and the end of its trace; replay it with
//   node test/sim/cli.ts --replay SEED [--mutation NAME]

import { expect } from 'chai';
import { MUTATIONS, type Mutation } from '../../src/consensus/index.ts';
import { addReport, emptyTotals, formatFailure, formatTotals, type Totals } from './report.ts';
import { type RunOptions, type RunReport, runSeed } from './run.ts';

/** 1,000 seeds in batches of 100 (about 65 s on one core of the CI machine). */
const HEALTHY_BATCHES: readonly (readonly [number, number])[] = Array.from({ length: 10 }, (_, i) => [
  i * 100 + 1,
  i * 100 + 100,
]);

/** Seeds a mutation hunt may use, from seed 1. */
const MUTATION_BOUND = 200;

/** Properties that may legitimately catch each mutation (what the test reports is the first one). */
const SAFETY = [
  'election-safety',
  'log-matching',
  'leader-completeness',
  'state-machine-safety',
  'snapshot-agreement',
  'linearizability',
  'ack-consistency',
  'raft-invariant',
];
const CATCHERS: Record<Mutation, readonly string[]> = {
  'ack-before-persist': ['ack-durability'],
  'commit-prior-term-by-count': SAFETY,
  'read-without-quorum': ['linearizability'],
  'vote-without-log-check': SAFETY,
};

function hunt(
  mutation: Mutation,
  accept: readonly string[],
  extra: Partial<RunOptions> = {},
): { report: RunReport; seeds: number; wallMs: number } | { report: null; seeds: number; wallMs: number } {
  const t0 = performance.now();
  for (let seed = 1; seed <= MUTATION_BOUND; seed++) {
    const report = runSeed(seed, { ...extra, mutation });
    if (report.violations.some((v) => accept.includes(v.property))) {
      return { report, seeds: seed, wallMs: performance.now() - t0 };
    }
  }
  return { report: null, seeds: MUTATION_BOUND, wallMs: performance.now() - t0 };
}

describe('simulator', function () {
  this.timeout(180_000);

  describe('a healthy core under every kind of fault', () => {
    const totals: Totals = emptyTotals();
    let wall = 0;
    for (const [from, to] of HEALTHY_BATCHES) {
      it(`passes seeds ${from}..${to} with zero violations`, () => {
        const t0 = performance.now();
        const failing: RunReport[] = [];
        for (let seed = from; seed <= to; seed++) {
          const r = runSeed(seed);
          addReport(totals, r);
          if (r.violations.length > 0) failing.push(r);
        }
        wall += performance.now() - t0;
        const text = failing.map((r) => formatFailure(r, 40)).join('\n\n');
        expect(
          failing.map((r) => r.seed),
          `failing seeds:\n${text}`,
        ).to.deep.equal([]);
      });
    }
    after(() => {
      if (totals.seeds > 0) console.log(`\n      simulator totals:\n${indent(formatTotals(totals, wall))}`);
    });
  });

  describe(`every mutation is caught within ${MUTATION_BOUND} seeds`, () => {
    for (const mutation of MUTATIONS) {
      it(`${mutation}`, () => {
        const found = hunt(mutation, CATCHERS[mutation]);
        expect(found.report, `${mutation} was not caught in ${MUTATION_BOUND} seeds`).to.not.equal(null);
        const v = found.report?.violations.find((x) => CATCHERS[mutation].includes(x.property));
        console.log(
          `      ${mutation}: caught by ${v?.property} at seed ${found.seeds} (${found.wallMs.toFixed(0)} ms)`,
        );
      });
    }

    it('ack-before-persist, by its consequences alone (no ack-durability check)', () => {
      const found = hunt('ack-before-persist', SAFETY, { ackDurability: false });
      expect(found.report, `not caught in ${MUTATION_BOUND} seeds`).to.not.equal(null);
      const v = found.report?.violations.find((x) => SAFETY.includes(x.property));
      console.log(
        `      ack-before-persist (ack-durability off): caught by ${v?.property} at seed ${found.seeds} (${found.wallMs.toFixed(0)} ms)`,
      );
    });
  });

  describe('black-box histories (timed-out writes left open-ended, as a client alone sees them)', () => {
    it('seeds 1..10 pass, with the checker deciding every partition it can within its budget', () => {
      const unknown: number[] = [];
      for (let seed = 1; seed <= 10; seed++) {
        const r = runSeed(seed, { blackBox: true });
        expect(r.violations, formatFailure(r, 20)).to.deep.equal([]);
        if (r.linearizability === 'unknown') unknown.push(seed);
      }
      console.log(
        `      black-box: 10 seeds, checker budget exhausted on ${unknown.length} (${unknown.join(', ')})`,
      );
      expect(unknown.length).to.be.lessThan(10);
    });

    it('read-without-quorum is caught from the black-box history alone', () => {
      let caught = 0;
      for (let seed = 1; seed <= 10 && caught === 0; seed++) {
        const r = runSeed(seed, { blackBox: true, mutation: 'read-without-quorum' });
        if (r.violations.some((v) => v.property === 'linearizability')) caught = seed;
      }
      expect(caught, 'not caught in 10 seeds').to.be.greaterThan(0);
    });
  });

  describe('sanity of the harness', () => {
    it('without faults every operation completes and nothing is indeterminate', () => {
      for (const seed of [1, 2]) {
        const r = runSeed(seed, { faults: false });
        expect(r.violations).to.deep.equal([]);
        expect(r.ops.indeterminate + r.ops.failed + r.ops.readsTimedOut).to.equal(0);
        expect(r.ops.ok).to.be.greaterThan(1000);
        expect(r.faults).to.deep.equal({});
      }
    });

    it('the liveness check fails a run whose liveness phase is too short', () => {
      const r = runSeed(5, { livenessTicks: 1 });
      expect(r.violations.map((v) => v.property)).to.deep.equal(['liveness']);
    });
  });

  describe('determinism', () => {
    it('the same seed yields the identical report and trace', () => {
      for (const seed of [7, 4242]) {
        const a = runSeed(seed);
        const b = runSeed(seed);
        expect(b).to.deep.equal(a);
        expect(a.trace.length).to.be.greaterThan(0);
      }
    });

    it('a replay (full trace) is identical too, and ends like the ring buffer', () => {
      const a = runSeed(11, { fullTrace: true });
      const b = runSeed(11, { fullTrace: true });
      expect(b.trace).to.deep.equal(a.trace);
      const ring = runSeed(11);
      expect(a.trace.length).to.be.greaterThan(ring.trace.length);
      // The ring buffer holds the last lines of the important ones; the full trace holds them all.
      const important = a.trace.filter((l) => ring.trace.includes(l));
      expect(important.slice(-ring.trace.length)).to.deep.equal(ring.trace);
    });

    it('a mutated run replays to the same violation', () => {
      const a = runSeed(3, { mutation: 'read-without-quorum' });
      const b = runSeed(3, { mutation: 'read-without-quorum' });
      expect(b.violations).to.deep.equal(a.violations);
      expect(b.trace).to.deep.equal(a.trace);
    });
  });
});

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `      ${l}`)
    .join('\n');
}
