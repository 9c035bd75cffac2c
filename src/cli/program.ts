// The `aq` command tree (commander) and run(argv): parse, dispatch to a command, turn every way a command
// can end into an exit code. Commands are imported lazily from their actions, so `aq --help` and usage
// errors load only commander and this file's few pure imports.

import { readFileSync } from 'node:fs';
import { Command, type CommanderError, Option } from 'commander';
import { DEFAULT_ANCHOR_CONFIG } from '../anchor/config.ts';
import type { AnchorFlags } from './anchor-config.ts';
import type { ClientFlags, CommandContext, Io, SignedFlags } from './commands.ts';
import { CliError, EXIT, type ExitCode, exitCodeOf, formatError, oneLine } from './errors.ts';
import type { IssueFlags, PolicyTestFlags, QuotaSetFlags, ScopeCreateFlags } from './governance-commands.ts';
import type { LineageFlags } from './lineage-commands.ts';
import { collect } from './parse.ts';
import { DEFAULT_ANCHOR, DEFAULT_TIMEOUT, type RegisterFlags, type Target } from './requests.ts';
import type { KeyFlags } from './signing.ts';

/**
 * The roles of the authority taxonomy, for `aq credential issue --help` (src/governance/credential.ts's
 * ROLE_DESCRIPTIONS, inlined so that help loads nothing; a unit test keeps them equal).
 */
export const ROLE_HELP = [
  ['scope-admin', 'administers the scope: credentials, policy, quota (within its prefix)'],
  ['anchor', 'an anchor of the scope: admits changes and signs lineage and tree heads'],
  ['registrar', 'registers and deregisters instances under its prefix (e.g. a Nomad client)'],
  ['resolver', 'resolves names under its prefix'],
  ['auditor', 'reads the lineage log'],
]
  .map(([role, what]) => `  ${(role as string).padEnd(12)} ${what}`)
  .join('\n');

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
Exit codes: 0 success, 1 failure (also: a verification that failed), 2 usage
error, 3 REFUSE (denied by a governed scope: unauthenticated, unknown or revoked
credential, wrong prefix, policy, quota; the reason code is in the message),
4 DEFER (cannot decide now: anchor or leader unreachable, not committed in time,
or deferred by policy or quota; retrying is safe).
Environment: AQ_ANCHOR (the anchor client commands ask, as --anchor), AQ_KEY and
AQ_CREDENTIAL (as --key and --credential), AQ_STATE_DIR (where aq lineage
--verify keeps the tree heads it saw; default ~/.config/aq), AQ_DEBUG=1 (stack
traces of internal errors).`,
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
    .option(
      '--grpc-tls <HOST:PORT>',
      'client gRPC API over TLS with client certificates: credentialed clients read without signing each request (default: off)',
    )
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
  // A governed scope admits only signed requests: --key signs them with a credential's key (signing.ts).
  const signed = (command: Command) =>
    command
      .addOption(
        new Option(
          '--key <FILE>',
          "sign the request with this key file (aq keygen): a governed scope admits only requests signed with a credential's key",
        ).env('AQ_KEY'),
      )
      .addOption(
        new Option(
          '--credential <ID>',
          "present this credential (64 hex; default: the key holder's credential that fits the request)",
        ).env('AQ_CREDENTIAL'),
      );
  // A governance change is signed by an admin: --key is required (or AQ_KEY).
  const admin = (command: Command) =>
    command
      .addOption(
        new Option('--key <FILE>', "the admin's key file: its scope-admin credential signs the change")
          .env('AQ_KEY')
          .makeOptionMandatory(),
      )
      .addOption(
        new Option(
          '--credential <ID>',
          "present this scope-admin credential (64 hex; default: the key's)",
        ).env('AQ_CREDENTIAL'),
      );

  signed(
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
        )
        .option(
          '--receipt <FILE>',
          'also write the receipt to FILE, with a signed tree head and the inclusion proof of its lineage entry (aq verify receipt FILE checks it offline)',
        ),
    ),
  ).action(
    lazy(async (name: string, flags: RegisterFlags & SignedFlags & { receipt?: string }, command: Command) =>
      (await import('./commands.ts')).register(name, flags, context(command)),
    ),
  );

  signed(
    client(
      program
        .command('deregister')
        .description('remove an instance of a name (idempotent)')
        .argument('<NAME>', 'the service name')
        .requiredOption('--id <ID>', 'the instance id'),
    ),
  ).action(
    lazy(async (name: string, flags: { id: string } & SignedFlags, command: Command) =>
      (await import('./commands.ts')).deregister(name, flags, context(command)),
    ),
  );

  signed(
    client(
      program
        .command('heartbeat')
        .description("pass an instance's TTL check")
        .argument('<NAME>', 'the service name')
        .requiredOption('--id <ID>', 'the instance id'),
    ),
  ).action(
    lazy(async (name: string, flags: { id: string } & SignedFlags, command: Command) =>
      (await import('./commands.ts')).heartbeat(name, flags, context(command)),
    ),
  );

  signed(
    client(
      program
        .command('resolve')
        .description('list the instances of a name')
        .argument('<NAME>', 'the service name')
        .option('--stale', "answer from the anchor's local state, without asking the leader")
        .option('--passing', 'only instances whose health is passing'),
    ),
  ).action(
    lazy(async (name: string, flags: ReadFlags & SignedFlags & { passing?: boolean }, command: Command) =>
      (await import('./commands.ts')).resolve(name, flags, context(command)),
    ),
  );

  signed(
    client(
      program
        .command('list')
        .description(
          'list the names the anchor serves, with their instance counts (--key signs for the scope owning PREFIX)',
        )
        .argument('[PREFIX]', 'only names equal to or under this prefix')
        .option('--stale', "answer from the anchor's local state, without asking the leader")
        .option('--limit <N>', 'at most N names (default: all)'),
    ),
  ).action(
    lazy(
      async (
        prefix: string | undefined,
        flags: ReadFlags & SignedFlags & { limit?: string },
        command: Command,
      ) => (await import('./commands.ts')).list(prefix, flags, context(command)),
    ),
  );

  signed(
    client(
      program
        .command('watch')
        .description('print the changes of a name (or of every name under a prefix) until Ctrl-C')
        .argument('<NAME>', 'the service name (a prefix with --prefix)')
        .option('--prefix', 'watch every name under NAME')
        .option('--index <N>', 'start after this index (default: 0, the current state first)'),
      'give up if the anchor cannot be reached within this long (the stream itself has no deadline)',
    ),
  ).action(
    lazy(async (name: string, flags: { prefix?: boolean; index?: string } & SignedFlags, command: Command) =>
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

  // ---- governance: keys, scopes, credentials, policy, quota ----
  program
    .command('keygen')
    .description(
      'create a new ed25519 key file (mode 0600): a founding anchor key (use it as <data-dir>/anchor.key), an admin key or a client key; prints its public key and peer id',
    )
    .requiredOption('--out <FILE>', 'where to write the key (an existing file is never overwritten)')
    .option('--json', 'print {file, publicKey, peerId} as one JSON line')
    .action(
      lazy(async (flags: { out: string; json?: boolean }) =>
        (await import('./governance-commands.ts')).keygen(flags, io),
      ),
    );

  const quotaFlags = (command: Command) =>
    command
      .option('--max-instances <N>', 'instances in the whole scope at most')
      .option('--max-names <N>', 'distinct names in the whole scope at most')
      .option(
        '--prefix-max <PREFIX=N>',
        'instances under PREFIX at most, such as eu/payments/=100 (repeatable)',
        collect,
      )
      .option('--rate <N>', 'registrations per second per principal at most')
      .option('--over <OUTCOME>', 'what exceeding a budget yields: refuse (default) or defer');

  const scope = program
    .command('scope')
    .description('create, sign and show governed scopes (a scope is founded from a signed genesis file)');
  quotaFlags(
    scope
      .command('create')
      .description(
        'write the genesis file of a governed scope: its founding anchors, admins, policy and quota. Every founder and admin signs it (--sign here, or aq scope sign), then the founding anchors start with aq anchor start --genesis FILE. KEY is a 64-hex public key, a peer id (12D3KooW…) or a key file.',
      )
      .argument('<NAME>', 'the scope name: the prefix of the names it owns, such as eu/payments')
      .option('--founder <KEY>', 'a founding anchor (repeatable; at least one)', collect)
      .option(
        '--admin <KEY>',
        'an admin: issues credentials, sets policy and quota (repeatable; at least one)',
        collect,
      )
      .option(
        '--policy <FILE>',
        'the initial policy (HCL or JSON; default: refuse what no credential role grants)',
      ),
  )
    .option('--sign <KEYFILE>', "sign with this founder's or admin's key file (repeatable)", collect)
    .requiredOption('--out <FILE>', 'where to write the genesis file (an existing file is never overwritten)')
    .option('--json', 'print {file, scope, scopeId, missing} as one JSON line')
    .action(
      lazy(async (name: string, flags: ScopeCreateFlags) =>
        (await import('./governance-commands.ts')).scopeCreate(name, flags, io),
      ),
    );
  scope
    .command('sign')
    .description("add a founder's or admin's signature to a genesis file, in place")
    .argument('<FILE>', 'the genesis file (aq scope create)')
    .addOption(new Option('--key <KEYFILE>', 'the signing key file').env('AQ_KEY').makeOptionMandatory())
    .option('--json', 'print {file, scope, scopeId, missing} as one JSON line')
    .action(
      lazy(async (file: string, flags: { key: string; json?: boolean }) =>
        (await import('./governance-commands.ts')).scopeSign(file, flags, io),
      ),
    );
  client(
    scope
      .command('show')
      .description('show a scope: its id, founders and admins, policy, quota and lineage size')
      .argument('<SCOPE>', 'the scope name'),
  ).action(
    lazy(async (name: string, flags: ClientFlags, command: Command) =>
      (await import('./governance-commands.ts')).scopeShow(name, flags, context(command)),
    ),
  );

  const credential = program
    .command('credential')
    .description(
      "issue, revoke and list a scope's credentials (roles: scope-admin, anchor, registrar, resolver, auditor)",
    );
  admin(
    client(
      credential
        .command('issue')
        .description(
          'issue a credential: a key may act in a role on the names under a prefix, for a time; prints its id',
        )
        .argument('<SCOPE>', 'the scope')
        .requiredOption('--role <ROLE>', 'scope-admin, anchor, registrar, resolver or auditor (see below)')
        .requiredOption('--subject <KEY>', "the holder's public key: 64 hex, a peer id or a key file")
        .requiredOption(
          '--prefix <PREFIX>',
          'the names it covers start with this ("" for every name of the scope)',
        )
        .option(
          '--not-before <TIME>',
          'valid from this time (now, 2026-03-01, an ISO date-time; default: now)',
        )
        .option(
          '--expires <SPAN|TIME>',
          'valid for this long after --not-before (90d, 12h), until a time, or never (default: 90d)',
        )
        .addHelpText('after', `\nRoles:\n${ROLE_HELP}`),
    ),
  ).action(
    lazy(async (name: string, flags: IssueFlags, command: Command) =>
      (await import('./governance-commands.ts')).credentialIssue(name, flags, context(command)),
    ),
  );
  admin(
    client(
      credential
        .command('revoke')
        .description('revoke a credential: from its log index on, every anchor of the scope refuses it')
        .argument('<SCOPE>', 'the scope')
        .argument('<ID>', 'the credential id (64 hex, or a unique prefix of at least 4)')
        .option('--reason <TEXT>', 'why (recorded in the lineage)'),
    ),
  ).action(
    lazy(
      async (
        name: string,
        id: string,
        flags: ClientFlags & KeyFlags & { key: string; reason?: string },
        command: Command,
      ) => (await import('./governance-commands.ts')).credentialRevoke(name, id, flags, context(command)),
    ),
  );
  client(
    credential
      .command('show')
      .description('show one credential')
      .argument('<SCOPE>', 'the scope')
      .argument('<ID>', 'the credential id (64 hex, or a unique prefix of at least 4)'),
  ).action(
    lazy(async (name: string, id: string, flags: ClientFlags, command: Command) =>
      (await import('./governance-commands.ts')).credentialShow(name, id, flags, context(command)),
    ),
  );
  client(
    credential
      .command('list')
      .description("list a scope's credentials, those the genesis grants and revoked ones included")
      .argument('<SCOPE>', 'the scope'),
  ).action(
    lazy(async (name: string, flags: ClientFlags, command: Command) =>
      (await import('./governance-commands.ts')).credentialList(name, flags, context(command)),
    ),
  );

  const policy = program.command('policy').description("read, set and test a scope's policy (HCL or JSON)");
  client(
    policy
      .command('get')
      .description('print the canonical JSON of the policy in force')
      .argument('<SCOPE>', 'the scope'),
  ).action(
    lazy(async (name: string, flags: ClientFlags, command: Command) =>
      (await import('./governance-commands.ts')).policyGet(name, flags, context(command)),
    ),
  );
  admin(
    client(
      policy
        .command('set')
        .description(
          'replace the policy with the one in FILE (checked first: a bad file is a usage error naming its line)',
        )
        .argument('<SCOPE>', 'the scope')
        .argument('<FILE>', 'the policy file (HCL, or JSON when it starts with {)'),
    ),
  ).action(
    lazy(
      async (name: string, file: string, flags: ClientFlags & KeyFlags & { key: string }, command: Command) =>
        (await import('./governance-commands.ts')).policySet(name, file, flags, context(command)),
    ),
  );
  policy
    .command('test')
    .description(
      "decide a request against a policy file offline, as the scope's anchors would for a valid credential: prints the outcome, the deciding rule and the reason; exits 0 allow, 3 refuse, 4 defer",
    )
    .argument('<FILE>', 'the policy file (HCL or JSON)')
    .requiredOption(
      '--role <ROLE>',
      "the credential's role: scope-admin, anchor, registrar, resolver or auditor",
    )
    .requiredOption('--action <ACTION>', 'register, deregister, resolve, read-lineage or administer')
    .requiredOption('--name <NAME>', 'the name asked about')
    .option('--tag <TAG>', 'a tag the request carries (repeatable)', collect)
    .option('--principal <HEX>', "the requester's public key (64 hex; default: a key no rule names)")
    .option('--from-scope <ID>', "the requester's scope: local (default) or a scope id")
    .option('--json', 'print {outcome, attest, rule, reason} as one JSON line')
    .action(
      lazy(async (file: string, flags: PolicyTestFlags) =>
        (await import('./governance-commands.ts')).policyTest(file, flags, io),
      ),
    );

  const quota = program
    .command('quota')
    .description("read and set a scope's quota (budgets of instances, names, rate)");
  client(
    quota
      .command('get')
      .description('print the canonical JSON of the quota in force')
      .argument('<SCOPE>', 'the scope'),
  ).action(
    lazy(async (name: string, flags: ClientFlags, command: Command) =>
      (await import('./governance-commands.ts')).quotaGet(name, flags, context(command)),
    ),
  );
  admin(
    client(
      quotaFlags(
        quota
          .command('set')
          .description('replace the quota with the budgets given (those not given become unlimited)')
          .argument('<SCOPE>', 'the scope'),
      ),
    ),
  ).action(
    lazy(async (name: string, flags: QuotaSetFlags, command: Command) =>
      (await import('./governance-commands.ts')).quotaSet(name, flags, context(command)),
    ),
  );

  // ---- lineage ----
  signed(
    client(
      program
        .command('lineage')
        .description(
          "show a scope's lineage (its verifiable log of changes) as a table; --verify checks it all, --export writes it to a file for aq verify lineage",
        )
        .argument('<SCOPE>', 'the scope')
        .option('--from <N>', 'start at entry N (default: 0)')
        .option('--limit <N>', 'at most N entries (default: 1000)')
        .option(
          '--verify',
          'fetch every entry and the latest signed tree head and check them offline (signatures, the scope rules, the Merkle root, consistency with the tree head this machine saw last, kept in $AQ_STATE_DIR or ~/.config/aq); exit 1 on any failure',
        )
        .option(
          '--export <FILE>',
          'write every entry and the signed tree heads to FILE (aq verify lineage FILE)',
        )
        .option('--scope-id <ID>', 'the scope id expected (64 hex): anything else fails --verify'),
    ),
  ).action(
    lazy(async (name: string, flags: LineageFlags, command: Command) =>
      (await import('./lineage-commands.ts')).lineage(name, flags, context(command)),
    ),
  );

  const verify = program
    .command('verify')
    .description(
      'check a lineage export or a receipt offline, with no anchor (exit 1 and one line per failure)',
    );
  verify
    .command('lineage')
    .description(
      'check a lineage export (aq lineage SCOPE --export FILE): every entry signature and signer, the scope rules, order and completeness, the signed tree heads against the Merkle root',
    )
    .argument('<FILE>', 'the export file')
    .option('--scope-id <ID>', 'the scope id expected (64 hex)')
    .option(
      '--known <FILE>',
      'tree heads seen before (JSON: one tree head or a list), to catch a rollback or fork',
    )
    .option('--json', 'print the report as one JSON line')
    .action(
      lazy(async (file: string, flags: { scopeId?: string; known?: string; json?: boolean }) =>
        (await import('./lineage-commands.ts')).verifyLineage(file, flags, io),
      ),
    );
  verify
    .command('receipt')
    .description(
      "check a registration receipt (aq register --json or --receipt FILE): the entry's signature, its scope, that it says what the receipt says, and with a tree head and proof that it is in the scope's log",
    )
    .argument('<FILE>', 'the receipt file')
    .option('--scope-id <ID>', 'the scope id expected (64 hex)')
    .option('--genesis <FILE>', "the scope's genesis file: the signers must be its founding anchors")
    .option('--json', 'print the result as one JSON line')
    .action(
      lazy(async (file: string, flags: { scopeId?: string; genesis?: string; json?: boolean }) =>
        (await import('./lineage-commands.ts')).verifyReceipt(file, flags, io),
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
