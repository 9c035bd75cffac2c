import { expect } from 'chai';
import { CliError, EXIT, formatError, usageError } from '../../src/cli/errors.ts';
import { formatResolve, formatWatchEvent, jsonLine, printable, renderTable } from '../../src/cli/output.ts';
import { run } from '../../src/cli/program.ts';
import { capture } from '../support/cli.ts';

describe('cli: output', () => {
  it('renders tables with padded columns and no trailing spaces', () => {
    expect(
      renderTable(
        ['ID', 'PORT', 'TAGS'],
        [
          ['a', '80', ''],
          ['long-id', '8080', 'x'],
        ],
      ),
    ).to.equal('ID       PORT  TAGS\na        80\nlong-id  8080  x\n');
  });

  it('escapes control characters so that a value cannot break a line', () => {
    expect(printable('a\nb\u001b[31m')).to.equal('a\\u{a}b\\u{1b}[31m');
    const out = formatResolve({
      name: 'eu/x',
      scope: 'eu',
      index: 1,
      instances: [
        { id: 'i', address: 'h', port: 1, tags: ['t\nx'], meta: { k: 'v\r' }, health: 'HEALTH_CRITICAL' },
      ],
    });
    expect(out.split('\n')).to.have.length(4); // summary, header, one row, trailing ''
    expect(out).to.include('critical');
  });

  it('states the lineage a resolve answer reflects', () => {
    const out = formatResolve({ name: 'eu/x', scope: 'eu', index: 3, lineageSize: 7, instances: [] });
    expect(out).to.equal('eu/x: no instances (scope eu, index 3, lineage 7)\n');
  });

  it('prints JSON on one line with bytes in base64', () => {
    const line = jsonLine({ receipt: { signature: Buffer.from([0xff, 0x00]) }, raw: new Uint8Array([1]) });
    expect(line).to.equal('{"receipt":{"signature":"/wA="},"raw":"AQ=="}\n');
  });

  it('prints watch events one per line', () => {
    expect(formatWatchEvent({ kind: 'KIND_SYNCED', index: 4 })).to.equal('[4] synced\n');
    expect(
      formatWatchEvent({
        kind: 'KIND_CHANGE',
        name: 'eu/x',
        index: 5,
        instances: [{ id: 'a', address: 'fd00::1', port: 80, health: 'HEALTH_WARNING' }],
      }),
    ).to.equal('[5] change eu/x: a [fd00::1]:80 warning\n');
  });
});

describe('cli: errors on stderr', () => {
  it('prints a CliError as one line with its hint, and never a stack', () => {
    const error = usageError('--port "x"', 'not a port', "see 'aq register --help'");
    expect(formatError(error, false)).to.equal(`aq: --port "x": not a port; see 'aq register --help'\n`);
    const remote = new CliError('register: refused: no', EXIT.refuse, {
      hint: null,
      cause: new Error('grpc'),
    });
    expect(formatError(remote, false)).to.equal('aq: register: refused: no\n');
  });

  it('prints an unexpected error as one line, with the stack only in debug mode', () => {
    const error = new Error('boom\nsecond line');
    expect(formatError(error, false)).to.equal(
      'aq: internal error: boom second line (set AQ_DEBUG=1 for details)\n',
    );
    const debug = formatError(error, true);
    expect(debug.split('\n').length).to.be.greaterThan(2);
    expect(debug).to.include('at ');
  });
});

describe('cli: commander wiring (in-process)', () => {
  it('exits 0 for --help, <cmd> --help, help <cmd> and --version, printing to stdout', async () => {
    for (const argv of [
      ['--help'],
      ['register', '--help'],
      ['help', 'watch'],
      ['members', 'remove', '--help'],
      ['-V'],
    ]) {
      const io = capture();
      expect(await run(argv, io), argv.join(' ')).to.equal(0);
      expect(io.stdout.length, argv.join(' ')).to.be.greaterThan(0);
      expect(io.stderr, argv.join(' ')).to.equal('');
    }
  });

  it('shows every command of the contract, and none of the ones not built yet', async () => {
    const io = capture();
    await run(['--help'], io);
    for (const command of [
      'anchor',
      'dev',
      'register',
      'deregister',
      'heartbeat',
      'resolve',
      'list',
      'watch',
      'members',
      'keygen',
      'scope',
      'credential',
      'policy',
      'quota',
      'lineage',
      'verify',
    ]) {
      expect(io.stdout).to.match(new RegExp(`\\n  ${command} `));
    }
    for (const absent of ['nomad', 'adjacency', 'split', 'migrate']) {
      expect(io.stdout).to.not.match(new RegExp(`\\n  ${absent} `));
    }
    const resolve = capture();
    await run(['resolve', '--help'], resolve);
    expect(resolve.stdout).to.not.include('--attest');
  });

  it("turns commander's usage errors into exit 2 and one line naming the command's help", async () => {
    const cases: [string[], string][] = [
      [['bogus'], "aq: unknown command 'bogus'; see 'aq --help'\n"],
      [
        ['register', 'eu/x'],
        "aq: register: required option '--id <ID>' not specified; see 'aq register --help'\n",
      ],
      [['resolve'], "aq: resolve: missing required argument 'NAME'; see 'aq resolve --help'\n"],
      [['list', '--nope'], "aq: list: unknown option '--nope'; see 'aq list --help'\n"],
    ];
    for (const [argv, stderr] of cases) {
      const io = capture();
      expect(await run(argv, io), argv.join(' ')).to.equal(EXIT.usage);
      expect(io.stderr).to.equal(stderr);
      expect(io.stdout).to.equal('');
    }
  });

  it('exits 2 with the help on stderr when no command is given', async () => {
    const io = capture();
    expect(await run([], io)).to.equal(EXIT.usage);
    expect(io.stderr).to.include('Usage: aq');
  });

  it("reports the CLI's own validation as exit 2 with the command and its help", async () => {
    const io = capture();
    const code = await run(['heartbeat', 'eu/x', '--id', 'has space'], io);
    expect(code).to.equal(EXIT.usage);
    expect(io.stderr).to.match(
      /^aq: heartbeat: invalid --id: instance id "has space" has a character ' ' \(space\)/,
    );
    expect(io.stderr).to.match(/; see 'aq heartbeat --help'\n$/);
  });
});
