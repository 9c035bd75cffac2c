// Mutual TLS for anchor-to-anchor gRPC (the Consensus service on the peer port): both ends present a
// certificate over their anchor ed25519 key (peer-certificate.ts), the client pins the server to the
// peer id it meant to reach, and the server names the caller by the key of the caller's certificate.
// A process without a scope member's private key cannot complete the handshake as that member: TLS 1.3
// makes each side sign the handshake transcript with the key of the certificate it presents.
//
// Design, and why it uses only public grpc-js 1.14 APIs:
// - Server: `ServerCredentials.createSsl(issuer, [own pair], true)`. That sets `requestCert: true` and
//   leaves Node's `rejectUnauthorized` at its default (true), so a client must present a certificate
//   that chains to the public issuer or the handshake fails. The alternatives were worse: a
//   ServerCredentials subclass overriding the internal `_getConstructorOptions` to get
//   `rejectUnauthorized: false` would also make the socket unauthorized, and grpc-js's
//   `getAuthContext()` then hides the peer certificate (it returns `{}` unless `socket.authorized`), so
//   naming the caller would need `call.call.stream.session.socket` — internals on both counts.
// - Client: `ChannelCredentials.createFromSecureContext(ctx, { checkServerIdentity })` with the public
//   issuer as the only root. Node calls `checkServerIdentity` only after the chain check passes (it is
//   skipped when `rejectUnauthorized: false` lets a failed chain through), so a per-anchor self-signed
//   certificate could not be pinned this way; with the shared issuer it can, and the check compares the
//   certificate's ed25519 key with the key inside the expected peer id. The context requires TLS 1.3.
// - Caller: `call.getAuthContext().sslPeerCertificate.raw` → ed25519 key → peer id (the subject CN is
//   ignored; it is informative only).
// The server accepts TLS 1.2 from foreign clients (createSsl cannot set a minimum version); 1.2 also
// makes a client sign with its certificate key (CertificateVerify), so the caller's key is still proven.

import { createSecureContext, type PeerCertificate } from 'node:tls';
import { ChannelCredentials, type ChannelOptions, ServerCredentials } from '@grpc/grpc-js';
import { publicKeyOfPeerId } from '../identity/peer-id.ts';
import {
  ed25519KeyOfCertificate,
  peerCertificatePem,
  peerIdOfCertificate,
  peerIssuerPem,
} from './peer-certificate.ts';

export interface PeerTlsIdentity {
  readonly peerId: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** Any server call of grpc-js (unary, streams): all expose getAuthContext(). */
export interface PeerServerCall {
  getAuthContext(): {
    transportSecurityType?: string | undefined;
    sslPeerCertificate?: { raw?: Buffer | undefined } | undefined;
  } | null;
}

/**
 * The TLS identity of an anchor seed: an X.509 certificate over its ed25519 key (subject CN = peer id,
 * validity 2000..9999, issued by the public peer issuer — see peer-certificate.ts for why not
 * self-signed) and the PKCS#8 key. Deterministic in the seed.
 */
export async function peerTlsIdentity(seed: Uint8Array): Promise<PeerTlsIdentity> {
  return peerCertificatePem(seed);
}

/** Server credentials for the peer port: TLS with a required client certificate (see the header). */
export function peerServerCredentials(id: PeerTlsIdentity): ServerCredentials {
  return ServerCredentials.createSsl(
    Buffer.from(peerIssuerPem()),
    [{ private_key: Buffer.from(id.keyPem), cert_chain: Buffer.from(id.certPem) }],
    true,
  );
}

/**
 * Client credentials and channel options for calling the anchor expectedServerPeerId: the connection
 * fails unless the server proves the key of that peer id. Throws for an invalid peer id or a
 * certificate that does not match its key.
 */
export function peerChannel(
  id: PeerTlsIdentity,
  expectedServerPeerId: string,
): { credentials: ChannelCredentials; options: ChannelOptions } {
  const expectedKey = Buffer.from(publicKeyOfPeerId(expectedServerPeerId));
  const context = createSecureContext({
    ca: peerIssuerPem(),
    cert: id.certPem,
    key: id.keyPem,
    minVersion: 'TLSv1.3',
  });
  const checkServerIdentity = (_host: string, cert: PeerCertificate): Error | undefined => {
    const key = cert.raw === undefined ? null : ed25519KeyOfCertificate(cert.raw);
    if (key !== null && expectedKey.equals(key)) return undefined;
    const got = cert.raw === undefined ? null : peerIdOfCertificate(cert.raw);
    return Object.assign(
      new Error(`peer TLS: expected server ${expectedServerPeerId}, got ${got ?? 'a non-anchor key'}`),
      {
        code: 'ERR_AQ_PEER_MISMATCH',
      },
    );
  };
  return {
    credentials: ChannelCredentials.createFromSecureContext(context, { checkServerIdentity }),
    options: {
      // Addresses are IPs; SNI must be a name (RFC 6066) and the authority should name the anchor.
      'grpc.ssl_target_name_override': expectedServerPeerId,
      'grpc.default_authority': expectedServerPeerId,
    },
  };
}

/** The peer id proven by the caller's TLS certificate, or null (no TLS, no certificate, not ed25519). */
export function callerPeerId(call: PeerServerCall): string | null {
  let context: ReturnType<PeerServerCall['getAuthContext']>;
  try {
    context = call.getAuthContext();
  } catch {
    return null;
  }
  if (context?.transportSecurityType !== 'ssl') return null;
  const raw = context.sslPeerCertificate?.raw;
  if (raw === undefined) return null;
  return peerIdOfCertificate(raw);
}
