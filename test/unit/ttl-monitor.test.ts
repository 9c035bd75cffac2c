// TTL checks on the leader: expiry proposes critical once, a heartbeat revives, a new leader grants a full
// TTL, and tracking follows the applied changes of each name (with an injected clock).

import { expect } from 'chai';
import type { Health, Instance } from '../../src/registry/index.ts';
import { TtlMonitor } from '../../src/scope/ttl-monitor.ts';

const inst = (id: string, ttlMs: number, health: Health = 'passing'): Instance => ({
  id,
  address: '10.0.0.1',
  port: 80,
  tags: [],
  meta: {},
  health,
  ttlMs,
});

function monitor() {
  let now = 0;
  const proposed: string[] = [];
  const m = new TtlMonitor({
    now: () => now,
    proposeHealth: (name, id, h) => proposed.push(`${name}/${id}=${h}`),
  });
  return { m, proposed, advance: (ms: number) => (now += ms) };
}

describe('TtlMonitor', () => {
  it('checks a heartbeat for an untracked instance against the registry (lookup) before saying unknown', () => {
    const registry = new Map([['late', [inst('w', 1000), inst('x', 0)]]]);
    const m = new TtlMonitor({
      now: () => 0,
      proposeHealth: () => {},
      lookup: (name) => ({ name, instances: registry.get(name) ?? [], modifyIndex: 1 }),
    });
    expect(m.size).to.equal(0);
    expect(m.heartbeat('late', 'w')).to.equal('passing'); // tracked from the lookup
    expect(m.size).to.equal(1);
    expect(m.heartbeat('late', 'x')).to.equal('unknown'); // no TTL check
    expect(m.heartbeat('absent', 'w')).to.equal('unknown');
  });

  it('tracks only instances with a TTL, per name, and forgets removed ones', () => {
    const { m } = monitor();
    m.observe({ name: 'a', instances: [inst('1', 1000), inst('2', 0)], modifyIndex: 1 });
    m.observe({ name: 'b', instances: [inst('3', 1000)], modifyIndex: 2 });
    expect(m.size).to.equal(2);
    m.observe({ name: 'a', instances: [], modifyIndex: 3 });
    expect(m.size).to.equal(1);
    expect(m.heartbeat('a', '1')).to.equal('unknown');
    expect(m.heartbeat('b', '3')).to.equal('passing');
  });

  it('proposes critical once when a TTL passes on the leader, and passing on the next heartbeat', () => {
    const { m, proposed, advance } = monitor();
    m.observe({ name: 'a', instances: [inst('1', 1000)], modifyIndex: 1 });
    m.setLeading(true);
    advance(999);
    expect(m.sweep()).to.equal(0);
    advance(2);
    expect(m.sweep()).to.equal(1);
    expect(m.sweep()).to.equal(0); // not again while the change is in flight
    expect(proposed).to.deep.equal(['a/1=critical']);
    m.observe({ name: 'a', instances: [inst('1', 1000, 'critical')], modifyIndex: 2 });
    expect(m.heartbeat('a', '1')).to.equal('critical');
    expect(proposed.at(-1)).to.equal('a/1=passing');
  });

  it('does nothing on a follower, and gives a new leader a full TTL from its takeover', () => {
    const { m, proposed, advance } = monitor();
    m.observe({ name: 'a', instances: [inst('1', 1000)], modifyIndex: 1 });
    advance(5000);
    expect(m.sweep()).to.equal(0);
    m.setLeading(true);
    advance(500);
    expect(m.sweep()).to.equal(0);
    advance(600);
    expect(m.sweep()).to.equal(1);
    expect(proposed).to.deep.equal(['a/1=critical']);
  });
});
