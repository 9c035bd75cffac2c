// Tamper tests of a governed scope's lineage (the Evidence 2), with real processes: one anchor
// founded from a genesis (aq keygen, aq scope create, aq anchor start --genesis), a registrar credential,
// registrations signed with --key. Then:
//
//   - the exported log (aq lineage SCOPE --export FILE), checked offline with NO anchor running by
//     `aq verify lineage FILE [--known HEAD]`: passes untouched; a flipped byte, a dropped entry line, two
//     swapped lines, a fork (an export of a diverged copy) and a rollback (an older export) each fail
//     with exit 1 and their failure code;
//   - a copied data dir (what an operator or an attacker with the disk edits before an anchor serves it):
//     the lineage rows of a copy edited through RocksRegistryStore (CRCs stay valid), an anchor started
//     on the copy, and `aq lineage SCOPE --verify` run with the state dir that saw the original's newest
//     tree head: a flipped byte, a dropped entry, two swapped entries, a rollback (an earlier copy) and a
//     fork (the earlier copy, grown differently) are each caught; naive byte flips (a row's bytes without
//     its CRC, a byte of the database files) are caught by the store or healed from the Raft log, never
//     served. The untouched original passes.
//
// Every process is stopped by PID (anchor-harness.ts). LINEAGE_TAMPER_MATRIX=1 prints a table of what
// each case printed (exit code, failure codes) at the end.

import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  type AnchorProcess,
  eventually,
  kill,
  killAll,
  removeDir,
  runAq,
  startAnchorProcess,
  tempDir,
} from './anchor-harness.ts';
import {
  bumpLogIndex,
  copyDir,
  corruptRawRow,
  editLineage,
  entryLine,
  entryLineOf,
  exportLines,
  failureCodes,
  flipOnDisk,
  flipPayloadByte,
  lineBytes,
  registryState,
  renumber,
  writeLines,
} from './lineage-tamper-tools.ts';

const SCOPE = 'eu/payments';
/** Entries: 0 genesis, 1 the registrar credential, 2..6 the first registrations, 7..11 the later ones. */
const EARLY_SIZE = 7;
const FULL_SIZE = 12;

interface TreeHeadJson {
  size: number;
  root: string;
}

describe('lineage tamper: exported logs and copied data dirs (real anchors)', function () {
  this.timeout(120_000);
  let dir: string;
  let anchor: AnchorProcess | null = null;
  let scopeId: string;
  /** The state dir that verified the original (knows its newest tree head). */
  let state: string;
  const file = (name: string) => join(dir, name);
  const matrix: { case: string; exit: number | null; codes: string }[] = [];
  const started = Date.now();

  const aq = (args: string[], stateDir = state) =>
    runAq(args, { AQ_ANCHOR: anchor?.info.grpc ?? '127.0.0.1:1', AQ_STATE_DIR: stateDir });
  const admin = () => ['--key', file('admin.key')];

  async function start(dataDir: string): Promise<AnchorProcess> {
    anchor = await startAnchorProcess({
      dataDir,
      scopes: [],
      extraArgs: ['--genesis', file('genesis.json')],
    });
    return anchor;
  }

  async function stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (anchor !== null) await kill(anchor, signal);
    anchor = null;
  }

  /** Waits until the newest signed tree head covers the whole log, of `size` entries. */
  async function headCovering(size: number): Promise<TreeHeadJson> {
    return eventually(`a signed tree head of size ${size}`, async () => {
      const r = await aq(['lineage', SCOPE, '--json', '--limit', '1', ...admin()]);
      if (r.code !== 0) throw new Error(r.stderr);
      const v = JSON.parse(r.stdout) as { size: number; treeHead: TreeHeadJson | null };
      if (v.size > size) throw new Error(`the log has ${v.size} entries, more than ${size}`);
      return v.size === size && v.treeHead?.size === size ? v.treeHead : undefined;
    });
  }

  async function register(ids: string[], octet: number): Promise<void> {
    for (const [i, id] of ids.entries()) {
      const r = await aq([
        'register',
        `${SCOPE}/api/${id}`,
        '--id',
        id,
        '--address',
        `10.0.${octet}.${i + 1}`,
        '--port',
        '8080',
        '--key',
        file('client.key'),
      ]);
      expect(r.code, r.stderr).to.equal(0);
    }
  }

  /** A copy of the state dir that verified the original (so one case cannot change what another knows). */
  let stateCopies = 0;
  function stateCopy(): string {
    const to = file(`state-${++stateCopies}`);
    copyDir(state, to);
    return to;
  }

  function record(name: string, r: { code: number | null; stderr: string }, command: string): string[] {
    const codes = failureCodes(r.stderr, command);
    matrix.push({ case: name, exit: r.code, codes: codes.join(', ') || '-' });
    return codes;
  }

  /** `aq verify lineage FILE [--known HEAD]`, offline. */
  async function verifyFile(name: string, path: string, known?: string) {
    expect(anchor, 'offline checks run with no anchor').to.equal(null);
    const r = await aq(['verify', 'lineage', path, ...(known ? ['--known', known] : [])]);
    const codes = record(`export: ${name}`, r, 'verify lineage');
    expect(r.stderr).to.not.match(/\n\s+at /);
    return { ...r, codes };
  }

  /** `aq lineage SCOPE --verify` against the anchor now running, with a copy of the state dir. */
  async function verifyOnline(name: string) {
    const r = await aq(['lineage', SCOPE, '--verify', ...admin()], stateCopy());
    const codes = record(`data dir: ${name}`, r, 'lineage');
    expect(r.stderr).to.not.match(/\n\s+at /);
    return { ...r, codes };
  }

  /** Starts an anchor on a tampered copy, runs --verify, stops it. */
  async function onCopy(name: string, dataDir: string) {
    await start(dataDir);
    try {
      return await verifyOnline(name);
    } finally {
      await stop('SIGKILL');
    }
  }

  const knownHead = () => join(state, 'tree-heads', `${scopeId}.json`);

  before(async () => {
    dir = await tempDir('lineage-tamper');
    state = file('state');
    const dataDir = file('anchor');
    for (const key of [join(dataDir, 'anchor.key'), file('admin.key'), file('client.key')]) {
      const r = await runAq(['keygen', '--out', key]);
      expect(r.code, r.stderr).to.equal(0);
    }
    const created = await runAq([
      'scope',
      'create',
      SCOPE,
      '--founder',
      join(dataDir, 'anchor.key'),
      '--admin',
      file('admin.key'),
      '--sign',
      join(dataDir, 'anchor.key'),
      '--sign',
      file('admin.key'),
      '--out',
      file('genesis.json'),
      '--json',
    ]);
    expect(created.code, created.stderr).to.equal(0);
    scopeId = (JSON.parse(created.stdout) as { scopeId: string }).scopeId;
    await start(dataDir);
    const issued = await aq([
      'credential',
      'issue',
      SCOPE,
      '--role',
      'registrar',
      '--subject',
      file('client.key'),
      '--prefix',
      `${SCOPE}/api/`,
      ...admin(),
    ]);
    expect(issued.code, issued.stderr).to.equal(0);

    // The early state: 7 entries, verified (the state dir remembers its head), exported; then a copy of
    // the data dir taken with the anchor stopped.
    await register(['a1', 'a2', 'a3', 'a4', 'a5'], 1);
    await headCovering(EARLY_SIZE);
    const first = await aq(['lineage', SCOPE, '--verify', ...admin()]);
    expect(first.code, first.stderr).to.equal(0);
    expect(first.stdout).to.match(/remembered the tree head/);
    const early = await aq(['lineage', SCOPE, '--export', file('early.jsonl'), ...admin()]);
    expect(early.code, early.stderr).to.equal(0);
    await stop();
    copyDir(dataDir, file('early'));

    // The full state: 5 more registrations, verified against the early head, exported.
    await start(dataDir);
    await register(['b1', 'b2', 'b3', 'b4', 'b5'], 2);
    await headCovering(FULL_SIZE);
    const second = await aq(['lineage', SCOPE, '--verify', ...admin()]);
    expect(second.code, second.stderr).to.equal(0);
    expect(second.stdout).to.include(`consistent with the tree head of size ${EARLY_SIZE} seen before`);
    mkdirSync(file('heads'));
    copyFileSync(knownHead(), file('heads/full.json'));
    const exported = await aq(['lineage', SCOPE, '--export', file('full.jsonl'), ...admin()]);
    expect(exported.code, exported.stderr).to.equal(0);
    expect(exported.stdout).to.include(`wrote ${FULL_SIZE} entries and 1 tree head(s)`);
  });

  after(async () => {
    await killAll();
    if (process.env.LINEAGE_TAMPER_MATRIX === '1' && matrix.length > 0) {
      const w = Math.max(...matrix.map((m) => m.case.length));
      const rows = matrix.map((m) => `  ${m.case.padEnd(w)}  exit ${String(m.exit)}  ${m.codes}`);
      console.log(
        `\n  tamper matrix (${((Date.now() - started) / 1000).toFixed(1)} s):\n${rows.join('\n')}\n`,
      );
    }
    if (dir !== undefined) await removeDir(dir);
  });

  // ---- the original, online ----

  it('the untouched original passes --verify against the head it remembered (0)', async () => {
    const r = await verifyOnline('untouched original');
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include(`consistent with the tree head of size ${FULL_SIZE} seen before`);
    // Copies of the stopped original, for the data dir cases below.
    await stop();
    for (const name of [
      't-flip',
      't-drop',
      't-drop-renumber',
      't-swap',
      't-swap-renumber',
      't-raw',
      't-wal',
      't-sst',
    ])
      copyDir(file('anchor'), file(name));
  });

  // ---- the exported log, offline (no anchor running) ----

  it('export: the untouched log passes, with and without the known head (0)', async () => {
    const plain = await verifyFile('untouched', file('full.jsonl'));
    expect(plain.code, plain.stderr).to.equal(0);
    expect(plain.stdout).to.match(new RegExp(`${FULL_SIZE} entries, 1 tree head\\(s\\), every check passed`));
    const known = await verifyFile(
      'untouched, --known its head',
      file('full.jsonl'),
      file('heads/full.json'),
    );
    expect(known.code, known.stderr).to.equal(0);
  });

  it('export: a flipped payload byte (1, bad-signature + tree-head-mismatch)', async () => {
    const lines = exportLines(file('full.jsonl'));
    const at = entryLine(lines, 4);
    lines[at] = entryLineOf(flipPayloadByte(lineBytes(lines[at] as string)));
    writeLines(file('flip.jsonl'), lines);
    const r = await verifyFile('flip a payload byte', file('flip.jsonl'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(
      new RegExp(`^aq: verify lineage: bad-signature: line ${at + 1}: entry 4: `, 'm'),
    );
    expect(r.codes).to.include('tree-head-mismatch');
  });

  it('export: a flipped byte outside the signed bytes (the log index) (1, tree-head-mismatch)', async () => {
    const lines = exportLines(file('full.jsonl'));
    const at = entryLine(lines, 4);
    lines[at] = entryLineOf(bumpLogIndex(lineBytes(lines[at] as string)));
    writeLines(file('logindex.jsonl'), lines);
    const r = await verifyFile('change an entry’s log index (unsigned)', file('logindex.jsonl'));
    expect(r.code).to.equal(1);
    expect(r.codes).to.deep.equal(['tree-head-mismatch']);
  });

  it('export: a dropped entry line (1, gap)', async () => {
    const lines = exportLines(file('full.jsonl'));
    lines.splice(entryLine(lines, 4), 1);
    writeLines(file('drop.jsonl'), lines);
    const r = await verifyFile('drop an entry line', file('drop.jsonl'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^aq: verify lineage: gap: entry 4 is missing /m);
  });

  it('export: two swapped entry lines (1, out-of-order)', async () => {
    const lines = exportLines(file('full.jsonl'));
    const a = entryLine(lines, 4);
    const b = entryLine(lines, 8);
    [lines[a], lines[b]] = [lines[b] as string, lines[a] as string];
    writeLines(file('swap.jsonl'), lines);
    const r = await verifyFile('swap two entry lines', file('swap.jsonl'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^aq: verify lineage: out-of-order: line \d+: entry 4 comes after entry 8 /m);
  });

  it('export: two entry lines swapped and renumbered (1, tree-head-mismatch)', async () => {
    const lines = exportLines(file('full.jsonl'));
    const a = entryLine(lines, 4);
    const b = entryLine(lines, 8);
    const [la, lb] = [lines[a] as string, lines[b] as string];
    lines[a] = entryLineOf(renumber(lineBytes(lb), 4));
    lines[b] = entryLineOf(renumber(lineBytes(la), 8));
    writeLines(file('swap-renumber.jsonl'), lines);
    const r = await verifyFile('swap two entries, renumbered', file('swap-renumber.jsonl'));
    expect(r.code).to.equal(1);
    expect(r.codes).to.deep.equal(['tree-head-mismatch']);
  });

  it('export: an entry dropped and the rest renumbered (1, truncated); a rewritten head is then needed', async () => {
    // Positions are not signed: renumbered entries keep valid signatures, only the signed head (of 12
    // entries, over the original order) gives the rewrite away.
    const lines = exportLines(file('full.jsonl'));
    const at = entryLine(lines, 4);
    lines.splice(at, 1);
    for (let i = at; i < lines.length; i++) {
      const line = lines[i] as string;
      if (line.startsWith('{"entry"')) lines[i] = entryLineOf(renumber(lineBytes(line), i - 1));
    }
    writeLines(file('drop-renumber.jsonl'), lines);
    const r = await verifyFile('drop an entry, renumber the rest', file('drop-renumber.jsonl'));
    expect(r.code).to.equal(1);
    expect(r.codes).to.deep.equal(['truncated']);
  });

  it('export: an older export checked against a newer known head (1, rollback)', async () => {
    const alone = await verifyFile('older export, no --known', file('early.jsonl'));
    expect(alone.code, alone.stderr).to.equal(0);
    const r = await verifyFile(
      'older export, --known the newer head',
      file('early.jsonl'),
      file('heads/full.json'),
    );
    expect(r.code).to.equal(1);
    expect(r.codes).to.deep.equal(['rollback']);
    expect(r.stderr).to.match(
      new RegExp(
        `rollback: .* has size ${EARLY_SIZE}, older than the tree head of size ${FULL_SIZE} seen before`,
      ),
    );
  });

  // A rewritten export that carries no tree head at all: the entries' signatures do not cover their
  // position, so an export with one registration dropped, the rest renumbered and the head line removed
  // would verify entry by entry. Found by this test; the CLI now requires a signed tree head (no-tree-head).
  it('export: dropped + renumbered with its head removed fails (1, no-tree-head); with --known (1, rollback)', async () => {
    const lines = exportLines(file('drop-renumber.jsonl')).filter((l) => !l.startsWith('{"treeHead"'));
    writeLines(file('drop-renumber-headless.jsonl'), lines);
    const r = await verifyFile(
      'drop + renumber + strip heads, no --known',
      file('drop-renumber-headless.jsonl'),
    );
    expect(r.code).to.equal(1);
    expect(r.codes).to.include('no-tree-head');
    const known = await verifyFile(
      'drop + renumber + strip heads, --known',
      file('drop-renumber-headless.jsonl'),
      file('heads/full.json'),
    );
    expect(known.code).to.equal(1);
    expect(known.codes).to.include('rollback');
  });

  // ---- copied data dirs, served by an anchor, checked by --verify with the remembered head ----

  it('data dir: a flipped byte in an entry row (1, bad-signature + tree-head-mismatch + inconsistent)', async () => {
    await editLineage(file('t-flip'), SCOPE, (rows) => rows.setEntry(4, flipPayloadByte(rows.entry(4))));
    const r = await onCopy('flip a byte in entry row 4', file('t-flip'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^aq: lineage: bad-signature: line \d+: entry 4: /m);
    expect(r.codes).to.include.members(['tree-head-mismatch', 'inconsistent']);
  });

  it('data dir: an entry dropped (later rows shifted down, size decremented) (1, gap)', async () => {
    await editLineage(file('t-drop'), SCOPE, (rows) => {
      const size = rows.size;
      for (let i = 4; i < size - 1; i++) rows.setEntry(i, rows.entry(i + 1));
      rows.deleteEntry(size - 1);
      rows.setSize(size - 1);
    });
    const r = await onCopy('drop entry 4 (shift, size-1)', file('t-drop'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^aq: lineage: gap: entry 4 is missing /m);
    expect(r.codes).to.deep.equal(['gap']);
  });

  it('data dir: an entry dropped and the later rows renumbered (1, truncated)', async () => {
    await editLineage(file('t-drop-renumber'), SCOPE, (rows) => {
      const size = rows.size;
      for (let i = 4; i < size - 1; i++) rows.setEntry(i, renumber(rows.entry(i + 1), i));
      rows.deleteEntry(size - 1);
      rows.setSize(size - 1);
    });
    const r = await onCopy('drop entry 4, renumber the rest', file('t-drop-renumber'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(
      new RegExp(
        `^aq: lineage: truncated: line \\d+: signed tree head claims ${FULL_SIZE} entries but the file has only ${FULL_SIZE - 1} `,
        'm',
      ),
    );
  });

  it('data dir: two entry rows swapped (1, out-of-order)', async () => {
    await editLineage(file('t-swap'), SCOPE, (rows) => {
      const a = rows.entry(4);
      rows.setEntry(4, rows.entry(8));
      rows.setEntry(8, a);
    });
    const r = await onCopy('swap entry rows 4 and 8', file('t-swap'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^aq: lineage: out-of-order: line \d+: entry 4 comes after entry 8 /m);
    // The verifier places entries by the index they claim: the tree over them is the original one.
    expect(r.codes).to.deep.equal(['out-of-order']);
  });

  it('data dir: two entry rows swapped and renumbered (1, tree-head-mismatch + inconsistent)', async () => {
    await editLineage(file('t-swap-renumber'), SCOPE, (rows) => {
      const a = rows.entry(4);
      rows.setEntry(4, renumber(rows.entry(8), 4));
      rows.setEntry(8, renumber(a, 8));
    });
    const r = await onCopy('swap entry rows 4 and 8, renumbered', file('t-swap-renumber'));
    expect(r.code).to.equal(1);
    expect(r.codes).to.deep.equal(['inconsistent', 'tree-head-mismatch']);
  });

  it('data dir: a naive byte flip of a stored row (CRC not fixed) is refused by the store, never served', async () => {
    const key = await corruptRawRow(file('t-raw'), SCOPE, 4);
    await start(file('t-raw'));
    try {
      const r = await aq(['lineage', SCOPE, '--verify', ...admin()], stateCopy());
      matrix.push({
        case: 'data dir: naive flip of row bytes (CRC stale)',
        exit: r.code,
        codes: r.stderr.trim().split('\n')[0] ?? '',
      });
      expect(r.code).to.not.equal(0);
      expect(r.stdout).to.not.match(/every check passed/);
      expect(r.stderr).to.not.match(/\n\s+at /);
      const logs = anchor?.logs.join('\n') ?? '';
      expect(logs).to.include(`corrupt value under key ${key}: crc mismatch`);
    } finally {
      await stop('SIGKILL');
    }
  });

  it('data dir: a byte flipped in the registry write-ahead log is not served (healed from the Raft log)', async () => {
    // The later entries (written after the last restart) are in the registry's write-ahead log.
    const changed = flipOnDisk(file('t-wal'), 'log', 0.5);
    // Opening the database recovers it as the anchor would: the registry lost its later writes.
    const original = await registryState(file('anchor'), SCOPE);
    const damaged = await registryState(file('t-wal'), SCOPE);
    expect(damaged.appliedIndex).to.be.lessThan(original.appliedIndex);
    const a = await start(file('t-wal'));
    try {
      const r = await verifyOnline(`flip registry/${changed}`);
      // RocksDB's own record CRC catches the flip: point-in-time recovery drops the log from the damaged
      // record on, the registry resumes at an older applied index and the Raft log replays the rest. What
      // is served is exactly the original.
      expect(r.code, `${r.stderr}\n${a.logs.join('\n')}`).to.equal(0);
      expect(r.stdout).to.include(`consistent with the tree head of size ${FULL_SIZE} seen before`);
      const again = await aq(
        ['lineage', SCOPE, '--export', file('wal.jsonl'), ...admin()],
        file('state-none'),
      );
      expect(again.code, again.stderr).to.equal(0);
      const served = exportLines(file('wal.jsonl')).filter((l) => l.startsWith('{"entry"'));
      const exported = exportLines(file('full.jsonl')).filter((l) => l.startsWith('{"entry"'));
      expect(served).to.deep.equal(exported);
      matrix.push({
        case: '  (the flip had rolled the registry back to)',
        exit: null,
        codes: `applied index ${damaged.appliedIndex} of ${original.appliedIndex}, lineage size ${damaged.lineageSize} of ${original.lineageSize}`,
      });
    } finally {
      await stop('SIGKILL');
    }
  });

  it('data dir: a byte flipped in a registry table file: the anchor refuses to run', async () => {
    const changed = flipOnDisk(file('t-sst'), 'sst', 0.25);
    const a = await start(file('t-sst'));
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      a.exited,
      new Promise<string>((r) => {
        timer = setTimeout(() => r('running'), 15_000);
      }),
    ]);
    clearTimeout(timer);
    anchor = null;
    const said = a.logs.join('\n');
    const why = /Corruption: [^\n]*?(?= in \/|$)/m.exec(said)?.[0] ?? said.slice(-200);
    matrix.push({
      case: `data dir: flip registry/${changed}`,
      exit: null,
      codes: `anchor exit ${code}: ${why}`,
    });
    await kill(a, 'SIGKILL');
    expect(code, said).to.not.equal('running');
    expect(code).to.not.equal(0);
    expect(said).to.match(/Corruption: block checksum mismatch/);
  });

  it('data dir: an earlier copy served after the newer head was seen (1, rollback)', async () => {
    await start(file('early'));
    const r = await verifyOnline('earlier copy (rollback)');
    expect(r.code).to.equal(1);
    expect(r.codes).to.deep.equal(['rollback']);
    // The anchor keeps running for the fork below.
  });

  it('data dir: the earlier copy grown differently, signing a head of the same size (1, equivocation)', async () => {
    await register(['c1', 'c2', 'c3', 'c4', 'c5'], 3);
    const head = await headCovering(FULL_SIZE);
    const original = JSON.parse(readFileSync(file('heads/full.json'), 'utf8')) as TreeHeadJson;
    expect(head.root).to.not.equal(original.root);
    const r = await verifyOnline('earlier copy grown differently (fork)');
    expect(r.code).to.equal(1);
    expect(r.codes).to.include('equivocation');
    expect(r.stderr).to.match(new RegExp(`equivocation: .*tree head of size ${FULL_SIZE} has root`));
    // The fork's own export (a state dir that never saw the original, so it carries only the fork's head).
    const exported = await aq(
      ['lineage', SCOPE, '--export', file('fork.jsonl'), ...admin()],
      file('state-fork'),
    );
    expect(exported.code, exported.stderr).to.equal(0);
    await stop();
  });

  it('export: the fork’s export passes alone, fails with --known the original’s head (1, equivocation)', async () => {
    const alone = await verifyFile('fork export, no --known', file('fork.jsonl'));
    expect(alone.code, alone.stderr).to.equal(0);
    const r = await verifyFile(
      'fork export, --known the original head',
      file('fork.jsonl'),
      file('heads/full.json'),
    );
    expect(r.code).to.equal(1);
    expect(r.codes).to.include('equivocation');
  });
});
