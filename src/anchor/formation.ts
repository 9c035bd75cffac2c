// How an anchor enters each scope group it claims, from what the mesh tells it (Consul's
// bootstrap-expect, without a static peer list):
//   - it has Raft state for the scope on disk: it restarts as the member it was (rejoin);
//   - some anchor announces the scope's group as formed: it starts empty and asks the group to add it as a
//     learner (the leader promotes it to voter once it has caught up);
//   - otherwise it waits until `bootstrapExpect` anchors (itself included) claim the scope, and the first
//     `bootstrapExpect` of them by peer id found the group, each from the same bootstrap state.
// The choice of founders is a pure function of the claimants, so anchors that see the same claimants pick
// the same founders. Known limit, as with Consul: anchors started at the same moment with more claimants
// than bootstrapExpect may see different sets; start exactly bootstrapExpect anchors for a new scope.

import type { NodeId } from '../consensus/index.ts';

export interface ScopeClaim {
  readonly peerId: NodeId;
  readonly scopes: readonly string[];
  /** Scopes whose group this anchor is a member of. */
  readonly formed: readonly string[];
}

export type FormationStep =
  | { readonly kind: 'found'; readonly founders: readonly NodeId[] }
  | { readonly kind: 'join'; readonly members: readonly NodeId[] }
  | { readonly kind: 'wait'; readonly claimants: number };

/** What to do next for a scope this anchor claims and holds no state for. */
export function formationStep(
  self: NodeId,
  scope: string,
  bootstrapExpect: number,
  claims: readonly ScopeClaim[],
): FormationStep {
  const members = claims.filter((c) => c.peerId !== self && c.formed.includes(scope)).map((c) => c.peerId);
  if (members.length > 0) return { kind: 'join', members: members.sort() };
  const claimants = [...new Set(claims.filter((c) => c.scopes.includes(scope)).map((c) => c.peerId))].sort();
  if (!claimants.includes(self)) claimants.push(self);
  claimants.sort();
  if (claimants.length < bootstrapExpect) return { kind: 'wait', claimants: claimants.length };
  const founders = claimants.slice(0, bootstrapExpect);
  if (founders.includes(self)) return { kind: 'found', founders };
  return { kind: 'wait', claimants: claimants.length };
}
