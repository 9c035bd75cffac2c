// The scope's authority inside the registry state machine: a governed scope admits or refuses every
// command at its log index, identically on every member, and records every admitted change in its lineage.

import { bytesToHex } from '@noble/hashes/utils.js';
import { expect } from 'chai';
import { lineageAuthority } from '../../src/cli/lineage-authority.ts';
import { decodeConfChange, encodeConfChange } from '../../src/consensus/conf-change.ts';
import { type Credential, credentialId, encodeCredential } from '../../src/governance/credential.ts';
import {
  encodeGenesis,
  type Genesis,
  scopeIdOf,
  signGenesis,
  sortKeys,
} from '../../src/governance/genesis.ts';
import type { Action } from '../../src/governance/request.ts';
import { requestSignedBytes } from '../../src/governance/request.ts';
import { NodeSigner, NodeVerifier } from '../../src/identity/signer.ts';
import { decodeEntry, encodeEntry, entrySignedBytes, verifyEntrySignature } from '../../src/lineage/entry.ts';
import { verifyExport, writeExport } from '../../src/lineage/export.ts';
import { rootHash } from '../../src/lineage/merkle.ts';
import { encodeTreeHead, signTreeHead } from '../../src/lineage/tree-head.ts';
import { type Command, commandSignedBody, encodeCommand } from '../../src/registry/commands.ts';
import type { Instance } from '../../src/registry/instance.ts';
import {
  type ApplyResult,
  admittedEntry,
  type CommandResult,
  RegistryStateMachine,
} from '../../src/registry/state-machine.ts';

const key = (n: number) => new NodeSigner(new Uint8Array(32).fill(n));
const anchor = key(1);
const admin = key(9);
const registrar = key(5);
const verifier = new NodeVerifier();
const T0 = 1_764_000_000_000;

function genesis(policy = '', quota = ''): Genesis {
  const g: Genesis = {
    name: 'eu',
    createdMs: T0,
    founders: [anchor.publicKey],
    admins: [admin.publicKey],
    policy,
    quota,
    signatures: [],
  };
  return signGenesis(signGenesis(g, anchor), admin);
}

const instance = (id: string, tags: string[] = []): Instance => ({
  id,
  address: '10.0.0.1',
  port: 80,
  tags,
  meta: {},
  health: 'passing',
  ttlMs: 0,
});

/** A scope: machines fed the same entries (members), an entry builder that signs like the CLI and an anchor. */
class Scope {
  readonly machines: RegistryStateMachine[];
  readonly scopeId: Uint8Array;
  index = 0;
  seq = 0;

  constructor(g: Genesis, members = 3) {
    this.scopeId = scopeIdOf(g);
    this.machines = Array.from(
      { length: members },
      () => new RegistryStateMachine({ verifier, expectedScopeId: this.scopeId }),
    );
    const bytes = encodeGenesis(g);
    const cmd = encodeCommand({ type: 'genesis', name: '', genesis: bytes });
    this.applyRaw(
      admittedEntry(anchor.publicKey, anchor.sign(entrySignedBytes(this.scopeId, 'genesis', bytes)), cmd),
    );
  }

  applyRaw(data: Uint8Array): ApplyResult {
    this.index++;
    const results = this.machines.map((m) => m.apply(this.index, data));
    // Every member decides identically.
    for (const r of results) expect(r).to.deep.equal(results[0]);
    return results[0] as ApplyResult;
  }

  /** Signs `cmd` as `signer` holding `credential` at `at`, admits it as the anchor, applies it. */
  submit(
    cmd: Command,
    signer: NodeSigner | null,
    credential: Uint8Array | null,
    action: Action,
    at = T0,
  ): CommandResult {
    const session = { client: 'c1', seq: ++this.seq };
    const bare = { ...cmd, session } as Command;
    let full: Command = bare;
    if (signer !== null && credential !== null) {
      const nonce = new Uint8Array(16).fill(this.seq % 256);
      const signature = signer.sign(
        requestSignedBytes(this.scopeId, credential, at, nonce, action, commandSignedBody(bare)),
      );
      full = { ...bare, auth: { credentialId: credential, timestampMs: at, nonce, signature } } as Command;
    }
    const bytes = encodeCommand(full);
    const r = this.applyRaw(
      admittedEntry(anchor.publicKey, anchor.sign(entrySignedBytes(this.scopeId, 'command', bytes)), bytes),
    );
    expect(r.type).to.not.equal('duplicate');
    return r as CommandResult;
  }

  issue(
    c: Omit<Credential, 'scopeId'>,
    by = admin,
    byCredential = adminCredential(this.scopeId),
  ): Uint8Array {
    const full: Credential = { ...c, scopeId: this.scopeId };
    const r = this.submit(
      { type: 'issue-credential', name: '', credential: encodeCredential(full) },
      by,
      byCredential,
      'administer',
    );
    expect(r.type, JSON.stringify(r)).to.equal('govern');
    return credentialId(full);
  }
}

function adminCredential(scopeId: Uint8Array): Uint8Array {
  return credentialId({
    scopeId,
    role: 'scope-admin',
    subject: admin.publicKey,
    prefix: '',
    notBeforeMs: 0,
    notAfterMs: Number.MAX_SAFE_INTEGER,
  });
}

const registrarCredential = {
  role: 'registrar' as const,
  subject: registrar.publicKey,
  prefix: 'eu/payments/',
  notBeforeMs: T0 - 1000,
  notAfterMs: T0 + 60_000,
};

function rejection(r: CommandResult): string {
  return r.type === 'rejected' ? r.code : `admitted (${r.type})`;
}

describe('governance: the authority in the state machine', () => {
  it('the genesis is lineage entry 0 and grants the admin and the founders their credentials', () => {
    const s = new Scope(genesis());
    const m = s.machines[0] as RegistryStateMachine;
    expect(m.lineage.size).to.equal(1);
    const e = decodeEntry(m.lineage.entry(0));
    expect([e.kind, e.index, e.logIndex]).to.deep.equal(['genesis', 0, 1]);
    expect(verifyEntrySignature(e, verifier)).to.equal(true);
    expect(
      m.authority
        .credentials()
        .map((c) => c.credential.role)
        .sort(),
    ).to.deep.equal(['anchor', 'scope-admin']);
    expect(m.authority.open).to.equal(false);
  });

  it('refuses a genesis of another scope, an unsigned one, and a second one', () => {
    const other = { ...genesis(), name: 'us' };
    const m = new RegistryStateMachine({ verifier, expectedScopeId: scopeIdOf(genesis()) });
    const apply = (i: number, g: Genesis) =>
      m.apply(i, encodeCommand({ type: 'genesis', name: '', genesis: encodeGenesis(g) }));
    expect(apply(1, signGenesis(signGenesis(other, anchor), admin))).to.include({
      type: 'rejected',
      code: 'wrong-scope',
    });
    expect(apply(2, { ...genesis(), signatures: [] })).to.include({
      type: 'rejected',
      code: 'invalid-governance',
    });
    expect(apply(3, genesis()).type).to.equal('govern');
    expect(apply(4, genesis())).to.include({ type: 'rejected', code: 'invalid-governance' });
  });

  it('admits a registrar under its prefix and refuses every other case with its reason', () => {
    const s = new Scope(genesis());
    const cred = s.issue(registrarCredential);
    const reg = (name: string, signer: NodeSigner | null = registrar, c: Uint8Array | null = cred, at = T0) =>
      s.submit({ type: 'register', name, instance: instance('i1') }, signer, c, 'register', at);
    const ok = reg('eu/payments/api');
    expect(ok.type).to.equal('register');
    expect(rejection(reg('eu/payments/api', null, null))).to.equal('unauthenticated');
    expect(rejection(reg('eu/billing/api'))).to.equal('wrong-prefix');
    expect(rejection(reg('eu/payments/api', registrar, new Uint8Array(32).fill(1)))).to.equal(
      'unknown-credential',
    );
    expect(rejection(reg('eu/payments/api', registrar, cred, T0 + 61_000))).to.equal('expired');
    expect(rejection(reg('eu/payments/api', registrar, cred, T0 - 2000))).to.equal('not-yet-valid');
    // A registrar cannot administer.
    const r = s.submit(
      { type: 'set-policy', name: '', policy: '{"version":1,"default":"allow","rules":[]}' },
      registrar,
      cred,
      'administer',
    );
    expect(rejection(r)).to.equal('policy-refused');
  });

  it('a revocation takes effect at its log index on every member', () => {
    const s = new Scope(genesis());
    const cred = s.issue(registrarCredential);
    expect(
      s.submit(
        { type: 'register', name: 'eu/payments/a', instance: instance('i1') },
        registrar,
        cred,
        'register',
      ).type,
    ).to.equal('register');
    const revoked = s.submit(
      { type: 'revoke-credential', name: '', credentialId: cred, reason: 'key lost' },
      admin,
      adminCredential(s.scopeId),
      'administer',
    );
    expect(revoked.type).to.equal('govern');
    const at = s.index;
    for (const m of s.machines) expect(m.authority.credential(cred)?.revokedAt).to.equal(at);
    const after = s.submit(
      { type: 'register', name: 'eu/payments/b', instance: instance('i2') },
      registrar,
      cred,
      'register',
    );
    expect(after).to.include({ type: 'rejected', code: 'revoked' });
    expect((after as { message: string }).message).to.match(
      new RegExp(`revoked at log index ${at} \\(key lost\\)`),
    );
  });

  it('a scope-admin of a prefix cannot issue outside it; key rotation keeps the scope administrable', () => {
    const s = new Scope(genesis());
    const newAdmin = key(11);
    const sub = s.issue({
      role: 'scope-admin',
      subject: newAdmin.publicKey,
      prefix: 'eu/payments/',
      notBeforeMs: 0,
      notAfterMs: T0 + 1e9,
    });
    expect(() => s.issue({ ...registrarCredential, prefix: 'eu/billing/' }, newAdmin, sub)).to.throw(
      /govern/,
    );
    s.issue({ ...registrarCredential, prefix: 'eu/payments/api' }, newAdmin, sub);
    // Rotation: a new root admin, then the old one revoked; the new one still administers.
    const root2 = key(12);
    const root2Cred = s.issue({
      role: 'scope-admin',
      subject: root2.publicKey,
      prefix: '',
      notBeforeMs: 0,
      notAfterMs: T0 + 1e9,
    });
    const r = s.submit(
      { type: 'revoke-credential', name: '', credentialId: adminCredential(s.scopeId), reason: 'rotated' },
      root2,
      root2Cred,
      'administer',
    );
    expect(r.type).to.equal('govern');
    expect(() => s.issue({ ...registrarCredential, subject: key(13).publicKey })).to.throw(/govern/);
    s.issue({ ...registrarCredential, subject: key(13).publicKey }, root2, root2Cred);
  });

  it('the policy refuses, defers or requires tags, and deny overrides the role', () => {
    const policy = JSON.stringify({
      version: 1,
      default: 'refuse',
      rules: [
        {
          name: 'no-canary',
          roles: ['*'],
          keys: [],
          scopes: ['local'],
          actions: ['register'],
          prefixes: ['eu/payments/canary'],
          tags: [],
          outcome: 'refuse',
          attest: false,
        },
        {
          name: 'review-db',
          roles: ['registrar'],
          keys: [],
          scopes: ['local'],
          actions: ['register'],
          prefixes: ['eu/payments/db'],
          tags: [],
          outcome: 'defer',
          attest: false,
        },
      ],
    });
    const s = new Scope(genesis());
    const set = s.submit(
      { type: 'set-policy', name: '', policy },
      admin,
      adminCredential(s.scopeId),
      'administer',
    );
    expect(set.type, JSON.stringify(set)).to.equal('govern');
    const cred = s.issue(registrarCredential);
    const reg = (name: string) =>
      s.submit({ type: 'register', name, instance: instance('i1') }, registrar, cred, 'register');
    expect(rejection(reg('eu/payments/canary'))).to.equal('policy-refused');
    expect(rejection(reg('eu/payments/db'))).to.equal('policy-deferred');
    expect(reg('eu/payments/api').type).to.equal('register');
  });

  it('quotas refuse over budget and name the budget', () => {
    const quota = JSON.stringify({
      version: 1,
      maxInstances: 3,
      prefixes: [{ prefix: 'eu/payments/db', maxInstances: 1 }],
      over: 'refuse',
    });
    const s = new Scope(genesis());
    const q = s.submit(
      { type: 'set-quota', name: '', quota },
      admin,
      adminCredential(s.scopeId),
      'administer',
    );
    expect(q.type, JSON.stringify(q)).to.equal('govern');
    const cred = s.issue(registrarCredential);
    const reg = (name: string, id: string) =>
      s.submit({ type: 'register', name, instance: instance(id) }, registrar, cred, 'register');
    expect(reg('eu/payments/db', 'a').type).to.equal('register');
    const overPrefix = reg('eu/payments/db', 'b');
    expect(rejection(overPrefix)).to.equal('quota-exceeded');
    expect((overPrefix as { message: string }).message).to.match(/eu\/payments\/db/);
    expect(reg('eu/payments/api', 'a').type).to.equal('register');
    expect(reg('eu/payments/api', 'b').type).to.equal('register');
    const overScope = reg('eu/payments/api', 'c');
    expect(rejection(overScope)).to.equal('quota-exceeded');
    expect((overScope as { message: string }).message).to.match(/max_instances/);
    // Replacing an existing instance adds nothing: admitted at the limit.
    expect(reg('eu/payments/api', 'a').type).to.equal('register');
  });

  it('records every admitted change in the lineage, signed by its admitting anchor, and tree heads match', () => {
    const s = new Scope(genesis());
    const cred = s.issue(registrarCredential);
    const r1 = s.submit(
      { type: 'register', name: 'eu/payments/api', instance: instance('i1') },
      registrar,
      cred,
      'register',
    );
    const refused = s.submit(
      { type: 'register', name: 'eu/x', instance: instance('i1') },
      registrar,
      cred,
      'register',
    );
    const r2 = s.submit(
      { type: 'deregister', name: 'eu/payments/api', id: 'i1' },
      registrar,
      cred,
      'deregister',
    );
    const m = s.machines[0] as RegistryStateMachine;
    expect(refused.type).to.equal('rejected');
    expect([
      (r1 as { lineageIndex?: number }).lineageIndex,
      (r2 as { lineageIndex?: number }).lineageIndex,
    ]).to.deep.equal([2, 3]);
    expect(m.lineage.size).to.equal(4);
    const entries = [0, 1, 2, 3].map((i) => m.lineage.entry(i));
    for (const e of entries) expect(verifyEntrySignature(decodeEntry(e), verifier)).to.equal(true);
    // Every member holds the same tree; a tree head of the leader's is accepted by all.
    const roots = s.machines.map((x) => bytesToHex(x.lineage.root()));
    expect(new Set(roots).size).to.equal(1);
    const head = signTreeHead(
      { scopeId: s.scopeId, size: 4, root: m.lineage.root(4), timestampMs: T0 },
      anchor,
    );
    const th = s.applyRaw(encodeCommand({ type: 'tree-head', name: '', treeHead: encodeTreeHead(head) }));
    expect(th.type).to.equal('govern');
    expect(m.treeHead?.size).to.equal(4);
    // A head with a wrong root, a stale size, or an outsider's signature is refused.
    const wrong = signTreeHead({ scopeId: s.scopeId, size: 3, root: rootHash([]), timestampMs: T0 }, anchor);
    expect(
      s.applyRaw(encodeCommand({ type: 'tree-head', name: '', treeHead: encodeTreeHead(wrong) })),
    ).to.include({ code: 'invalid-governance' });
    const outsider = signTreeHead(
      { scopeId: s.scopeId, size: 4, root: m.lineage.root(4), timestampMs: T0 },
      key(77),
    );
    expect(
      s.applyRaw(encodeCommand({ type: 'tree-head', name: '', treeHead: encodeTreeHead(outsider) })),
    ).to.include({ code: 'unauthenticated' });
  });

  it('a snapshot carries the governance state and the lineage', () => {
    const s = new Scope(genesis(), 1);
    const cred = s.issue(registrarCredential);
    s.submit(
      { type: 'register', name: 'eu/payments/api', instance: instance('i1') },
      registrar,
      cred,
      'register',
    );
    const m = s.machines[0] as RegistryStateMachine;
    const copy = RegistryStateMachine.restore(m.snapshot(), { verifier, expectedScopeId: s.scopeId });
    expect(bytesToHex(copy.lineage.root())).to.equal(bytesToHex(m.lineage.root()));
    expect(copy.authority.credential(cred)?.credential.prefix).to.equal('eu/payments/');
    expect(Buffer.from(copy.snapshot()).equals(Buffer.from(m.snapshot()))).to.equal(true);
    // And the copy keeps deciding like the original.
    s.machines.push(copy);
    expect(
      rejection(
        s.submit({ type: 'register', name: 'eu/zz', instance: instance('i1') }, registrar, cred, 'register'),
      ),
    ).to.equal('wrong-prefix');
  });

  it('an open scope admits unauthenticated changes and refuses administration', () => {
    const m = new RegistryStateMachine({ verifier });
    const open: Genesis = {
      name: 'dev',
      createdMs: 0,
      founders: [],
      admins: [],
      policy: '',
      quota: '',
      signatures: [],
    };
    expect(
      m.apply(1, encodeCommand({ type: 'genesis', name: '', genesis: encodeGenesis(open) })).type,
    ).to.equal('govern');
    expect(
      m.apply(2, encodeCommand({ type: 'register', name: 'dev/a', instance: instance('i1') })).type,
    ).to.equal('register');
    expect(m.apply(3, encodeCommand({ type: 'set-policy', name: '', policy: '{}' }))).to.include({
      code: 'unauthenticated',
    });
    expect(m.lineage.size).to.equal(2);
  });

  it('records membership changes in the lineage, unsigned, and an offline verifier accepts them only unsigned', () => {
    const s = new Scope(genesis());
    const cred = s.issue(registrarCredential);
    s.submit(
      { type: 'register', name: 'eu/payments/a', instance: instance('i1') },
      registrar,
      cred,
      'register',
    );
    s.index++;
    for (const m of s.machines)
      m.apply(s.index, encodeConfChange({ type: 'add-voter', node: '12D3KooWnewcomer' }), 'conf-change');
    const m = s.machines[0] as RegistryStateMachine;
    const last = decodeEntry(m.lineage.entry(m.lineage.size - 1));
    expect([last.kind, last.logIndex]).to.deep.equal(['membership', s.index]);
    expect(decodeConfChange(last.payload)).to.deep.equal({ type: 'add-voter', node: '12D3KooWnewcomer' });
    expect(new Set(s.machines.map((x) => bytesToHex(x.lineage.root()))).size).to.equal(1);
    const size = m.lineage.size;
    const head = signTreeHead(
      { scopeId: s.scopeId, size, root: m.lineage.root(size), timestampMs: T0 },
      anchor,
    );
    const entries = Array.from({ length: size }, (_, i) => m.lineage.entry(i));
    const verify = (list: Uint8Array[], heads = [head]) =>
      verifyExport(writeExport(s.scopeId, list, heads), { authority: lineageAuthority(verifier), verifier });
    expect(verify(entries).failures).to.deep.equal([]);
    // A membership entry that claims a signer is refused (and the head no longer matches).
    const forged = encodeEntry({
      ...last,
      signer: anchor.publicKey,
      signature: anchor.sign(entrySignedBytes(s.scopeId, 'membership', last.payload)),
    });
    const codes = verify([...entries.slice(0, -1), forged]).failures.map((f) => f.code);
    expect(codes).to.include('bad-signature');
  });

  it('sorts founders canonically (helper used by the genesis tools)', () => {
    expect(sortKeys([key(3).publicKey, key(2).publicKey]).map(bytesToHex)).to.deep.equal(
      [key(2).publicKey, key(3).publicKey].map(bytesToHex).sort(),
    );
  });
});
