import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { expect } from 'chai';
import { pino } from 'pino';
import { peerIdOfPublicKey } from '../../src/identity/peer-id.ts';
import { NobleVerifier, NodeSigner } from '../../src/identity/signer.ts';
import {
  type Announcement,
  AnnouncementTable,
  decodeSignedAnnouncement,
  encodeAnnouncement,
  encodeSignedAnnouncement,
  MAX_ANNOUNCEMENT_BYTES,
  Mesh,
  MeshError,
  signAnnouncement,
  verifyAnnouncement,
} from '../../src/mesh/index.ts';

const LOOPBACK = '/ip4/127.0.0.1/tcp/0';

/** Polls until check() holds; fails with what it was waiting for after timeoutMs. */
async function waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now() - started;
}

function self(n: number, region: string, scopes: string[]) {
  return {
    grpc: `127.0.0.1:${7000 + n}`,
    peer: `127.0.0.1:${7100 + n}`,
    http: `127.0.0.1:${7200 + n}`,
    region,
    scopes,
  };
}

describe('mesh (libp2p on loopback)', function () {
  this.timeout(30_000);

  const dir = mkdtempSync(join(tmpdir(), 'aq-mesh-'));
  const seeds = { a: randomBytes(32), b: randomBytes(32), c: randomBytes(32) };
  const bFile = join(dir, 'b', 'known-peers.json');
  const running = new Set<Mesh>();
  // Debug lines of every mesh, for assertions on why something was dropped and for failure diagnosis.
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
  let a: Mesh;
  let b: Mesh;
  let c: Mesh;

  async function start(options: Parameters<typeof Mesh.create>[0]): Promise<Mesh> {
    const mesh = await Mesh.create({ logger, announceIntervalMs: 1000, ...options });
    running.add(mesh);
    return mesh;
  }

  async function stop(mesh: Mesh): Promise<void> {
    await mesh.stop();
    running.delete(mesh);
  }

  after(async () => {
    await Promise.all([...running].map((m) => m.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('three anchors, B and C bootstrapping to A only, all hold all three announcements', async () => {
    a = await start({
      seed: seeds.a,
      listen: LOOPBACK,
      bootstrap: [],
      self: self(1, 'eu-central', ['eu-central']),
    });
    const boot = a.multiaddrs();
    expect(boot).to.have.length.greaterThan(0);
    expect(boot[0]).to.match(new RegExp(`/p2p/${a.peerId}$`));
    const t0 = Date.now();
    [b, c] = await Promise.all([
      start({
        seed: seeds.b,
        listen: LOOPBACK,
        bootstrap: boot,
        self: self(2, 'eu-west', ['eu-west', 'eu-west/payments']),
        knownPeersFile: bFile,
      }),
      start({ seed: seeds.c, listen: LOOPBACK, bootstrap: boot, self: self(3, 'us-east', ['us-east']) }),
    ]);
    const ids = [a.peerId, b.peerId, c.peerId].sort();
    const took = await waitFor(
      'all three meshes to hold all three announcements',
      () => [a, b, c].every((m) => JSON.stringify(m.anchors().map((x) => x.peerId)) === JSON.stringify(ids)),
      5000,
    );
    console.log(`      converged in ${took} ms after B and C started (${Date.now() - t0} ms incl. start)`);

    for (const m of [a, b, c]) {
      const seenB = m.lookup(b.peerId)!;
      expect(seenB.grpc).to.equal('127.0.0.1:7002');
      expect(seenB.peer).to.equal('127.0.0.1:7102');
      expect(seenB.http).to.equal('127.0.0.1:7202');
      expect(seenB.region).to.equal('eu-west');
      expect(seenB.scopes).to.deep.equal(['eu-west', 'eu-west/payments']);
      expect(seenB.p2p).to.deep.equal(b.multiaddrs());
      expect(m.lookup(a.peerId)?.region).to.equal('eu-central');
      expect(m.lookup(c.peerId)?.scopes).to.deep.equal(['us-east']);
      expect(m.lookup(c.peerId)?.grpc).to.equal('127.0.0.1:7003');
    }
    // Each anchor learned the others' p2p addresses and dialed them: a full mesh of direct connections.
    await waitFor('B and C to be directly connected', () => b.connected().includes(c.peerId), 5000);
    await waitFor('C and B to be directly connected', () => c.connected().includes(b.peerId), 5000);
  });

  it('losing the bootstrap anchor changes nothing: B and C stay connected and updates still spread', async () => {
    const changes: Announcement[] = [];
    const unsubscribe = c.onAnchor((x) => changes.push(x));
    await stop(a);
    await waitFor('B and C to notice A is gone', () => !b.connected().includes(a.peerId), 5000);
    await waitFor('C to notice A is gone', () => !c.connected().includes(a.peerId), 5000);
    expect(b.connected()).to.include(c.peerId);
    expect(c.connected()).to.include(b.peerId);

    const before = c.lookup(b.peerId)!.seq;
    b.update({ region: 'eu-north', scopes: ['eu-north'] });
    const took = await waitFor('C to see B’s update', () => c.lookup(b.peerId)?.region === 'eu-north', 3000);
    console.log(`      update reached C in ${took} ms`);
    const seen = c.lookup(b.peerId)!;
    expect(seen.seq).to.be.greaterThan(before);
    expect(seen.scopes).to.deep.equal(['eu-north']);
    expect(seen.grpc).to.equal('127.0.0.1:7002'); // untouched fields carry over
    expect(changes.map((x) => x.peerId)).to.include(b.peerId);
    unsubscribe();
    // An update that cannot be signed (oversized) throws and changes nothing.
    const seqNow = b.lookup(b.peerId)!.seq;
    expect(() => b.update({ scopes: Array.from({ length: 100 }, () => 'x'.repeat(200)) })).to.throw(
      MeshError,
    );
    expect(b.lookup(b.peerId)!.seq).to.equal(seqNow);
    expect(b.lookup(b.peerId)!.scopes).to.deep.equal(['eu-north']);
    // A's announcement stays in the view: the view is what was verified, not who is online.
    expect(c.lookup(a.peerId)).to.not.equal(undefined);
  });

  it('a restarted anchor with no bootstrap rejoins from its known-peers file', async () => {
    await waitFor(
      'B’s known-peers file to hold C',
      () => {
        try {
          return readFileSync(bFile, 'utf8').includes(c.peerId);
        } catch {
          return false;
        }
      },
      3000,
    );
    const oldSeq = c.lookup(b.peerId)!.seq;
    await stop(b);
    // A stays down: B's only way back is the file.
    const b2 = await start({
      seed: seeds.b,
      listen: LOOPBACK,
      bootstrap: [],
      self: self(2, 'eu-north', ['eu-north']),
      knownPeersFile: bFile,
    });
    expect(b2.peerId).to.equal(b.peerId);
    // The file alone (re-verified) gives the restarted anchor its view and the addresses to dial.
    expect(b2.lookup(c.peerId)?.region).to.equal('us-east');
    expect(b2.lookup(b2.peerId)!.seq).to.be.greaterThan(oldSeq);
    await waitFor('restarted B to connect to C', () => b2.connected().includes(c.peerId), 5000);
    await waitFor(
      'C to hold restarted B’s new announcement',
      () => c.lookup(b2.peerId)!.seq > oldSeq && c.lookup(b2.peerId)!.p2p[0] === b2.multiaddrs()[0],
      5000,
    );
    c.update({ scopes: ['us-east', 'us-east/billing'] });
    await waitFor(
      'restarted B to see C’s update',
      () => b2.lookup(c.peerId)?.scopes.includes('us-east/billing') === true,
      3000,
    );
    expect(b2.lookup(c.peerId)?.region).to.equal('us-east');
    await stop(b2);
    await b2.stop(); // idempotent
  });

  it('rejects bad options with a MeshError', async () => {
    const err = await Mesh.create({
      seed: seeds.a,
      listen: LOOPBACK,
      bootstrap: ['/ip4/127.0.0.1/tcp/1'],
      self: self(9, 'x', []),
    }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(MeshError);
    expect((err as Error).message).to.match(/no \/p2p\/<peerId>/);
    const short = await Mesh.create({
      seed: new Uint8Array(7),
      listen: LOOPBACK,
      bootstrap: [],
      self: self(9, 'x', []),
    }).catch((e: unknown) => e);
    expect(short).to.be.instanceOf(MeshError);
  });
});

describe('announcements (pure)', () => {
  const seed = new Uint8Array(32).fill(7);
  const signer = new NodeSigner(seed);
  const peerId = peerIdOfPublicKey(signer.publicKey);

  function announcement(seq: number, over: Partial<Announcement> = {}): Announcement {
    return {
      peerId,
      grpc: '10.0.0.1:7000',
      peer: '10.0.0.1:7100',
      http: '10.0.0.1:7200',
      p2p: [`/ip4/10.0.0.1/tcp/4001/p2p/${peerId}`],
      region: 'eu-central',
      scopes: ['eu-central', 'eu-central/payments'],
      seq,
      ...over,
    };
  }

  it('signs canonical bytes that verify with both verifiers', () => {
    const signed = signAnnouncement(announcement(1), signer);
    const text = new TextDecoder().decode(encodeAnnouncement(signed.announcement));
    expect(text).to.equal(
      JSON.stringify([
        'aq/announcement/1',
        peerId,
        1,
        '10.0.0.1:7000',
        '10.0.0.1:7100',
        '10.0.0.1:7200',
        'eu-central',
        [`/ip4/10.0.0.1/tcp/4001/p2p/${peerId}`],
        ['eu-central', 'eu-central/payments'],
        [],
      ]),
    );
    // Field order in the object does not matter: the canonical form is positional.
    const reordered = JSON.parse(
      JSON.stringify({ signature: signed.signature, announcement: signed.announcement }),
    );
    expect(verifyAnnouncement(reordered).ok).to.equal(true);
    expect(verifyAnnouncement(signed, new NobleVerifier()).ok).to.equal(true);
    const round = decodeSignedAnnouncement(encodeSignedAnnouncement(signed));
    expect(round.ok && round.signed.announcement).to.deep.equal(announcement(1));
    // The optional `formed` list is signed too; absent and [] are the same statement.
    const withFormed = signAnnouncement(announcement(2, { formed: ['eu-central'] }), signer);
    expect(verifyAnnouncement(withFormed).ok).to.equal(true);
    const noFormed = { ...withFormed, announcement: { ...withFormed.announcement, formed: [] } };
    expect(verifyAnnouncement(noFormed).ok).to.equal(false);
    const emptyFormed = { ...signed, announcement: { ...signed.announcement, formed: [] } };
    expect(verifyAnnouncement(emptyFormed).ok).to.equal(true);
  });

  it('rejects an announcement changed after signing', () => {
    const signed = signAnnouncement(announcement(1), signer);
    for (const tamper of [
      { grpc: '10.6.6.6:7000' },
      { region: 'us-east' },
      { scopes: ['eu-central'] },
      { scopes: ['eu-central/payments', 'eu-central'] },
      { p2p: [] },
      { formed: ['eu-central'] },
      { seq: 2 },
    ]) {
      const result = verifyAnnouncement({ ...signed, announcement: { ...signed.announcement, ...tamper } });
      expect(result.ok, JSON.stringify(tamper)).to.equal(false);
      expect(!result.ok && result.reason).to.match(/bad signature/);
    }
    const flipped = Buffer.from(signed.signature, 'base64');
    flipped[0]! ^= 1;
    expect(verifyAnnouncement({ ...signed, signature: flipped.toString('base64') }).ok).to.equal(false);
    // Someone else's key cannot sign for this peer id.
    const other = signAnnouncement(announcement(1), new NodeSigner(new Uint8Array(32).fill(8)));
    expect(verifyAnnouncement(other).ok).to.equal(false);
  });

  it('keeps only a strictly higher seq', () => {
    const table = new AnnouncementTable();
    expect(table.offer(signAnnouncement(announcement(5), signer)).status).to.equal('accepted');
    const same = table.offer(signAnnouncement(announcement(5, { region: 'other' }), signer));
    expect(same.status).to.equal('stale');
    expect(same.status !== 'accepted' && same.reason).to.match(/stale seq 5/);
    expect(table.offer(signAnnouncement(announcement(4), signer)).status).to.equal('stale');
    expect(table.get(peerId)?.region).to.equal('eu-central');
    const newer = table.offerBytes(encodeSignedAnnouncement(signAnnouncement(announcement(6), signer)));
    expect(newer.status).to.equal('accepted');
    expect(newer.status === 'accepted' && newer.previous?.seq).to.equal(5);
    expect(table.all().map((x) => x.seq)).to.deep.equal([6]);
  });

  it('rejects non-ed25519 and garbage peer ids without throwing', async () => {
    const secp = peerIdFromPrivateKey(await generateKeyPair('secp256k1')).toString();
    const signed = signAnnouncement(announcement(1), signer);
    const withId = (id: unknown) => ({ ...signed, announcement: { ...signed.announcement, peerId: id } });
    const secpResult = verifyAnnouncement(withId(secp));
    expect(secpResult.ok).to.equal(false);
    expect(!secpResult.ok && secpResult.reason).to.match(/not an ed25519 key/);
    for (const bad of ['hello', '', 'Qm'.padEnd(200, 'x'), 42, null]) {
      const result = verifyAnnouncement(withId(bad));
      expect(result.ok, String(bad)).to.equal(false);
    }
    for (const garbage of [
      null,
      1,
      'x',
      [],
      {},
      { announcement: {} },
      { announcement: signed.announcement },
    ]) {
      expect(verifyAnnouncement(garbage).ok).to.equal(false);
    }
    expect(decodeSignedAnnouncement(new Uint8Array([0xff, 0xfe])).ok).to.equal(false);
    expect(decodeSignedAnnouncement(new TextEncoder().encode('{"announcement":')).ok).to.equal(false);
    expect(new AnnouncementTable().offer(withId('garbage')).status).to.equal('rejected');
  });

  it('rejects oversized announcements', () => {
    const big = announcement(1, {
      scopes: Array.from({ length: 100 }, (_, i) => `scope-${i}`.padEnd(200, 'x')),
    });
    expect(() => signAnnouncement(big, signer)).to.throw(MeshError, /exceeds/);
    const bytes = new TextEncoder().encode(
      JSON.stringify({ announcement: big, signature: `${'A'.repeat(86)}==` }),
    );
    expect(bytes.length).to.be.greaterThan(MAX_ANNOUNCEMENT_BYTES);
    const result = decodeSignedAnnouncement(bytes);
    expect(!result.ok && result.reason).to.match(/exceeds the 16384 limit/);
  });
});
