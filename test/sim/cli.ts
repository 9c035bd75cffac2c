// The simulator's command line.
//
//   node test/sim/cli.ts --seeds 1000 --seed 1        run seeds 1..1000, print a summary
//   node test/sim/cli.ts --replay 4242                run one seed, print its full trace
//   node test/sim/cli.ts --seeds 200 --mutation read-without-quorum
//   node test/sim/cli.ts --seeds 200 --mutation late-revocation     (a broken authority, governance.ts)
//   npm run sim -- --seeds 1000 --seed 1
//
// Exit code: 0 all seeds passed, 1 a violation was found, 2 usage error.

import { parseArgs } from 'node:util';
import { isMutation, MUTATIONS, type Mutation } from '../../src/consensus/index.ts';
import {
  AUTHORITY_MUTATIONS,
  type AuthorityMutation,
  EDGE_ADMISSION_MODES,
  type EdgeAdmission,
  isAuthorityMutation,
} from './governance.ts';
import { addReport, emptyTotals, formatFailure, formatTotals } from './report.ts';
import { DEFAULT_OPTIONS, type RunOptions, runSeed } from './run.ts';

const USAGE = `usage: node test/sim/cli.ts [--seeds N] [--seed S] [--replay SEED] [--mutation NAME]
                           [--ticks T] [--no-faults] [--black-box] [--no-ack-durability] [--ed25519]
                           [--edge-admission MODE]
  --seeds N        number of seeds to run (default 100)
  --seed S         first seed (default 1)
  --replay SEED    run one seed and print its full trace
  --mutation NAME  switch on a deliberately broken variant of the core: ${MUTATIONS.join(', ')};
                   or of the scope authority's enforcement: ${AUTHORITY_MUTATIONS.join(', ')}
  --ticks T        length of the fault phase in ticks (default ${DEFAULT_OPTIONS.ticks})
  --no-faults      no crashes, partitions, loss... (delays and reordering only)
  --black-box      record timed-out writes as indeterminate instead of resolving them from the replicas
  --no-ack-durability
                   do not check acknowledgements and votes against the disk when they are sent (an early
                   acknowledgement is then caught only by its consequences)
  --ed25519        sign every operation with ed25519 (default: a deterministic digest; see governance.ts)
  --edge-admission MODE
                   run src/api's edge check at the receiving host before proposing or reading:
                   ${EDGE_ADMISSION_MODES.join(', ')} (governance.ts, README.md)`;

function usage(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

function integer(name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) usage(`--${name} needs a non-negative integer, got '${value}'`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}, got '${value}'`);
  return n;
}

function main(): void {
  let args: ReturnType<typeof parse>;
  try {
    args = parse();
  } catch (err) {
    usage((err as Error).message);
  }
  const v = args.values;
  if (v.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (args.positionals.length > 0) usage(`unexpected argument '${args.positionals[0]}'`);
  let mutation: Mutation | null = null;
  let authorityMutation: AuthorityMutation | null = null;
  if (v.mutation !== undefined) {
    if (isMutation(v.mutation)) mutation = v.mutation;
    else if (isAuthorityMutation(v.mutation)) authorityMutation = v.mutation;
    else
      usage(`unknown mutation '${v.mutation}' (known: ${[...MUTATIONS, ...AUTHORITY_MUTATIONS].join(', ')})`);
  }
  const edge = (v['edge-admission'] ?? 'off') as EdgeAdmission;
  if (!(EDGE_ADMISSION_MODES as readonly string[]).includes(edge))
    usage(`unknown --edge-admission mode '${edge}' (known: ${EDGE_ADMISSION_MODES.join(', ')})`);
  const options: Partial<RunOptions> = {
    ticks: integer('ticks', v.ticks, DEFAULT_OPTIONS.ticks, 1),
    faults: !v['no-faults'],
    blackBox: v['black-box'] === true,
    ackDurability: v['no-ack-durability'] !== true,
    signatures: v.ed25519 === true ? 'ed25519' : 'digest',
    edgeAdmission: edge,
    mutation,
    authorityMutation,
  };

  if (v.replay !== undefined) {
    const seed = integer('replay', v.replay, 0, 0);
    const r = runSeed(seed, { ...options, fullTrace: true });
    for (const line of r.trace) process.stdout.write(`${line}\n`);
    process.stdout.write(`\nseed ${seed}: ${r.scenario}\n`);
    process.stdout.write(`ops ${JSON.stringify(r.ops)}\nfaults ${JSON.stringify(r.faults)}\n`);
    process.stdout.write(`stats ${JSON.stringify(r.stats)}\nlinearizability ${r.linearizability}\n`);
    for (const x of r.violations) process.stdout.write(`VIOLATION ${x.property}: ${x.message}\n`);
    process.exitCode = r.violations.length > 0 ? 1 : 0;
    return;
  }

  const seeds = integer('seeds', v.seeds, 100, 1);
  const first = integer('seed', v.seed, 1, 0);
  const tty = process.stdout.isTTY === true;
  const totals = emptyTotals();
  const t0 = performance.now();
  let lastProgress = 0;
  for (let i = 0; i < seeds; i++) {
    const seed = first + i;
    const r = runSeed(seed, options);
    addReport(totals, r);
    const now = performance.now();
    const line = `seed ${seed} (${i + 1}/${seeds}) ${totals.failing.length} failing, ${((now - t0) / (i + 1)).toFixed(0)} ms/seed`;
    if (tty && (now - lastProgress > 200 || i + 1 === seeds)) {
      process.stdout.write(`\r${line}\x1b[K`);
      lastProgress = now;
    } else if (!tty && ((i + 1) % 100 === 0 || i + 1 === seeds)) {
      process.stdout.write(`${line}\n`);
    }
    if (r.violations.length > 0 && tty)
      process.stdout.write(`\r\x1b[Kseed ${seed}: ${r.violations[0]?.property}\n`);
  }
  if (tty) process.stdout.write('\n');
  process.stdout.write(`${formatTotals(totals, performance.now() - t0)}\n`);
  if (mutation || authorityMutation) process.stdout.write(`mutation: ${mutation ?? authorityMutation}\n`);
  for (const r of totals.failing) {
    process.stdout.write(`\n${formatFailure(r, 40)}\n`);
    process.stdout.write(
      `  replay: node test/sim/cli.ts --replay ${r.seed}${mutation || authorityMutation ? ` --mutation ${mutation ?? authorityMutation}` : ''}${v.ed25519 ? ' --ed25519' : ''}${edge !== 'off' ? ` --edge-admission ${edge}` : ''}${v.ticks ? ` --ticks ${v.ticks}` : ''}${v['no-faults'] ? ' --no-faults' : ''}${v['black-box'] ? ' --black-box' : ''}${v['no-ack-durability'] ? ' --no-ack-durability' : ''}\n`,
    );
  }
  process.exitCode = totals.failing.length > 0 ? 1 : 0;
}

function parse() {
  return parseArgs({
    options: {
      seeds: { type: 'string' },
      seed: { type: 'string' },
      replay: { type: 'string' },
      mutation: { type: 'string' },
      ticks: { type: 'string' },
      'no-faults': { type: 'boolean' },
      'black-box': { type: 'boolean' },
      'no-ack-durability': { type: 'boolean' },
      ed25519: { type: 'boolean' },
      'edge-admission': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
}

main();
