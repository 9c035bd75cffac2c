import { expect } from 'chai';
import {
  bootstrapState,
  emptyState,
  MemoryStorage,
  type Message,
  MultiRaft,
  makeMessage,
  ProposalDroppedError,
  RaftNode,
  type Ready,
} from '../../src/consensus/index.ts';

const bytes = (s: string) => new TextEncoder().encode(s);

function node(id: string, voters = ['1', '2', '3']): RaftNode {
  return new RaftNode({ id, electionTick: 10, heartbeatTick: 1, random: () => 0 }, bootstrapState(voters));
}

const msg = makeMessage;

/** Make `n` (node '1' of 1,2,3) leader of term 2 by feeding it the votes of node 2. */
function electLeader(n: RaftNode): void {
  drain(n);
  n.campaign();
  drain(n);
  n.step(msg('prevote-resp', '2', '1', 2));
  drain(n);
  n.step(msg('vote-resp', '2', '1', 2));
  drain(n);
  expect(n.status().role).to.equal('leader');
}

/** Drain a node's Ready the way a driver does, returning it. */
function drain(n: RaftNode): Ready {
  const rd = n.ready();
  n.advance(rd);
  return rd;
}

describe('Raft core', () => {
  it('§5.2: grants at most one vote per term, and the grant waits for the persist (messagesAfterPersist)', () => {
    const n = node('1');
    drain(n);
    n.step(msg('vote', '2', '1', 5, { index: 3, logTerm: 1 }));
    n.step(msg('vote', '3', '1', 5, { index: 3, logTerm: 1 }));
    const rd = n.ready();
    expect(rd.hardState).to.include({ term: 5, vote: '2' });
    expect(rd.messages).to.deep.equal([]);
    const answers = rd.messagesAfterPersist.map((m) => `${m.to}:${m.reject ? 'reject' : 'grant'}`);
    expect(answers).to.deep.equal(['2:grant', '3:reject']);
  });

  it('§5.4.1: denies its vote to a candidate whose log is less up to date', () => {
    const n = node('1');
    drain(n);
    // Our log ends at 1/3 (bootstrap); the candidate claims last entry 1/2.
    n.step(msg('vote', '2', '1', 5, { index: 2, logTerm: 1 }));
    const rd = n.ready();
    expect(rd.messagesAfterPersist.map((m) => m.reject)).to.deep.equal([true]);
  });

  it('hands committed entries to the application only once they are durable on this node', () => {
    const n = node('2');
    drain(n);
    // The leader of term 2 appends entry 4 and says it is committed.
    n.step(
      msg('append', '1', '2', 2, {
        index: 3,
        logTerm: 1,
        commit: 4,
        entries: [{ term: 2, index: 4, kind: 'normal', data: bytes('x') }],
      }),
    );
    const first = n.ready();
    expect(first.entries.map((e) => e.index)).to.deep.equal([4]);
    expect(first.committedEntries).to.deep.equal([]);
    n.advance(first);
    const second = n.ready();
    expect(second.committedEntries.map((e) => e.index)).to.deep.equal([4]);
  });

  it('refuses proposals with a typed error when no leader is known', () => {
    const n = node('1');
    expect(() => n.propose(bytes('x')))
      .to.throw(ProposalDroppedError)
      .with.property('reason', 'no-leader');
  });

  it('forwards a follower proposal to the leader as a propose message', () => {
    const n = node('2');
    drain(n);
    n.step(msg('heartbeat', '1', '2', 2, { commit: 3 }));
    drain(n);
    n.propose(bytes('x'));
    const rd = n.ready();
    const fwd = rd.messages.find((m) => m.type === 'propose');
    expect(fwd?.to).to.equal('1');
    expect(fwd?.entries.map((e) => new TextDecoder().decode(e.data))).to.deep.equal(['x']);
  });

  it('batches proposals made between two Readys into one append per follower', () => {
    const n = node('1');
    drain(n);
    n.campaign();
    let rd = drain(n);
    n.step(msg('prevote-resp', '2', '1', 2));
    rd = drain(n);
    n.step(msg('vote-resp', '2', '1', 2));
    rd = drain(n);
    // Followers acknowledge the no-op so the leader replicates optimistically.
    for (const f of ['2', '3']) n.step(msg('append-resp', f, '1', 2, { index: 4 }));
    drain(n);
    for (let i = 0; i < 100; i++) n.propose(bytes(`p${i}`));
    rd = n.ready();
    const appends = rd.messages.filter((m) => m.type === 'append');
    expect(appends.map((m) => m.to).sort()).to.deep.equal(['2', '3']);
    expect(appends.every((m) => m.entries.length === 100)).to.equal(true);
  });

  it('flow control: in the replicate state at most maxInflightMsgs appends are in flight to a silent follower', () => {
    const n = new RaftNode(
      {
        id: '1',
        electionTick: 10,
        heartbeatTick: 1,
        random: () => 0,
        maxInflightMsgs: 2,
        maxEntriesPerMsg: 1,
      },
      bootstrapState(['1', '2', '3']),
    );
    electLeader(n);
    // Follower 2 acknowledges the no-op, so the leader pipelines to it; 3 stays silent (probe: one append).
    n.step(msg('append-resp', '2', '1', 2, { index: 4 }));
    drain(n);
    for (let i = 0; i < 10; i++) n.propose(bytes(`p${i}`));
    const sent = n.ready().messages.filter((m) => m.type === 'append');
    expect(sent.filter((m) => m.to === '2').length).to.equal(2);
    expect(sent.filter((m) => m.to === '3').length).to.be.at.most(1);
  });

  it('§4.2.1: a learner receives the log but does not count towards commit', () => {
    const n = new RaftNode(
      { id: '1', electionTick: 10, heartbeatTick: 1, random: () => 0 },
      bootstrapState(['1', '2', '3']),
    );
    electLeader(n);
    n.step(msg('append-resp', '2', '1', 2, { index: 4 }));
    n.advance(n.ready());
    n.proposeConfChange({ type: 'add-learner', node: '4' });
    n.step(msg('append-resp', '2', '1', 2, { index: 5 }));
    n.advance(n.ready());
    n.advance(n.ready()); // the learner is added when its entry applies
    expect(n.status().conf.learners).to.deep.equal(['4']);
    n.propose(bytes('x'));
    n.advance(n.ready());
    // Only the learner acknowledges entry 6: with the leader that is 2 of 4 members, but 1 of 3 voters.
    n.step(msg('append-resp', '4', '1', 2, { index: 6 }));
    n.advance(n.ready());
    expect(n.status().commit).to.equal(5);
    n.step(msg('append-resp', '3', '1', 2, { index: 6 }));
    n.advance(n.ready());
    expect(n.status().commit).to.equal(6);
  });

  it('refuses malformed peer messages with a reason, without throwing or changing state', () => {
    const lines: string[] = [];
    const n = new RaftNode(
      { id: '1', electionTick: 10, heartbeatTick: 1, random: () => 0, logger: (l) => lines.push(l) },
      bootstrapState(['1', '2', '3']),
    );
    drain(n);
    const noEntries = {
      ...msg('append', '2', '1', 3, { index: 3, logTerm: 1 }),
      entries: null,
    } as unknown as Message;
    const gap = msg('append', '2', '1', 3, {
      index: 3,
      logTerm: 1,
      entries: [{ term: 3, index: 5, kind: 'normal', data: bytes('x') }],
    });
    const negative = msg('heartbeat', '2', '1', -1);
    for (const bad of [noEntries, gap, negative]) expect(() => n.step(bad)).not.to.throw();
    expect(n.status().term).to.equal(1);
    expect(n.status().droppedMessages).to.equal(3);
    expect(lines).to.deep.equal([
      '1 drops a malformed message from 2: entries must be a list',
      '1 drops a malformed message from 2: entry 0 has index 5, not 4',
      '1 drops a malformed message from 2: term, logTerm, index, commit and rejectHint must be non-negative integers',
    ]);
  });

  it('restarts with a commit index no lower than what its state machine applied (the stored commit may lag)', () => {
    const state = bootstrapState(['1', '2', '3']);
    const lagging = { ...state, hardState: { ...state.hardState, commit: 1 } };
    const n = new RaftNode(
      { id: '1', electionTick: 10, heartbeatTick: 1, random: () => 0, applied: 3 },
      lagging,
    );
    expect(n.status().commit).to.equal(3);
    expect(n.status().applied).to.equal(3);
    expect(n.hasReady() ? n.ready().committedEntries : []).to.deep.equal([]);
  });

  it('a joining node with an empty log has no voters and never campaigns on its own', () => {
    const n = new RaftNode({ id: '4', electionTick: 10, heartbeatTick: 1, random: () => 0 }, emptyState());
    for (let i = 0; i < 100; i++) n.tick();
    expect(n.status().role).to.equal('follower');
    expect(n.status().term).to.equal(0);
  });
});

describe('MemoryStorage', () => {
  it('replaces stored entries from the first index of a new batch and keeps the hard state', () => {
    const s = new MemoryStorage(bootstrapState(['1']));
    s.save({
      hardState: { term: 2, vote: '1', commit: 1 },
      entries: [
        { term: 2, index: 2, kind: 'normal', data: bytes('a') },
        { term: 2, index: 3, kind: 'normal', data: bytes('b') },
      ],
      snapshot: null,
    });
    s.save({
      hardState: null,
      entries: [{ term: 3, index: 3, kind: 'normal', data: bytes('c') }],
      snapshot: null,
    });
    const st = s.load();
    expect(st.entries.map((e) => `${e.term}/${e.index}`)).to.deep.equal(['1/1', '2/2', '3/3']);
    expect(st.hardState).to.deep.equal({ term: 2, vote: '1', commit: 1 });
  });

  it('refuses an append that would leave a gap', () => {
    const s = new MemoryStorage(bootstrapState(['1']));
    expect(() =>
      s.save({
        hardState: null,
        entries: [{ term: 2, index: 5, kind: 'normal', data: bytes('a') }],
        snapshot: null,
      }),
    ).to.throw(/gap/);
  });
});

describe('MultiRaft', () => {
  it('routes each message to the group of its scope and reports unknown scopes', () => {
    const host = new MultiRaft();
    const a = node('1');
    const b = node('1');
    host.add('scope-a', a);
    host.add('scope-b', b);
    expect(host.step({ scope: 'scope-b', message: msg('heartbeat', '2', '1', 7, { commit: 3 }) })).to.equal(
      true,
    );
    expect(host.step({ scope: 'nope', message: msg('heartbeat', '2', '1', 9) })).to.equal(false);
    expect(a.status().term).to.equal(1);
    expect(b.status().term).to.equal(7);
    expect(b.status().leader).to.equal('2');
  });
});
