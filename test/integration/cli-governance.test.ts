// A governed scope end to end through the real `bin/aq`: keys made with aq keygen, a genesis written and
// signed with aq scope create, one real anchor founded from it (aq anchor start --genesis), credentials
// issued and revoked, signed registrations admitted and refused with their reason codes and exit codes,
// the lineage verified online and offline (and a tampered export caught), a receipt upgraded with an
// inclusion proof and checked offline. Every process is stopped by PID in after().

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  type AnchorProcess,
  eventually,
  killAll,
  removeDir,
  runAq,
  startAnchorProcess,
  tempDir,
} from './anchor-harness.ts';

const SCOPE = 'eu/payments';

describe('cli governance: a governed scope through bin/aq (real anchor)', function () {
  this.timeout(60_000);
  let dir: string;
  let anchor: AnchorProcess;
  let env: NodeJS.ProcessEnv;
  let registrarId: string;
  const file = (name: string) => join(dir, name);
  const aq = (...args: string[]) => runAq(args, env);
  /** One line on stderr, no stack trace. */
  const oneLine = (stderr: string) => {
    expect(stderr.endsWith('\n'), stderr).to.equal(true);
    expect(stderr.trimEnd().split('\n'), stderr).to.have.length(1);
    expect(stderr).to.not.match(/\n\s+at /);
  };

  before(async () => {
    dir = await tempDir('cli-governance');
    const dataDir = file('anchor');
    // The founding anchor's key must exist before the genesis names it; the anchor then uses it.
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
      '--out',
      file('genesis.json'),
    ]);
    expect(created.code, created.stderr).to.equal(0);
    expect(created.stdout).to.match(/still to sign .*\n {2}admin [0-9a-f]{64}/);
    const signed = await runAq(['scope', 'sign', file('genesis.json'), '--key', file('admin.key')]);
    expect(signed.code, signed.stderr).to.equal(0);
    expect(signed.stdout).to.include('every founder and admin has signed');
    anchor = await startAnchorProcess({
      dataDir,
      scopes: [],
      extraArgs: ['--genesis', file('genesis.json')],
    });
    env = { AQ_ANCHOR: anchor.info.grpc, AQ_STATE_DIR: file('state') };
    await eventually('the governed scope to apply its genesis', async () => {
      const r = await aq('scope', 'show', SCOPE, '--json');
      const shown = r.code === 0 ? (JSON.parse(r.stdout) as { governed: boolean; scopeId: string }) : null;
      return shown?.governed === true && shown.scopeId !== '' ? shown : undefined;
    });
  });

  after(async () => {
    await killAll();
    if (dir !== undefined) await removeDir(dir);
  });

  it('issues credentials with the admin key', async () => {
    const issued = await aq(
      'credential',
      'issue',
      SCOPE,
      '--role',
      'registrar',
      '--subject',
      file('client.key'),
      '--prefix',
      `${SCOPE}/api/`,
      '--key',
      file('admin.key'),
      '--json',
    );
    expect(issued.code, issued.stderr).to.equal(0);
    registrarId = (JSON.parse(issued.stdout) as { id: string }).id;
    expect(registrarId).to.match(/^[0-9a-f]{64}$/);
    // The same key may also read the lineage (for its receipts' inclusion proofs and --verify).
    const auditor = await aq(
      'credential',
      'issue',
      SCOPE,
      '--role',
      'auditor',
      '--subject',
      file('client.key'),
      '--prefix',
      '',
      '--key',
      file('admin.key'),
    );
    expect(auditor.code, auditor.stderr).to.equal(0);
    const listed = await aq('credential', 'list', SCOPE);
    expect(listed.code, listed.stderr).to.equal(0);
    expect(listed.stdout).to.match(
      new RegExp(`${registrarId.slice(0, 16)}…\\s+registrar\\s+[0-9a-f]{16}…\\s+eu/payments/api/`),
    );
    // Without the admin key a change is not even attempted.
    const noKey = await aq(
      'credential',
      'issue',
      SCOPE,
      '--role',
      'resolver',
      '--subject',
      file('client.key'),
      '--prefix',
      '',
    );
    expect(noKey.code).to.equal(2);
    oneLine(noKey.stderr);
  });

  it('admits a registration signed with --key and writes an upgraded receipt', async () => {
    const r = await aq(
      'register',
      `${SCOPE}/api/checkout`,
      '--id',
      'i1',
      '--address',
      '10.0.0.1',
      '--port',
      '8080',
      '--key',
      file('client.key'),
      '--receipt',
      file('receipt.json'),
    );
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.equal('');
    const receipt = JSON.parse(readFileSync(file('receipt.json'), 'utf8')) as Record<string, unknown>;
    expect(receipt).to.have.keys('receipt', 'index', 'treeHead', 'proof');
  });

  it('refuses a name outside the credential prefix (3, wrong-prefix) and an unsigned request (3, unauthenticated)', async () => {
    const outside = await aq(
      'register',
      `${SCOPE}/billing`,
      '--id',
      'i1',
      '--address',
      '10.0.0.2',
      '--port',
      '80',
      '--key',
      file('client.key'),
    );
    expect(outside.code).to.equal(3);
    oneLine(outside.stderr);
    expect(outside.stderr).to.match(/^aq: register: refused \(wrong-prefix\): /);
    const unsigned = await aq(
      'register',
      `${SCOPE}/api/checkout`,
      '--id',
      'i2',
      '--address',
      '10.0.0.2',
      '--port',
      '80',
    );
    expect(unsigned.code).to.equal(3);
    oneLine(unsigned.stderr);
    expect(unsigned.stderr).to.match(/^aq: register: refused \(unauthenticated\): .*--key/);
  });

  it('verifies the receipt offline, and fails an altered one', async () => {
    const ok = await aq('verify', 'receipt', file('receipt.json'), '--genesis', file('genesis.json'));
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/inclusion proof leads to the root of the tree head/);
    const receipt = JSON.parse(readFileSync(file('receipt.json'), 'utf8')) as {
      receipt: { instance: { port: number } };
    };
    receipt.receipt.instance.port = 9090;
    writeFileSync(file('altered.json'), JSON.stringify(receipt));
    const altered = await aq('verify', 'receipt', file('altered.json'));
    expect(altered.code).to.equal(1);
    oneLine(altered.stderr);
    expect(altered.stderr).to.match(/^aq: verify receipt: mismatch: /);
  });

  it('refuses a revoked credential (3, revoked)', async () => {
    const revoked = await aq(
      'credential',
      'revoke',
      SCOPE,
      registrarId.slice(0, 12),
      '--reason',
      'rotated',
      '--key',
      file('admin.key'),
    );
    expect(revoked.code, revoked.stderr).to.equal(0);
    expect(revoked.stdout).to.include(`revoked credential ${registrarId}`);
    const r = await aq(
      'register',
      `${SCOPE}/api/checkout`,
      '--id',
      'i3',
      '--address',
      '10.0.0.3',
      '--port',
      '80',
      '--key',
      file('client.key'),
    );
    expect(r.code).to.equal(3);
    oneLine(r.stderr);
    expect(r.stderr).to.match(
      /^aq: register: refused \(revoked\): credential [0-9a-f]{16}… was revoked at log index \d+ \(rotated\)/,
    );
  });

  it('refuses a bad policy file before sending anything (2, naming the line)', async () => {
    writeFileSync(
      file('bad.hcl'),
      'default = "refuse"\nrule "x" {\n  roles   = ["registar"]\n  actions = ["resolve"]\n  outcome = "allow"\n}\n',
    );
    const before = JSON.parse((await aq('scope', 'show', SCOPE, '--json')).stdout) as { lineageSize: number };
    const r = await aq('policy', 'set', SCOPE, file('bad.hcl'), '--key', file('admin.key'));
    expect(r.code).to.equal(2);
    oneLine(r.stderr);
    expect(r.stderr).to.match(/bad\.hcl:3: rule "x": roles: "registar" is not a role/);
    const after = JSON.parse((await aq('scope', 'show', SCOPE, '--json')).stdout) as { lineageSize: number };
    expect(after.lineageSize).to.equal(before.lineageSize);
    // The same file's good twin is tested offline: 0 allow, 3 refuse.
    writeFileSync(
      file('good.hcl'),
      'rule "x" {\n  roles   = ["resolver"]\n  actions = ["resolve"]\n  outcome = "allow"\n  prefixes = ["eu/payments/api/"]\n}\n',
    );
    const allow = await aq(
      'policy',
      'test',
      file('good.hcl'),
      '--role',
      'resolver',
      '--action',
      'resolve',
      '--name',
      `${SCOPE}/api/x`,
    );
    expect(allow.code, allow.stderr).to.equal(0);
    // No rule matches and a registrar's role does not grant resolve: the default refuses.
    const refuse = await aq(
      'policy',
      'test',
      file('good.hcl'),
      '--role',
      'registrar',
      '--action',
      'resolve',
      '--name',
      `${SCOPE}/db`,
    );
    expect(refuse.code).to.equal(3);
  });

  it('verifies the lineage online, remembering the tree head it saw', async () => {
    const first = await aq('lineage', SCOPE, '--verify', '--key', file('client.key'));
    expect(first.code, first.stderr).to.equal(0);
    expect(first.stdout).to.match(/every check passed/);
    expect(first.stdout).to.match(/remembered the tree head/);
    const table = await aq('lineage', SCOPE, '--key', file('client.key'));
    expect(table.code, table.stderr).to.equal(0);
    expect(table.stdout).to.match(/genesis eu\/payments/);
    expect(table.stdout).to.match(/register eu\/payments\/api\/checkout id=i1 10\.0\.0\.1:8080/);
    expect(table.stdout).to.match(/revoke-credential [0-9a-f]{8}… \(rotated\)/);
    const unsigned = await aq('lineage', SCOPE);
    expect(unsigned.code).to.equal(3);
  });

  it('exports the lineage, verifies it offline, and catches one flipped byte (1, bad-signature)', async () => {
    const exported = await aq(
      'lineage',
      SCOPE,
      '--export',
      file('lineage.jsonl'),
      '--key',
      file('client.key'),
    );
    expect(exported.code, exported.stderr).to.equal(0);
    const ok = await aq('verify', 'lineage', file('lineage.jsonl'));
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/every check passed/);
    // Flip one byte inside the payload of the registration's entry (line 2 is the genesis).
    const lines = readFileSync(file('lineage.jsonl'), 'utf8').split('\n');
    const at = lines.findIndex(
      (l) => l.startsWith('{"entry"') && Buffer.from(JSON.parse(l).entry, 'base64').includes('checkout'),
    );
    expect(at).to.be.greaterThan(1);
    const bytes = Buffer.from((JSON.parse(lines[at] as string) as { entry: string }).entry, 'base64');
    const i = bytes.indexOf('checkout');
    bytes[i] = (bytes[i] as number) ^ 0x01;
    lines[at] = JSON.stringify({ entry: bytes.toString('base64') });
    writeFileSync(file('tampered.jsonl'), lines.join('\n'));
    const bad = await aq('verify', 'lineage', file('tampered.jsonl'));
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(
      new RegExp(`^aq: verify lineage: bad-signature: line ${at + 1}: entry \\d+: `, 'm'),
    );
    expect(bad.stderr).to.not.match(/\n\s+at /);
  });
});
