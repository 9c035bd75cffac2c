// The governed scope of `make bench`: the same three anchors also serve `gbench`, founded from a genesis
// (their keys, one admin) with a policy of a dozen rules, so that the signed phases pay for everything
// authority costs: the client's signature, the anchor's verification, replay and skew checks, credential
// lookup and policy evaluation at the edge and again at apply, the admitting signature and the lineage.

import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import type { WireInstance } from '../../src/api/registry-service.ts';
import {
  type Credential,
  credentialId,
  encodeCredential,
  FOREVER_MS,
} from '../../src/governance/credential.ts';
import { type Genesis, scopeIdOf, signGenesis, sortKeys } from '../../src/governance/genesis.ts';
import { genesisToJson } from '../../src/governance/genesis-file.ts';
import { policyToJson } from '../../src/governance/policy.ts';
import { type Action, signRequest } from '../../src/governance/request.ts';
import { encodeKeyFile } from '../../src/identity/key-file.ts';
import { NodeSigner } from '../../src/identity/signer.ts';
import { type Command, commandSignedBody, encodeCommand } from '../../src/registry/commands.ts';
import type { Instance } from '../../src/registry/instance.ts';
import { aqCall } from './cluster.ts';

export const GOVERNED_SCOPE = 'gbench';

/** What a client worker needs to sign (seeds and ids as hex, to cross IPC). */
export interface SigningIdentity {
  readonly scopeId: string;
  readonly registrar: { readonly seed: string; readonly credentialId: string };
  readonly resolver: { readonly seed: string; readonly credentialId: string };
}

export interface GovernedScope extends SigningIdentity {
  readonly genesisFile: string;
  readonly admin: { readonly seed: string; readonly credentialId: string };
}

/** A policy of the size an operator writes: a few refusals and deferrals, allows for the bench's roles. */
function benchPolicy(): string {
  const rule = (name: string, r: Record<string, unknown>) => ({
    name,
    keys: [],
    scopes: ['local'],
    tags: [],
    attest: false,
    ...r,
  });
  const rules = [
    rule('allow-registrars', {
      roles: ['registrar'],
      actions: ['register', 'deregister'],
      prefixes: [`${GOVERNED_SCOPE}/`],
      outcome: 'allow',
    }),
    rule('allow-resolvers', {
      roles: ['resolver'],
      actions: ['resolve'],
      prefixes: [`${GOVERNED_SCOPE}/`],
      outcome: 'allow',
    }),
    rule('no-canary-db', {
      roles: ['*'],
      actions: ['register'],
      prefixes: [`${GOVERNED_SCOPE}/db-canary`],
      outcome: 'refuse',
    }),
    rule('review-payments', {
      roles: ['registrar'],
      actions: ['register'],
      prefixes: [`${GOVERNED_SCOPE}/payments/`],
      outcome: 'defer',
    }),
    rule('attest-secrets', {
      roles: ['resolver'],
      actions: ['resolve'],
      prefixes: [`${GOVERNED_SCOPE}/secrets/`],
      outcome: 'allow',
      attest: true,
    }),
    rule('no-legacy', {
      roles: ['*'],
      actions: ['*'],
      prefixes: [`${GOVERNED_SCOPE}/legacy/`],
      outcome: 'refuse',
    }),
    rule('auditors', { roles: ['auditor'], actions: ['read-lineage'], prefixes: [''], outcome: 'allow' }),
    rule('prod-tag-only', {
      roles: ['registrar'],
      actions: ['register'],
      prefixes: [`${GOVERNED_SCOPE}/prod/`],
      tags: ['prod'],
      outcome: 'allow',
    }),
    rule('no-tmp', {
      roles: ['registrar'],
      actions: ['register'],
      prefixes: [`${GOVERNED_SCOPE}/tmp/`],
      outcome: 'refuse',
    }),
    rule('ops-resolve', { roles: ['scope-admin'], actions: ['resolve'], prefixes: [''], outcome: 'allow' }),
    rule('freeze-edge', {
      roles: ['registrar'],
      actions: ['deregister'],
      prefixes: [`${GOVERNED_SCOPE}/edge/`],
      outcome: 'defer',
    }),
    rule('internal-only', {
      roles: ['resolver'],
      actions: ['resolve'],
      prefixes: [`${GOVERNED_SCOPE}/internal/`],
      outcome: 'refuse',
    }),
  ];
  return policyToJson({ version: 1, default: 'refuse', rules } as never);
}

/**
 * Writes each anchor's key (`<root>/a<i>/anchor.key`) and a genesis signed by the three anchors and the
 * admin, before the anchors start.
 */
export async function prepareGovernedScope(root: string): Promise<GovernedScope> {
  const seeds = [1, 2, 3].map(() => new Uint8Array(randomBytes(32)));
  for (let i = 0; i < 3; i++) {
    const dir = join(root, `a${i + 1}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'anchor.key'), encodeKeyFile(seeds[i] as Uint8Array), { mode: 0o600 });
  }
  const adminSeed = new Uint8Array(randomBytes(32));
  const admin = new NodeSigner(adminSeed);
  let g: Genesis = {
    name: GOVERNED_SCOPE,
    createdMs: Date.now(),
    founders: sortKeys(seeds.map((s) => new NodeSigner(s).publicKey)),
    admins: [admin.publicKey],
    policy: benchPolicy(),
    quota: '',
    signatures: [],
  };
  for (const s of [...seeds.map((x) => new NodeSigner(x)), admin]) g = signGenesis(g, s);
  const scopeId = scopeIdOf(g);
  const genesisFile = join(root, 'gbench.genesis.json');
  await writeFile(genesisFile, JSON.stringify(genesisToJson(g)));
  const adminCredential = credentialId({
    scopeId,
    role: 'scope-admin',
    subject: admin.publicKey,
    prefix: '',
    notBeforeMs: 0,
    notAfterMs: FOREVER_MS,
  });
  const role = (r: 'registrar' | 'resolver') => {
    const seed = new Uint8Array(randomBytes(32));
    const c: Credential = {
      scopeId,
      role: r,
      subject: new NodeSigner(seed).publicKey,
      prefix: `${GOVERNED_SCOPE}/`,
      notBeforeMs: Date.now() - 60_000,
      notAfterMs: Date.now() + 86_400_000,
    };
    return { seed: bytesToHex(seed), credentialId: bytesToHex(credentialId(c)), credential: c };
  };
  const registrar = role('registrar');
  const resolver = role('resolver');
  pendingCredentials.set(genesisFile, [registrar.credential, resolver.credential]);
  return {
    genesisFile,
    scopeId: bytesToHex(scopeId),
    admin: { seed: bytesToHex(adminSeed), credentialId: bytesToHex(adminCredential) },
    registrar: { seed: registrar.seed, credentialId: registrar.credentialId },
    resolver: { seed: resolver.seed, credentialId: resolver.credentialId },
  };
}

const pendingCredentials = new Map<string, Credential[]>();

/** Waits until every anchor applied the genesis, then has the admin issue the registrar's and resolver's credentials. */
export async function issueBenchCredentials(scope: GovernedScope, anchors: readonly string[]): Promise<void> {
  const until = Date.now() + 60_000;
  for (const a of anchors) {
    for (;;) {
      const s = await aqCall<{ governed: boolean }>(
        a,
        'Governance',
        'GetScope',
        { scope: GOVERNED_SCOPE },
        2_000,
      ).catch(() => null);
      if (s?.governed === true) break;
      if (Date.now() > until)
        throw new Error(`anchor ${a} did not apply the ${GOVERNED_SCOPE} genesis in 60 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const admin = new NodeSigner(hexToBytes(scope.admin.seed));
  let seq = 0;
  const client = `bench-admin-${bytesToHex(randomBytes(4))}`;
  for (const c of pendingCredentials.get(scope.genesisFile) ?? []) {
    const bare: Command = {
      type: 'issue-credential',
      name: '',
      credential: encodeCredential(c),
      session: { client, seq: ++seq },
    };
    const auth = signAuth(
      admin,
      hexToBytes(scope.scopeId),
      hexToBytes(scope.admin.credentialId),
      'administer',
      commandSignedBody(bare),
    );
    await aqCall(
      anchors[0] as string,
      'Governance',
      'Submit',
      { scope: GOVERNED_SCOPE, command: encodeCommand({ ...bare, auth } as Command) },
      10_000,
    );
  }
}

export function signAuth(
  signer: NodeSigner,
  scopeId: Uint8Array,
  credential: Uint8Array,
  action: Action,
  body: Uint8Array,
) {
  return signRequest(signer, scopeId, credential, action, body, Date.now(), new Uint8Array(randomBytes(16)));
}

/** The registry instance the anchor builds from a wire instance (what a signed body must encode). */
export function instanceFromWire(w: WireInstance): Instance {
  return {
    id: w.id,
    address: w.address,
    port: w.port,
    tags: w.tags,
    meta: w.meta,
    health: 'passing',
    ttlMs: w.ttlMs,
  };
}

/** A signer for one worker: signed Register and Resolve requests of the governed scope. */
export class BenchSigner {
  readonly #scopeId: Uint8Array;
  readonly #registrar: NodeSigner;
  readonly #registrarCred: Uint8Array;
  readonly #resolver: NodeSigner;
  readonly #resolverCred: Uint8Array;
  readonly #client: string;
  #seq = 0;

  constructor(id: SigningIdentity, worker: number) {
    this.#scopeId = hexToBytes(id.scopeId);
    this.#registrar = new NodeSigner(hexToBytes(id.registrar.seed));
    this.#registrarCred = hexToBytes(id.registrar.credentialId);
    this.#resolver = new NodeSigner(hexToBytes(id.resolver.seed));
    this.#resolverCred = hexToBytes(id.resolver.credentialId);
    this.#client = `bench-w${worker}-${bytesToHex(randomBytes(4))}`;
  }

  /**
   * A signed Register. Each request is its own session (client `<worker>.<n>`, seq 1), as the anchor gives
   * an unsigned request: a session's seqs must arrive in order, and the loop keeps many in flight.
   */
  register(name: string, instance: WireInstance) {
    const clientId = `${this.#client}.${(++this.#seq).toString(36)}`;
    const body = encodeCommand({
      type: 'register',
      name,
      instance: instanceFromWire(instance),
      session: { client: clientId, seq: 1 },
    });
    const auth = signAuth(this.#registrar, this.#scopeId, this.#registrarCred, 'register', body);
    return { name, instance, clientId, seq: 1, auth };
  }

  /** A Resolve over the TLS client port: the credential id only (the connection proved the key). */
  resolveOverTls(name: string, consistency: string) {
    return { name, consistency, auth: { credentialId: this.#resolverCred } };
  }

  resolve(name: string, consistency: string) {
    const body = new TextEncoder().encode(name);
    return {
      name,
      consistency,
      auth: signAuth(this.#resolver, this.#scopeId, this.#resolverCred, 'resolve', body),
    };
  }
}
