// The governance of the simulated scopes: every group is a *governed* scope, as an anchor deployment runs it.
//
//   keys        each host (h1..h6) has an ed25519 key, each group an admin key and three registrar keys
//               (credential slot k is for key k mod 3), all NodeSigners over 32-byte seeds drawn from the run's
//               seed: a run replays to the same bytes (ed25519 signatures are deterministic);
//   genesis     name = the group's scope ('a', 'b', 'c'), founders = every host's key (any host may become
//               a member through a membership change), admins = the group's admin key, policy = deny by
//               default plus one rule that lets registrars resolve (their role grants register and
//               deregister only), signed by every founder and the admin; its scope id is the group's
//               `expectedScopeId`, and the first leader proposes it as the group's first command;
//   credentials slot k (1..12) of a group is a registrar credential for the prefix `<scope>/c<k>/`, valid
//               forever (validity windows are not what the simulator tests); the admin client issues and
//               revokes them through the log (clients.ts);
//   envelopes   every proposal is wrapped in an admitted entry signed by the proposing host
//               (registry/state-machine.ts admittedEntry, lineage/entry.ts entrySignedBytes), as
//               src/api/admission.ts does;
//   tree heads  a leader publishes a signed tree head of its lineage every second or so (scope-host.ts
//               #govern): every member checks it against its own lineage when it applies it.
//
// Signatures. The genesis and tree heads are always signed with ed25519 (members verify them at apply). The
// per-operation signatures — each client operation's auth block, each (host, command)'s admitting signature
// — are ed25519 too in `ed25519` mode; in `digest` mode (the default) they are SHA-512(seed || message), 64
// bytes like a signature and as deterministic, checked by a DigestVerifier that knows the seeds. Nothing in
// the state machine verifies them (the edge does, src/api/admission.ts, which the simulator does not run),
// so the two modes drive the same decisions; `digest` saves ~28 µs per signature (about a fifth of a run).
// Either way the end-of-run lineage audit (cluster.ts auditLineage) verifies every admitted entry's
// admitting signature and every auth block in the lineage with the matching verifier.

import { createHash, hash } from 'node:crypto';
import { bytesToHex } from '@noble/hashes/utils.js';
import {
  type Credential,
  credentialId,
  encodeCredential,
  FOREVER_MS,
} from '../../src/governance/credential.ts';
import {
  encodeGenesis,
  type Genesis,
  scopeIdOf,
  signGenesis,
  sortKeys,
} from '../../src/governance/genesis.ts';
import { policyToJson } from '../../src/governance/policy.ts';
import { type Action, requestSignedBytes } from '../../src/governance/request.ts';
import { NodeSigner, NodeVerifier, type Signer, type Verifier } from '../../src/identity/signer.ts';
import { entrySignedBytes } from '../../src/lineage/entry.ts';
import { encodeTreeHead, signTreeHead } from '../../src/lineage/tree-head.ts';
import { type CommandAuth, encodeCommand, type Session } from '../../src/registry/commands.ts';
import { admittedEntry, type RegistryOptions } from '../../src/registry/state-machine.ts';
import type { Rng } from './rng.ts';
import type { Scenario } from './scenario.ts';

/** Simulated time 0 as wall-clock milliseconds (auth timestamps, the genesis' createdMs). */
export const EPOCH_MS = 1_764_000_000_000;

/** Credential slots per group: slot MAX is the one the admin issues in the liveness phase. */
export const CREDENTIAL_SLOTS = 12;
/** Registrar keys per group: slot k's credential is for key k mod this (a key may hold several). */
const REGISTRAR_KEYS = 3;

const NAME_POOL = ['web', 'db', 'cache'];

/** Registrars may resolve (their role grants only register and deregister): the genesis policy says so. */
const GENESIS_POLICY = policyToJson({
  version: 1,
  default: 'refuse',
  rules: [
    {
      name: 'registrars-resolve',
      roles: ['registrar'],
      actions: ['resolve'],
      outcome: 'allow',
    },
  ],
} as never);

/**
 * Deliberately broken enforcement of the authority, switched on in the simulator's own driver (cluster.ts),
 * never in src/, to show that a wrong authorization decision is caught:
 *   late-revocation          on one member of each group (its first founding voter), a revocation takes
 *                            effect one command late: the member applies the next command as if the
 *                            credential were still active;
 *   leader-ignores-refusals  a leader answers a refused write as if it had been admitted, and serves a read
 *                            its authority refuses (the state machines themselves stay correct);
 *   revoked-may-deregister   every member alike admits a deregistration signed with a revoked credential:
 *                            the members agree, so only the model of the checker can tell.
 */
export const AUTHORITY_MUTATIONS = [
  'late-revocation',
  'leader-ignores-refusals',
  'revoked-may-deregister',
] as const;
export type AuthorityMutation = (typeof AUTHORITY_MUTATIONS)[number];

export function isAuthorityMutation(s: string): s is AuthorityMutation {
  return (AUTHORITY_MUTATIONS as readonly string[]).includes(s);
}

/**
 * The edge check of src/api (Admission.check at the member a request reaches, from its applied state,
 * before proposing a write or taking a read's index — src/api/registry-service.ts), in the simulator:
 *   off              not run (the default): the state machine decides every write at apply, and a read is
 *                    authorized by the member that serves it, at an applied index >= the read's;
 *   full             run as src/api runs it: a refusal is the answer, and a read it admits is served
 *                    without another check;
 *   admissions-only  its admissions are trusted (an admitted read is served without another check) but a
 *                    request it refuses goes on as if it were off: isolates the stale admissions of reads.
 */
export const EDGE_ADMISSION_MODES = ['off', 'full', 'admissions-only'] as const;
export type EdgeAdmission = (typeof EDGE_ADMISSION_MODES)[number];

/** One registrar credential of a group. */
export interface CredentialSlot {
  readonly scope: string;
  readonly k: number;
  /** `<scope>/c<k>/`: the credential's prefix, which is also its partition key in the checker. */
  readonly prefix: string;
  /** The names its holders work on (under the prefix). */
  readonly names: readonly string[];
  readonly credential: Uint8Array;
  readonly id: Uint8Array;
  readonly idHex: string;
  readonly signer: Signer;
}

export interface GroupGovernance {
  readonly scope: string;
  readonly genesis: Genesis;
  readonly genesisBytes: Uint8Array;
  readonly scopeId: Uint8Array;
  readonly admin: Signer;
  readonly adminCredentialId: Uint8Array;
  /** Slots 1..CREDENTIAL_SLOTS (index 0 unused). */
  readonly slots: readonly CredentialSlot[];
  /** The state machine options every member of the group is built with. */
  readonly smOptions: RegistryOptions;
}

export type SignatureMode = 'ed25519' | 'digest';

function digestSignature(seed: Uint8Array, message: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha512').update(seed).update(message).digest());
}

/** A stand-in for an ed25519 key: the same public key, "signatures" SHA-512(seed || message). */
class DigestSigner implements Signer {
  readonly publicKey: Uint8Array;
  private readonly seed: Uint8Array;
  constructor(publicKey: Uint8Array, seed: Uint8Array) {
    this.publicKey = publicKey;
    this.seed = seed;
  }
  sign(message: Uint8Array): Uint8Array {
    return digestSignature(this.seed, message);
  }
}

/** Verifies DigestSigner signatures: it knows every key's seed. */
class DigestVerifier implements Verifier {
  readonly seeds = new Map<string, Uint8Array>();
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    const seed = this.seeds.get(bytesToHex(publicKey));
    if (seed === undefined || signature.length !== 64) return false;
    const expected = digestSignature(seed, message);
    for (let i = 0; i < 64; i++) if (expected[i] !== signature[i]) return false;
    return true;
  }
}

function seedFrom(rng: Rng): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i += 4) {
    const x = rng.u32();
    out[i] = x & 0xff;
    out[i + 1] = (x >>> 8) & 0xff;
    out[i + 2] = (x >>> 16) & 0xff;
    out[i + 3] = x >>> 24;
  }
  return out;
}

/**
 * NodeVerifier with a memo: a member that applies the genesis again (after a restart from a log that still
 * holds it) checks the same signatures again; ed25519 verification is a pure function, so the answer is
 * remembered (keyed by key, signature and a SHA-1 of the message).
 */
class MemoVerifier implements Verifier {
  private readonly inner = new NodeVerifier();
  private readonly memo = new Map<string, boolean>();
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    const key = `${bytesToHex(publicKey)}${bytesToHex(signature)}${hash('sha1', message, 'hex')}`;
    let ok = this.memo.get(key);
    if (ok === undefined) {
      ok = this.inner.verify(publicKey, message, signature);
      this.memo.set(key, ok);
    }
    return ok;
  }
}

export class SimGovernance {
  /** What the state machines verify the genesis with (ed25519, memoized). */
  readonly verifier: Verifier = new MemoVerifier();
  /** What the lineage audit verifies per-operation signatures with (the mode's). */
  readonly auditVerifier: Verifier;
  readonly mode: SignatureMode;
  readonly hostSigners = new Map<string, Signer>();
  /** The hosts' real ed25519 keys (tree heads are verified by every member at apply). */
  private readonly hostKeys = new Map<string, NodeSigner>();
  readonly groups = new Map<string, GroupGovernance>();
  /** The genesis' admitting signatures, by host and scope (see genesisEntry). */
  private readonly admitted = new Map<string, Uint8Array>();
  /** How many ed25519 signatures the run computed (evidence and cost accounting). */
  signatures = 0;

  constructor(scenario: Scenario, rng: Rng, mode: SignatureMode = 'digest') {
    this.mode = mode;
    const digests = new DigestVerifier();
    this.auditVerifier = mode === 'ed25519' ? this.verifier : digests;
    /** A key: the real ed25519 one (genesis signatures) and the one per-operation signatures use. */
    const key = (): { real: NodeSigner; signer: Signer } => {
      const seed = seedFrom(rng);
      const real = new NodeSigner(seed);
      if (mode === 'ed25519') return { real, signer: real };
      digests.seeds.set(bytesToHex(real.publicKey), seed);
      return { real, signer: new DigestSigner(real.publicKey, seed) };
    };
    const founderKeys: NodeSigner[] = [];
    for (const h of scenario.hosts) {
      const k = key();
      founderKeys.push(k.real);
      this.hostSigners.set(h, k.signer);
      this.hostKeys.set(h, k.real);
    }
    const founders = sortKeys(founderKeys.map((s) => s.publicKey));
    for (const g of scenario.groups) {
      const { real: adminKey, signer: admin } = key();
      let genesis: Genesis = {
        name: g.scope,
        createdMs: EPOCH_MS,
        founders,
        admins: [adminKey.publicKey],
        policy: GENESIS_POLICY,
        quota: '',
        signatures: [],
      };
      for (const s of [...founderKeys, adminKey]) genesis = signGenesis(genesis, s);
      const scopeId = scopeIdOf(genesis);
      const adminCredentialId = credentialId({
        scopeId,
        role: 'scope-admin',
        subject: admin.publicKey,
        prefix: '',
        notBeforeMs: 0,
        notAfterMs: FOREVER_MS,
      });
      const names = NAME_POOL.slice(0, Math.min(NAME_POOL.length, g.names.length));
      const slots: CredentialSlot[] = [];
      const registrars = Array.from({ length: REGISTRAR_KEYS }, () => key().signer);
      for (let k = 1; k <= CREDENTIAL_SLOTS; k++) {
        const signer = registrars[k % REGISTRAR_KEYS] as Signer;
        const prefix = `${g.scope}/c${k}/`;
        const c: Credential = {
          scopeId,
          role: 'registrar',
          subject: signer.publicKey,
          prefix,
          notBeforeMs: 0,
          notAfterMs: FOREVER_MS,
        };
        const id = credentialId(c);
        slots[k] = {
          scope: g.scope,
          k,
          prefix,
          names: names.map((n) => `${prefix}${n}`),
          credential: encodeCredential(c),
          id,
          idHex: bytesToHex(id),
          signer,
        };
      }
      this.groups.set(g.scope, {
        scope: g.scope,
        genesis,
        genesisBytes: encodeGenesis(genesis),
        scopeId,
        admin,
        adminCredentialId,
        slots,
        smOptions: { verifier: this.verifier, expectedScopeId: scopeId },
      });
    }
  }

  group(scope: string): GroupGovernance {
    const g = this.groups.get(scope);
    if (g === undefined) throw new RangeError(`no governance for scope ${scope}`);
    return g;
  }

  /** The genesis command as `host` proposes it when it leads a group without one (scope-host.ts #govern). */
  genesisEntry(host: string, scope: string, session: Session): Uint8Array {
    const g = this.group(scope);
    const key = `${host}|${scope}|genesis`;
    let sig = this.admitted.get(key);
    if (sig === undefined) {
      sig = this.sign(this.hostSigner(host), entrySignedBytes(g.scopeId, 'genesis', g.genesisBytes));
      this.admitted.set(key, sig);
    }
    const command = encodeCommand({ type: 'genesis', name: '', genesis: g.genesisBytes, session });
    return admittedEntry(this.hostSigner(host).publicKey, sig, command);
  }

  /**
   * The tree head `host` publishes as a leader (scope-host.ts #govern): its lineage's size and root, signed
   * with its ed25519 key, as a plain command (not admitted, not a lineage entry).
   */
  treeHeadCommand(
    host: string,
    scope: string,
    size: number,
    root: Uint8Array,
    timestampMs: number,
    session: Session,
  ): Uint8Array {
    const signer = this.hostKeys.get(host);
    if (signer === undefined) throw new RangeError(`no key for host ${host}`);
    this.signatures++;
    const head = signTreeHead({ scopeId: this.group(scope).scopeId, size, root, timestampMs }, signer);
    return encodeCommand({ type: 'tree-head', name: '', treeHead: encodeTreeHead(head), session });
  }

  /** The entry `host` proposes for a client's command: the command wrapped with its admitting signature. */
  admit(host: string, scope: string, command: Uint8Array): Uint8Array {
    const signer = this.hostSigner(host);
    const sig = this.sign(signer, entrySignedBytes(this.group(scope).scopeId, 'command', command));
    return admittedEntry(signer.publicKey, sig, command);
  }

  /**
   * An auth block (src/governance/request.ts): the caller's signature over the request, whose body is a
   * write's command without its auth block (commandSignedBody) or a resolve's name (registry-service.ts).
   */
  signBody(
    scope: string,
    signer: Signer,
    credential: Uint8Array,
    timestampMs: number,
    nonce: Uint8Array,
    action: Action,
    body: Uint8Array,
  ): CommandAuth {
    const g = this.group(scope);
    const signature = this.sign(
      signer,
      requestSignedBytes(g.scopeId, credential, timestampMs, nonce, action, body),
    );
    return { credentialId: credential, timestampMs, nonce, signature };
  }

  private hostSigner(host: string): Signer {
    const s = this.hostSigners.get(host);
    if (s === undefined) throw new RangeError(`no key for host ${host}`);
    return s;
  }

  private sign(signer: Signer, message: Uint8Array): Uint8Array {
    this.signatures++;
    return signer.sign(message);
  }
}
