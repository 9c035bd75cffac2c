// Anchor-to-anchor mutual TLS on a real grpc-js server (127.0.0.1, port 0): the caller is named by the
// key it proves, the client reaches only the anchor it pinned, and nothing without an anchor key gets a
// handler to run. A one-method service with Buffer codecs stands in for aq.v1.Consensus.

import { X509Certificate } from 'node:crypto';
import { createConnection } from 'node:net';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { peerIdOfPublicKey } from '../../src/identity/peer-id.ts';
import { NodeSigner } from '../../src/identity/signer.ts';
import {
  ed25519KeyOfCertificate,
  peerCertificatePem,
  peerIssuerPem,
  peerIssuerSeed,
} from '../../src/transport/peer-certificate.ts';
import {
  callerPeerId,
  type PeerTlsIdentity,
  peerChannel,
  peerServerCredentials,
  peerTlsIdentity,
} from '../../src/transport/peer-credentials.ts';

const SEED_A = new Uint8Array(32).fill(0xa1);
const SEED_B = new Uint8Array(32).fill(0xb2);
const SEED_C = new Uint8Array(32).fill(0xc3);
const CALL_DEADLINE_MS = 5000;

const identity = (b: Buffer): Buffer => b;
const PEER_TEST: grpc.ServiceDefinition = {
  who: {
    path: '/aq.test.PeerTest/Who',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
const PeerTestClient = grpc.makeGenericClientConstructor(PEER_TEST, 'PeerTest');

interface TestServer {
  port: number;
  callers: (string | null)[];
  close(): void;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function startServer(credentials: grpc.ServerCredentials): Promise<TestServer> {
  const server = new grpc.Server();
  const callers: (string | null)[] = [];
  server.addService(PEER_TEST, {
    who: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const caller = callerPeerId(call);
      callers.push(caller);
      callback(null, Buffer.from(JSON.stringify({ caller })));
    },
  });
  try {
    const port = await withTimeout(
      new Promise<number>((resolve, reject) => {
        server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p)));
      }),
      5000,
      'bind',
    );
    return { port, callers, close: () => server.forceShutdown() };
  } catch (err) {
    server.forceShutdown();
    throw err;
  }
}

type CallResult = { ok: true; caller: string | null } | { ok: false; code: number; details: string };

async function callWho(
  port: number,
  credentials: grpc.ChannelCredentials,
  options: grpc.ChannelOptions = {},
): Promise<CallResult> {
  const client = new PeerTestClient(`127.0.0.1:${port}`, credentials, options);
  try {
    return await withTimeout(
      new Promise<CallResult>((resolve) => {
        client.makeUnaryRequest(
          '/aq.test.PeerTest/Who',
          identity,
          identity,
          Buffer.from('who?'),
          { deadline: Date.now() + CALL_DEADLINE_MS },
          (err: grpc.ServiceError | null, reply?: Buffer) => {
            if (err) resolve({ ok: false, code: err.code, details: err.details });
            else
              resolve({ ok: true, caller: (JSON.parse(String(reply)) as { caller: string | null }).caller });
          },
        );
      }),
      CALL_DEADLINE_MS + 2000,
      'call',
    );
  } finally {
    client.close();
  }
}

function expectRefused(result: CallResult, code: grpc.status, details: RegExp): void {
  expect(result.ok, JSON.stringify(result)).to.equal(false);
  if (result.ok) return;
  expect(grpc.status[result.code], result.details).to.equal(grpc.status[code]);
  expect(result.details).to.match(details);
}

describe('peer credentials (anchor-to-anchor mutual TLS)', function () {
  this.timeout(30000);

  let a: PeerTlsIdentity;
  let b: PeerTlsIdentity;
  let c: PeerTlsIdentity;
  let server: TestServer | null = null;

  before(async () => {
    a = await peerTlsIdentity(SEED_A);
    b = await peerTlsIdentity(SEED_B);
    c = await peerTlsIdentity(SEED_C);
    server = await startServer(peerServerCredentials(b));
  });

  after(() => {
    server?.close();
    server = null;
  });

  describe('peerTlsIdentity', () => {
    it('is deterministic in the seed and certifies the seed key under CN = peer id', async () => {
      const again = await peerTlsIdentity(SEED_A);
      expect(again).to.deep.equal(a);
      const publicKey = new NodeSigner(SEED_A).publicKey;
      expect(a.peerId).to.equal(peerIdOfPublicKey(publicKey));
      expect(ed25519KeyOfCertificate(a.certPem)).to.deep.equal(publicKey);
      expect(a.peerId).to.not.equal(b.peerId);

      const cert = new X509Certificate(a.certPem);
      expect(cert.subject).to.equal(`CN=${a.peerId}`);
      expect(new Date(cert.validTo).getUTCFullYear()).to.equal(9999);
      expect(new Date(cert.validFrom).getTime()).to.be.lessThan(Date.now());
      // Issued by the public issuer, whose key is the hash of a published label.
      const issuer = new X509Certificate(peerIssuerPem());
      expect(cert.checkIssued(issuer)).to.equal(true);
      expect(cert.verify(issuer.publicKey)).to.equal(true);
      expect(ed25519KeyOfCertificate(peerIssuerPem())).to.deep.equal(
        new NodeSigner(peerIssuerSeed()).publicKey,
      );
      expect(issuer.ca).to.equal(true);
      expect(cert.ca).to.equal(false);
    });
  });

  it('(1) names the caller by its key: B sees A', async () => {
    const before = server!.callers.length;
    const { credentials, options } = peerChannel(a, b.peerId);
    const result = await callWho(server!.port, credentials, options);
    expect(result).to.deep.equal({ ok: true, caller: a.peerId });
    expect(server!.callers.slice(before)).to.deep.equal([a.peerId]);
  });

  it('(2) a client pinned to another peer id does not connect and reaches no handler', async () => {
    const before = server!.callers.length;
    const { credentials, options } = peerChannel(a, c.peerId); // B serves, A expects C
    expectRefused(
      await callWho(server!.port, credentials, options),
      grpc.status.UNAVAILABLE,
      new RegExp(`expected server ${c.peerId}, got ${b.peerId}`),
    );
    expect(server!.callers.length).to.equal(before);
  });

  it('(3) a TLS client without a client certificate is refused at the handshake', async () => {
    const before = server!.callers.length;
    const context = createSecureContext({ ca: peerIssuerPem(), minVersion: 'TLSv1.3' });
    const credentials = grpc.credentials.createFromSecureContext(context, {
      checkServerIdentity: () => undefined,
    });
    const result = await callWho(server!.port, credentials, { 'grpc.ssl_target_name_override': b.peerId });
    // TLS 1.3: the server's alert 116 (certificate_required) ends the connection before any stream.
    expectRefused(result, grpc.status.UNAVAILABLE, /certificate required/);
    expect(server!.callers.length).to.equal(before);
  });

  it('(4) a plaintext client to the TLS port fails', async () => {
    const before = server!.callers.length;
    expectRefused(
      await callWho(server!.port, grpc.credentials.createInsecure()),
      grpc.status.UNAVAILABLE,
      /No connection established/,
    );
    expect(server!.callers.length).to.equal(before);
  });

  it('(5) garbage bytes on the port do not stop the server', async () => {
    const port = server!.port;
    const garbage = [
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0'),
      Buffer.alloc(4096, 0x16), // a TLS handshake record type followed by nonsense lengths
      Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 7919) & 0xff)),
    ];
    for (const bytes of garbage) {
      await withTimeout(
        new Promise<void>((resolve) => {
          const socket = createConnection({ host: '127.0.0.1', port });
          const done = (): void => {
            clearTimeout(timer);
            socket.destroy();
            resolve();
          };
          const timer = setTimeout(done, 1500); // the server may also just wait for more bytes
          socket.on('error', done);
          socket.on('close', done);
          socket.on('connect', () => socket.write(bytes));
        }),
        5000,
        'garbage socket',
      );
    }
    const { credentials, options } = peerChannel(a, b.peerId);
    expect(await callWho(port, credentials, options)).to.deep.equal({ ok: true, caller: a.peerId });
  });

  it("(6) A's certificate with C's key cannot be used, on either side", async () => {
    const forged: PeerTlsIdentity = { peerId: a.peerId, certPem: a.certPem, keyPem: c.keyPem };
    // Client side: OpenSSL refuses a key that is not the certificate's (so the forged pair can never
    // reach the wire; on the wire TLS 1.3 CertificateVerify would fail for the same reason).
    expect(() => peerChannel(forged, b.peerId)).to.throw(/key values mismatch/);
    // Server side: the listener cannot be created with the pair.
    let bound: TestServer | null = null;
    try {
      const attempt = startServer(peerServerCredentials(forged)).then((s) => {
        bound = s;
        return s;
      });
      let failure: unknown = null;
      await attempt.catch((err: unknown) => {
        failure = err;
      });
      expect(failure, 'server bound with a mismatched key').to.be.instanceOf(Error);
      expect(String(failure)).to.match(/key values mismatch/);
    } finally {
      (bound as TestServer | null)?.close();
    }
  });

  it("(6b) the subject name is not trusted: a certificate saying CN = A over C's key names C", async () => {
    const spoof = peerCertificatePem(SEED_C, a.peerId);
    expect(new X509Certificate(spoof.certPem).subject).to.equal(`CN=${a.peerId}`);
    const { credentials, options } = peerChannel(spoof, b.peerId);
    expect(await callWho(server!.port, credentials, options)).to.deep.equal({ ok: true, caller: c.peerId });
  });

  it("(6c) a server presenting a certificate naming B over C's key fails the pin to B", async () => {
    const impostor = await startServer(peerServerCredentials(peerCertificatePem(SEED_C, b.peerId)));
    try {
      const { credentials, options } = peerChannel(a, b.peerId);
      expectRefused(
        await callWho(impostor.port, credentials, options),
        grpc.status.UNAVAILABLE,
        new RegExp(`expected server ${b.peerId}, got ${c.peerId}`),
      );
      expect(impostor.callers).to.deep.equal([]);
    } finally {
      impostor.close();
    }
  });

  it('rejects an expected server id that is not an ed25519 peer id', () => {
    expect(() => peerChannel(a, 'not-a-peer-id')).to.throw();
  });
});
