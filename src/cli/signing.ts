// Signed requests from the CLI (--key FILE / AQ_KEY, --credential ID / AQ_CREDENTIAL). A governed scope
// (one whose genesis names admins) admits only requests signed with a credential's key: the CLI finds the
// scope that owns the name (aq.v1.Governance/GetScope), picks the caller's credential
// (ListCredentials: subject = the key's public key, not revoked, valid now, prefix covering the name, the
// role that grants the action preferred), and signs each request afresh (a new timestamp and nonce per
// attempt: the anchor refuses a repeated nonce as a replay). An open scope gets no auth.
//
// Pure parts (credential choice, the auth block) are exported for tests; RequestSigner does the calls.

import { randomBytes } from 'node:crypto';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import type { Role } from '../governance/credential.ts';
import { type Action, NONCE_BYTES, signRequest } from '../governance/request.ts';
import type { Signer } from '../identity/signer.ts';
import type { AnchorClient } from './client.ts';
import { CliError, EXIT, usageError } from './errors.ts';
import { shortHex, signerOfKeyFile } from './keys.ts';
import { describe } from './parse.ts';

/** The flags of a command that can sign its requests. */
export interface KeyFlags {
  readonly key?: string | undefined;
  readonly credential?: string | undefined;
}

/** aq.v1.GetScopeResponse as proto-loader decodes it. */
export interface ScopeView {
  readonly scope: string;
  readonly scopeId: string;
  readonly genesis: Uint8Array;
  readonly governed: boolean;
  readonly policy: string;
  readonly quota: string;
  readonly lineageSize: number;
  readonly appliedIndex: number;
}

/** aq.v1.Credential as proto-loader decodes it. */
export interface CredentialView {
  readonly id: string;
  readonly credential?: Uint8Array;
  readonly role: string;
  readonly subject: string;
  readonly prefix: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly issuedAt: number;
  readonly revokedAt: number;
  readonly revokeReason?: string;
}

/** The Auth message (bytes as Uint8Array; proto-loader encodes them as given). */
export interface WireAuth {
  readonly credentialId: Uint8Array;
  readonly timestampMs: number;
  readonly nonce: Uint8Array;
  readonly signature: Uint8Array;
}

/** The roles to present for an action, best first (the one whose taxonomy grants it, then broader ones). */
export const PREFERRED_ROLES: Readonly<Record<Action, readonly Role[]>> = {
  register: ['registrar', 'scope-admin'],
  deregister: ['registrar', 'scope-admin'],
  heartbeat: ['registrar', 'scope-admin'],
  resolve: ['resolver', 'scope-admin', 'anchor'],
  'read-lineage': ['auditor', 'scope-admin', 'anchor'],
  administer: ['scope-admin'],
};

/** Why a credential cannot authorize a request on `name` at `nowMs`, or null when it can (role aside). */
export function credentialProblem(c: CredentialView, name: string, nowMs: number): string | null {
  const id = shortHex(c.id);
  if (c.revokedAt !== 0) return `credential ${id} was revoked at log index ${c.revokedAt}`;
  if (nowMs < c.notBeforeMs)
    return `credential ${id} is not valid before ${new Date(c.notBeforeMs).toISOString()}`;
  if (nowMs > c.notAfterMs) return `credential ${id} expired at ${new Date(c.notAfterMs).toISOString()}`;
  if (!name.startsWith(c.prefix))
    return `credential ${id} covers names under ${JSON.stringify(c.prefix)}, not ${JSON.stringify(name)}`;
  return null;
}

export interface CredentialChoice {
  readonly credential: CredentialView;
  /** Why it will be refused (revoked, expired, another prefix), or null when it should be admitted. */
  readonly problem: string | null;
}

/**
 * The credential of `subjectHex` to present for `action` on `name`, best first:
 *   1. usable (not revoked, valid at nowMs, prefix covering the name) with a role that grants the action
 *      (PREFERRED_ROLES, in order);
 *   2. a role that grants the action but not usable: the anchor's refusal then names the reason
 *      authoritatively (revoked, expired, wrong-prefix);
 *   3. usable with another role (a policy rule may allow it);
 *   4. anything else of the key's.
 * Ties: the role preference, then the longest prefix, then the most recently issued. Null when the key
 * holds no credential of the scope at all.
 */
export function chooseCredential(
  credentials: readonly CredentialView[],
  subjectHex: string,
  action: Action,
  name: string,
  nowMs: number,
): CredentialChoice | null {
  const preferred = PREFERRED_ROLES[action];
  const rank = (c: CredentialView): number => {
    const i = preferred.indexOf(c.role as Role);
    return i < 0 ? preferred.length : i;
  };
  const tier = (c: CredentialChoice): number =>
    rank(c.credential) < preferred.length ? (c.problem === null ? 0 : 1) : c.problem === null ? 2 : 3;
  const candidates = credentials
    .filter((c) => c.subject.toLowerCase() === subjectHex.toLowerCase())
    .map((credential) => ({ credential, problem: credentialProblem(credential, name, nowMs) }));
  candidates.sort(
    (a, b) =>
      tier(a) - tier(b) ||
      rank(a.credential) - rank(b.credential) ||
      b.credential.prefix.length - a.credential.prefix.length ||
      b.credential.issuedAt - a.credential.issuedAt ||
      (a.credential.id < b.credential.id ? -1 : a.credential.id > b.credential.id ? 1 : 0),
  );
  return candidates[0] ?? null;
}

/** The auth block of one request (src/governance/request.ts signRequest), as the wire takes it. */
export function makeAuth(
  signer: Signer,
  scopeId: Uint8Array,
  credentialId: Uint8Array,
  action: Action,
  body: Uint8Array,
  nowMs: number,
  nonce: Uint8Array,
): WireAuth {
  return signRequest(signer, scopeId, credentialId, action, body, nowMs, nonce);
}

/** `--credential ID`: 64 hex digits. */
export function parseCredentialId(text: string, what = '--credential'): Uint8Array {
  if (!/^[0-9a-fA-F]{64}$/.test(text))
    throw usageError(describe(what, text), 'a credential id is 64 hex digits (aq credential list SCOPE)');
  return hexToBytes(text.toLowerCase());
}

/** Where a request goes: the scope that owns a name, or a scope by its name. */
export type ScopeTarget = { readonly name: string } | { readonly scope: string };

/** aq.v1.Governance/GetScope. */
export function getScope(client: AnchorClient, target: ScopeTarget, command: string): Promise<ScopeView> {
  return client.call<ScopeView>('Governance', 'GetScope', target, command, false);
}

/**
 * Signs the requests of one command. Without --key, or for an open scope, requests go unsigned (a governed
 * scope then refuses them as unauthenticated, and the error says to pass --key).
 */
export class RequestSigner {
  readonly #client: AnchorClient | null;
  readonly #signer: Signer | null;
  readonly #scope: ScopeView | null;
  readonly #command: string;
  readonly #credentialId: Uint8Array | null;
  #credentials: readonly CredentialView[] | null = null;
  readonly #chosen = new Map<string, Uint8Array>();
  readonly #now: () => number;

  private constructor(
    client: AnchorClient | null,
    signer: Signer | null,
    scope: ScopeView | null,
    command: string,
    credentialId: Uint8Array | null,
    now: () => number,
  ) {
    this.#client = client;
    this.#signer = signer;
    this.#scope = scope;
    this.#command = command;
    this.#credentialId = credentialId;
    this.#now = now;
  }

  /** A signer that signs nothing. */
  static readonly unsigned = new RequestSigner(null, null, null, '', null, Date.now);

  /**
   * Reads the key (a usage error when it cannot be read) and, when given one, asks the anchor which scope
   * the request goes to and whether it is governed (unless the caller already knows: `known`).
   */
  static async open(
    client: AnchorClient,
    flags: KeyFlags,
    target: ScopeTarget,
    command: string,
    known?: ScopeView,
  ): Promise<RequestSigner> {
    if (flags.key === undefined || flags.key === '') {
      if (flags.credential !== undefined)
        throw usageError('--credential', 'needs --key (or AQ_KEY): the key that signs for it');
      return RequestSigner.unsigned;
    }
    const signer = signerOfKeyFile(flags.key, '--key');
    const credentialId = flags.credential === undefined ? null : parseCredentialId(flags.credential);
    const scope = known ?? (await getScope(client, target, command));
    if (!scope.governed) return RequestSigner.unsigned;
    return new RequestSigner(client, signer, scope, command, credentialId, Date.now);
  }

  /** The scope the requests go to (null when unsigned). */
  get scope(): ScopeView | null {
    return this.#scope;
  }

  get signing(): boolean {
    return this.#signer !== null;
  }

  /** The public key (hex) that signs, or null. */
  get publicKeyHex(): string | null {
    return this.#signer === null ? null : bytesToHex(this.#signer.publicKey);
  }

  /**
   * `request` as AnchorClient.call takes it: unchanged when unsigned, else a function that adds a freshly
   * signed auth block for `action` on `name` (over `body`) at each attempt.
   */
  async sign<R extends object>(
    request: R,
    action: Action,
    name: string,
    body: Uint8Array,
  ): Promise<R | (() => R & { auth: WireAuth })> {
    const auth = await this.authFor(action, name);
    if (auth === null) return request;
    return () => ({ ...request, auth: auth(body) });
  }

  /** A function making a fresh auth block over a body for `action` on `name`, or null when unsigned. */
  async authFor(action: Action, name: string): Promise<((body: Uint8Array) => WireAuth) | null> {
    const signer = this.#signer;
    const scope = this.#scope;
    if (signer === null || scope === null) return null;
    const credentialId = await this.#credentialFor(action, name);
    const scopeId = hexToBytes(scope.scopeId);
    return (body) =>
      makeAuth(
        signer,
        scopeId,
        credentialId,
        action,
        body,
        this.#now(),
        new Uint8Array(randomBytes(NONCE_BYTES)),
      );
  }

  async #credentialFor(action: Action, name: string): Promise<Uint8Array> {
    if (this.#credentialId !== null) return this.#credentialId;
    const key = `${action}\u0000${name}`;
    const known = this.#chosen.get(key);
    if (known !== undefined) return known;
    const client = this.#client as AnchorClient;
    const scope = this.#scope as ScopeView;
    this.#credentials ??=
      (
        await client.call<{ credentials?: CredentialView[] }>(
          'Governance',
          'ListCredentials',
          { scope: scope.scope },
          this.#command,
          false,
        )
      ).credentials ?? [];
    const subject = this.publicKeyHex as string;
    const choice = chooseCredential(this.#credentials, subject, action, name, this.#now());
    if (choice === null) {
      throw new CliError(
        `${this.#command}: refused (unknown-credential): key ${shortHex(subject)} holds no credential of scope ${scope.scope}`,
        EXIT.refuse,
        { hint: `ask a scope admin: aq credential issue ${scope.scope} --subject ${subject} ...` },
      );
    }
    const id = hexToBytes(choice.credential.id);
    this.#chosen.set(key, id);
    return id;
  }
}
