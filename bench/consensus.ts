// Core throughput: how many proposals per second the pure Raft core commits when nothing else costs
// anything (in-memory storage, messages handed over in-process). It shows the core is never the
// bottleneck of an anchor. A benchmark, not a test: run `make bench-consensus` (or
// `node bench/consensus.ts --seconds 5 --batch 256 --groups 20`).
//
// Everything runs on one core (one Node thread): the three members of a group, or the 60 members of 20
// groups on one multi-raft host, share it. "Committed" means applied by the leader after a quorum of
// members persisted the entry.

import { parseArgs } from 'node:util';
import {
  bootstrapState,
  MemoryStorage,
  type Message,
  type NodeId,
  RaftNode,
} from '../src/consensus/index.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    batch: { type: 'string', default: '256' },
    groups: { type: 'string', default: '20' },
    payload: { type: 'string', default: '64' },
    json: { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
const batch = Number(values.batch);
const payload = new Uint8Array(Number(values.payload)).fill(7);

interface Member {
  node: RaftNode;
  storage: MemoryStorage;
}

/** One scope group of three members, driven by a tight in-process loop following the Ready contract. */
class Group {
  readonly members = new Map<NodeId, Member>();
  private queue: Message[] = [];
  committed = 0;
  private sinceCompact = 0;

  readonly scope: string;

  constructor(scope: string) {
    this.scope = scope;
    const ids = ['a', 'b', 'c'];
    for (const id of ids) {
      const storage = new MemoryStorage(bootstrapState(ids));
      let seed = id.charCodeAt(0);
      const node = new RaftNode(
        {
          id,
          electionTick: 10,
          heartbeatTick: 1,
          random: (n) => {
            seed = (seed * 48271) % 2147483647;
            return seed % n;
          },
        },
        storage.load(),
      );
      this.members.set(id, { node, storage });
    }
    this.members.get('a')!.node.campaign();
    while (this.pump() > 0) {}
  }

  leader(): RaftNode {
    return this.members.get('a')!.node;
  }

  /** Process every member's Ready and deliver every message once. Returns the work done. */
  pump(): number {
    let work = 0;
    for (const [id, m] of this.members) {
      if (!m.node.hasReady()) continue;
      const rd = m.node.ready();
      work++;
      for (const msg of rd.messages) this.queue.push(msg);
      m.storage.save(rd);
      for (const msg of rd.messagesAfterPersist) this.queue.push(msg);
      if (id === 'a') {
        for (const e of rd.committedEntries) if (e.data.length > 0) this.committed++;
        this.sinceCompact += rd.committedEntries.length;
      }
      m.node.advance(rd);
    }
    // Compact now and then so memory stays bounded, as an anchor does.
    if (this.sinceCompact > 50_000) {
      this.sinceCompact = 0;
      for (const m of this.members.values()) {
        const applied = m.node.status().applied;
        const snap = m.node.compact(applied, new Uint8Array(0));
        if (snap) m.storage.compact(snap);
      }
    }
    const msgs = this.queue;
    this.queue = [];
    for (const msg of msgs) this.members.get(msg.to)?.node.step(msg);
    return work + msgs.length;
  }
}

function run(groups: Group[]): { proposals: number; seconds: number; cpuUs: number } {
  const start = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  let rounds = 0;
  while ((rounds & 15) !== 0 || process.hrtime.bigint() < deadline) {
    rounds++;
    for (const g of groups) {
      // Keep the pipeline full: propose a batch whenever fewer than two batches are uncommitted.
      const st = g.leader().status();
      if (st.lastIndex - st.commit < 2 * batch) for (let i = 0; i < batch; i++) g.leader().propose(payload);
      g.pump();
    }
  }
  const cpu = process.cpuUsage(cpu0);
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const proposals = groups.reduce((n, g) => n + g.committed, 0);
  // Sanity: every member of every group holds the leader's log, so the count is of replicated work.
  for (const g of groups) {
    const last = g.leader().status().lastIndex;
    for (const m of g.members.values()) {
      if (m.node.status().lastIndex < last - 4 * batch) throw new Error(`${g.scope}: a member fell behind`);
    }
  }
  return { proposals, seconds: elapsed, cpuUs: cpu.user + cpu.system };
}

function report(label: string, r: { proposals: number; seconds: number; cpuUs: number }) {
  const perSec = r.proposals / r.seconds;
  const cpuPer = r.cpuUs / r.proposals;
  if (!values.json) {
    console.log(
      `${label.padEnd(34)} ${Math.round(perSec).toLocaleString('en-US').padStart(10)} committed/s   ${cpuPer.toFixed(2).padStart(6)} µs CPU/proposal`,
    );
  }
  return { perSec: Math.round(perSec), cpuUsPerProposal: Number(cpuPer.toFixed(3)) };
}

if (!values.json) {
  console.log(
    `aqmesh consensus core: node ${process.version}, batch ${batch}, payload ${payload.length} B, ${seconds}s per phase`,
  );
}
const one = report('1 group x 3 members', run([new Group('s0')]));
const hostGroups = Array.from({ length: Number(values.groups) }, (_, i) => new Group(`s${i}`));
const many = report(`${hostGroups.length} groups x 3 members`, run(hostGroups));
console.log(
  JSON.stringify({
    node: process.version,
    batch,
    payload_bytes: payload.length,
    one_group_per_s: one.perSec,
    one_group_cpu_us: one.cpuUsPerProposal,
    groups: hostGroups.length,
    many_groups_per_s: many.perSec,
    many_groups_cpu_us: many.cpuUsPerProposal,
  }),
);
