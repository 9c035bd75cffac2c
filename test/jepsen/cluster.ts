// The real-process group of a fault run: 3 or 5 `aq anchor start` processes forming one scope group on
// loopback, each dialling every other one's consensus port through a PairProxy (proxy.ts), and the
// controls the nemesis needs: kill -9 and restart from the data dir, SIGSTOP/SIGCONT, cut and heal pairs.
//
// Peer ids are known before the first start because the cluster writes each data dir's anchor.key itself
// (the anchor keeps a key it finds); they survive restarts, so the proxies' AQ_TEST_PEER_DIAL map given to
// each anchor at its first start stays right for the whole run.

import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeKeyFile, KEY_FILE_NAME } from '../../src/identity/key-file.ts';
import { peerIdOfPublicKey } from '../../src/identity/peer-id.ts';
import { NodeSigner, newSeed } from '../../src/identity/signer.ts';
import { type AnchorProcess, client, startAnchorProcess } from '../integration/anchor-harness.ts';
import { PairProxy } from './proxy.ts';

export type AnchorState = 'up' | 'paused' | 'down';

export interface ClusterOptions {
  readonly anchors: number;
  /** Where the data dirs and the anchors' logs go. */
  readonly dir: string;
  readonly scope: string;
  /** AQ_TEST_MUTATIONS for every anchor (empty: a correct anchor). */
  readonly mutations: readonly string[];
  /** --snapshot-count of every anchor. */
  readonly snapshotCount: number;
  /** One line per event worth keeping (starts, exits). */
  readonly log: (line: string) => void;
}

export class AnchorSlot {
  readonly index: number;
  readonly dataDir: string;
  readonly peerId: string;
  proc: AnchorProcess | null = null;
  state: AnchorState = 'down';
  starts = 0;
  /** Exits the cluster did not cause (a crash of the anchor: a finding in itself). */
  unexpectedExits = 0;

  constructor(index: number, dataDir: string, peerId: string) {
    this.index = index;
    this.dataDir = dataDir;
    this.peerId = peerId;
  }

  get name(): string {
    return `a${this.index}`;
  }

  /** Client gRPC address while the process runs (it changes on every restart: port 0). */
  get grpc(): string | undefined {
    return this.state === 'down' ? undefined : this.proc?.info.grpc;
  }
}

/** Clusters started and not yet stopped in this process (for a test's after() hook). */
const live = new Set<Cluster>();

/** Last resort for after() hooks: every anchor of every live cluster killed by PID, proxies closed. */
export async function stopLiveClusters(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop()));
}

export class Cluster {
  readonly slots: AnchorSlot[] = [];
  readonly #o: ClusterOptions;
  /** proxies[i][j]: how anchor i reaches anchor j's consensus port (undefined on the diagonal). */
  readonly #proxies: (PairProxy | undefined)[][] = [];
  #stopping = false;
  /** Expected exits: the cluster killed the process. */
  readonly #killing = new Set<AnchorProcess>();

  constructor(options: ClusterOptions) {
    this.#o = options;
    for (let i = 0; i < options.anchors; i++) {
      const dataDir = join(options.dir, `anchor-${i}`);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const seed = newSeed();
      writeFileSync(join(dataDir, KEY_FILE_NAME), encodeKeyFile(seed), { mode: 0o600 });
      this.slots.push(new AnchorSlot(i, dataDir, peerIdOfPublicKey(new NodeSigner(seed).publicKey)));
    }
  }

  get size(): number {
    return this.slots.length;
  }

  get scope(): string {
    return this.#o.scope;
  }

  /** Opens the pair proxies, then starts every anchor and lets them found the group. */
  async start(): Promise<void> {
    live.add(this);
    const n = this.size;
    for (let i = 0; i < n; i++) {
      const row: (PairProxy | undefined)[] = [];
      for (let j = 0; j < n; j++) {
        if (i === j) {
          row.push(undefined);
          continue;
        }
        const target = this.slots[j]!;
        // The target's real peer port, whatever it is now; none while it is down.
        const proxy = new PairProxy(i, j, () =>
          target.state === 'down' ? undefined : target.proc?.info.peer,
        );
        await proxy.listen();
        row.push(proxy);
      }
      this.#proxies.push(row);
    }
    // The first anchor alone, then the others bootstrapping from it (as the integration tests do).
    await this.startAnchor(0);
    await Promise.all(this.slots.slice(1).map((s) => this.startAnchor(s.index)));
  }

  /** Starts (or restarts from its data dir) anchor i, bootstrapping from the anchors now up. */
  async startAnchor(i: number): Promise<void> {
    const slot = this.slots[i]!;
    if (slot.state !== 'down') throw new Error(`${slot.name} is already running`);
    const dial: Record<string, string> = {};
    for (const other of this.slots) {
      if (other.index !== i) dial[other.peerId] = this.#proxies[i]![other.index]!.address;
    }
    // Any running anchor will do (the restarted one also finds the group from its peers.json).
    const bootstrap: string[] = [];
    for (const s of this.slots) {
      const p2p = s.index !== i && s.state !== 'down' ? s.proc?.info.p2p[0] : undefined;
      if (p2p !== undefined) bootstrap.push(p2p);
    }
    const proc = await startAnchorProcess(
      {
        dataDir: slot.dataDir,
        scopes: [this.#o.scope],
        bootstrapExpect: this.size,
        bootstrap,
        region: 'jepsen',
        extraArgs: ['--snapshot-count', String(this.#o.snapshotCount)],
        env: {
          AQ_TEST_PEER_DIAL: JSON.stringify(dial),
          AQ_TEST_MUTATIONS: this.#o.mutations.join(','),
        },
      },
      30_000,
    );
    if (this.#stopping) {
      // Stopped while this one was starting: it must not outlive the cluster.
      proc.child.kill('SIGKILL');
      throw new Error(`${slot.name} started after the cluster was stopped`);
    }
    if (proc.info.peerId !== slot.peerId) {
      proc.child.kill('SIGKILL');
      throw new Error(`${slot.name} runs as ${proc.info.peerId}, not the ${slot.peerId} of its key file`);
    }
    slot.proc = proc;
    slot.state = 'up';
    slot.starts++;
    this.#o.log(`${slot.name} started (pid ${proc.child.pid}, client ${proc.info.grpc})`);
    void proc.exited.then((code) => {
      this.#saveLogs(slot, proc);
      if (this.#killing.delete(proc) || this.#stopping) return;
      // Not ours: the anchor died by itself.
      slot.unexpectedExits++;
      if (slot.proc === proc) slot.state = 'down';
      this.#o.log(`${slot.name} EXITED UNEXPECTEDLY (code ${code}, signal ${proc.child.signalCode})`);
    });
  }

  /** kill -9 (SIGCONT first when paused, so the kernel delivers it at once). */
  async kill(i: number): Promise<void> {
    const slot = this.slots[i]!;
    const proc = slot.proc;
    if (proc === null || slot.state === 'down') return;
    this.#killing.add(proc);
    if (slot.state === 'paused') proc.child.kill('SIGCONT');
    proc.child.kill('SIGKILL');
    slot.state = 'down';
    await proc.exited;
  }

  pause(i: number): void {
    const slot = this.slots[i]!;
    if (slot.state !== 'up' || slot.proc === null) return;
    slot.proc.child.kill('SIGSTOP');
    slot.state = 'paused';
  }

  resume(i: number): void {
    const slot = this.slots[i]!;
    if (slot.state !== 'paused' || slot.proc === null) return;
    slot.proc.child.kill('SIGCONT');
    slot.state = 'up';
  }

  /** Cuts (or heals) both directions between a and b. */
  setLink(a: number, b: number, cut: boolean): void {
    for (const p of [this.#proxies[a]?.[b], this.#proxies[b]?.[a]]) {
      if (p === undefined) continue;
      if (cut) p.cut();
      else p.heal();
    }
  }

  healAllLinks(): void {
    for (const row of this.#proxies) for (const p of row) p?.heal();
  }

  /** Connections forwarded and refused by all proxies (to show that partitions bit). */
  proxyStats(): { forwarded: number; refused: number } {
    let forwarded = 0;
    let refused = 0;
    for (const row of this.#proxies)
      for (const p of row) {
        forwarded += p?.forwarded ?? 0;
        refused += p?.refused ?? 0;
      }
    return { forwarded, refused };
  }

  /**
   * The leader as the running anchors see it: the one named by the answer with the highest term (a
   * deposed leader still believing it leads answers with its older term). Undefined when none answers.
   */
  async leader(deadlineMs = 1_000): Promise<number | undefined> {
    const views = await Promise.all(
      this.slots
        .filter((s) => s.state === 'up')
        .map(async (s) => {
          const c = client(s.grpc!, 'Membership');
          try {
            const v = await c.call<{ term: number | string; members: { id: string; leader: boolean }[] }>(
              'Members',
              { scope: this.#o.scope },
              deadlineMs,
            );
            return { term: Number(v.term), leader: v.members.find((m) => m.leader)?.id };
          } catch {
            return undefined;
          } finally {
            c.close();
          }
        }),
    );
    let best: { term: number; leader: string | undefined } | undefined;
    for (const v of views)
      if (v?.leader !== undefined && (best === undefined || v.term > best.term)) best = v;
    return this.slots.find((s) => s.peerId === best?.leader)?.index;
  }

  /** Stops everything by PID: SIGCONT then SIGKILL for each anchor, then closes the proxies. Idempotent. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.slots.map((s) => this.kill(s.index)));
    await Promise.all(this.#proxies.flat().map((p) => p?.close()));
    live.delete(this);
  }

  /** Synchronous last resort (process 'exit'): no process left running, paused or not. */
  killNow(): void {
    for (const s of this.slots) {
      const child = s.proc?.child;
      if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
      const pid = child.pid;
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  #saveLogs(slot: AnchorSlot, proc: AnchorProcess): void {
    try {
      appendFileSync(
        join(this.#o.dir, `${slot.name}.log`),
        `--- ${slot.name} start #${slot.starts} pid ${proc.child.pid} ---\n${proc.logs.join('\n')}\n`,
      );
    } catch {
      // the run dir may be gone already (cleaned after a passing test)
    }
  }
}
