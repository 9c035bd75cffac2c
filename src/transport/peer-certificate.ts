// X.509 certificates for anchor-to-anchor TLS, made from the anchor's own ed25519 key (the key of its
// libp2p peer id). A certificate is a deterministic function of the 32-byte seed: fixed validity,
// serial and issuer, and ed25519 signatures are deterministic, so an anchor always presents the same
// bytes and no certificate has to be stored.
//
// Why the certificate is not self-signed. Node's TLS (hence grpc-js) runs its identity checks only
// after OpenSSL's chain check succeeds: the client's `checkServerIdentity` is not called for a peer
// whose chain fails, and the server's `getAuthContext()` reports the client certificate only when the
// socket is `authorized`. With a self-signed certificate per anchor and no shared trust root, pinning the
// server key and naming the caller would both need grpc-js internals. So every anchor certificate is
// issued by one published constant issuer whose private key is public (its seed is the SHA-256 of
// PEER_ISSUER_LABEL). The issuer conveys no trust at all — anyone can issue with it — it only makes
// OpenSSL's chain check pass so the public APIs run. Identity rests on the leaf key alone: TLS makes
// each side prove possession of the private key of the certificate it presents (TLS 1.3
// CertificateVerify, RFC 8446 §4.4.3), and the peer id is derived from that key, never from the subject.
//
// The DER is written here (a dozen fixed structures) rather than with @peculiar/x509: that package
// needs a global `reflect-metadata` polyfill (through tsyringe) that the project does not install, and
// node:crypto alone keeps certificate creation synchronous.

import { createHash, createPrivateKey, sign, X509Certificate } from 'node:crypto';
import { peerIdOfPublicKey } from '../identity/peer-id.ts';
import { NodeSigner, SEED_BYTES } from '../identity/signer.ts';

// PKCS#8 and SPKI DER prefixes for Ed25519 (RFC 8410): the raw 32 bytes follow.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** The label whose SHA-256 is the issuer's (public) seed. Changing it changes every certificate. */
export const PEER_ISSUER_LABEL = 'aqmesh/peer-tls/issuer/v1';
const ISSUER_COMMON_NAME = 'aqmesh peer-tls issuer (public key, conveys no trust)';

// Long validity: identity is the key, rotation is a new seed. 99991231235959Z is RFC 5280's "no
// well-defined expiration date".
const NOT_BEFORE = utcTime('000101000000Z');
const NOT_AFTER = generalizedTime('99991231235959Z');

const OID = {
  ed25519: '06032b6570',
  commonName: '0603550403',
  organization: '060355040a',
  basicConstraints: '0603551d13',
  keyUsage: '0603551d0f',
  extKeyUsage: '0603551d25',
  subjectKeyId: '0603551d0e',
  authorityKeyId: '0603551d23',
  serverAuth: '06082b06010505070301',
  clientAuth: '06082b06010505070302',
} as const;

export interface PeerCertificatePem {
  readonly peerId: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** The issuer's seed: public by design (see the header). */
export function peerIssuerSeed(): Uint8Array {
  return new Uint8Array(createHash('sha256').update(PEER_ISSUER_LABEL).digest());
}

/** The PKCS#8 PEM of an ed25519 seed. */
export function ed25519KeyPem(seed: Uint8Array): string {
  if (seed.length !== SEED_BYTES)
    throw new Error(`ed25519 seed must be ${SEED_BYTES} bytes, got ${seed.length}`);
  return pem('PRIVATE KEY', Buffer.concat([PKCS8_PREFIX, seed]));
}

let issuerPem: string | null = null;

/** The issuer certificate every anchor trusts as its only root (deterministic, computed once). */
export function peerIssuerPem(): string {
  if (issuerPem === null) {
    const seed = peerIssuerSeed();
    const key = new NodeSigner(seed).publicKey;
    const name = distinguishedName([
      [OID.organization, 'aqmesh'],
      [OID.commonName, ISSUER_COMMON_NAME],
    ]);
    const extensions = [
      extension(OID.basicConstraints, true, seq(tlv(0x01, hex('ff')), tlv(0x02, hex('00')))),
      extension(OID.keyUsage, true, tlv(0x03, hex('0204'))), // keyCertSign
      extension(OID.subjectKeyId, false, tlv(0x04, keyId(key))),
    ];
    issuerPem = pem('CERTIFICATE', certificate(seed, hex('01'), name, name, key, extensions));
  }
  return issuerPem;
}

/**
 * The anchor certificate of a seed: subject CN = peer id, the anchor's ed25519 key, the public issuer.
 * subjectCommonName exists for tests: the subject is informative, peers read only the key.
 */
export function peerCertificatePem(seed: Uint8Array, subjectCommonName?: string): PeerCertificatePem {
  const keyPem = ed25519KeyPem(seed);
  const key = new NodeSigner(seed).publicKey;
  const peerId = peerIdOfPublicKey(key);
  const issuerKey = new NodeSigner(peerIssuerSeed()).publicKey;
  // A positive 16-byte serial from the key, so the certificate stays a function of the seed.
  const serial = createHash('sha256').update(key).digest().subarray(0, 16);
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  const extensions = [
    extension(OID.basicConstraints, true, seq()), // cA FALSE (the DER default, so omitted)
    extension(OID.keyUsage, true, tlv(0x03, hex('0780'))), // digitalSignature
    extension(OID.extKeyUsage, false, seq(hex(OID.serverAuth), hex(OID.clientAuth))),
    extension(OID.subjectKeyId, false, tlv(0x04, keyId(key))),
    extension(OID.authorityKeyId, false, seq(tlv(0x80, keyId(issuerKey)))),
  ];
  const issuer = distinguishedName([
    [OID.organization, 'aqmesh'],
    [OID.commonName, ISSUER_COMMON_NAME],
  ]);
  const subject = distinguishedName([[OID.commonName, subjectCommonName ?? peerId]]);
  const der = certificate(peerIssuerSeed(), serial, issuer, subject, key, extensions);
  return { peerId, certPem: pem('CERTIFICATE', der), keyPem };
}

/** The raw 32-byte ed25519 key of a DER or PEM certificate, or null (unparsable, not ed25519). */
export function ed25519KeyOfCertificate(cert: Uint8Array | string): Uint8Array | null {
  try {
    const key = new X509Certificate(cert).publicKey;
    if (key.asymmetricKeyType !== 'ed25519') return null;
    const spki = key.export({ format: 'der', type: 'spki' });
    if (spki.length !== SPKI_PREFIX.length + 32 || !spki.subarray(0, SPKI_PREFIX.length).equals(SPKI_PREFIX))
      return null;
    return new Uint8Array(spki.subarray(SPKI_PREFIX.length));
  } catch {
    return null;
  }
}

// A connection's certificate is read on every call: cache the derived peer id by DER.
const peerIdCache = new Map<string, string | null>();
const PEER_ID_CACHE_MAX = 1024;

/** The peer id of the ed25519 key in a DER certificate, or null. The subject is ignored. */
export function peerIdOfCertificate(der: Uint8Array): string | null {
  const cacheKey = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const cached = peerIdCache.get(cacheKey);
  if (cached !== undefined) return cached;
  const key = ed25519KeyOfCertificate(der);
  const peerId = key === null ? null : peerIdOfPublicKey(key);
  if (peerIdCache.size >= PEER_ID_CACHE_MAX) peerIdCache.clear();
  peerIdCache.set(cacheKey, peerId);
  return peerId;
}

// --- DER -------------------------------------------------------------------------------------------

function certificate(
  signerSeed: Uint8Array,
  serial: Uint8Array,
  issuer: Buffer,
  subject: Buffer,
  publicKey: Uint8Array,
  extensions: Buffer[],
): Buffer {
  const algorithm = seq(hex(OID.ed25519));
  const tbs = seq(
    tlv(0xa0, tlv(0x02, hex('02'))), // version v3
    tlv(0x02, positiveInteger(serial)),
    algorithm,
    issuer,
    seq(NOT_BEFORE, NOT_AFTER),
    subject,
    Buffer.concat([SPKI_PREFIX, publicKey]),
    tlv(0xa3, seq(...extensions)),
  );
  const key = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, signerSeed]),
    format: 'der',
    type: 'pkcs8',
  });
  const signature = sign(null, tbs, key);
  return seq(tbs, algorithm, tlv(0x03, Buffer.concat([hex('00'), signature])));
}

function distinguishedName(rdns: [oid: string, value: string][]): Buffer {
  return seq(...rdns.map(([oid, value]) => tlv(0x31, seq(hex(oid), tlv(0x0c, Buffer.from(value, 'utf8'))))));
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(hex(oid), tlv(0x01, hex('ff')), tlv(0x04, value)) : seq(hex(oid), tlv(0x04, value));
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits. */
function keyId(publicKey: Uint8Array): Buffer {
  return createHash('sha1').update(publicKey).digest();
}

function positiveInteger(bytes: Uint8Array): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && (bytes[start + 1]! & 0x80) === 0) start++;
  const trimmed = Buffer.from(bytes.subarray(start));
  return (trimmed[0]! & 0x80) !== 0 ? Buffer.concat([hex('00'), trimmed]) : trimmed;
}

function utcTime(text: string): Buffer {
  return tlv(0x17, Buffer.from(text, 'ascii'));
}

function generalizedTime(text: string): Buffer {
  return tlv(0x18, Buffer.from(text, 'ascii'));
}

function seq(...parts: Buffer[]): Buffer {
  return tlv(0x30, Buffer.concat(parts));
}

function tlv(tag: number, content: Uint8Array): Buffer {
  const n = content.length;
  let length: Buffer;
  if (n < 0x80) length = Buffer.from([n]);
  else if (n < 0x100) length = Buffer.from([0x81, n]);
  else if (n < 0x10000) length = Buffer.from([0x82, n >> 8, n & 0xff]);
  else throw new Error('DER value too long');
  return Buffer.concat([Buffer.from([tag]), length, content]);
}

function hex(text: string): Buffer {
  return Buffer.from(text, 'hex');
}

function pem(label: string, der: Uint8Array): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
