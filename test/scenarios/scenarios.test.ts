import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { Harness, parseScenario, renderScenario, splitArgs } from './harness.ts';

const dir = import.meta.dirname;
const rewrite = process.env.AQ_REWRITE === '1';

describe('scripted Raft scenarios (test/scenarios/*.txt)', () => {
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()) {
    it(`${file} produces the recorded output`, () => {
      const path = join(dir, file);
      const source = readFileSync(path, 'utf8');
      const harness = new Harness();
      const outputs = new Map<number, string>();
      for (const c of parseScenario(source)) {
        const { name, args, positional } = splitArgs(c.command);
        const got = harness.run(name, args, positional);
        outputs.set(c.line, got);
        if (!rewrite) expect(got, `${file}:${c.line} ${c.command}`).to.equal(c.expected);
      }
      if (rewrite) writeFileSync(path, renderScenario(source, outputs));
    });
  }
});
