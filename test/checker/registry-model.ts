/**
 * Sequential model of the aqmesh registry for the linearizability checker: the instances of ONE name, as a map
 * instance id -> value (e.g. "10.0.0.1:8080"). The history of the whole registry is partitioned by name
 * (P-compositionality), so each search only ever sees the operations of one name.
 */

import type { Model, Operation, StepResult } from './linearizability.ts';

export type RegistryInput =
  | { readonly kind: 'register'; readonly name: string; readonly id: string; readonly value: string }
  | { readonly kind: 'deregister'; readonly name: string; readonly id: string }
  | { readonly kind: 'resolve'; readonly name: string };

/** One instance of a name: [instance id, value]. */
export type RegistryInstance = readonly [id: string, value: string];

export type RegistryOutput =
  | { readonly kind: 'register' }
  | { readonly kind: 'deregister'; readonly removed: boolean }
  /** Instances sorted by id (code-unit order); the model sorts a copy if needed before comparing. */
  | { readonly kind: 'resolve'; readonly instances: readonly RegistryInstance[] };

/** Instances of one name, sorted by id, ids unique. Immutable: every step returns a new array. */
export type RegistryState = readonly RegistryInstance[];

export type RegistryOperation = Operation<RegistryInput, RegistryOutput>;

const byId = (a: RegistryInstance, b: RegistryInstance): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

function indexOf(state: RegistryState, id: string): number {
  let lo = 0;
  let hi = state.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (state[mid]![0] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function sameInstances(state: RegistryState, observed: readonly RegistryInstance[]): boolean {
  if (state.length !== observed.length) return false;
  let sorted = observed;
  for (let k = 1; k < observed.length; k++) {
    if (byId(observed[k - 1]!, observed[k]!) > 0) {
      sorted = [...observed].sort(byId);
      break;
    }
  }
  for (let k = 0; k < state.length; k++) {
    const s = state[k]!;
    const o = sorted[k]!;
    if (s[0] !== o[0] || s[1] !== o[1]) return false;
  }
  return true;
}

/** One step of the model (exported for models that embed the registry's per-name state). */
export function registryStep(
  state: RegistryState,
  input: RegistryInput,
  output: RegistryOutput | undefined,
): StepResult<RegistryState> {
  switch (input.kind) {
    case 'register': {
      const ok = output === undefined || output.kind === 'register';
      const k = indexOf(state, input.id);
      const next = state.slice();
      const present = k < state.length && state[k]![0] === input.id;
      next.splice(k, present ? 1 : 0, [input.id, input.value]);
      return { ok, state: next };
    }
    case 'deregister': {
      const k = indexOf(state, input.id);
      const present = k < state.length && state[k]![0] === input.id;
      const ok = output === undefined || (output.kind === 'deregister' && output.removed === present);
      if (!present) return { ok, state };
      const next = state.slice();
      next.splice(k, 1);
      return { ok, state: next };
    }
    case 'resolve': {
      const ok =
        output === undefined || (output.kind === 'resolve' && sameInstances(state, output.instances));
      return { ok, state };
    }
  }
}

/** A resolve whose output is unknown constrains nothing (no effect, any output): drop it before searching. */
function isVacuous(op: RegistryOperation): boolean {
  return op.input.kind === 'resolve' && op.output === undefined;
}

function partition(ops: readonly RegistryOperation[]): RegistryOperation[][] {
  const byName = new Map<string, RegistryOperation[]>();
  for (const op of ops) {
    if (isVacuous(op)) continue;
    let group = byName.get(op.input.name);
    if (group === undefined) {
      group = [];
      byName.set(op.input.name, group);
    }
    group.push(op);
  }
  return [...byName.values()]; // in order of first appearance of each name
}

export const formatInstances = (instances: readonly RegistryInstance[]): string =>
  `{${instances.map(([id, value]) => `${id}=${value}`).join(', ')}}`;

/** e.g. `c3 register(eu/pay, i1=10.0.0.1:80) -> ok`, `c1 resolve(eu/pay) -> {i1=10.0.0.1:80}`, `... -> ?`. */
export function describeRegistryOp(op: RegistryOperation): string {
  const { input, output } = op;
  let call: string;
  switch (input.kind) {
    case 'register':
      call = `register(${input.name}, ${input.id}=${input.value})`;
      break;
    case 'deregister':
      call = `deregister(${input.name}, ${input.id})`;
      break;
    case 'resolve':
      call = `resolve(${input.name})`;
      break;
  }
  let result: string;
  if (output === undefined) result = '?';
  else if (output.kind === 'register') result = 'ok';
  else if (output.kind === 'deregister') result = output.removed ? 'removed' : 'absent';
  else result = formatInstances(output.instances);
  return `c${op.clientId} ${call} -> ${result}`;
}

export const registryModel: Model<RegistryState, RegistryInput, RegistryOutput> = {
  init: () => [],
  step: registryStep,
  partition,
  hash: (state) => JSON.stringify(state), // injective, unlike the display format
  describe: describeRegistryOp,
};
