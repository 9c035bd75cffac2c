// Scripted scenario tests for the Raft core, in the manner of etcd's datadriven interaction tests: a text
// file is a sequence of commands, each followed by `----` and the output it must produce. The harness is a
// deterministic driver: storage is in memory and instantly durable, the network is a queue the script
// delivers, drops or partitions explicitly. Rewrite expected outputs with AQ_REWRITE=1 after a deliberate
// change, and read the diff.

import {
  bootstrapState,
  type ConfChangeType,
  type Entry,
  emptyState,
  MemoryStorage,
  type Message,
  type Mutation,
  type RaftConfig,
  RaftNode,
  type Ready,
} from '../../src/consensus/index.ts';

const text = new TextDecoder();
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

export function formatEntry(e: Entry): string {
  if (e.kind === 'conf-change') return `${e.term}/${e.index} conf`;
  return e.data.length === 0 ? `${e.term}/${e.index} noop` : `${e.term}/${e.index} ${text.decode(e.data)}`;
}

export function formatMessage(m: Message): string {
  const parts = [`${m.from}->${m.to} ${m.type} term=${m.term}`];
  switch (m.type) {
    case 'append':
      parts.push(`prev=${m.logTerm}/${m.index} commit=${m.commit}`);
      if (m.entries.length > 0) parts.push(`entries=[${m.entries.map(formatEntry).join(', ')}]`);
      break;
    case 'append-resp':
      parts.push(m.reject ? `reject index=${m.index} hint=${m.logTerm}/${m.rejectHint}` : `index=${m.index}`);
      break;
    case 'vote':
    case 'prevote':
      parts.push(`last=${m.logTerm}/${m.index}`);
      if (m.context) parts.push('transfer');
      break;
    case 'vote-resp':
    case 'prevote-resp':
      parts.push(m.reject ? 'reject' : 'grant');
      break;
    case 'heartbeat':
      parts.push(`commit=${m.commit}`);
      break;
    case 'snapshot':
      parts.push(`snap=${m.snapshot?.meta.term}/${m.snapshot?.meta.index}`);
      break;
    case 'read-index-resp':
      parts.push(`index=${m.index}`);
      break;
    case 'propose':
      parts.push(`entries=${m.entries.length}`);
      break;
    default:
      break;
  }
  if (m.context && m.type !== 'vote' && m.type !== 'prevote') parts.push(`ctx=${text.decode(m.context)}`);
  return parts.join(' ');
}

interface SimNode {
  node: RaftNode | null;
  storage: MemoryStorage;
  config: RaftConfig;
  applied: string[];
  reads: string[];
}

export class Harness {
  private readonly nodes = new Map<string, SimNode>();
  private queue: Message[] = [];
  private readonly isolated = new Set<string>();
  private readonly out: string[] = [];

  run(command: string, args: Map<string, string>, positional: string[]): string {
    this.out.length = 0;
    const id = positional[0] ?? '';
    switch (command) {
      case 'bootstrap': {
        const voters = (args.get('voters') ?? '').split(',');
        for (const v of voters) this.addNode(v, new MemoryStorage(bootstrapState(voters)), args);
        this.stabilize(false);
        this.print(`bootstrapped ${voters.join(',')}`);
        break;
      }
      case 'add-node':
        this.addNode(id, new MemoryStorage(emptyState()), args);
        this.print(`added ${id} (empty log)`);
        break;
      case 'campaign':
        this.must(id).campaign();
        break;
      case 'tick': {
        const n = Number(positional[1] ?? 1);
        for (let i = 0; i < n; i++) this.must(id).tick();
        break;
      }
      case 'tick-all': {
        const n = Number(id || 1);
        // Time passes as on a live system: each round of ticks is followed by the exchanges it triggers.
        for (let i = 0; i < n; i++) {
          for (const s of this.nodes.values()) s.node?.tick();
          this.stabilize(false);
        }
        break;
      }
      case 'propose':
        this.catching(() => this.must(id).propose(bytes(positional[1] ?? '')));
        break;
      case 'conf-change':
        this.catching(() =>
          this.must(id).proposeConfChange({
            type: positional[1] as ConfChangeType,
            node: positional[2] ?? '',
          }),
        );
        break;
      case 'read-index':
        this.catching(() => this.must(id).readIndex(bytes(positional[1] ?? '')));
        break;
      case 'transfer-leadership':
        this.must(id).transferLeadership(positional[1] ?? '');
        break;
      case 'process-ready':
        for (const p of positional) this.processReady(p, true);
        break;
      case 'deliver':
        this.deliver(args.get('from'), args.get('to'), args.get('drop') === 'true');
        break;
      case 'stabilize':
        this.stabilize(args.get('quiet') !== 'true');
        break;
      case 'isolate':
        this.isolated.add(id);
        break;
      case 'heal':
        this.isolated.clear();
        break;
      case 'crash':
        this.sim(id).node = null;
        this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
        this.print(`${id} crashed`);
        break;
      case 'restart': {
        const s = this.sim(id);
        s.node = new RaftNode({ ...s.config, applied: 0 }, s.storage.load());
        s.applied = [];
        this.print(`${id} restarted at ${this.describe(id)}`);
        break;
      }
      case 'compact': {
        const s = this.sim(id);
        const node = this.must(id);
        const applied = node.status().applied;
        const snap = node.compact(applied, bytes(s.applied.join(',')));
        if (!snap) throw new Error(`${id}: nothing to compact at ${applied}`);
        s.storage.compact(snap);
        this.print(`${id} compacted to ${snap.meta.term}/${snap.meta.index}`);
        break;
      }
      case 'mutation':
        this.sim(id).config = { ...this.sim(id).config, mutations: new Set([positional[1] as Mutation]) };
        this.print(`${id} runs with mutation ${positional[1]} from its next restart`);
        break;
      case 'status':
        for (const n of this.ids()) this.print(`${n}: ${this.describe(n)}`);
        break;
      case 'log': {
        const node = this.must(id);
        const st = node.status();
        this.print(
          `${id} log ${st.firstIndex}..${st.lastIndex}: ${node
            .entries(st.firstIndex, st.lastIndex + 1)
            .map(formatEntry)
            .join(', ')}`,
        );
        break;
      }
      case 'applied':
        for (const n of positional.length > 0 ? positional : this.ids()) {
          this.print(`${n} applied: ${this.sim(n).applied.join(', ')}`);
        }
        break;
      case 'reads':
        this.print(`${id} reads: ${this.sim(id).reads.join(', ')}`);
        break;
      default:
        throw new Error(`unknown scenario command: ${command}`);
    }
    return this.out.join('\n');
  }

  private addNode(id: string, storage: MemoryStorage, args: Map<string, string>): void {
    let seed = id.charCodeAt(0);
    const config: RaftConfig = {
      id,
      electionTick: Number(args.get('election') ?? 10),
      heartbeatTick: 1,
      // A fixed per-node jitter sequence keeps scripts deterministic.
      random: (n) => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      },
      preVote: args.get('pre-vote') !== 'false',
      checkQuorum: args.get('check-quorum') !== 'false',
      maxEntriesPerMsg: Number(args.get('max-entries') ?? 64),
    };
    this.nodes.set(id, {
      node: new RaftNode(config, storage.load()),
      storage,
      config,
      applied: [],
      reads: [],
    });
  }

  private ids(): string[] {
    return [...this.nodes.keys()].sort();
  }

  private sim(id: string): SimNode {
    const s = this.nodes.get(id);
    if (!s) throw new Error(`no node ${id}`);
    return s;
  }

  private must(id: string): RaftNode {
    const n = this.sim(id).node;
    if (!n) throw new Error(`node ${id} is crashed`);
    return n;
  }

  private describe(id: string): string {
    const node = this.sim(id).node;
    if (!node) return 'crashed';
    const st = node.status();
    return `${st.role} term=${st.term} vote=${st.vote || '-'} lead=${st.leader || '-'} commit=${st.commit} applied=${st.applied} last=${st.lastIndex} voters=${st.conf.voters.join(',')}${st.conf.learners.length ? ` learners=${st.conf.learners.join(',')}` : ''}`;
  }

  private print(line: string): void {
    this.out.push(line);
  }

  private catching(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.print(`error: ${(err as Error).name}: ${(err as Error).message}`);
    }
  }

  /** Act on one Ready exactly as the contract in types.ts says; storage here is durable at once. */
  private processReady(id: string, verbose: boolean): boolean {
    const s = this.sim(id);
    const node = s.node;
    if (!node?.hasReady()) return false;
    const rd: Ready = node.ready();
    if (verbose) {
      if (rd.hardState)
        this.print(
          `${id} persist hard state term=${rd.hardState.term} vote=${rd.hardState.vote || '-'} commit=${rd.hardState.commit}`,
        );
      if (rd.entries.length) this.print(`${id} persist entries [${rd.entries.map(formatEntry).join(', ')}]`);
      if (rd.snapshot)
        this.print(`${id} persist snapshot ${rd.snapshot.meta.term}/${rd.snapshot.meta.index}`);
    }
    this.queue.push(...rd.messages);
    s.storage.save({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot });
    this.queue.push(...rd.messagesAfterPersist);
    if (rd.snapshot) {
      const data = text.decode(rd.snapshot.data);
      s.applied = data ? data.split(',') : [];
    }
    for (const e of rd.committedEntries) {
      if (e.kind === 'normal')
        s.applied.push(`${e.term}/${e.index}:${e.data.length ? text.decode(e.data) : '-'}`);
    }
    if (verbose && rd.committedEntries.length)
      this.print(`${id} apply [${rd.committedEntries.map(formatEntry).join(', ')}]`);
    for (const r of rd.readStates) {
      s.reads.push(`${text.decode(r.context)}@${r.index}`);
      if (verbose) this.print(`${id} read ${text.decode(r.context)} at index ${r.index}`);
    }
    node.advance(rd);
    return true;
  }

  private deliver(from: string | undefined, to: string | undefined, drop: boolean): number {
    const take = this.queue.filter((m) => (!from || m.from === from) && (!to || m.to === to));
    this.queue = this.queue.filter((m) => !take.includes(m));
    for (const m of take) {
      const cut = this.isolated.has(m.from) || this.isolated.has(m.to);
      const target = this.nodes.get(m.to)?.node;
      if (drop || cut || !target) {
        this.print(`dropped ${formatMessage(m)}`);
        continue;
      }
      this.print(formatMessage(m));
      target.step(m);
    }
    return take.length;
  }

  private stabilize(verbose: boolean): void {
    for (let round = 0; round < 1000; round++) {
      let busy = false;
      for (const id of this.ids()) busy = this.processReady(id, verbose) || busy;
      const before = this.out.length;
      const delivered = this.deliver(undefined, undefined, false);
      if (!verbose) this.out.length = before;
      if (!busy && delivered === 0) return;
    }
    throw new Error('stabilize: no quiescence after 1000 rounds');
  }
}

export interface ScenarioCase {
  readonly line: number;
  readonly command: string;
  readonly expected: string;
}

/** Parse a scenario file: `command args` lines, `----`, expected output, a blank line. */
export function parseScenario(source: string): ScenarioCase[] {
  const lines = source.split('\n');
  const cases: ScenarioCase[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === '' || line.startsWith('#')) {
      i++;
      continue;
    }
    const start = i + 1;
    const command = line.trim();
    i++;
    if (lines[i] !== '----') throw new Error(`scenario line ${start}: expected ---- after '${command}'`);
    i++;
    const expected: string[] = [];
    while (i < lines.length && lines[i] !== '') expected.push(lines[i++]!);
    cases.push({ line: start, command, expected: expected.join('\n') });
  }
  return cases;
}

export function renderScenario(source: string, outputs: Map<number, string>): string {
  const lines = source.split('\n');
  const result: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    result.push(line);
    const out = outputs.get(i + 1);
    if (out !== undefined && lines[i + 1] === '----') {
      result.push('----');
      if (out !== '') result.push(out);
      i += 2;
      while (i < lines.length && lines[i] !== '') i++;
      continue;
    }
    i++;
  }
  return result.join('\n');
}

export function splitArgs(command: string): {
  name: string;
  args: Map<string, string>;
  positional: string[];
} {
  const [name = '', ...rest] = command.split(/\s+/);
  const args = new Map<string, string>();
  const positional: string[] = [];
  for (const r of rest) {
    const eq = r.indexOf('=');
    if (eq > 0) args.set(r.slice(0, eq), r.slice(eq + 1));
    else positional.push(r);
  }
  return { name, args, positional };
}
