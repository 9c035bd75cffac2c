// Three real `aq anchor start` processes on loopback form a scope group from a bootstrap list and serve
// it: registrations through gRPC and the CLI, receipts checked offline, forwarding from followers,
// TTL expiry seen by a watch, kill -9 of the leader and of the whole group, a fourth anchor joining,
// and consensus traffic from a process that is not a member refused.

import { randomBytes } from 'node:crypto';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { expect } from 'chai';
import { serviceClient } from '../../src/api/proto.ts';
import { makeMessage } from '../../src/consensus/index.ts';
import { publicKeyOfPeerId } from '../../src/identity/peer-id.ts';
import { NobleVerifier } from '../../src/identity/signer.ts';
import { decodeEntry, verifyEntrySignature } from '../../src/lineage/entry.ts';
import { decodeCommand } from '../../src/registry/commands.ts';
import { messageToWire } from '../../src/transport/consensus-codec.ts';
import { peerChannel, peerTlsIdentity } from '../../src/transport/peer-credentials.ts';
import {
  type AnchorProcess,
  client,
  eventually,
  kill,
  killAll,
  metricsText,
  metricValue,
  removeDir,
  runAq,
  startAnchorProcess,
  tempDir,
} from './anchor-harness.ts';

const SCOPE = 'eu-central';

interface Member {
  id: string;
  role: string;
  leader: boolean;
}

async function members(a: AnchorProcess): Promise<{ members: Member[]; term: number }> {
  const c = client(a.info.grpc, 'Membership');
  try {
    return await c.call('Members', { scope: SCOPE }, 3_000);
  } finally {
    c.close();
  }
}

async function leaderOf(anchors: AnchorProcess[]): Promise<AnchorProcess> {
  return eventually('a leader that every live anchor agrees on', async () => {
    const views = await Promise.all(anchors.map((a) => members(a)));
    const leaders = new Set(views.map((v) => v.members.find((m) => m.leader)?.id ?? ''));
    if (leaders.size !== 1 || leaders.has('')) return undefined;
    const id = [...leaders][0];
    return anchors.find((a) => a.info.peerId === id);
  });
}

function instance(id: string, port: number, extra: Record<string, unknown> = {}) {
  return { id, address: '10.0.0.1', port, tags: ['v1'], meta: { zone: 'a' }, ...extra };
}

describe('anchor group (3 real processes)', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  let anchors: AnchorProcess[] = [];
  const acknowledged: { name: string; id: string }[] = [];

  before(async () => {
    for (let i = 0; i < 4; i++) dirs.push(await tempDir(`group${i}`));
    const first = await startAnchorProcess({
      dataDir: dirs[0] as string,
      scopes: [SCOPE],
      bootstrapExpect: 3,
    });
    const bootstrap = [first.info.p2p[0] as string];
    const rest = await Promise.all(
      [1, 2].map((i) =>
        startAnchorProcess({ dataDir: dirs[i] as string, scopes: [SCOPE], bootstrapExpect: 3, bootstrap }),
      ),
    );
    anchors = [first, ...rest];
  });

  after(async () => {
    await killAll();
    for (const d of dirs) await removeDir(d);
  });

  it('forms the group from the bootstrap list: three voters, one leader', async () => {
    await leaderOf(anchors);
    const view = await members(anchors[0] as AnchorProcess);
    expect(view.members.map((m) => m.role)).to.deep.equal(['voter', 'voter', 'voter']);
    expect(view.members.map((m) => m.id).sort()).to.deep.equal(anchors.map((a) => a.info.peerId).sort());
  });

  it('registers through a follower (forwarded) and returns a receipt that verifies offline', async () => {
    const leader = await leaderOf(anchors);
    const follower = anchors.find((a) => a !== leader) as AnchorProcess;
    const c = client(follower.info.grpc, 'Registry');
    try {
      const res = await c.call<{ receipt: Record<string, unknown>; index: number }>('Register', {
        name: `${SCOPE}/payments/checkout`,
        instance: instance('co-1', 8080),
      });
      acknowledged.push({ name: `${SCOPE}/payments/checkout`, id: 'co-1' });
      const r = res.receipt as {
        scope: string;
        name: string;
        index: number;
        anchor: string;
        signature: Uint8Array;
        scopeId: string;
        lineageIndex: number;
        entry: Uint8Array;
      };
      // The follower admitted it: its key signed the lineage entry, which names exactly this registration.
      expect(r.anchor).to.equal(follower.info.peerId);
      const entry = decodeEntry(new Uint8Array(r.entry));
      expect([entry.index, entry.logIndex, bytesToHex(entry.scopeId)]).to.deep.equal([
        r.lineageIndex,
        r.index,
        r.scopeId,
      ]);
      expect(r.lineageIndex).to.be.greaterThan(0); // entry 0 is the genesis
      expect(decodeCommand(entry.payload)).to.deep.include({
        type: 'register',
        name: `${SCOPE}/payments/checkout`,
      });
      const verifier = new NobleVerifier();
      expect(Buffer.from(entry.signer).equals(Buffer.from(publicKeyOfPeerId(r.anchor)))).to.equal(true);
      expect(verifyEntrySignature(entry, verifier)).to.equal(true);
      const tampered = { ...entry, payload: Uint8Array.from(entry.payload) };
      tampered.payload[tampered.payload.length - 1] = (tampered.payload.at(-1) as number) ^ 1;
      expect(verifyEntrySignature(tampered, verifier)).to.equal(false);
    } finally {
      c.close();
    }
    // Every member answers a linearizable resolve with it.
    for (const a of anchors) {
      const rc = client(a.info.grpc, 'Registry');
      try {
        const answer = await rc.call<{ instances: { id: string }[] }>('Resolve', {
          name: `${SCOPE}/payments/checkout`,
        });
        expect(answer.instances.map((i) => i.id)).to.deep.equal(['co-1']);
      } finally {
        rc.close();
      }
    }
  });

  it('registers and resolves through the aq CLI', async () => {
    const a = anchors[2] as AnchorProcess;
    const reg = await runAq([
      'register',
      `${SCOPE}/web`,
      '--id',
      'web-1',
      '--address',
      '10.1.0.7',
      '--port',
      '443',
      '--tag',
      'blue',
      '--anchor',
      a.info.grpc,
    ]);
    expect(reg.code, reg.stderr).to.equal(0);
    acknowledged.push({ name: `${SCOPE}/web`, id: 'web-1' });
    const res = await runAq([
      'resolve',
      `${SCOPE}/web`,
      '--json',
      '--anchor',
      anchors[0]?.info.grpc as string,
    ]);
    expect(res.code, res.stderr).to.equal(0);
    const answer = JSON.parse(res.stdout) as { instances: { id: string; address: string; port: number }[] };
    expect(answer.instances.map((i) => [i.id, i.address, i.port])).to.deep.equal([
      ['web-1', '10.1.0.7', 443],
    ]);
  });

  it('turns an instance critical when its TTL passes and a watch sees it; a heartbeat revives it', async () => {
    const name = `${SCOPE}/jobs/worker`;
    const a = anchors[1] as AnchorProcess;
    const c = client(a.info.grpc, 'Registry');
    const events: { kind: string; instances: { health: string }[] }[] = [];
    const Ctor = serviceClient('Registry');
    const watcher = new Ctor(a.info.grpc, credentials.createInsecure()) as unknown as {
      Watch(req: unknown): NodeJS.EventEmitter & { cancel(): void };
      close(): void;
    };
    const stream = watcher.Watch({ name, afterIndex: 0 });
    stream.on('data', (e: { kind: string; instances: { health: string }[] }) => events.push(e));
    stream.on('error', () => {});
    try {
      await c.call('Register', { name, instance: instance('w-1', 9000, { ttlMs: 1_000 }) });
      acknowledged.push({ name, id: 'w-1' });
      await eventually('the watch to see the instance turn critical', async () =>
        events.some((e) => e.kind === 'KIND_CHANGE' && e.instances[0]?.health === 'HEALTH_CRITICAL')
          ? true
          : undefined,
      );
      const hb = await c.call<{ health: string }>('Heartbeat', { name, id: 'w-1' });
      expect(hb.health).to.be.oneOf(['HEALTH_CRITICAL', 'HEALTH_PASSING']);
      await eventually('the heartbeat to make it passing again', async () => {
        const r = await c.call<{ instances: { health: string }[] }>('Resolve', { name });
        return r.instances[0]?.health === 'HEALTH_PASSING' ? true : undefined;
      });
    } finally {
      stream.cancel();
      watcher.close();
      c.close();
    }
  });

  it('refuses consensus traffic from an anchor key that is not a member', async () => {
    const leader = await leaderOf(anchors);
    const before = await members(leader);
    const intruder = await peerTlsIdentity(randomBytes(32));
    const target = anchors.find((a) => a !== leader) as AnchorProcess;
    const { credentials: creds, options } = peerChannel(intruder, target.info.peerId);
    const Consensus = serviceClient('Consensus');
    const cc = new Consensus(target.info.peer, creds, options) as unknown as {
      Step(cb: (e: ServiceError | null) => void): NodeJS.WritableStream & { end(): void };
      close(): void;
    };
    const huge = before.term + 100;
    const vote = (from: string) =>
      messageToWire(makeMessage('vote', from, target.info.peerId, huge, { logTerm: huge, index: 1_000_000 }));
    await new Promise<void>((resolve) => {
      const stream = cc.Step(() => resolve());
      // As itself (not a member), then pretending to be the leader (its certificate says otherwise).
      stream.write({ envelopes: [{ scope: SCOPE, message: vote(intruder.peerId) }] } as never);
      stream.write({ envelopes: [{ scope: SCOPE, message: vote(leader.info.peerId) }] } as never);
      stream.end();
    });
    cc.close();
    const text = await metricsText(target.info.http);
    expect(metricValue(text, 'aq_consensus_refused_total{reason="notMember"}')).to.be.greaterThan(0);
    expect(metricValue(text, 'aq_consensus_refused_total{reason="spoofed"}')).to.be.greaterThan(0);
    const after = await members(target);
    expect(after.term).to.be.lessThan(huge);
  });

  it('elects a new leader after kill -9 of the leader and loses nothing acknowledged', async () => {
    const leader = await leaderOf(anchors);
    const started = Date.now();
    await kill(leader);
    const survivors = anchors.filter((a) => a !== leader);
    const next = await leaderOf(survivors);
    const elapsed = Date.now() - started;
    expect(next).to.not.equal(leader);
    expect(elapsed).to.be.lessThan(10_000);
    for (const a of survivors) await expectAcknowledged(a, acknowledged);
    // The killed anchor restarts from its data dir and rejoins.
    const restarted = await startAnchorProcess({
      dataDir: leader.dataDir,
      scopes: [SCOPE],
      bootstrapExpect: 3,
      bootstrap: [survivors[0]?.info.p2p[0] as string],
    });
    anchors = [...survivors, restarted];
    await leaderOf(anchors);
    await eventually('the restarted anchor to catch up', async () => {
      await expectAcknowledged(restarted, acknowledged);
      return true;
    });
  });

  it('survives kill -9 of all three and a restart: nothing acknowledged is lost', async () => {
    const c = client((anchors[0] as AnchorProcess).info.grpc, 'Registry');
    for (let i = 0; i < 20; i++) {
      await c.call('Register', {
        name: `${SCOPE}/batch/svc-${i % 4}`,
        instance: instance(`b-${i}`, 7000 + i),
      });
      acknowledged.push({ name: `${SCOPE}/batch/svc-${i % 4}`, id: `b-${i}` });
    }
    c.close();
    await Promise.all(anchors.map((a) => kill(a)));
    const first = await startAnchorProcess({
      dataDir: anchors[0]?.dataDir as string,
      scopes: [SCOPE],
      bootstrapExpect: 3,
    });
    const bootstrap = [first.info.p2p[0] as string];
    const rest = await Promise.all(
      anchors
        .slice(1)
        .map((a) =>
          startAnchorProcess({ dataDir: a.dataDir, scopes: [SCOPE], bootstrapExpect: 3, bootstrap }),
        ),
    );
    anchors = [first, ...rest];
    await leaderOf(anchors);
    for (const a of anchors) await expectAcknowledged(a, acknowledged);
  });

  it('adds a fourth anchor as a learner, then promotes it to voter', async () => {
    const fourth = await startAnchorProcess({
      dataDir: dirs[3] as string,
      scopes: [SCOPE],
      bootstrapExpect: 3,
      bootstrap: [anchors[1]?.info.p2p[0] as string],
    });
    anchors.push(fourth);
    const seenAsLearnerOrVoter = await eventually(
      'the fourth anchor to become a voter',
      async () => {
        const view = await members(anchors[0] as AnchorProcess);
        const me = view.members.find((m) => m.id === fourth.info.peerId);
        return me?.role === 'voter' ? view : undefined;
      },
      30_000,
    );
    expect(seenAsLearnerOrVoter.members.filter((m) => m.role === 'voter')).to.have.length(4);
    // Through the learner stage: the leader logged both changes for this anchor, in this order.
    const logs = anchors.flatMap((a) => a.logs).filter((l) => l.includes(fourth.info.peerId));
    const added = logs.findIndex((l) => l.includes('"added a learner"'));
    const promoted = logs.findIndex((l) => l.includes('"promoting a caught-up learner to voter"'));
    expect(added, 'a leader logged the learner').to.be.greaterThan(-1);
    expect(promoted, 'a leader logged the promotion').to.be.greaterThan(added);
    await eventually('the new voter to hold every acknowledged registration', async () => {
      await expectAcknowledged(fourth, acknowledged);
      return true;
    });
  });

  it("answers FAILED_PRECONDITION with the leader's address when a follower is asked not to forward", async () => {
    const leader = await leaderOf(anchors);
    const follower = anchors.find((a) => a !== leader) as AnchorProcess;
    const c = client(follower.info.grpc, 'Registry');
    try {
      const error = (await c
        .call('Register', { name: `${SCOPE}/direct`, instance: instance('d-1', 1), noForward: true })
        .then(
          () => null,
          (e: ServiceError) => e,
        )) as ServiceError | null;
      expect(error?.code).to.equal(9); // FAILED_PRECONDITION
      expect(error?.details).to.include(leader.info.grpc);
      expect(error?.metadata.get('aq-leader')).to.deep.equal([leader.info.grpc]);
    } finally {
      c.close();
    }
  });

  it('removes an anchor with aq members remove, then keeps serving without its bootstrap peer', async () => {
    const fourth = anchors[3] as AnchorProcess;
    const asked = anchors[1] as AnchorProcess;
    const removed = await runAq([
      'members',
      'remove',
      SCOPE,
      fourth.info.peerId,
      '--anchor',
      asked.info.grpc,
    ]);
    expect(removed.code, removed.stderr).to.equal(0);
    await eventually('three voters again', async () => {
      const view = await members(asked);
      return view.members.length === 3 && !view.members.some((m) => m.id === fourth.info.peerId)
        ? true
        : undefined;
    });
    await kill(fourth);
    // The anchor every other one bootstrapped from goes away: the rest stay connected and serve.
    const bootstrapPeer = anchors[0] as AnchorProcess;
    await kill(bootstrapPeer);
    const rest = anchors.slice(1, 3);
    await leaderOf(rest);
    const c = client((rest[0] as AnchorProcess).info.grpc, 'Registry');
    try {
      await c.call('Register', { name: `${SCOPE}/after-bootstrap`, instance: instance('ab-1', 2) });
      acknowledged.push({ name: `${SCOPE}/after-bootstrap`, id: 'ab-1' });
    } finally {
      c.close();
    }
    for (const a of rest) await expectAcknowledged(a, acknowledged);
  });
});

async function expectAcknowledged(
  a: AnchorProcess,
  acked: readonly { name: string; id: string }[],
): Promise<void> {
  const c = client(a.info.grpc, 'Registry');
  try {
    const byName = new Map<string, string[]>();
    for (const { name, id } of acked) byName.set(name, [...(byName.get(name) ?? []), id]);
    for (const [name, ids] of byName) {
      const r = await c.call<{ instances: { id: string }[] }>('Resolve', { name }, 5_000);
      const have = new Set(r.instances.map((i) => i.id));
      for (const id of ids) expect(have.has(id), `${name}/${id} on ${a.info.peerId}`).to.equal(true);
    }
  } finally {
    c.close();
  }
}
