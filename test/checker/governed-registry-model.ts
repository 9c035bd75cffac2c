/**
 * Sequential model of a *governed* aqmesh scope for the linearizability checker: the registry's names AND
 * the authorization decisions, as one object per credential.
 *
 * Every registry operation of a governed scope is signed with a credential whose prefix owns the names it
 * works on, and every admin operation (issue, revoke) names one credential. An operation's outcome depends
 * only on its credential's status and on the instances of its name, so the history partitions by credential
 * (P-compositionality): one partition = one credential's issue and revoke operations plus every operation
 * signed with it. A name belongs to exactly one credential (the one whose prefix covers it), so no two
 * partitions share state. The partition key is the credential's prefix (`cred`).
 *
 * State of one partition: the credential's status (not issued / active / revoked) and, per name, its
 * instances (id -> value). Rules, as src/governance/authority.ts decides at apply time:
 *   issue       not issued -> active, answered "issued"; otherwise refused 'invalid-governance' (already issued)
 *   revoke      active -> revoked, answered "revoked"; not issued -> refused 'unknown-credential';
 *               revoked -> refused 'invalid-governance' (already revoked)
 *   register, deregister, resolve by the holder:
 *               not issued -> refused 'unknown-credential'; revoked -> refused 'revoked';
 *               active but the name is outside the prefix -> refused 'wrong-prefix';
 *               otherwise admitted, with the registry's semantics (registry-model.ts).
 * A refusal changes nothing. An indeterminate operation (output undefined) may take effect or not, as usual.
 */

import type { Model, Operation, StepResult } from './linearizability.ts';
import {
  formatInstances,
  type RegistryInstance,
  type RegistryOutput,
  type RegistryState,
  registryStep,
} from './registry-model.ts';

export type GovernedInput =
  | {
      readonly kind: 'register';
      readonly cred: string;
      readonly name: string;
      readonly id: string;
      readonly value: string;
    }
  | { readonly kind: 'deregister'; readonly cred: string; readonly name: string; readonly id: string }
  | { readonly kind: 'resolve'; readonly cred: string; readonly name: string }
  | { readonly kind: 'issue'; readonly cred: string }
  | { readonly kind: 'revoke'; readonly cred: string };

/** The reasons the model knows; any other refusal is a violation. */
export const AUTHORIZATION_CODES = [
  'unknown-credential',
  'revoked',
  'wrong-prefix',
  'invalid-governance',
] as const;
export type AuthorizationCode = (typeof AUTHORIZATION_CODES)[number];

export type GovernedOutput =
  | RegistryOutput
  | { readonly kind: 'issue' }
  | { readonly kind: 'revoke' }
  | { readonly kind: 'refused'; readonly code: string };

export const NOT_ISSUED = 0;
export const ACTIVE = 1;
export const REVOKED = 2;
export type CredentialStatus = typeof NOT_ISSUED | typeof ACTIVE | typeof REVOKED;

/** One partition's state. Immutable: every step returns a new object when something changes. */
export interface GovernedState {
  readonly status: CredentialStatus;
  /** Names with instances, sorted by name; each name's instances sorted by id. */
  readonly names: readonly (readonly [name: string, instances: RegistryState])[];
}

export type GovernedOperation = Operation<GovernedInput, GovernedOutput>;

const EMPTY: RegistryState = [];

function refusedWith(output: GovernedOutput | undefined, code: AuthorizationCode): boolean {
  return output === undefined || (output.kind === 'refused' && output.code === code);
}

function nameAt(state: GovernedState, name: string): number {
  let lo = 0;
  let hi = state.names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (state.names[mid]![0] < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Why the credential's holder is refused right now, or null when it is admitted on `name`. */
export function refusalFor(status: CredentialStatus, cred: string, name: string): AuthorizationCode | null {
  if (status === NOT_ISSUED) return 'unknown-credential';
  if (status === REVOKED) return 'revoked';
  if (!name.startsWith(cred)) return 'wrong-prefix';
  return null;
}

function step(
  state: GovernedState,
  input: GovernedInput,
  output: GovernedOutput | undefined,
): StepResult<GovernedState> {
  switch (input.kind) {
    case 'issue':
      if (state.status === NOT_ISSUED)
        return {
          ok: output === undefined || output.kind === 'issue',
          state: { status: ACTIVE, names: state.names },
        };
      return { ok: refusedWith(output, 'invalid-governance'), state };
    case 'revoke':
      if (state.status === NOT_ISSUED) return { ok: refusedWith(output, 'unknown-credential'), state };
      if (state.status === REVOKED) return { ok: refusedWith(output, 'invalid-governance'), state };
      return {
        ok: output === undefined || output.kind === 'revoke',
        state: { status: REVOKED, names: state.names },
      };
    default: {
      const code = refusalFor(state.status, input.cred, input.name);
      if (code !== null) return { ok: refusedWith(output, code), state };
      if (
        output !== undefined &&
        (output.kind === 'refused' || output.kind === 'issue' || output.kind === 'revoke')
      )
        return { ok: false, state };
      const k = nameAt(state, input.name);
      const present = k < state.names.length && state.names[k]![0] === input.name;
      const before = present ? state.names[k]![1] : EMPTY;
      const r = registryStep(before, input, output as RegistryOutput | undefined);
      if (r.state === before) return { ok: r.ok, state };
      const names = state.names.slice();
      if (r.state.length === 0) names.splice(k, present ? 1 : 0);
      else names.splice(k, present ? 1 : 0, [input.name, r.state]);
      return { ok: r.ok, state: { status: state.status, names } };
    }
  }
}

/** A resolve whose output is unknown constrains nothing (no effect, any output): drop it before searching. */
function isVacuous(op: GovernedOperation): boolean {
  return op.input.kind === 'resolve' && op.output === undefined;
}

function partition(ops: readonly GovernedOperation[]): GovernedOperation[][] {
  const byCredential = new Map<string, GovernedOperation[]>();
  for (const op of ops) {
    if (isVacuous(op)) continue;
    let group = byCredential.get(op.input.cred);
    if (group === undefined) {
      group = [];
      byCredential.set(op.input.cred, group);
    }
    group.push(op);
  }
  return [...byCredential.values()]; // in order of first appearance of each credential
}

export function describeGovernedInput(input: GovernedInput): string {
  switch (input.kind) {
    case 'register':
      return `[${input.cred}] register(${input.name}, ${input.id}=${input.value})`;
    case 'deregister':
      return `[${input.cred}] deregister(${input.name}, ${input.id})`;
    case 'resolve':
      return `[${input.cred}] resolve(${input.name})`;
    case 'issue':
      return `issue(${input.cred})`;
    case 'revoke':
      return `revoke(${input.cred})`;
  }
}

export function describeGovernedOutput(output: GovernedOutput | undefined): string {
  if (output === undefined) return '?';
  switch (output.kind) {
    case 'register':
      return 'ok';
    case 'deregister':
      return output.removed ? 'removed' : 'absent';
    case 'resolve':
      return formatInstances(output.instances);
    case 'issue':
      return 'issued';
    case 'revoke':
      return 'revoked';
    case 'refused':
      return `refused ${output.code}`;
  }
}

/** e.g. `c3 [a/c1/] register(a/c1/web, i1=10.0.0.1:80) -> refused revoked`. */
export function describeGovernedOp(op: GovernedOperation): string {
  return `c${op.clientId} ${describeGovernedInput(op.input)} -> ${describeGovernedOutput(op.output)}`;
}

const STATUS_CHAR = ['-', 'A', 'R'] as const;

export const governedRegistryModel: Model<GovernedState, GovernedInput, GovernedOutput> = {
  init: () => ({ status: NOT_ISSUED, names: [] }),
  step,
  partition,
  // Injective: the status, then the names and instances as JSON.
  hash: (state) => `${STATUS_CHAR[state.status]}${JSON.stringify(state.names)}`,
  describe: describeGovernedOp,
};

export type { RegistryInstance };
