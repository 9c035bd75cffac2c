// Mocha's dot reporter, plus one plain closing line ("N passed, N failed, N skipped") that CI tooling
// reads regardless of the test runner.
const Mocha = require('mocha');

class DotWithSummary extends Mocha.reporters.Dot {
  constructor(runner, options) {
    super(runner, options);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const s = runner.stats;
      process.stdout.write(`\ntests: ${s.passes} passed, ${s.failures} failed, ${s.pending} skipped\n`);
    });
  }
}

module.exports = DotWithSummary;
