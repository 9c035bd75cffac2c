// Genesis records, credentials and signed requests (src/governance): canonical encodings, the
// self-certifying scope id, founders' signatures, and the request checks an anchor makes at its edge.

import { expect } from 'chai';
import fc from 'fast-check';
import {
  credentialId,
  decodeCredential,
  encodeCredential,
  FOREVER_MS,
  genesisCredentials,
} from '../../src/governance/credential.ts';
import {
  decodeGenesis,
  encodeGenesis,
  type Genesis,
  GenesisError,
  genesisSignatureStatus,
  openGenesis,
  scopeIdHex,
  scopeIdOf,
  signGenesis,
  sortKeys,
  verifyGenesis,
} from '../../src/governance/genesis.ts';
import { genesisFromJson, genesisToJson } from '../../src/governance/genesis-file.ts';
import {
  checkSkew,
  ReplayGuard,
  requestSignedBytes,
  verifyRequestSignature,
} from '../../src/governance/request.ts';
import { NobleVerifier, NodeSigner, NodeVerifier } from '../../src/identity/signer.ts';

const key = (n: number) => new NodeSigner(new Uint8Array(32).fill(n));
const anchors = [key(1), key(2), key(3)];
const admin = key(9);

function genesis(name = 'eu/payments'): Genesis {
  return {
    name,
    createdMs: 1_764_000_000_000,
    founders: sortKeys(anchors.map((a) => a.publicKey)),
    admins: [admin.publicKey],
    policy: '',
    quota: '',
    signatures: [],
  };
}

function signedByAll(g: Genesis): Genesis {
  return [...anchors, admin].reduce((acc, s) => signGenesis(acc, s), g);
}

const identity = { policy: (v: unknown) => JSON.stringify(v), quota: (v: unknown) => JSON.stringify(v) };

describe('governance: genesis', () => {
  it('the scope id is the hash of the body: self-certifying, signatures do not change it', () => {
    const g = genesis();
    const signed = signedByAll(g);
    expect(scopeIdHex(signed)).to.equal(scopeIdHex(g));
    expect(scopeIdHex(genesis('eu/payments'))).to.equal(scopeIdHex(g));
    // Same name, different founders: a different scope.
    expect(scopeIdHex({ ...g, admins: [key(10).publicKey] })).to.not.equal(scopeIdHex(g));
    expect(scopeIdOf(g)).to.have.length(32);
  });

  it('round-trips canonically and refuses any altered byte', () => {
    const bytes = encodeGenesis(signedByAll(genesis()));
    const back = decodeGenesis(bytes);
    expect(Buffer.from(encodeGenesis(back)).equals(Buffer.from(bytes))).to.equal(true);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: bytes.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (at, x) => {
          const altered = bytes.slice();
          altered[at] = (altered[at] as number) ^ x;
          let decoded: Genesis;
          try {
            decoded = decodeGenesis(altered);
          } catch (error) {
            expect(error).to.be.instanceOf(GenesisError);
            return;
          }
          // Decodable after the change: then a signature or the id no longer matches.
          const status = genesisSignatureStatus(decoded, new NodeVerifier());
          const same = scopeIdHex(decoded) === scopeIdHex(back);
          expect(
            status.invalid.length + status.missing.length + status.strangers.length > 0 || !same,
          ).to.equal(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('is complete only when every founder and admin signed, and nobody else', () => {
    const g = genesis();
    expect(() => verifyGenesis(g, new NodeVerifier())).to.throw(
      GenesisError,
      /lacks the signature of 4 founder/,
    );
    const signed = signedByAll(g);
    verifyGenesis(signed, new NodeVerifier());
    verifyGenesis(signed, new NobleVerifier());
    const stranger = signGenesis(signed, key(42));
    expect(() => verifyGenesis(stranger, new NodeVerifier())).to.throw(/not a founder/);
    const forged = {
      ...signed,
      signatures: signed.signatures.map((s, i) => (i === 0 ? { ...s, signature: new Uint8Array(64) } : s)),
    };
    expect(() => verifyGenesis(forged, new NodeVerifier())).to.throw(/does not verify/);
    // A signature over another scope's body does not carry over.
    const other = signGenesis(genesis('eu/other'), admin);
    const borrowed = {
      ...signed,
      signatures: signed.signatures.map((s) =>
        Buffer.from(s.key).equals(Buffer.from(admin.publicKey)) ? other.signatures[0]! : s,
      ),
    };
    expect(() => verifyGenesis(borrowed, new NodeVerifier())).to.throw(/does not verify/);
  });

  it('an open genesis has the same id everywhere and needs no signature', () => {
    expect(scopeIdHex(openGenesis('dev'))).to.equal(scopeIdHex(openGenesis('dev')));
    expect(scopeIdHex(openGenesis('dev'))).to.not.equal(scopeIdHex(openGenesis('dev2')));
    verifyGenesis(openGenesis('dev'), new NodeVerifier());
  });

  it('the genesis file round-trips and refuses an edited body', () => {
    const signed = signedByAll(genesis());
    const text = JSON.stringify(genesisToJson(signed));
    const back = genesisFromJson(text, 'g.json', identity);
    expect(scopeIdHex(back)).to.equal(scopeIdHex(signed));
    verifyGenesis(back, new NodeVerifier());
    const edited = JSON.parse(text);
    edited.name = 'eu/evil';
    expect(() => genesisFromJson(JSON.stringify(edited), 'g.json', identity)).to.throw(
      /g\.json: "scopeId" .* does not match/,
    );
    expect(() => genesisFromJson('{', 'g.json', identity)).to.throw(/^g\.json: not JSON/);
    expect(() => genesisFromJson('{"format":"x"}', 'g.json', identity)).to.throw(/not an aq genesis file/);
  });
});

describe('governance: credentials', () => {
  const scopeId = scopeIdOf(genesis());
  const registrar = {
    scopeId,
    role: 'registrar' as const,
    subject: key(5).publicKey,
    prefix: 'eu/payments/',
    notBeforeMs: 1000,
    notAfterMs: 2000,
  };

  it('round-trips canonically; the id is the hash of the bytes', () => {
    const bytes = encodeCredential(registrar);
    expect(decodeCredential(bytes)).to.deep.equal(registrar);
    expect(credentialId(registrar)).to.have.length(32);
    expect(
      Buffer.from(credentialId({ ...registrar, prefix: 'eu/' })).equals(Buffer.from(credentialId(registrar))),
    ).to.equal(false);
  });

  it('refuses malformed credentials with one line', () => {
    expect(() => encodeCredential({ ...registrar, notAfterMs: 500 })).to.throw(
      /expires before it becomes valid/,
    );
    expect(() => encodeCredential({ ...registrar, subject: new Uint8Array(31) })).to.throw(/32-byte/);
    const bytes = encodeCredential(registrar);
    expect(() => decodeCredential(bytes.subarray(0, bytes.length - 1))).to.throw(/cannot decode credential/);
    const bad = bytes.slice();
    bad[4 + 1 + 32] = 9; // the role code
    expect(() => decodeCredential(bad)).to.throw(/unknown role code 9/);
  });

  it('the genesis grants its admins and founders implicit credentials that never expire', () => {
    const g = genesis();
    const creds = genesisCredentials(scopeId, g.founders, g.admins);
    expect(creds.map((c) => c.role)).to.deep.equal(['scope-admin', 'anchor', 'anchor', 'anchor']);
    for (const c of creds) expect([c.prefix, c.notBeforeMs, c.notAfterMs]).to.deep.equal(['', 0, FOREVER_MS]);
  });
});

describe('governance: signed requests', () => {
  const scopeId = scopeIdOf(genesis());
  const caller = key(5);
  const cred = new Uint8Array(32).fill(7);
  const nonce = new Uint8Array(16).fill(3);
  const body = new TextEncoder().encode('register eu/payments/api');
  const auth = {
    credentialId: cred,
    timestampMs: 1_764_000_000_000,
    nonce,
    signature: caller.sign(requestSignedBytes(scopeId, cred, 1_764_000_000_000, nonce, 'register', body)),
  };

  it('verifies only the exact request, scope, action and key that were signed', () => {
    const v = new NodeVerifier();
    expect(verifyRequestSignature(v, caller.publicKey, scopeId, auth, 'register', body)).to.equal(true);
    expect(
      verifyRequestSignature(new NobleVerifier(), caller.publicKey, scopeId, auth, 'register', body),
    ).to.equal(true);
    expect(verifyRequestSignature(v, key(6).publicKey, scopeId, auth, 'register', body)).to.equal(false);
    expect(
      verifyRequestSignature(v, caller.publicKey, scopeIdOf(genesis('eu/x')), auth, 'register', body),
    ).to.equal(false);
    expect(verifyRequestSignature(v, caller.publicKey, scopeId, auth, 'deregister', body)).to.equal(false);
    expect(
      verifyRequestSignature(
        v,
        caller.publicKey,
        scopeId,
        { ...auth, timestampMs: auth.timestampMs + 1 },
        'register',
        body,
      ),
    ).to.equal(false);
    expect(verifyRequestSignature(v, caller.publicKey, scopeId, auth, 'register', body.subarray(1))).to.equal(
      false,
    );
  });

  it('refuses timestamps outside the skew window, both ways', () => {
    expect(checkSkew(1000, 1000)).to.equal(null);
    expect(checkSkew(1000, 31_000)).to.equal(null);
    expect(checkSkew(1000, 31_001)).to.match(/30 s old \(allowed skew 30 s\)/);
    expect(checkSkew(40_000, 1000)).to.match(/in the future/);
  });

  it('the replay guard refuses a nonce seen in the window and forgets old ones', () => {
    const guard = new ReplayGuard(30_000, 100);
    expect(guard.admit(caller.publicKey, nonce, 1000, 1000)).to.equal(true);
    expect(guard.admit(caller.publicKey, nonce, 1000, 2000)).to.equal(false);
    expect(guard.admit(key(6).publicKey, nonce, 1000, 2000)).to.equal(true);
    expect(guard.admit(caller.publicKey, nonce, 1000, 1000 + 61_000)).to.equal(true); // expired from memory
    for (let i = 0; i < 500; i++)
      guard.admit(
        caller.publicKey,
        new Uint8Array(16).fill(i % 256).map((x, j) => (j === 0 ? i >> 8 : x)),
        70_000,
        70_000,
      );
    expect(guard.size).to.be.at.most(100);
  });
});
