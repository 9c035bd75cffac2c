// The `aq` command tree (commander) and run(argv): parse, dispatch to a command, turn every way a command
// can end into an exit code. Commands are imported lazily from their actions, so `aq --help` and usage
// errors load only commander and this file's few pure imports.

import { readFileSync } from 'node:fs';
import { Command, type CommanderError, Option } from 'commander';
import { DEFAULT_ANCHOR_CONFIG } from '../anchor/config.ts';
import type { AnchorFlags } from './anchor-config.ts';
import type { ClientFlags, CommandContext, Io } from './commands.ts';
import { CliError, EXIT, type ExitCode, exitCodeOf, formatError, oneLine } from './errors.ts';
import { collect } from './parse.ts';
import { DEFAULT_ANCHOR, DEFAULT_TIMEOUT, type RegisterFlags, type Target } from './requests.ts';

/** The flags every read command has: --stale plus the client flags. */
type ReadFlags = { stale?: boolean } & ClientFlags;

export const processIo: Io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

/** A commander usage error, with the command it happened in (for the help hint). */
class CommandLineError extends Error {
  readonly error: CommanderError;
  readonly command: Command;
  constructor(error: CommanderError, command: Command) {
    super(error.message);
    this.error = error;
    this.command = command;
  }
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version?: string;
  };
  return pkg.version ?? '0.0.0';
}

/** `aq register` for the register command: the path a user types, for hints. */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

function helpHint(command: Command): string {
  return `see '${commandPath(command)} --help'`;
}

export interface ProgramHooks {
  /** Told which command's action is running (its usage errors point at its --help). */
  readonly running: (command: Command) => void;
  /** Receives the action's exit code. */
  readonly exit: (code: ExitCode) => void;
}

/** Builds the command tree. */
export function buildProgram(io: Io, hooks: ProgramHooks): Command {
  const program = new Command('aq')
    .description('aqmesh: a distributed namespace for service orchestration; one CLI for anchors and clients')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command')
    .configureOutput({
      writeOut: (text) => io.out(text),
      writeErr: (text) => io.err(text),
      // run() prints commander's errors itself, as one `aq:` line with a hint.
      outputError: () => {},
    })
    .showSuggestionAfterError(true)
    // Options belong to the command they follow (so `aq members remove ... --anchor X` is remove's).
    .enablePositionalOptions()
    .addHelpText(
      'after',
      `
Exit codes: 0 success, 1 failure, 2 usage error, 3 REFUSE (denied by policy),
4 DEFER (cannot decide now: anchor or leader unreachable, or not committed in
time; retrying is safe).
Environment: AQ_ANCHOR (the anchor client commands ask, as --anchor),
AQ_DEBUG=1 (stack traces of internal errors).`,
    );

  // Each action imports its module when it runs; `run` awaits it through parseAsync. commander passes the
  // command itself as the action's last argument.
  const lazy = <A extends unknown[]>(action: (...args: A) => Promise<ExitCode>) => {
    return async (...args: A) => {
      hooks.running(args[args.length - 1] as Command);
      hooks.exit(await action(...args));
    };
  };
  const context = (command: Command): CommandContext => ({ io, anchorFrom: anchorSource(command) });

  // ---- aq anchor start ----
  const anchor = program.command('anchor').description('run an anchor');
  const d = DEFAULT_ANCHOR_CONFIG;
  anchor
    .command('start')
    .description(
      'start one anchor process and serve until Ctrl-C (SIGINT) or SIGTERM. Every flag can also be set in ' +
        'a JSON --config file whose keys are the flag names ({"data-dir": "...", "scope": ["a", "b"]}); ' +
        'flags override the file. Port 0 means "pick one".',
    )
    .option('--config <FILE>', 'JSON file of flag values (keys are the flag names)')
    .option('--data-dir <DIR>', 'where the anchor keeps its key and store (required, here or in --config)')
    .option('--grpc <HOST:PORT>', `client gRPC API (default: ${d.grpc})`)
    .option('--peer <HOST:PORT>', `anchor-to-anchor gRPC (consensus) (default: ${d.peer})`)
    .option('--http <HOST:PORT>', `HTTP: metrics and health (default: ${d.http})`)
    .option('--dns <HOST:PORT>', 'Consul-style DNS (accepted; not served yet)')
    .option('--p2p <MULTIADDR>', `libp2p listen address (default: ${d.p2p})`)
    .option(
      '--bootstrap <MULTIADDR>',
      'an anchor to meet first, with its /p2p/<peer id> (repeatable)',
      collect,
    )
    .option('--region <NAME>', `this anchor's region (default: ${d.region})`)
    .option('--scope <NAME>', 'a scope this anchor serves (repeatable)', collect)
    .option(
      '--genesis <FILE>',
      'found a governed scope from this genesis file (aq scope create; repeatable; the scope is claimed too)',
      collect,
    )
    .option(
      '--bootstrap-expect <N>',
      `form a new scope group once N anchors claiming it have met (default: ${d.bootstrapExpect})`,
    )
    .option(
      '--log-level <LEVEL>',
      `fatal, error, warn, info, debug, trace or silent (default: ${d.logLevel})`,
    )
    .option(
      '--cache-mb <MB>',
      `memory for caches in MiB: RocksDB's block cache and decoded name records (default: ${d.cacheMb})`,
    )
    .option(
      '--snapshot-count <N>',
      `applied entries between compactions of a scope's Raft log (default: ${d.snapshotCount})`,
    )
    .action(
      lazy(async (flags: AnchorFlags) => {
        const { anchorStart } = await import('./anchor-start.ts');
        return anchorStart(flags, io);
      }),
    );

  // ---- aq dev ----
  program
    .command('dev')
    .description(
      'start a local region on loopback: a scope group of 3 anchors (eu-central) and two single-anchor ' +
        'scopes (us-east, ap-south), with sample services; print every endpoint and serve until Ctrl-C',
    )
    .option('--json', 'print the endpoints as one JSON line first on stdout (the table goes to stderr)')
    .option(
      '--data-dir <DIR>',
      "keep the anchors' data here (default: a temporary directory, removed on exit)",
    )
    .action(
      lazy(async (flags: { json?: boolean; dataDir?: string }) => {
        const { devCommand } = await import('./dev.ts');
        return devCommand(flags, io);
      }),
    );

  // ---- client commands ----
  const client = (command: Command, timeoutHelp = 'give up after this long (a gRPC deadline)') =>
    command
      .addOption(
        new Option('--anchor <HOST:PORT>', 'the anchor to ask').env('AQ_ANCHOR').default(DEFAULT_ANCHOR),
      )
      .option('--json', 'print the response as JSON (one line; one line per event for watch)')
      .addOption(new Option('--timeout <DURATION>', timeoutHelp).default(DEFAULT_TIMEOUT));

  client(
    program
      .command('register')
      .description('register an instance of a name; prints the receipt the anchor signed')
      .argument('<NAME>', 'the service name, such as eu-central/payments/checkout')
      .requiredOption('--id <ID>', 'the instance id, unique within the name')
      .requiredOption('--address <ADDRESS>', 'the IP address or host name the instance listens on')
      .requiredOption('--port <PORT>', 'the port the instance listens on (0: none)')
      .option('--tag <TAG>', 'a tag (repeatable)', collect)
      .option('--meta <KEY=VALUE>', 'a metadata entry (repeatable)', collect)
      .option(
        '--ttl <DURATION>',
        'turn critical without a heartbeat for this long, such as 10s (default: no check)',
      ),
  ).action(
    lazy(async (name: string, flags: RegisterFlags & ClientFlags, command: Command) =>
      (await import('./commands.ts')).register(name, flags, context(command)),
    ),
  );

  client(
    program
      .command('deregister')
      .description('remove an instance of a name (idempotent)')
      .argument('<NAME>', 'the service name')
      .requiredOption('--id <ID>', 'the instance id'),
  ).action(
    lazy(async (name: string, flags: { id: string } & ClientFlags, command: Command) =>
      (await import('./commands.ts')).deregister(name, flags, context(command)),
    ),
  );

  client(
    program
      .command('heartbeat')
      .description("pass an instance's TTL check")
      .argument('<NAME>', 'the service name')
      .requiredOption('--id <ID>', 'the instance id'),
  ).action(
    lazy(async (name: string, flags: { id: string } & ClientFlags, command: Command) =>
      (await import('./commands.ts')).heartbeat(name, flags, context(command)),
    ),
  );

  client(
    program
      .command('resolve')
      .description('list the instances of a name')
      .argument('<NAME>', 'the service name')
      .option('--stale', "answer from the anchor's local state, without asking the leader")
      .option('--passing', 'only instances whose health is passing'),
  ).action(
    lazy(async (name: string, flags: ReadFlags & { passing?: boolean }, command: Command) =>
      (await import('./commands.ts')).resolve(name, flags, context(command)),
    ),
  );

  client(
    program
      .command('list')
      .description('list the names the anchor serves, with their instance counts')
      .argument('[PREFIX]', 'only names equal to or under this prefix')
      .option('--stale', "answer from the anchor's local state, without asking the leader")
      .option('--limit <N>', 'at most N names (default: all)'),
  ).action(
    lazy(async (prefix: string | undefined, flags: ReadFlags & { limit?: string }, command: Command) =>
      (await import('./commands.ts')).list(prefix, flags, context(command)),
    ),
  );

  client(
    program
      .command('watch')
      .description('print the changes of a name (or of every name under a prefix) until Ctrl-C')
      .argument('<NAME>', 'the service name (a prefix with --prefix)')
      .option('--prefix', 'watch every name under NAME')
      .option('--index <N>', 'start after this index (default: 0, the current state first)'),
    'give up if the anchor cannot be reached within this long (the stream itself has no deadline)',
  ).action(
    lazy(async (name: string, flags: { prefix?: boolean; index?: string } & ClientFlags, command: Command) =>
      (await import('./commands.ts')).watch(name, flags, context(command)),
    ),
  );

  const members = client(
    program
      .command('members')
      .description("show the anchors of a scope's group (see also: aq members remove)")
      .argument('<SCOPE>', 'the scope')
      // Both levels have --anchor/--json/--timeout: after `remove`, they belong to `remove`.
      .enablePositionalOptions(),
  ).action(
    lazy(async (scope: string, flags: ClientFlags, command: Command) =>
      (await import('./commands.ts')).members(scope, flags, context(command)),
    ),
  );
  client(
    members
      .command('remove')
      .description("take an anchor out of a scope's group")
      .argument('<SCOPE>', 'the scope')
      .argument('<ID>', "the anchor's peer id"),
  ).action(
    lazy(async (scope: string, id: string, flags: ClientFlags, command: Command) =>
      (await import('./commands.ts')).removeMember(scope, id, flags, context(command)),
    ),
  );

  // Every command reports its usage errors as a CommandLineError naming itself, so run() can say which
  // command's --help to read.
  const override = (command: Command) => {
    command.exitOverride((error) => {
      throw new CommandLineError(error, command);
    });
    for (const sub of command.commands) override(sub);
  };
  override(program);
  return program;
}

function anchorSource(command: Command): Target['from'] {
  const source = command.getOptionValueSource('anchor');
  return source === 'env' ? 'env' : source === 'cli' ? 'flag' : 'default';
}

/** Runs `aq` with the user's arguments (process.argv without node and the script); returns the exit code. */
export async function run(argv: readonly string[], io: Io = processIo): Promise<ExitCode> {
  let exitCode: ExitCode = EXIT.ok;
  let running: Command | null = null;
  const program = buildProgram(io, {
    running: (command) => {
      running = command;
    },
    exit: (code) => {
      exitCode = code;
    },
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommandLineError) return commanderExit(error, io);
    const debug = process.env.AQ_DEBUG === '1';
    if (
      error instanceof CliError &&
      error.exitCode === EXIT.usage &&
      error.hint === undefined &&
      running !== null
    ) {
      // A mistake the CLI caught itself: name the command and point at its help.
      io.err(`aq: ${commandPath(running).replace(/^aq /, '')}: ${error.message}; ${helpHint(running)}\n`);
      return EXIT.usage;
    }
    io.err(formatError(error, debug));
    return exitCodeOf(error);
  }
}

/** Help and --version end with exit 0; every other commander error is a usage error (exit 2). */
function commanderExit({ error, command }: CommandLineError, io: Io): ExitCode {
  switch (error.code) {
    case 'commander.helpDisplayed':
    case 'commander.version':
      return EXIT.ok;
    case 'commander.help':
      // `aq help register` exits 0; `aq` or `aq anchor` alone printed the help to stderr: a usage error.
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    default: {
      const message = oneLine(error.message.replace(/^error: /, '')).replace(/\.$/, '');
      const where = command.parent === null ? '' : `${commandPath(command).replace(/^aq /, '')}: `;
      io.err(`aq: ${where}${message}; ${helpHint(command)}\n`);
      return EXIT.usage;
    }
  }
}
