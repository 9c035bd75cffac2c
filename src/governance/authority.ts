// The scope's authority at apply time: the governance state a scope's log builds (genesis, credentials and
// their revocations, policy, quota, rate windows) and the admission decision for each command. Pure and
// deterministic, like the registry state machine that calls it: it reads no clock (a credential's validity
// is checked against the caller's signed timestamp, which the admitting anchor has checked against its
// clock within the skew window), so every member decides every command identically, at the same log
// index — a revocation takes effect at its index on every member.
//
// Its state lives in the registry store's auxiliary table (so it commits, snapshots and restores with the
// names), under these keys:
//   g/genesis          the signed genesis record
//   g/c/<id hex>       a credential: issuedAt varint, revokedAt varint (0: not revoked), reason str, credential bytes
//   g/policy           the canonical policy JSON in force ("" = the genesis default)
//   g/quota            the canonical quota JSON in force
//   g/pc/<prefix>      instances under a quota prefix (kept for every prefix the quota names)
//   g/rate             the per-principal registration windows (only when the quota sets a rate)
//
// Who may do what (documented for users in docs/AUTHORITY.md):
// - An *open* scope (genesis without admins: `--scope NAME` without `--genesis`) admits every registry
//   command unauthenticated, and refuses governance commands (nobody administers it).
// - A *governed* scope refuses an unauthenticated command. A credential must exist, not be revoked, be valid
//   at the request's timestamp, cover the name (its prefix), and the action must be granted: the policy's
//   matching rules decide (refuse beats defer beats allow); when no rule matches, the credential's role
//   grants its taxonomy actions (registrar: register, deregister; resolver: resolve; auditor: read-lineage;
//   scope-admin: everything within its prefix), and anything else gets the policy's default (refuse).
//   Administering (credentials, policy, quota) needs a scope-admin credential; a scope-admin may only
//   issue credentials within its own prefix. Quotas are checked last, for registrations.

import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import type { Verifier } from '../identity/signer.ts';
import {
  ByteReader,
  ByteWriter,
  type Command,
  type CommandAuth,
  type CommandRejection,
} from '../registry/commands.ts';
import type { Instance } from '../registry/instance.ts';
import {
  type Credential,
  credentialId,
  decodeCredential,
  encodeCredential,
  genesisCredentials,
  type Role,
  underPrefix,
} from './credential.ts';
import { decodeGenesis, equalBytes, type Genesis, isOpenScope, scopeIdOf, verifyGenesis } from './genesis.ts';
import { compilePolicy, decodePolicy, type PolicyDocument, type PolicyEvaluator } from './policy.ts';
import { checkQuota, decodeQuota, type QuotaDocument, RateWindows } from './quota.ts';
import type { Action } from './request.ts';

/** A credential as the scope's state holds it. */
export interface CredentialRecord {
  readonly id: Uint8Array;
  readonly credential: Credential;
  /** The log index that issued it (0: granted by the genesis). */
  readonly issuedAt: number;
  /** The log index that revoked it, or 0. */
  readonly revokedAt: number;
  readonly reason: string;
}

/** The auxiliary-table access the authority needs (a RegistryStore provides it). */
export interface AuthorityStore {
  getAux(key: string): Uint8Array | undefined;
  putAux(key: string, value: Uint8Array): void;
  deleteAux(key: string): void;
  scanAux(prefix: string, after: string, limit: number): [string, Uint8Array][];
}

/** What the registry tells the authority about a registration, for quotas. */
export interface RegistrationEffect {
  readonly addsInstance: boolean;
  readonly addsName: boolean;
  readonly instances: number;
  readonly names: number;
}

/** The admitted caller of a command. */
export interface Principal {
  readonly role: Role;
  readonly key: Uint8Array;
  readonly credentialId: Uint8Array;
  /** The names its credential covers. */
  readonly prefix: string;
}

export type AuthorityDecision =
  | { readonly ok: true; readonly principal: Principal | null; readonly attest: boolean }
  | { readonly ok: false; readonly rejection: CommandRejection };

/** Default policy of a governed scope whose genesis names none: deny what no role grants. */
const GOVERNED_DEFAULT: PolicyDocument = decodePolicy('{"version":1,"default":"refuse","rules":[]}');

/** Actions each role grants by itself (the taxonomy), within the credential's prefix. */
export const ROLE_GRANTS: Readonly<Record<Role, readonly Action[]>> = {
  'scope-admin': ['register', 'deregister', 'resolve', 'read-lineage', 'administer', 'heartbeat'],
  anchor: ['resolve', 'read-lineage'],
  registrar: ['register', 'deregister', 'heartbeat'],
  resolver: ['resolve'],
  auditor: ['read-lineage'],
};

const refuse = (code: CommandRejection['code'], message: string): AuthorityDecision => ({
  ok: false,
  rejection: { code, message },
});

export class ScopeAuthority {
  readonly #store: AuthorityStore;
  readonly #verifier: Verifier;
  #genesis: Genesis | undefined;
  #scopeId: Uint8Array | undefined;
  #policy: PolicyEvaluator | undefined;
  #quota: QuotaDocument | undefined;
  #rates: RateWindows | undefined;
  /** Decoded credentials by id hex (a scope holds few; rows are re-read after a restore). */
  readonly #credentials = new Map<string, CredentialRecord | null>();
  /** Keys of unrevoked anchor credentials (isAnchorKey), rebuilt after an issue, a revocation or a reload. */
  #anchorKeys: Set<string> | undefined;

  constructor(store: AuthorityStore, verifier: Verifier) {
    this.#store = store;
    this.#verifier = verifier;
    this.reload();
  }

  /** Re-reads the state from the store (after a snapshot restore replaced it). */
  reload(): void {
    const g = this.#store.getAux('g/genesis');
    this.#genesis = g === undefined ? undefined : decodeGenesis(g);
    this.#scopeId = this.#genesis === undefined ? undefined : scopeIdOf(this.#genesis);
    this.#credentials.clear();
    this.#anchorKeys = undefined;
    this.#policy = undefined;
    this.#quota = undefined;
    this.#rates = undefined;
  }

  get genesis(): Genesis | undefined {
    return this.#genesis;
  }

  get scopeId(): Uint8Array | undefined {
    return this.#scopeId;
  }

  /** Whether the scope admits unauthenticated commands (an open genesis). */
  get open(): boolean {
    return this.#genesis === undefined || isOpenScope(this.#genesis);
  }

  credential(id: Uint8Array): CredentialRecord | undefined {
    const hex = bytesToHex(id);
    const cached = this.#credentials.get(hex);
    if (cached !== undefined) return cached ?? undefined;
    const row = this.#store.getAux(`g/c/${hex}`);
    const record = row === undefined ? null : decodeRecord(id, row);
    this.#credentials.set(hex, record);
    return record ?? undefined;
  }

  /** Every credential (issued and genesis-granted, revoked ones included), by id. */
  credentials(after = '', limit = 1000): CredentialRecord[] {
    return this.#store
      .scanAux('g/c/', after === '' ? '' : `g/c/${after}`, limit)
      .map(([key, row]) => decodeRecord(hexToBytes(key.slice(4)), row));
  }

  get policy(): PolicyDocument {
    return this.#evaluator().document;
  }

  get policyJson(): string {
    return this.#store.getAux('g/policy') === undefined
      ? ''
      : new TextDecoder().decode(this.#store.getAux('g/policy'));
  }

  get quota(): QuotaDocument | undefined {
    if (this.#quota === undefined) {
      const row = this.#store.getAux('g/quota');
      if (row !== undefined && row.length > 0) this.#quota = decodeQuota(new TextDecoder().decode(row));
    }
    return this.#quota;
  }

  /**
   * Whether `key` holds an unrevoked anchor credential (tree heads, leaders' health changes, Join). The set
   * is built once from the credentials and kept until one is issued or revoked, not scanned per call.
   */
  isAnchorKey(key: Uint8Array): boolean {
    if (this.#anchorKeys === undefined) {
      this.#anchorKeys = new Set();
      for (let after = ''; ; ) {
        const page = this.credentials(after, 1000);
        for (const r of page)
          if (r.credential.role === 'anchor' && r.revokedAt === 0)
            this.#anchorKeys.add(bytesToHex(r.credential.subject));
        if (page.length < 1000) break;
        after = bytesToHex((page.at(-1) as CredentialRecord).id);
      }
    }
    return this.#anchorKeys.has(bytesToHex(key));
  }

  // ---- admission ----

  /**
   * Whether the command may be applied: authentication (a known, unrevoked credential valid at the
   * request's time, covering the name) and authorization (policy, role). Quotas are checked separately
   * (checkRegistration) because they need the registry's view of the name.
   */
  authorize(cmd: Command, action: Action, tags: readonly string[] = []): AuthorityDecision {
    if (this.open) {
      if (action === 'administer')
        return refuse(
          'unauthenticated',
          'this scope is open (its genesis names no admins): nobody administers it; create a governed scope with aq scope create',
        );
      return { ok: true, principal: null, attest: false };
    }
    return this.authorizeAuth(cmd.auth, action, cmd.name, tags);
  }

  /** The same decision for a request that is not a command (a read), given its auth block. */
  authorizeAuth(
    auth: CommandAuth | undefined,
    action: Action,
    name: string,
    tags: readonly string[] = [],
  ): AuthorityDecision {
    if (this.open) return { ok: true, principal: null, attest: false };
    if (auth === undefined)
      return refuse(
        'unauthenticated',
        `scope ${this.#genesis?.name} is governed: ${action} needs a signed request with a credential (aq credential issue, then --key)`,
      );
    const record = this.credential(auth.credentialId);
    if (record === undefined)
      return refuse(
        'unknown-credential',
        `credential ${bytesToHex(auth.credentialId).slice(0, 16)}… is not known to scope ${this.#genesis?.name} (issued by another scope, or never issued)`,
      );
    const c = record.credential;
    const id = bytesToHex(record.id).slice(0, 16);
    if (record.revokedAt !== 0)
      return refuse(
        'revoked',
        `credential ${id}… was revoked at log index ${record.revokedAt}${record.reason ? ` (${record.reason})` : ''}`,
      );
    if (auth.timestampMs < c.notBeforeMs)
      return refuse(
        'not-yet-valid',
        `credential ${id}… is not valid before ${new Date(c.notBeforeMs).toISOString()}`,
      );
    if (auth.timestampMs > c.notAfterMs)
      return refuse('expired', `credential ${id}… expired at ${new Date(c.notAfterMs).toISOString()}`);
    const principal: Principal = { role: c.role, key: c.subject, credentialId: record.id, prefix: c.prefix };
    if (action === 'administer') {
      // What an admin may change is checked by the change itself (issue, revoke: within its prefix;
      // policy, quota: scope-wide admins only).
      if (c.role !== 'scope-admin')
        return refuse(
          'policy-refused',
          `administering the scope needs a scope-admin credential, not ${c.role}`,
        );
      return { ok: true, principal, attest: false };
    }
    if (!underPrefix(name, c.prefix))
      return refuse(
        'wrong-prefix',
        `credential ${id}… (${c.role}) covers names under ${JSON.stringify(c.prefix)}, not ${JSON.stringify(name)}`,
      );
    // A heartbeat is evaluated as the registration it keeps alive.
    const policyAction = action === 'heartbeat' ? 'register' : action;
    const decision = this.#evaluator().evaluate({
      role: c.role,
      key: bytesToHex(c.subject),
      scope: 'local',
      action: policyAction,
      name,
      tags,
    });
    if (decision.rule !== 'default') {
      if (decision.outcome === 'refuse') return refuse('policy-refused', decision.reason);
      if (decision.outcome === 'defer')
        return refuse('policy-deferred', `${decision.reason} (deferred for approval)`);
      return { ok: true, principal, attest: decision.attest };
    }
    if (ROLE_GRANTS[c.role].includes(action)) return { ok: true, principal, attest: false };
    if (decision.outcome === 'allow') return { ok: true, principal, attest: decision.attest };
    if (decision.outcome === 'defer')
      return refuse('policy-deferred', `${decision.reason} (deferred for approval)`);
    return refuse(
      'policy-refused',
      `a ${c.role} credential does not grant ${action}, and no policy rule allows it: ${decision.reason}`,
    );
  }

  /** Quota check for a registration already authorized; null when within every budget. */
  checkRegistration(
    name: string,
    effect: RegistrationEffect,
    principal: Principal | null,
    timestampMs: number | undefined,
  ): CommandRejection | null {
    const quota = this.quota;
    if (quota === undefined) return null;
    const verdict = checkQuota(
      quota,
      {
        instances: effect.instances,
        names: effect.names,
        prefixInstances: (prefix: string) => this.#prefixCount(prefix),
      },
      { addsInstance: effect.addsInstance, addsName: effect.addsName, name },
    );
    if (verdict !== null)
      return {
        code: verdict.outcome === 'defer' ? 'policy-deferred' : 'quota-exceeded',
        message: verdict.message,
      };
    if (quota.registrationsPerSecond !== undefined && principal !== null && timestampMs !== undefined) {
      const rates = this.#rateWindows();
      if (!rates.take(bytesToHex(principal.key), timestampMs, quota.registrationsPerSecond)) {
        this.#store.putAux('g/rate', new TextEncoder().encode(JSON.stringify(rates.toJSON())));
        return {
          code: quota.over === 'defer' ? 'policy-deferred' : 'quota-exceeded',
          message: `quota exceeded: registrations_per_second ${quota.registrationsPerSecond} reached for this principal; retry after a second`,
        };
      }
      this.#store.putAux('g/rate', new TextEncoder().encode(JSON.stringify(rates.toJSON())));
    }
    return null;
  }

  /** Keeps the per-prefix instance counts of the quota's prefixes (call with +1/-1 per instance). */
  countInstance(name: string, delta: number): void {
    const quota = this.quota;
    if (quota === undefined) return;
    for (const { prefix } of quota.prefixes) {
      if (!underPrefix(name, prefix)) continue;
      this.#setPrefixCount(prefix, this.#prefixCount(prefix) + delta);
    }
  }

  // ---- governance commands ----

  /**
   * Applies the genesis: only as the first governance record, only if it is completely signed, and only
   * if it certifies `expectedScopeId` when one is given. Returns a rejection or the genesis.
   */
  applyGenesis(bytes: Uint8Array, expectedScopeId: Uint8Array | undefined): CommandRejection | Genesis {
    if (this.#genesis !== undefined)
      return { code: 'invalid-governance', message: 'the scope already has a genesis' };
    let g: Genesis;
    try {
      g = decodeGenesis(bytes);
      if (!isOpenScope(g)) verifyGenesis(g, this.#verifier);
      if (g.policy !== '') decodePolicy(g.policy);
      if (g.quota !== '') decodeQuota(g.quota);
    } catch (error) {
      return { code: 'invalid-governance', message: (error as Error).message };
    }
    const id = scopeIdOf(g);
    if (expectedScopeId !== undefined && !equalBytes(id, expectedScopeId))
      return {
        code: 'wrong-scope',
        message: `genesis certifies scope ${bytesToHex(id)}, this group is ${bytesToHex(expectedScopeId)}`,
      };
    this.#store.putAux('g/genesis', bytes);
    if (g.policy !== '') this.#store.putAux('g/policy', new TextEncoder().encode(g.policy));
    if (g.quota !== '') this.#store.putAux('g/quota', new TextEncoder().encode(g.quota));
    for (const c of genesisCredentials(id, g.founders, g.admins)) this.#putCredential(c, 0);
    this.reload();
    return g;
  }

  /** Issues a credential (the caller is an authorized scope-admin). Returns a rejection or its id. */
  issue(bytes: Uint8Array, index: number, admin: Principal | null): CommandRejection | Uint8Array {
    let c: Credential;
    try {
      c = decodeCredential(bytes);
    } catch (error) {
      return { code: 'invalid-governance', message: (error as Error).message };
    }
    if (this.#scopeId === undefined || !equalBytes(c.scopeId, this.#scopeId))
      return { code: 'wrong-scope', message: 'the credential names another scope' };
    if (admin !== null && !underPrefix(c.prefix, admin.prefix))
      return {
        code: 'wrong-prefix',
        message: `a scope-admin for ${JSON.stringify(admin.prefix)} cannot issue a credential for ${JSON.stringify(c.prefix)}`,
      };
    const id = credentialId(c);
    if (this.credential(id) !== undefined)
      return {
        code: 'invalid-governance',
        message: `credential ${bytesToHex(id).slice(0, 16)}… is already issued`,
      };
    this.#putCredential(c, index);
    return id;
  }

  revoke(id: Uint8Array, reason: string, index: number, admin: Principal | null): CommandRejection | null {
    const record = this.credential(id);
    if (record === undefined)
      return {
        code: 'unknown-credential',
        message: `credential ${bytesToHex(id).slice(0, 16)}… is not known to this scope`,
      };
    if (admin !== null && !underPrefix(record.credential.prefix, admin.prefix))
      return {
        code: 'wrong-prefix',
        message: `a scope-admin for ${JSON.stringify(admin.prefix)} cannot revoke a credential for ${JSON.stringify(record.credential.prefix)}`,
      };
    if (record.revokedAt !== 0)
      return {
        code: 'invalid-governance',
        message: `credential ${bytesToHex(id).slice(0, 16)}… was already revoked at index ${record.revokedAt}`,
      };
    this.#store.putAux(`g/c/${bytesToHex(id)}`, encodeRecord({ ...record, revokedAt: index, reason }));
    this.#credentials.delete(bytesToHex(id));
    this.#anchorKeys = undefined;
    return null;
  }

  setPolicy(json: string): CommandRejection | null {
    let doc: PolicyDocument;
    try {
      doc = decodePolicy(json);
    } catch (error) {
      return { code: 'invalid-governance', message: (error as Error).message };
    }
    this.#store.putAux('g/policy', new TextEncoder().encode(json));
    this.#policy = compilePolicy(doc);
    return null;
  }

  /**
   * Sets the quota. The per-prefix counts of the prefixes it names are computed from the registry
   * (`countUnder`), once, here; apply keeps them afterwards.
   */
  setQuota(json: string, countUnder: (prefix: string) => number): CommandRejection | null {
    let doc: QuotaDocument;
    try {
      doc = decodeQuota(json);
    } catch (error) {
      return { code: 'invalid-governance', message: (error as Error).message };
    }
    for (const [key] of this.#store.scanAux('g/pc/', '', 10_000)) this.#store.deleteAux(key);
    this.#store.putAux('g/quota', new TextEncoder().encode(json));
    this.#quota = doc;
    for (const { prefix } of doc.prefixes) this.#setPrefixCount(prefix, countUnder(prefix));
    return null;
  }

  // ---- internals ----

  #evaluator(): PolicyEvaluator {
    if (this.#policy === undefined) {
      const row = this.#store.getAux('g/policy');
      const json = row === undefined ? '' : new TextDecoder().decode(row);
      this.#policy = compilePolicy(json === '' ? GOVERNED_DEFAULT : decodePolicy(json));
    }
    return this.#policy;
  }

  #rateWindows(): RateWindows {
    if (this.#rates === undefined) {
      const row = this.#store.getAux('g/rate');
      this.#rates =
        row === undefined
          ? new RateWindows()
          : RateWindows.fromJSON(JSON.parse(new TextDecoder().decode(row)));
    }
    return this.#rates;
  }

  #prefixCount(prefix: string): number {
    const row = this.#store.getAux(`g/pc/${prefix}`);
    if (row === undefined) return 0;
    return new ByteReader(row, (m) => new Error(m)).varint('count');
  }

  #setPrefixCount(prefix: string, n: number): void {
    const w = new ByteWriter(8, (m) => new Error(m));
    w.varint(Math.max(0, n), 'count');
    this.#store.putAux(`g/pc/${prefix}`, w.finish());
  }

  #putCredential(c: Credential, index: number): void {
    const id = credentialId(c);
    this.#store.putAux(
      `g/c/${bytesToHex(id)}`,
      encodeRecord({ id, credential: c, issuedAt: index, revokedAt: 0, reason: '' }),
    );
    this.#credentials.delete(bytesToHex(id));
    this.#anchorKeys = undefined;
  }
}

function encodeRecord(r: CredentialRecord): Uint8Array {
  const w = new ByteWriter(160, (m) => new Error(`cannot encode credential record: ${m}`));
  w.varint(r.issuedAt, 'issuedAt');
  w.varint(r.revokedAt, 'revokedAt');
  w.str(r.reason, 'reason');
  w.bytes(encodeCredential(r.credential));
  return w.finish();
}

function decodeRecord(id: Uint8Array, row: Uint8Array): CredentialRecord {
  const r = new ByteReader(
    row,
    (m, o) => new Error(`credential record ${bytesToHex(id)} at byte ${o}: ${m}`),
  );
  const issuedAt = r.varint('issuedAt');
  const revokedAt = r.varint('revokedAt');
  const reason = r.str('reason');
  const credential = decodeCredential(r.bytes(r.remaining, 'credential'));
  return { id, credential, issuedAt, revokedAt, reason };
}

/** Which action a registry command is, for authorization. */
export function actionOf(cmd: Command): Action {
  if (cmd.type === 'register') return 'register';
  if (cmd.type === 'deregister') return 'deregister';
  if (cmd.type === 'set-health') return 'heartbeat';
  return 'administer';
}

/** Tags of a registration (policy rules can require them). */
export function tagsOf(cmd: Command): readonly string[] {
  return cmd.type === 'register' ? (cmd.instance as Instance).tags : [];
}
