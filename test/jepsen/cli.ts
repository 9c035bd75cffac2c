// The fault run's command line (real `aq anchor start` processes; see run.ts).
//
//   node test/jepsen/cli.ts --seconds 600 --anchors 3 --clients 8 --seed 7
//   node test/jepsen/cli.ts --seconds 60 --mutation read-without-quorum --nemesis stale-leader
//   make jepsen ARGS='--seconds 600'
//
// Exit code: 0 linearizable and nothing acknowledged lost, 1 otherwise (a violation, a loss, the checker's
// budget exhausted, an anchor that died by itself, a run that could not finish), 2 usage error.

import { parseArgs } from 'node:util';
import { isMutation, MUTATIONS } from '../../src/consensus/index.ts';
import { FAULT_KINDS, type FaultKind, type NemesisMode } from './nemesis.ts';
import { DEFAULTS, formatReport, type JepsenOptions, runJepsen } from './run.ts';

const USAGE = `usage: node test/jepsen/cli.ts [--seconds S] [--anchors 3|5] [--clients N] [--seed S]
                             [--mutation NAME] [--nemesis mixed|stale-leader]
                             [--no-kill] [--no-pause] [--no-partition] [--keep] [--quiet]
  --seconds S        length of the fault phase (default ${DEFAULTS.seconds})
  --anchors N        3 or 5 anchors (default ${DEFAULTS.anchors})
  --clients N        concurrent clients (default ${DEFAULTS.clients})
  --seed S           seed of the nemesis' and the clients' choices (default ${DEFAULTS.seed})
  --mutation NAME    plant a bug in every anchor (AQ_TEST_MUTATIONS): ${MUTATIONS.join(', ')}
  --nemesis MODE     mixed (default): kills, pauses, partitions, stale leaders; stale-leader: only
                     isolate+pause the leader, resume it still isolated, heal (the read-without-quorum case)
  --snapshot-count N the anchors' log compaction interval (default ${DEFAULTS.snapshotCount}: catch-up by
                     snapshot happens under faults)
  --no-kill, --no-pause, --no-partition
                     leave that kind of fault out
  --gap MIN-MAX      pause between faults in ms (default ${DEFAULTS.gapMs.join('-')})
  --check-steps N    checker budget per name (default ${DEFAULTS.checkSteps}); over it the verdict is unknown
  --no-final-kill    do not kill -9 and restart the whole group before the final reads
  --keep             keep the anchors' data dirs even when the run passes
  --quiet            no progress lines, only the summary`;

function usage(message: string): never {
  process.stderr.write(`jepsen: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function integer(
  name: string,
  value: string | undefined,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) usage(`--${name} needs a non-negative integer, got '${value}'`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max)
    usage(`--${name} must be an integer in ${min}..${max}, got '${value}'`);
  return n;
}

async function main(): Promise<void> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse();
  } catch (error) {
    usage((error as Error).message);
  }
  const v = args.values;
  if (v.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (args.positionals.length > 0) usage(`unexpected argument '${args.positionals[0]}'`);
  const anchors = integer('anchors', v.anchors, DEFAULTS.anchors, 3, 5);
  if (anchors !== 3 && anchors !== 5) usage(`--anchors must be 3 or 5, got ${anchors}`);
  const mutations = (v.mutation ?? []).flatMap((m) => m.split(',')).filter((m) => m !== '');
  for (const m of mutations)
    if (!isMutation(m)) usage(`unknown mutation '${m}' (known: ${MUTATIONS.join(', ')})`);
  const nemesis = v.nemesis ?? DEFAULTS.nemesis;
  if (nemesis !== 'mixed' && nemesis !== 'stale-leader')
    usage(`--nemesis must be mixed or stale-leader, got '${nemesis}'`);
  const kinds = new Set<FaultKind>(FAULT_KINDS.filter((k) => v[`no-${k}`] !== true));
  let gapMs = DEFAULTS.gapMs;
  if (v.gap !== undefined) {
    const m = /^(\d+)-(\d+)$/.exec(v.gap);
    if (m === null || Number(m[1]) > Number(m[2]) || Number(m[2]) === 0)
      usage(`--gap needs MIN-MAX in ms, got '${v.gap}'`);
    gapMs = [Number(m[1]), Number(m[2])];
  }
  const quiet = v.quiet === true;
  const options: JepsenOptions = {
    ...DEFAULTS,
    seconds: integer('seconds', v.seconds, DEFAULTS.seconds, 1),
    anchors,
    clients: integer('clients', v.clients, DEFAULTS.clients, 1, 256),
    seed: integer('seed', v.seed, DEFAULTS.seed, 0),
    mutations,
    snapshotCount: integer('snapshot-count', v['snapshot-count'], DEFAULTS.snapshotCount, 1),
    kinds,
    nemesis: nemesis as NemesisMode,
    gapMs,
    checkSteps: integer('check-steps', v['check-steps'], DEFAULTS.checkSteps, 1),
    finalKill: v['no-final-kill'] !== true,
    keep: v.keep === true,
    log: quiet ? () => {} : (line) => process.stderr.write(`${line}\n`),
  };
  // Ctrl-C: the run's 'exit' hook kills every anchor by PID (SIGCONT first for paused ones).
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
  const report = await runJepsen(options);
  process.stdout.write(`${formatReport(report)}\n`);
  // Exit now rather than when the last gRPC handle lets go: everything the run started is stopped.
  process.exit(report.passed ? 0 : 1);
}

function parse() {
  return parseArgs({
    options: {
      seconds: { type: 'string' },
      anchors: { type: 'string' },
      clients: { type: 'string' },
      seed: { type: 'string' },
      mutation: { type: 'string', multiple: true },
      nemesis: { type: 'string' },
      'no-kill': { type: 'boolean' },
      'no-pause': { type: 'boolean' },
      'no-partition': { type: 'boolean' },
      gap: { type: 'string' },
      'check-steps': { type: 'string' },
      'snapshot-count': { type: 'string' },
      'no-final-kill': { type: 'boolean' },
      keep: { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
}

await main();
