// A governed scope over real processes and real gRPC: three anchors founded from one genesis file; every
// refusal reason of the scope's authority through the real server, each with its status and reason
// trailer; a revoked registrar refused at the same log index on every member; the lineage served with
// tree heads and proofs that verify.

import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { expect } from 'chai';
import { serviceClient } from '../../src/api/proto.ts';
import { decodeConfChange } from '../../src/consensus/conf-change.ts';
import { type Credential, credentialId, encodeCredential } from '../../src/governance/credential.ts';
import { type Genesis, scopeIdOf, signGenesis, sortKeys } from '../../src/governance/genesis.ts';
import { genesisToJson } from '../../src/governance/genesis-file.ts';
import { type Action, signRequest } from '../../src/governance/request.ts';
import { encodeKeyFile } from '../../src/identity/key-file.ts';
import { NobleVerifier, NodeSigner } from '../../src/identity/signer.ts';
import { decodeEntry, verifyEntrySignature } from '../../src/lineage/entry.ts';
import { leafHash, verifyConsistency, verifyInclusion } from '../../src/lineage/merkle.ts';
import { treeHeadBytes } from '../../src/lineage/tree-head.ts';
import { type Command, commandSignedBody, encodeCommand } from '../../src/registry/commands.ts';
import { peerChannel, peerTlsIdentity } from '../../src/transport/peer-credentials.ts';
import {
  type AnchorProcess,
  client,
  eventually,
  killAll,
  removeDir,
  startAnchorProcess,
  tempDir,
} from './anchor-harness.ts';

const SCOPE = 'eu';
const admin = new NodeSigner(new Uint8Array(32).fill(90));
const registrar = new NodeSigner(new Uint8Array(32).fill(91));
const DAY = 86_400_000;

type Call = ReturnType<typeof client>['call'];

async function refusedWith(
  p: Promise<unknown>,
): Promise<{ code: number; reason: string; outcome: string; details: string }> {
  try {
    await p;
  } catch (error) {
    const e = error as ServiceError;
    return {
      code: e.code,
      reason: String(e.metadata?.get('aq-reason')[0] ?? ''),
      outcome: String(e.metadata?.get('aq-outcome')[0] ?? ''),
      details: e.details,
    };
  }
  throw new Error('expected a refusal, the call succeeded');
}

describe('governed scope over gRPC (3 real processes, one genesis)', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  let anchors: AnchorProcess[] = [];
  let scopeId: Uint8Array;
  let adminCred: Uint8Array;
  let regCred: Uint8Array;
  let seq = 0;
  const clientId = `it-${randomBytes(4).toString('hex')}`;

  /** Builds the signed Auth of a request (what the CLI does with --key). */
  const auth = (
    signer: NodeSigner,
    cred: Uint8Array,
    action: Action,
    body: Uint8Array,
    at = Date.now(),
    forScope = scopeId,
  ) => signRequest(signer, forScope, cred, action, body, at, randomBytes(16));

  const register = (
    call: Call,
    name: string,
    id: string,
    signer = registrar,
    cred = regCred,
    at = Date.now(),
  ) => {
    const s = ++seq;
    const instance = {
      id,
      address: '10.0.0.1',
      port: 80,
      tags: [],
      meta: {},
      health: 'passing' as const,
      ttlMs: 0,
    };
    const body = encodeCommand({ type: 'register', name, instance, session: { client: clientId, seq: s } });
    return call<{ receipt: Record<string, unknown> }>('Register', {
      name,
      instance,
      clientId,
      seq: s,
      auth: auth(signer, cred, 'register', body, at),
    });
  };

  const submit = (call: Call, cmd: Command, signer = admin, cred = adminCred) => {
    const s = { client: clientId, seq: ++seq };
    const bare = { ...cmd, session: s } as Command;
    const a = auth(signer, cred, 'administer', commandSignedBody(bare));
    return call<{ index: number; lineageIndex: number; detail: string }>('Submit', {
      scope: SCOPE,
      command: encodeCommand({ ...bare, auth: a } as Command),
    });
  };

  const issue = async (call: Call, c: Omit<Credential, 'scopeId'>) => {
    const full = { ...c, scopeId };
    await submit(call, { type: 'issue-credential', name: '', credential: encodeCredential(full) });
    return credentialId(full);
  };

  before(async () => {
    const keys = [1, 2, 3].map((i) => new NodeSigner(new Uint8Array(32).fill(i)));
    for (let i = 0; i < 3; i++) {
      const dir = await tempDir(`gov${i}`);
      dirs.push(dir);
      await writeFile(join(dir, 'anchor.key'), encodeKeyFile(new Uint8Array(32).fill(i + 1)), {
        mode: 0o600,
      });
    }
    let g: Genesis = {
      name: SCOPE,
      createdMs: Date.now(),
      founders: sortKeys(keys.map((k) => k.publicKey)),
      admins: [admin.publicKey],
      policy: '',
      quota: '',
      signatures: [],
    };
    for (const k of [...keys, admin]) g = signGenesis(g, k);
    scopeId = scopeIdOf(g);
    adminCred = credentialId({
      scopeId,
      role: 'scope-admin',
      subject: admin.publicKey,
      prefix: '',
      notBeforeMs: 0,
      notAfterMs: Number.MAX_SAFE_INTEGER,
    });
    const file = join(dirs[0] as string, 'genesis.json');
    await writeFile(file, JSON.stringify(genesisToJson(g)));
    const tls = ['--grpc-tls', '127.0.0.1:0'];
    const first = await startAnchorProcess({
      dataDir: dirs[0] as string,
      scopes: [],
      bootstrapExpect: 3,
      extraArgs: ['--genesis', file, ...tls],
    });
    const bootstrap = [first.info.p2p[0] as string];
    const rest = await Promise.all(
      [1, 2].map((i) =>
        startAnchorProcess({
          dataDir: dirs[i] as string,
          scopes: [],
          bootstrapExpect: 3,
          bootstrap,
          extraArgs: ['--genesis', file, ...tls],
        }),
      ),
    );
    anchors = [first, ...rest];
    // The group applies its genesis.
    await eventually(
      'the genesis applied on every member',
      async () => {
        for (const a of anchors) {
          const c = client(a.info.grpc, 'Governance');
          try {
            const s = await c.call<{ scopeId: string; governed: boolean }>('GetScope', { scope: SCOPE });
            if (s.scopeId !== bytesToHex(scopeId) || !s.governed) return undefined;
          } finally {
            c.close();
          }
        }
        return true;
      },
      30_000,
    );
    const gov = client(first.info.grpc, 'Governance');
    try {
      regCred = await issue(gov.call, {
        role: 'registrar',
        subject: registrar.publicKey,
        prefix: 'eu/payments/',
        notBeforeMs: Date.now() - DAY,
        notAfterMs: Date.now() + DAY,
      });
    } finally {
      gov.close();
    }
  });

  after(async () => {
    await killAll();
    for (const d of dirs) await removeDir(d);
  });

  it('admits a signed registration under the prefix, with a receipt in the lineage', async () => {
    const c = client(anchors[1]?.info.grpc as string, 'Registry');
    try {
      const res = await register(c.call, 'eu/payments/api', 'i1');
      const r = res.receipt as { lineageIndex: number; entry: Uint8Array; scopeId: string };
      expect(r.scopeId).to.equal(bytesToHex(scopeId));
      const entry = decodeEntry(new Uint8Array(r.entry));
      expect(verifyEntrySignature(entry, new NobleVerifier())).to.equal(true);
      expect(entry.index).to.equal(r.lineageIndex);
      // A registrar's role does not grant resolving (no policy rule allows it here).
      const body = new TextEncoder().encode('eu/payments/api');
      const denied = await refusedWith(
        c.call('Resolve', { name: 'eu/payments/api', auth: auth(registrar, regCred, 'resolve', body) }),
      );
      expect(denied).to.include({ code: status.PERMISSION_DENIED, reason: 'policy-refused' });
      // An admin resolves; the answer states the lineage it reflects (lineage re-enters the index).
      const answer = await c.call<{ lineageSize: number; instances: unknown[] }>('Resolve', {
        name: 'eu/payments/api',
        auth: auth(admin, adminCred, 'resolve', body),
      });
      expect(answer.instances).to.have.length(1);
      expect(Number(answer.lineageSize)).to.be.greaterThan(r.lineageIndex);
    } finally {
      c.close();
    }
  });

  it('refuses each bad request with its reason code, and keeps serving', async () => {
    const c = client(anchors[0]?.info.grpc as string, 'Registry');
    const call = c.call;
    try {
      const instance = { id: 'x', address: '10.0.0.1', port: 80, tags: [], meta: {} };
      // No auth at all.
      expect(await refusedWith(call('Register', { name: 'eu/payments/a', instance }))).to.include({
        code: status.UNAUTHENTICATED,
        reason: 'unauthenticated',
      });
      // Outside the credential's prefix.
      expect(await refusedWith(register(call, 'eu/billing/a', 'x'))).to.include({
        code: status.PERMISSION_DENIED,
        reason: 'wrong-prefix',
        outcome: 'refuse',
      });
      // Signed by another key than the credential's.
      expect(await refusedWith(register(call, 'eu/payments/a', 'x', admin))).to.include({
        code: status.UNAUTHENTICATED,
        reason: 'bad-signature',
      });
      // A credential this scope never issued (another scope's).
      const foreign = credentialId({
        scopeId: new Uint8Array(32).fill(7),
        role: 'registrar',
        subject: registrar.publicKey,
        prefix: '',
        notBeforeMs: 0,
        notAfterMs: Date.now() + DAY,
      });
      expect(await refusedWith(register(call, 'eu/payments/a', 'x', registrar, foreign))).to.include({
        reason: 'unknown-credential',
      });
      // Clock skew beyond the window, both ways.
      expect(
        await refusedWith(register(call, 'eu/payments/a', 'x', registrar, regCred, Date.now() - 120_000)),
      ).to.include({ reason: 'clock-skew' });
      expect(
        await refusedWith(register(call, 'eu/payments/a', 'x', registrar, regCred, Date.now() + 120_000)),
      ).to.include({ reason: 'clock-skew' });
      // Signed for another scope (the auth names it).
      const s = ++seq;
      const inst = { ...instance, health: 'passing' as const, ttlMs: 0 };
      const body = encodeCommand({
        type: 'register',
        name: 'eu/payments/a',
        instance: inst,
        session: { client: clientId, seq: s },
      });
      const other = new Uint8Array(32).fill(3);
      expect(
        await refusedWith(
          call('Register', {
            name: 'eu/payments/a',
            instance: inst,
            clientId,
            seq: s,
            auth: { ...auth(registrar, regCred, 'register', body, Date.now(), other), scopeId: other },
          }),
        ),
      ).to.include({ reason: 'wrong-scope' });
      // The same signed request twice: a replay.
      const s2 = ++seq;
      const body2 = encodeCommand({
        type: 'register',
        name: 'eu/payments/r',
        instance: inst,
        session: { client: clientId, seq: s2 },
      });
      const request = {
        name: 'eu/payments/r',
        instance: inst,
        clientId,
        seq: s2,
        auth: auth(registrar, regCred, 'register', body2),
      };
      await call('Register', request);
      expect(await refusedWith(call('Register', request))).to.include({
        code: status.PERMISSION_DENIED,
        reason: 'replayed',
      });
      // Altered after signing (another instance address): the signature no longer verifies.
      const s3 = ++seq;
      const body3 = encodeCommand({
        type: 'register',
        name: 'eu/payments/t',
        instance: inst,
        session: { client: clientId, seq: s3 },
      });
      expect(
        await refusedWith(
          call('Register', {
            name: 'eu/payments/t',
            instance: { ...inst, address: '10.6.6.6' },
            clientId,
            seq: s3,
            auth: auth(registrar, regCred, 'register', body3),
          }),
        ),
      ).to.include({ reason: 'bad-signature' });
      // Still serving: a good request goes through.
      await register(call, 'eu/payments/ok', 'i1');
    } finally {
      c.close();
    }
  });

  it('refuses expired and not-yet-valid credentials', async () => {
    const gov = client(anchors[0]?.info.grpc as string, 'Governance');
    const reg = client(anchors[0]?.info.grpc as string, 'Registry');
    try {
      const later = new NodeSigner(new Uint8Array(32).fill(92));
      const future = await issue(gov.call, {
        role: 'registrar',
        subject: later.publicKey,
        prefix: 'eu/',
        notBeforeMs: Date.now() + DAY,
        notAfterMs: Date.now() + 2 * DAY,
      });
      expect(await refusedWith(register(reg.call, 'eu/payments/f', 'x', later, future))).to.include({
        reason: 'not-yet-valid',
      });
      const old = new NodeSigner(new Uint8Array(32).fill(93));
      const expired = await issue(gov.call, {
        role: 'registrar',
        subject: old.publicKey,
        prefix: 'eu/',
        notBeforeMs: Date.now() - 2 * DAY,
        notAfterMs: Date.now() - DAY,
      });
      expect(await refusedWith(register(reg.call, 'eu/payments/e', 'x', old, expired))).to.include({
        reason: 'expired',
      });
      // A registrar cannot administer.
      const sub = await refusedWith(
        submit(
          gov.call,
          { type: 'set-policy', name: '', policy: '{"version":1,"default":"allow","rules":[]}' },
          registrar,
          regCred,
        ),
      );
      expect(sub).to.include({ reason: 'policy-refused' });
      // Garbage, truncated and oversized governance commands: one line each, nothing applied.
      for (const command of [
        new Uint8Array([3, 4, 0]),
        randomBytes(40),
        encodeCommand({ type: 'set-policy', name: '', policy: '{}' }).subarray(0, 5),
      ]) {
        const e = await refusedWith(gov.call('Submit', { scope: SCOPE, command }));
        expect(e.code).to.equal(status.INVALID_ARGUMENT);
        expect(e.details).to.not.contain('\n');
      }
      const huge = await refusedWith(gov.call('Submit', { scope: SCOPE, command: new Uint8Array(70_000) }));
      expect(huge.code).to.equal(status.RESOURCE_EXHAUSTED);
      // A malformed policy is refused with one line, and the scope keeps serving.
      const bad = await refusedWith(
        submit(gov.call, { type: 'set-policy', name: '', policy: '{"version":1,"default":"maybe"}' }),
      );
      expect(bad.code).to.equal(status.INVALID_ARGUMENT);
      expect(bad.details).to.not.contain('\n');
    } finally {
      gov.close();
      reg.close();
    }
  });

  it('enforces quotas at admission and names the budget', async () => {
    const gov = client(anchors[2]?.info.grpc as string, 'Governance');
    const reg = client(anchors[2]?.info.grpc as string, 'Registry');
    try {
      const quota = JSON.stringify({
        version: 1,
        prefixes: [{ prefix: 'eu/payments/q', maxInstances: 1 }],
        over: 'refuse',
      });
      await submit(gov.call, { type: 'set-quota', name: '', quota });
      await register(reg.call, 'eu/payments/q', 'a');
      const r = await refusedWith(register(reg.call, 'eu/payments/q', 'b'));
      expect(r).to.include({ code: status.RESOURCE_EXHAUSTED, reason: 'quota-exceeded' });
      expect(r.details).to.match(/eu\/payments\/q/);
    } finally {
      gov.close();
      reg.close();
    }
  });

  it('over the TLS client port, a credentialed client reads without signing each request; writes stay signed', async () => {
    const gov = client(anchors[0]?.info.grpc as string, 'Governance');
    const seed = new Uint8Array(32).fill(94);
    const reader = new NodeSigner(seed);
    let cred: Uint8Array;
    try {
      cred = await issue(gov.call, {
        role: 'resolver',
        subject: reader.publicKey,
        prefix: 'eu/',
        notBeforeMs: 0,
        notAfterMs: Date.now() + DAY,
      });
    } finally {
      gov.close();
    }
    const a = anchors[1] as AnchorProcess;
    expect(a.info.grpcTls).to.be.a('string');
    const tlsClient = async (ownSeed: Uint8Array) => {
      const { credentials: creds, options } = peerChannel(await peerTlsIdentity(ownSeed), a.info.peerId);
      const Registry = serviceClient('Registry');
      const c = new Registry(a.info.grpcTls as string, creds, options) as unknown as Record<
        string,
        (
          req: unknown,
          md: Metadata,
          o: { deadline: number },
          cb: (e: ServiceError | null, r: unknown) => void,
        ) => void
      > & { close(): void };
      const call = <T>(method: string, req: unknown) =>
        new Promise<T>((resolve, reject) =>
          (c[method] as (...x: unknown[]) => void)(
            req,
            new Metadata(),
            { deadline: Date.now() + 10_000 },
            (e: ServiceError | null, r: T) => (e ? reject(e) : resolve(r)),
          ),
        );
      return { call, close: () => c.close() };
    };
    const own = await tlsClient(seed);
    const other = await tlsClient(new Uint8Array(32).fill(95));
    const plain = client(a.info.grpc, 'Registry');
    try {
      // The credential id alone, on a connection whose client certificate is its key: admitted.
      const answer = await own.call<{ instances: unknown[] }>('Resolve', {
        name: 'eu/payments/api',
        auth: { credentialId: cred },
      });
      expect(answer.instances).to.have.length(1);
      // Another key's connection presenting that credential: refused.
      expect(
        await refusedWith(other.call('Resolve', { name: 'eu/payments/api', auth: { credentialId: cred } })),
      ).to.include({ reason: 'bad-signature' });
      // The same unsigned request on the plaintext port: unauthenticated.
      expect(
        await refusedWith(plain.call('Resolve', { name: 'eu/payments/api', auth: { credentialId: cred } })),
      ).to.include({ reason: 'unauthenticated' });
      // Writes are not reads: an unsigned registration over TLS is refused.
      const instance = { id: 'x', address: '10.0.0.1', port: 80, tags: [], meta: {} };
      expect(
        await refusedWith(
          own.call('Register', {
            name: 'eu/payments/tls',
            instance,
            clientId: 'c',
            seq: 1,
            auth: { credentialId: cred },
          }),
        ),
      ).to.include({ reason: 'unauthenticated' });
    } finally {
      own.close();
      other.close();
      plain.close();
    }
  });

  it('a revoked registrar is refused at the same log index on every member', async () => {
    const gov = client(anchors[0]?.info.grpc as string, 'Governance');
    try {
      const res = await submit(gov.call, {
        type: 'revoke-credential',
        name: '',
        credentialId: regCred,
        reason: 'test',
      });
      const at = res.index;
      for (const a of anchors) {
        const g = client(a.info.grpc, 'Governance');
        const r = client(a.info.grpc, 'Registry');
        try {
          const view = await eventually('the revocation applied', async () => {
            const l = await g.call<{ credentials: { id: string; revokedAt: number }[] }>('ListCredentials', {
              scope: SCOPE,
              id: bytesToHex(regCred),
            });
            return l.credentials[0]?.revokedAt ? l.credentials[0] : undefined;
          });
          expect(view.revokedAt).to.equal(at);
          const refused = await refusedWith(register(r.call, 'eu/payments/after', 'x'));
          expect(refused).to.include({ reason: 'revoked' });
          expect(refused.details).to.contain(`revoked at log index ${at}`);
        } finally {
          g.close();
          r.close();
        }
      }
    } finally {
      gov.close();
    }
  });

  it('serves the lineage with signed tree heads, inclusion and consistency proofs that verify', async () => {
    const l = client(anchors[1]?.info.grpc as string, 'Lineage');
    try {
      const body = new TextEncoder().encode(SCOPE);
      const read = (method: string, extra: Record<string, unknown>) =>
        l.call<Record<string, unknown>>(method, {
          scope: SCOPE,
          ...extra,
          auth: auth(admin, adminCred, 'read-lineage', body),
        });
      const head = await eventually('a tree head covering the log', async () => {
        const r = (await read('GetTreeHead', {})) as { treeHead: Record<string, unknown>; size: number };
        return Number(r.treeHead.size) === r.size ? r : undefined;
      });
      const th = head.treeHead as {
        scopeId: string;
        size: number;
        root: Uint8Array;
        timestampMs: number;
        signer: Uint8Array;
        signature: Uint8Array;
      };
      const size = Number(th.size);
      const signed = treeHeadBytes({
        scopeId: hexToBytes(th.scopeId),
        size,
        root: new Uint8Array(th.root),
        timestampMs: Number(th.timestampMs),
      });
      expect(
        new NobleVerifier().verify(new Uint8Array(th.signer), signed, new Uint8Array(th.signature)),
      ).to.equal(true);
      const entries = (await read('GetEntries', { from: 0, limit: 10_000 })) as {
        entries: { index: number; entry: Uint8Array }[];
      };
      expect(entries.entries.length).to.be.at.least(size);
      const kinds = entries.entries.map((e) => decodeEntry(new Uint8Array(e.entry)).kind);
      expect(kinds[0]).to.equal('genesis');
      const i = size - 1;
      const proof = (await read('GetInclusionProof', { index: i, treeSize: size })) as {
        hashes: Uint8Array[];
      };
      const leaf = leafHash(new Uint8Array((entries.entries[i] as { entry: Uint8Array }).entry));
      expect(
        verifyInclusion(
          leaf,
          i,
          size,
          proof.hashes.map((h) => new Uint8Array(h)),
          new Uint8Array(th.root),
        ),
      ).to.equal(true);
      const older = await read('GetTreeHead', { size: 2 }).catch(() => undefined);
      if (older !== undefined) {
        const o = older.treeHead as { size: number; root: Uint8Array };
        const cp = (await read('GetConsistencyProof', { fromSize: Number(o.size), toSize: size })) as {
          hashes: Uint8Array[];
        };
        expect(
          verifyConsistency(
            Number(o.size),
            size,
            new Uint8Array(o.root),
            new Uint8Array(th.root),
            cp.hashes.map((h) => new Uint8Array(h)),
          ),
        ).to.equal(true);
      }
      // Without a credential, a governed scope's lineage is not readable.
      const denied = await refusedWith(l.call('GetEntries', { scope: SCOPE }));
      expect(denied.reason).to.equal('unauthenticated');
    } finally {
      l.close();
    }
  });

  it('admits a new anchor only once credentialed, and rotates a founder out without a gap', async () => {
    const gov = client(anchors[0]?.info.grpc as string, 'Governance');
    const dir = await tempDir('gov3');
    dirs.push(dir);
    const seed = new Uint8Array(32).fill(4);
    await writeFile(join(dir, 'anchor.key'), encodeKeyFile(seed), { mode: 0o600 });
    const newcomer = await startAnchorProcess({
      dataDir: dir,
      scopes: [SCOPE],
      // Waits for the group rather than founding one alone; it learns the genesis from the log.
      bootstrapExpect: 3,
      bootstrap: [anchors[0]?.info.p2p[0] as string],
    });
    const membersOf = async () => {
      const m = client(anchors[0]?.info.grpc as string, 'Membership');
      try {
        return (await m.call<{ members: { id: string; role: string }[] }>('Members', { scope: SCOPE }))
          .members;
      } finally {
        m.close();
      }
    };
    try {
      // Without a credential its Join is refused (and it says so), and it is not a member.
      await eventually('the refusal in its log', async () =>
        newcomer.logs.some((l) => l.includes('join refused by the scope')) ? true : undefined,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${newcomer.logs.slice(-15).join('\n')}`);
      });
      expect((await membersOf()).map((m) => m.id)).to.not.include(newcomer.info.peerId);
      // The admin credentials it as an anchor: it joins, and is promoted to voter.
      await issue(gov.call, {
        role: 'anchor',
        subject: new NodeSigner(seed).publicKey,
        prefix: '',
        notBeforeMs: 0,
        notAfterMs: Number.MAX_SAFE_INTEGER,
      });
      await eventually(
        'the newcomer a voter',
        async () =>
          (await membersOf()).find((m) => m.id === newcomer.info.peerId)?.role === 'voter' ? true : undefined,
        30_000,
      );
      // The membership changes are lineage entries (unsigned; bound by the tree heads).
      const l = client(anchors[0]?.info.grpc as string, 'Lineage');
      try {
        const got = await l.call<{ entries: { entry: Uint8Array }[] }>('GetEntries', {
          scope: SCOPE,
          limit: 10_000,
          auth: auth(admin, adminCred, 'read-lineage', new TextEncoder().encode(SCOPE)),
        });
        const membership = got.entries
          .map((e) => decodeEntry(new Uint8Array(e.entry)))
          .filter((e) => e.kind === 'membership')
          .map((e) => decodeConfChange(e.payload));
        expect(membership).to.deep.include({ type: 'add-learner', node: newcomer.info.peerId });
        expect(membership).to.deep.include({ type: 'add-voter', node: newcomer.info.peerId });
      } finally {
        l.close();
      }
      // Rotation: a founder leaves the group and its credential is revoked; the scope keeps serving.
      const old = anchors[2] as AnchorProcess;
      const m = client(anchors[0]?.info.grpc as string, 'Membership');
      try {
        await m.call('Remove', { scope: SCOPE, id: old.info.peerId });
      } finally {
        m.close();
      }
      const oldKey = new NodeSigner(new Uint8Array(32).fill(3)).publicKey;
      const oldCred = credentialId({
        scopeId,
        role: 'anchor',
        subject: oldKey,
        prefix: '',
        notBeforeMs: 0,
        notAfterMs: Number.MAX_SAFE_INTEGER,
      });
      await submit(gov.call, {
        type: 'revoke-credential',
        name: '',
        credentialId: oldCred,
        reason: 'rotated',
      });
      const admin2 = await issue(gov.call, {
        role: 'registrar',
        subject: registrar.publicKey,
        prefix: 'eu/rotated/',
        notBeforeMs: Date.now() - DAY,
        notAfterMs: Date.now() + DAY,
      });
      const r = client(newcomer.info.grpc, 'Registry');
      try {
        const res = await register(r.call, 'eu/rotated/api', 'i1', registrar, admin2);
        expect((res.receipt as { anchor: string }).anchor).to.equal(newcomer.info.peerId);
      } finally {
        r.close();
      }
    } finally {
      gov.close();
    }
  });
});
