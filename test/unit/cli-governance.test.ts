// The pure parts of the governance CLI: keys on the command line, the credential a request presents, the
// auth block, tables, the flags of credentials and quotas, refusals → exit codes, the offline lineage
// authority (a forged signer, a forged credential, a revoked anchor), receipts, and aq policy test.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { expect } from 'chai';
import { remoteError } from '../../src/cli/client.ts';
import { EXIT } from '../../src/cli/errors.ts';
import { decideLikeAnchor } from '../../src/cli/governance-commands.ts';
import {
  parseCredentialPrefix,
  parseCredentialRef,
  parseValidity,
  quotaOfFlags,
} from '../../src/cli/governance-requests.ts';
import { parsePublicKey, shortPeerId } from '../../src/cli/keys.ts';
import { lineageAuthority } from '../../src/cli/lineage-authority.ts';
import {
  checkReceipt,
  describeEntry,
  knownHeadPath,
  parseKnownHeads,
} from '../../src/cli/lineage-commands.ts';
import { credentialsTable, describeQuota, validityText } from '../../src/cli/output.ts';
import { ROLE_HELP, run } from '../../src/cli/program.ts';
import type { Target } from '../../src/cli/requests.ts';
import { type CredentialView, chooseCredential, credentialProblem, makeAuth } from '../../src/cli/signing.ts';
import {
  type Credential,
  credentialId,
  encodeCredential,
  ROLE_DESCRIPTIONS,
  ROLES,
} from '../../src/governance/credential.ts';
import { encodeGenesis, type Genesis, scopeIdOf, signGenesis } from '../../src/governance/genesis.ts';
import { decodePolicy } from '../../src/governance/policy.ts';
import { type Action, requestSignedBytes, verifyRequestSignature } from '../../src/governance/request.ts';
import { encodeKeyFile } from '../../src/identity/key-file.ts';
import { peerIdOfPublicKey } from '../../src/identity/peer-id.ts';
import { NobleVerifier, NodeSigner } from '../../src/identity/signer.ts';
import {
  decodeEntry as decodeLineageEntry,
  type EntryKind,
  encodeEntry,
  entrySignedBytes,
} from '../../src/lineage/entry.ts';
import { verifyExport, writeExport } from '../../src/lineage/export.ts';
import { LineageLog, MemoryLineageKv } from '../../src/lineage/log.ts';
import { signTreeHead, type TreeHead, treeHeadToJson } from '../../src/lineage/tree-head.ts';
import { type Command, commandSignedBody, encodeCommand } from '../../src/registry/commands.ts';
import { capture } from '../support/cli.ts';

const noble = new NobleVerifier();
const signer = (n: number) => new NodeSigner(new Uint8Array(32).fill(n));
const anchorKey = signer(1);
const adminKey = signer(2);
const clientKey = signer(3);
const forger = signer(9);
const NOW = Date.UTC(2026, 0, 15);
const DAY = 86_400_000;

async function rejects(promise: Promise<unknown>): Promise<Error & { exitCode?: number }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { exitCode?: number };
  }
  expect.fail('expected a rejection');
}

describe('cli governance: keys on the command line', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'aq-keys-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a public key as 64 hex digits (any case), a peer id or a key file', async () => {
    const hex = bytesToHex(clientKey.publicKey);
    expect(bytesToHex(await parsePublicKey(hex, '--subject'))).to.equal(hex);
    expect(bytesToHex(await parsePublicKey(hex.toUpperCase(), '--subject'))).to.equal(hex);
    const peerId = peerIdOfPublicKey(anchorKey.publicKey);
    expect(bytesToHex(await parsePublicKey(peerId, '--founder'))).to.equal(bytesToHex(anchorKey.publicKey));
    const file = join(dir, 'admin.key');
    writeFileSync(file, encodeKeyFile(new Uint8Array(32).fill(2)), { mode: 0o600 });
    expect(bytesToHex(await parsePublicKey(file, '--admin'))).to.equal(bytesToHex(adminKey.publicKey));
  });

  it('refuses anything else as a usage error naming the flag', async () => {
    for (const bad of [
      'abc',
      `${'0'.repeat(63)}g`,
      join(dir, 'missing.key'),
      '12D3KooWnotapeeridatallxxxxxxxxxxxxxxxxxxxxx',
    ]) {
      const error = await rejects(parsePublicKey(bad, '--subject'));
      expect(error.exitCode, bad).to.equal(EXIT.usage);
      expect(error.message).to.match(/^--subject /);
      expect(error.message).to.not.include('\n');
    }
    const notKey = join(dir, 'not-a-key');
    writeFileSync(notKey, 'hello\n');
    const error = await rejects(parsePublicKey(notKey, '--founder'));
    expect(error.exitCode).to.equal(EXIT.usage);
    expect(error.message).to.include('not an aqmesh key file');
  });

  it('shortens peer ids for tables', () => {
    const id = peerIdOfPublicKey(anchorKey.publicKey);
    expect(shortPeerId(id)).to.equal(`${id.slice(0, 12)}…${id.slice(-6)}`);
  });
});

function cred(over: Partial<CredentialView> & { id: string }): CredentialView {
  return {
    role: 'registrar',
    subject: bytesToHex(clientKey.publicKey),
    prefix: 'eu/payments/',
    notBeforeMs: 0,
    notAfterMs: Number.MAX_SAFE_INTEGER,
    issuedAt: 5,
    revokedAt: 0,
    ...over,
  };
}

describe('cli governance: the credential a request presents', () => {
  const me = bytesToHex(clientKey.publicKey);

  it('prefers a usable credential whose role grants the action, then the longest prefix', () => {
    const creds = [
      cred({ id: 'a1', role: 'auditor', prefix: '' }),
      cred({ id: 'r1', role: 'registrar', prefix: 'eu/' }),
      cred({ id: 'r2', role: 'registrar', prefix: 'eu/payments/' }),
      cred({ id: 's1', role: 'resolver', prefix: '' }),
      cred({ id: 'x1', role: 'registrar', prefix: '', subject: bytesToHex(adminKey.publicKey) }),
    ];
    expect(chooseCredential(creds, me, 'register', 'eu/payments/api', NOW)?.credential.id).to.equal('r2');
    expect(chooseCredential(creds, me, 'resolve', 'eu/payments/api', NOW)?.credential.id).to.equal('s1');
    expect(chooseCredential(creds, me, 'read-lineage', '', NOW)?.credential.id).to.equal('a1');
    expect(chooseCredential(creds, me.toUpperCase(), 'register', 'eu/payments/api', NOW)?.problem).to.equal(
      null,
    );
  });

  it("falls back to the right role's unusable credential, so the anchor names the reason", () => {
    const creds = [
      cred({ id: 'a1', role: 'auditor', prefix: '' }),
      cred({ id: 'r1', role: 'registrar', prefix: 'eu/payments/api/', revokedAt: 42 }),
    ];
    const revoked = chooseCredential(creds, me, 'register', 'eu/payments/api/x', NOW);
    expect(revoked?.credential.id).to.equal('r1');
    expect(revoked?.problem).to.match(/revoked at log index 42/);
    const outside = chooseCredential(
      [cred({ id: 'r1', prefix: 'eu/payments/api/' })],
      me,
      'register',
      'eu/payments/db',
      NOW,
    );
    expect(outside?.problem).to.match(/covers names under "eu\/payments\/api\/", not "eu\/payments\/db"/);
    // A usable credential of another role comes before nothing at all.
    expect(
      chooseCredential([cred({ id: 'a1', role: 'auditor', prefix: '' })], me, 'register', 'eu/x', NOW)
        ?.problem,
    ).to.equal(null);
    expect(chooseCredential(creds, bytesToHex(forger.publicKey), 'register', 'eu/x', NOW)).to.equal(null);
  });

  it('says why a credential cannot be used: revoked, not yet valid, expired, another prefix', () => {
    expect(credentialProblem(cred({ id: 'c', revokedAt: 7 }), 'eu/payments/a', NOW)).to.match(
      /revoked at log index 7/,
    );
    expect(credentialProblem(cred({ id: 'c', notBeforeMs: NOW + DAY }), 'eu/payments/a', NOW)).to.match(
      /not valid before/,
    );
    expect(credentialProblem(cred({ id: 'c', notAfterMs: NOW - DAY }), 'eu/payments/a', NOW)).to.match(
      /expired at/,
    );
    expect(credentialProblem(cred({ id: 'c' }), 'us/x', NOW)).to.match(/covers names under/);
    expect(credentialProblem(cred({ id: 'c' }), 'eu/payments/a', NOW)).to.equal(null);
  });

  it('signs the canonical request bytes with a fresh nonce (the anchor verifies them)', () => {
    const scopeId = new Uint8Array(32).fill(7);
    const id = new Uint8Array(32).fill(8);
    const body = new TextEncoder().encode('eu/payments/api');
    const nonce = new Uint8Array(16).fill(5);
    const auth = makeAuth(clientKey, scopeId, id, 'resolve', body, NOW, nonce);
    expect(auth.timestampMs).to.equal(NOW);
    expect(verifyRequestSignature(noble, clientKey.publicKey, scopeId, auth, 'resolve', body)).to.equal(true);
    expect(verifyRequestSignature(noble, clientKey.publicKey, scopeId, auth, 'register', body)).to.equal(
      false,
    );
  });
});

describe('cli governance: flags', () => {
  it('reads validity windows: default 90 days, spans, times, never', () => {
    expect(parseValidity({}, NOW)).to.deep.equal({ notBeforeMs: NOW, notAfterMs: NOW + 90 * DAY });
    expect(parseValidity({ expires: '12h' }, NOW).notAfterMs).to.equal(NOW + 12 * 3_600_000);
    expect(parseValidity({ notBefore: '2026-02-01', expires: '1d12h' }, NOW)).to.deep.equal({
      notBeforeMs: Date.UTC(2026, 1, 1),
      notAfterMs: Date.UTC(2026, 1, 2, 12),
    });
    expect(parseValidity({ expires: '2026-03-01T00:00:00Z' }, NOW).notAfterMs).to.equal(Date.UTC(2026, 2, 1));
    expect(parseValidity({ expires: 'never' }, NOW).notAfterMs).to.equal(Number.MAX_SAFE_INTEGER);
    for (const bad of [
      { expires: '2025-01-01' },
      { expires: 'soon' },
      { notBefore: 'tomorrow' },
      { expires: '0d' },
    ]) {
      let message = '';
      try {
        parseValidity(bad, NOW);
      } catch (error) {
        message = (error as Error).message;
        expect((error as { exitCode?: number }).exitCode).to.equal(EXIT.usage);
      }
      expect(message, JSON.stringify(bad)).to.match(/^--(expires|not-before) /);
    }
  });

  it('checks a credential prefix against the scope', () => {
    expect(parseCredentialPrefix('', 'eu/payments')).to.equal('');
    expect(parseCredentialPrefix('eu/payments/api/', 'eu/payments')).to.equal('eu/payments/api/');
    expect(parseCredentialPrefix('eu/', 'eu/payments')).to.equal('eu/');
    expect(() => parseCredentialPrefix('us/', 'eu/payments')).to.throw(/covers no name of scope/);
    expect(() => parseCredentialPrefix('EU/', 'eu/payments')).to.throw(/'E'/);
  });

  it('reads credential ids and unique prefixes', () => {
    expect(parseCredentialRef('ab'.repeat(32)).full).to.equal('ab'.repeat(32));
    expect(parseCredentialRef('ABCD')).to.deep.equal({ full: null, prefix: 'abcd' });
    expect(() => parseCredentialRef('abc')).to.throw(/at least 4/);
  });

  it('builds quotas from flags, usage errors naming the flag', () => {
    expect(quotaOfFlags({})).to.equal(null);
    const q = quotaOfFlags({ maxInstances: '100', prefixMax: ['eu/payments/api/=5'], over: 'defer' });
    expect(q).to.deep.include({ maxInstances: 100, over: 'defer' });
    expect(describeQuota(q as NonNullable<typeof q>)).to.equal(
      'max 100 instances, eu/payments/api/ ≤ 5 instances; over: defer',
    );
    for (const [flags, flag] of [
      [{ maxInstances: 'x' }, '--max-instances'],
      [{ prefixMax: ['eu/'] }, '--prefix-max'],
      [{ over: 'maybe' }, '--over'],
      [{ rate: '0' }, '--rate'],
    ] as const) {
      let error: (Error & { exitCode?: number }) | undefined;
      try {
        quotaOfFlags(flags);
      } catch (e) {
        error = e as Error & { exitCode?: number };
      }
      expect(error?.exitCode, flag).to.equal(EXIT.usage);
      expect(error?.message, flag).to.match(new RegExp(`^${flag} `));
    }
  });

  it('inlines the role descriptions in the help text, equal to the taxonomy', () => {
    for (const role of ROLES) expect(ROLE_HELP).to.include(`${role.padEnd(12)} ${ROLE_DESCRIPTIONS[role]}`);
  });
});

describe('cli governance: output', () => {
  it('tables credentials: id and subject prefixes, role, prefix, validity, issue and revocation', () => {
    const text = credentialsTable(
      [
        cred({
          id: 'b'.repeat(64),
          role: 'registrar',
          issuedAt: 5,
          revokedAt: 9,
          notBeforeMs: NOW - DAY,
          notAfterMs: NOW + 2 * DAY,
        }),
        cred({ id: 'a'.repeat(64), role: 'scope-admin', prefix: '', issuedAt: 0 }),
      ],
      NOW,
    );
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).to.match(/^ID\s+ROLE\s+SUBJECT\s+PREFIX\s+VALID\s+ISSUED\s+REVOKED$/);
    expect(lines[1]).to.match(/^a{16}…\s+scope-admin\s+[0-9a-f]{16}…\s+\(all\)\s+always\s+genesis\s+-$/);
    expect(lines[2]).to.match(
      /^b{16}…\s+registrar\s+[0-9a-f]{16}…\s+eu\/payments\/\s+until 2026-01-17 00:00Z\s+index 5\s+index 9$/,
    );
    expect(credentialsTable([], NOW)).to.equal('no credentials\n');
  });

  it('says when a credential is expired or not yet valid', () => {
    expect(validityText(0, NOW - 1, NOW)).to.match(/\(expired\)$/);
    expect(validityText(NOW + DAY, NOW + 2 * DAY, NOW)).to.match(
      /^from 2026-01-16 00:00Z until .*\(not yet valid\)$/,
    );
  });
});

describe('cli governance: refusals → exit codes', () => {
  const target: Target = { address: '127.0.0.1:7400', from: 'default', timeoutMs: 10_000 };
  const refusal = (code: number, reason: string, outcome: string, details: string): ServiceError => {
    const md = new Metadata();
    md.set('aq-reason', reason);
    md.set('aq-outcome', outcome);
    return Object.assign(new Error(details), { code, details, metadata: md });
  };

  it('refuse → 3 and defer → 4 whatever the status, with the reason code in the one line', () => {
    const revoked = remoteError(
      refusal(status.PERMISSION_DENIED, 'revoked', 'refuse', 'credential 1a2b… was revoked at log index 42'),
      'register',
      target,
    );
    expect(revoked.exitCode).to.equal(EXIT.refuse);
    expect(revoked.message).to.equal(
      'register: refused (revoked): credential 1a2b… was revoked at log index 42',
    );
    const unauth = remoteError(
      refusal(status.UNAUTHENTICATED, 'unauthenticated', 'refuse', 'scope x is governed'),
      'resolve',
      target,
    );
    expect(unauth.exitCode).to.equal(EXIT.refuse);
    expect(unauth.hint).to.match(/--key/);
    const quota = remoteError(
      refusal(status.RESOURCE_EXHAUSTED, 'quota-exceeded', 'refuse', 'quota exceeded'),
      'register',
      target,
    );
    expect(quota.exitCode).to.equal(EXIT.refuse);
    const deferred = remoteError(
      refusal(status.PERMISSION_DENIED, 'policy-deferred', 'defer', 'held'),
      'register',
      target,
    );
    expect(deferred.exitCode).to.equal(EXIT.defer);
    expect(deferred.message).to.equal('register: deferred (policy-deferred): held');
  });

  it('keeps the status mapping without the trailers (a 64 KiB request is not a refusal)', () => {
    const big = Object.assign(new Error('too big'), {
      code: status.RESOURCE_EXHAUSTED,
      details: 'too big',
      metadata: new Metadata(),
    });
    expect(remoteError(big, 'register', target).exitCode).to.equal(EXIT.failure);
  });
});

// ---- a small governed log, built as anchors build it ----

class ScopeFixture {
  readonly genesis: Genesis;
  readonly scopeId: Uint8Array;
  readonly log = new LineageLog(new MemoryLineageKv());
  readonly entries: Uint8Array[] = [];
  #logIndex = 1;
  #seq = 0;
  #ts = NOW;

  constructor(open = false) {
    let g: Genesis = {
      name: 'eu/payments',
      createdMs: NOW,
      founders: open ? [] : [anchorKey.publicKey],
      admins: open ? [] : [adminKey.publicKey],
      policy: '',
      quota: '',
      signatures: [],
    };
    if (!open) g = signGenesis(signGenesis(g, anchorKey), adminKey);
    this.genesis = g;
    this.scopeId = scopeIdOf(g);
    this.append('genesis', encodeGenesis(g), anchorKey);
  }

  append(kind: EntryKind, payload: Uint8Array, by: NodeSigner): Uint8Array {
    const entry = encodeEntry({
      scopeId: this.scopeId,
      index: this.log.size,
      logIndex: this.#logIndex++,
      kind,
      payload,
      signer: by.publicKey,
      signature: by.sign(entrySignedBytes(this.scopeId, kind, payload)),
    });
    this.log.append(entry);
    this.entries.push(entry);
    return entry;
  }

  /** A command signed by `key` with credential `id` (the caller's auth), admitted by `admit`. */
  command(
    cmd: Command,
    key: NodeSigner | null,
    id: Uint8Array | null,
    action: Action,
    admit = anchorKey,
  ): Uint8Array {
    const bare = { ...cmd, session: { client: 'test', seq: ++this.#seq } } as Command;
    let full = bare;
    if (key !== null && id !== null) {
      const nonce = new Uint8Array(16).fill(this.#seq);
      this.#ts += 1000;
      const ts = this.#ts;
      const signature = key.sign(
        requestSignedBytes(this.scopeId, id, ts, nonce, action, commandSignedBody(bare)),
      );
      full = { ...bare, auth: { credentialId: id, timestampMs: ts, nonce, signature } } as Command;
    }
    return this.append('command', encodeCommand(full), admit);
  }

  credential(
    role: Credential['role'],
    subject: NodeSigner,
    prefix: string,
  ): { bytes: Uint8Array; id: Uint8Array } {
    const c: Credential = {
      scopeId: this.scopeId,
      role,
      subject: subject.publicKey,
      prefix,
      notBeforeMs: 0,
      notAfterMs: NOW + 365 * DAY,
    };
    return { bytes: encodeCredential(c), id: credentialId(c) };
  }

  implicit(role: 'scope-admin' | 'anchor', subject: NodeSigner): Uint8Array {
    return credentialId({
      scopeId: this.scopeId,
      role,
      subject: subject.publicKey,
      prefix: '',
      notBeforeMs: 0,
      notAfterMs: Number.MAX_SAFE_INTEGER,
    });
  }

  head(by = anchorKey): TreeHead {
    return signTreeHead(
      { scopeId: this.scopeId, size: this.log.size, root: this.log.root(), timestampMs: NOW + 1 },
      by,
    );
  }

  verify(heads: TreeHead[] = [this.head()]) {
    return verifyExport(writeExport(this.scopeId, this.entries, heads), {
      authority: lineageAuthority(noble),
      verifier: noble,
    });
  }
}

const instance = {
  id: 'i1',
  address: '10.0.0.1',
  port: 80,
  tags: [],
  meta: {},
  health: 'passing' as const,
  ttlMs: 0,
};

describe('cli governance: the offline lineage authority', () => {
  it('accepts a governed log built by its anchors and admins', () => {
    const s = new ScopeFixture();
    const registrar = s.credential('registrar', clientKey, 'eu/payments/api/');
    s.command(
      { type: 'issue-credential', name: '', credential: registrar.bytes },
      adminKey,
      s.implicit('scope-admin', adminKey),
      'administer',
    );
    s.command({ type: 'register', name: 'eu/payments/api/x', instance }, clientKey, registrar.id, 'register');
    s.command(
      { type: 'set-policy', name: '', policy: '{"default":"refuse","rules":[],"version":1}' },
      adminKey,
      s.implicit('scope-admin', adminKey),
      'administer',
    );
    s.command(
      { type: 'revoke-credential', name: '', credentialId: registrar.id, reason: 'leaked' },
      adminKey,
      s.implicit('scope-admin', adminKey),
      'administer',
    );
    const report = s.verify();
    expect(report.failures).to.deep.equal([]);
    expect(report.entries).to.equal(5);
  });

  it('reports an entry admitted by a key that is no anchor of the scope (a forged signer)', () => {
    const s = new ScopeFixture();
    const registrar = s.credential('registrar', clientKey, 'eu/payments/');
    s.command(
      { type: 'issue-credential', name: '', credential: registrar.bytes },
      adminKey,
      s.implicit('scope-admin', adminKey),
      'administer',
    );
    s.command(
      { type: 'register', name: 'eu/payments/x', instance },
      clientKey,
      registrar.id,
      'register',
      forger,
    );
    const report = s.verify();
    expect(report.ok).to.equal(false);
    expect(report.failures.map((f) => f.code)).to.include('bad-signature');
    expect(report.failures.find((f) => f.code === 'bad-signature')?.message).to.match(
      /entry 2 is signed by .* may not admit/,
    );
  });

  it('reports a credential the log never issued, a change nobody signed and a non-admin administering', () => {
    const s = new ScopeFixture();
    const ghost = s.credential('registrar', clientKey, '');
    s.command({ type: 'register', name: 'eu/payments/x', instance }, clientKey, ghost.id, 'register');
    s.command({ type: 'register', name: 'eu/payments/y', instance }, null, null, 'register');
    const registrar = s.credential('registrar', clientKey, '');
    s.command(
      { type: 'issue-credential', name: '', credential: registrar.bytes },
      adminKey,
      s.implicit('scope-admin', adminKey),
      'administer',
    );
    const anchorForMe = s.credential('anchor', forger, '');
    s.command(
      { type: 'issue-credential', name: '', credential: anchorForMe.bytes },
      clientKey,
      registrar.id,
      'administer',
    );
    const messages = s
      .verify()
      .failures.filter((f) => f.code === 'rejected')
      .map((f) => `${f.index}: ${f.message}`);
    expect(messages).to.have.length(3);
    expect(messages[0]).to.match(/^1: .*never issued/);
    expect(messages[1]).to.match(/^2: .*nobody signed/);
    expect(messages[2]).to.match(/^4: .*registrar credential .*needs scope-admin/);
  });

  it('follows anchors issued and revoked through the log', () => {
    const s = new ScopeFixture();
    const admin = s.implicit('scope-admin', adminKey);
    const second = s.credential('anchor', forger, '');
    s.command(
      { type: 'issue-credential', name: '', credential: second.bytes },
      adminKey,
      admin,
      'administer',
    );
    s.command(
      { type: 'set-quota', name: '', quota: '{"over":"refuse","prefixes":[],"version":1}' },
      adminKey,
      admin,
      'administer',
      forger,
    );
    expect(s.verify().failures).to.deep.equal([]);
    s.command(
      { type: 'revoke-credential', name: '', credentialId: second.id, reason: '' },
      adminKey,
      admin,
      'administer',
    );
    s.command(
      { type: 'set-quota', name: '', quota: '{"over":"defer","prefixes":[],"version":1}' },
      adminKey,
      admin,
      'administer',
      forger,
    );
    const failures = s.verify().failures;
    expect(failures.map((f) => [f.code, f.index])).to.deep.equal([['bad-signature', 4]]);
  });

  it('refuses a genesis missing a founder signature; lets any key sign an open scope', () => {
    const s = new ScopeFixture();
    const authority = lineageAuthority(noble);
    const unsigned = encodeGenesis({ ...s.genesis, signatures: s.genesis.signatures.slice(0, 1) });
    expect(authority.genesis(unsigned))
      .to.have.property('error')
      .that.match(/lacks the signature/);
    const open = new ScopeFixture(true);
    open.command({ type: 'register', name: 'eu/payments/x', instance }, null, null, 'register', forger);
    expect(open.verify([open.head(forger)]).failures).to.deep.equal([]);
  });

  it('describes entries in one line', () => {
    const s = new ScopeFixture();
    const registrar = s.credential('registrar', clientKey, 'eu/payments/');
    const issued = s.command(
      { type: 'issue-credential', name: '', credential: registrar.bytes },
      adminKey,
      s.implicit('scope-admin', adminKey),
      'administer',
    );
    const reg = s.command(
      { type: 'register', name: 'eu/payments/api', instance },
      clientKey,
      registrar.id,
      'register',
    );
    expect(describeEntry(decodeLineageEntry(s.entries[0] as Uint8Array))).to.equal(
      'genesis eu/payments (1 founding anchor(s), 1 admin(s))',
    );
    expect(describeEntry(decodeLineageEntry(issued))).to.match(
      /^issue-credential registrar [0-9a-f]{8}… prefix eu\/payments\/ \(id [0-9a-f]{8}…\)$/,
    );
    expect(describeEntry(decodeLineageEntry(reg))).to.equal('register eu/payments/api id=i1 10.0.0.1:80');
  });
});

describe('cli governance: receipts', () => {
  function receiptOf(s: ScopeFixture, entry: Uint8Array, index: number) {
    const decoded = decodeLineageEntry(entry);
    return {
      receipt: {
        scope: 'eu/payments',
        name: 'eu/payments/api/x',
        instance: {
          id: 'i1',
          address: '10.0.0.1',
          port: 80,
          tags: [],
          meta: {},
          health: 'HEALTH_PASSING',
          ttlMs: 0,
        },
        index: 9,
        anchor: peerIdOfPublicKey(decoded.signer),
        signature: Buffer.from(decoded.signature).toString('base64'),
        scopeId: bytesToHex(s.scopeId),
        lineageIndex: index,
        entry: Buffer.from(entry).toString('base64'),
      },
      index: 9,
    };
  }

  it('checks an upgraded receipt: signature, scope, fields, inclusion under a signed head', async () => {
    const s = new ScopeFixture();
    const registrar = s.credential('registrar', clientKey, '');
    s.command(
      { type: 'issue-credential', name: '', credential: registrar.bytes },
      adminKey,
      s.implicit('scope-admin', adminKey),
      'administer',
    );
    const entry = s.command(
      { type: 'register', name: 'eu/payments/api/x', instance },
      clientKey,
      registrar.id,
      'register',
    );
    s.command({ type: 'register', name: 'eu/payments/api/y', instance }, clientKey, registrar.id, 'register');
    const head = s.head();
    const upgraded = {
      ...receiptOf(s, entry, 2),
      treeHead: treeHeadToJson(head),
      proof: { treeSize: head.size, hashes: s.log.inclusionProof(2, head.size).map(bytesToHex) },
    };
    const ok = await checkReceipt(upgraded, {
      verifier: noble,
      genesis: s.genesis,
      scopeId: bytesToHex(s.scopeId),
    });
    expect(ok.failures).to.deep.equal([]);
    expect(ok.checked.join('\n')).to.match(/inclusion proof leads to the root of the tree head of size 4/);

    const plain = await checkReceipt(receiptOf(s, entry, 2), { verifier: noble });
    expect(plain.failures).to.deep.equal([]);
    expect(plain.notes.join('\n')).to.match(/no inclusion proof/);

    const altered = structuredClone(upgraded);
    altered.receipt.instance.port = 81;
    expect((await checkReceipt(altered, { verifier: noble })).failures.map((f) => f.code)).to.deep.equal([
      'mismatch',
    ]);
    const wrongProof = structuredClone(upgraded);
    wrongProof.proof.hashes[0] = '00'.repeat(32);
    expect((await checkReceipt(wrongProof, { verifier: noble })).failures.map((f) => f.code)).to.deep.equal([
      'tree-head-mismatch',
    ]);
    const otherScope = await checkReceipt(upgraded, { verifier: noble, scopeId: 'ab'.repeat(32) });
    expect(otherScope.failures.map((f) => f.code)).to.deep.equal(['wrong-scope']);
    const forged = new ScopeFixture();
    const byForger = forged.command(
      { type: 'register', name: 'eu/payments/api/x', instance },
      null,
      null,
      'register',
      forger,
    );
    const notAnchor = await checkReceipt(receiptOf(forged, byForger, 1), {
      verifier: noble,
      genesis: forged.genesis,
    });
    expect(notAnchor.failures.map((f) => f.code)).to.deep.equal(['not-an-anchor']);
  });

  it('keeps known tree heads where AQ_STATE_DIR says, and reads one head or a list', () => {
    expect(knownHeadPath('ab'.repeat(32), { AQ_STATE_DIR: '/state' })).to.equal(
      `/state/tree-heads/${'ab'.repeat(32)}.json`,
    );
    const s = new ScopeFixture();
    const head = s.head();
    expect(parseKnownHeads(JSON.stringify(treeHeadToJson(head)), 'f')).to.have.length(1);
    expect(parseKnownHeads(JSON.stringify([treeHeadToJson(head), treeHeadToJson(head)]), 'f')).to.have.length(
      2,
    );
    expect(() => parseKnownHeads('{"size": 1}', 'f')).to.throw(/not a tree head file/);
  });
});

describe('cli governance: aq policy test', () => {
  let dir: string;
  let file: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'aq-policy-'));
    file = join(dir, 'policy.json');
    writeFileSync(
      file,
      JSON.stringify({
        default: 'refuse',
        rule: {
          'nomad-clients': {
            roles: ['registrar'],
            actions: ['register'],
            outcome: 'allow',
            prefixes: ['eu/payments/'],
          },
          'no-billing': {
            roles: ['*'],
            actions: ['*'],
            outcome: 'refuse',
            prefixes: ['eu/payments/billing/'],
          },
          review: { roles: ['resolver'], actions: ['register'], outcome: 'defer' },
        },
      }),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const test = async (...args: string[]) => {
    const io = capture();
    const code = await run(['policy', 'test', file, ...args], io);
    return { code, ...io };
  };

  it('exits 0 allow, 3 refuse, 4 defer, printing the deciding rule and the reason', async () => {
    const allow = await test('--role', 'registrar', '--action', 'register', '--name', 'eu/payments/api');
    expect(allow.code).to.equal(0);
    expect(allow.stdout).to.match(/^allow\nrule {4}nomad-clients\nreason {2}rule "nomad-clients" allows/);
    const refuse = await test(
      '--role',
      'registrar',
      '--action',
      'register',
      '--name',
      'eu/payments/billing/x',
    );
    expect(refuse.code).to.equal(3);
    expect(refuse.stdout).to.match(/rule {4}no-billing/);
    const defer = await test(
      '--role',
      'resolver',
      '--action',
      'register',
      '--name',
      'eu/payments/api',
      '--json',
    );
    expect(defer.code).to.equal(4);
    expect(JSON.parse(defer.stdout)).to.deep.include({ outcome: 'defer', rule: 'review' });
  });

  it("lets the role's own grants decide when no rule matches, as the anchors do", async () => {
    const byRole = await test('--role', 'auditor', '--action', 'read-lineage', '--name', 'us/x');
    expect(byRole.code).to.equal(0);
    expect(byRole.stdout).to.match(/no rule matched; an auditor credential grants read-lineage by its role/);
    const none = await test('--role', 'resolver', '--action', 'deregister', '--name', 'us/x');
    expect(none.code).to.equal(3);
    expect(none.stdout).to.match(/rule {4}default/);
    const doc = decodePolicy('{"default":"allow","rules":[],"version":1}');
    expect(
      decideLikeAnchor(doc, {
        role: 'registrar',
        key: '0'.repeat(64),
        scope: 'local',
        action: 'administer',
        name: '',
      }).outcome,
    ).to.equal('refuse');
  });

  it('refuses a bad policy file or flag as a usage error (exit 2, one line)', async () => {
    const bad = join(dir, 'bad.hcl');
    writeFileSync(
      bad,
      'default = "refuse"\nrule "x" {\n  roles = ["registar"]\n  actions = ["register"]\n  outcome = "allow"\n}\n',
    );
    const io = capture();
    expect(
      await run(['policy', 'test', bad, '--role', 'registrar', '--action', 'register', '--name', 'a'], io),
    ).to.equal(2);
    expect(io.stderr).to.match(
      /^aq: policy test: policy file: .*bad\.hcl:3: rule "x": roles: "registar" is not a role/,
    );
    expect(io.stderr.trimEnd().split('\n')).to.have.length(1);
    const flag = await test('--role', 'admin', '--action', 'register', '--name', 'a');
    expect(flag.code).to.equal(2);
    expect(flag.stderr).to.match(/^aq: policy test: --role "admin": not a role/);
  });
});
