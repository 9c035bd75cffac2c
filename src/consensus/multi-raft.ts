import type { RaftNode } from './raft.ts';
import type { Envelope, ScopeId } from './types.ts';

/**
 * Multi-raft: one host runs many independent groups, one per scope, keyed by scope id. Messages carry
 * the scope id; the host routes them. Pure like the groups it holds: the driver calls tick() on its
 * clock and collects each group's Ready.
 */
export class MultiRaft {
  private readonly groups = new Map<ScopeId, RaftNode>();

  add(scope: ScopeId, node: RaftNode): void {
    if (this.groups.has(scope)) throw new RangeError(`multi-raft: scope ${scope} already hosted`);
    this.groups.set(scope, node);
  }

  remove(scope: ScopeId): void {
    this.groups.delete(scope);
  }

  get(scope: ScopeId): RaftNode | undefined {
    return this.groups.get(scope);
  }

  scopes(): ScopeId[] {
    return [...this.groups.keys()];
  }

  tick(): void {
    for (const node of this.groups.values()) node.tick();
  }

  /** Deliver a message to its group; false when this host does not serve that scope. */
  step(env: Envelope): boolean {
    const node = this.groups.get(env.scope);
    if (!node) return false;
    node.step(env.message);
    return true;
  }
}
