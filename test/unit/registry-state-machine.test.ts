import { expect } from 'chai';
import fc from 'fast-check';
import {
  type ApplyResult,
  type Command,
  decodeCommand,
  type Instance,
  isUnder,
  MemoryRegistryStore,
  type RegistryChange,
  RegistryStateMachine,
  type ResolveAnswer,
  SnapshotDecodeError,
  validateCommand,
} from '../../src/registry/index.ts';
import { dereg, health, hex, inst, NOOP, reg } from '../support/registry-fixtures.ts';

const ids = (sm: RegistryStateMachine, name: string): string[] => sm.resolve(name).instances.map((i) => i.id);
const namesOf = (answers: ResolveAnswer[]): string[] => answers.map((a) => a.name);

/** busy()'s state as format 1 bytes, written by the code before format 2 (TTLs, set-health). */
const BUSY_V1_SNAPSHOT =
  '41515253010705020861612f66697273740201017107666430303a3a3100020000077a7a2f6c617374030201610831302e302e302e315000000001620831302e302e302e31500002017801790201610162016b01760302633107010302633201020105026333020301556c6162656c20224261642220696e206e616d652022426164222068617320616e20757070657263617365206c6574746572202742273a206c6162656c7320617265206c6f77657263617365205b612d7a302d392d5d';
const fromHex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

describe('registry state machine', () => {
  describe('apply', () => {
    it('treats empty data (a leader no-op entry) as a no-op that only advances appliedIndex', () => {
      const sm = new RegistryStateMachine();
      const before = sm.snapshot();
      expect(sm.apply(1, NOOP)).to.deep.equal({ type: 'noop' });
      expect(sm.appliedIndex).to.equal(1);
      expect(sm.stats()).to.deep.equal({ names: 0, instances: 0 });
      expect(hex(sm.snapshot())).to.not.equal(hex(before));
    });

    it('reports the session of the command it last applied, for matching waiting requests', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/a', inst('a'), { client: 'c1', seq: 7 }));
      expect(sm.lastAppliedSession).to.deep.equal({ client: 'c1', seq: 7 });
      sm.apply(2, reg('eu/a', inst('a'), { client: 'c1', seq: 7 })); // a duplicate keeps its session
      expect(sm.lastAppliedSession).to.deep.equal({ client: 'c1', seq: 7 });
      sm.apply(3, reg('eu/a', inst('b')));
      expect(sm.lastAppliedSession).to.equal(undefined);
      sm.apply(4, NOOP);
      expect(sm.lastAppliedSession).to.equal(undefined);
      sm.apply(5, new Uint8Array([0xff, 0x01]));
      expect(sm.lastAppliedSession).to.equal(undefined);
    });

    it('throws on an index that is not after appliedIndex (a caller bug), without changing anything', () => {
      const sm = new RegistryStateMachine();
      sm.apply(5, reg('eu', inst('a')));
      const before = hex(sm.snapshot());
      expect(() => sm.apply(5, NOOP)).to.throw(RangeError, 'apply index 5 is not after the applied index 5');
      expect(() => sm.apply(3, reg('eu', inst('b')))).to.throw(RangeError);
      expect(() => sm.apply(6.5, NOOP)).to.throw(RangeError);
      expect(hex(sm.snapshot())).to.equal(before);
      expect(sm.apply(9, NOOP)).to.deep.equal({ type: 'noop' }); // gaps are allowed, only order matters
    });

    it('registers instances and resolves them sorted by id, with modifyIndex = the log index of the change', () => {
      const sm = new RegistryStateMachine();
      expect(sm.apply(1, reg('eu/pay', inst('b')))).to.deep.equal({
        type: 'register',
        ok: true,
        modifyIndex: 1,
      });
      sm.apply(2, reg('eu/pay', inst('c')));
      sm.apply(3, reg('eu/pay', inst('a')));
      sm.apply(4, reg('eu/other', inst('z')));
      const answer = sm.resolve('eu/pay');
      expect(answer.name).to.equal('eu/pay');
      expect(answer.instances.map((i) => i.id)).to.deep.equal(['a', 'b', 'c']);
      expect(answer.modifyIndex).to.equal(3);
      expect(sm.resolve('eu/other').modifyIndex).to.equal(4);
      expect(sm.stats()).to.deep.equal({ names: 2, instances: 4 });
    });

    it('returns modifyIndex 0 and no instances for a name never written', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a')));
      expect(sm.resolve('eu/none')).to.deep.equal({ name: 'eu/none', instances: [], modifyIndex: 0 });
    });

    it('replaces an instance by id (the count stays the same) and bumps modifyIndex', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a')));
      expect(sm.apply(2, reg('eu/pay', inst('a', { address: '10.0.0.2', tags: ['v2'] })))).to.deep.equal({
        type: 'register',
        ok: true,
        modifyIndex: 2,
      });
      expect(sm.resolve('eu/pay').instances).to.deep.equal([
        inst('a', { address: '10.0.0.2', tags: ['v2'] }),
      ]);
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(2);
      expect(sm.stats()).to.deep.equal({ names: 1, instances: 1 });
    });

    it('does not bump modifyIndex for an identical re-registration (not a change; watchers stay asleep)', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a', { meta: { a: '1', b: '2' } })));
      const result = sm.apply(2, reg('eu/pay', inst('a', { meta: { b: '2', a: '1' } })));
      expect(result).to.deep.equal({ type: 'register', ok: true, modifyIndex: 1 });
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(1);
      expect(sm.appliedIndex).to.equal(2);
      sm.apply(3, reg('eu/pay', inst('a', { meta: { a: '1', b: '3' } })));
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(3);
      sm.apply(4, reg('eu/pay', inst('a', { meta: { a: '1', b: '3' }, health: 'critical' })));
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(4);
      // Any difference is a change, including a tag list that only grew or only shrank.
      sm.apply(5, reg('eu/pay', inst('a', { meta: { a: '1', b: '3' }, health: 'critical', tags: ['x'] })));
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(5);
      sm.apply(6, reg('eu/pay', inst('a', { meta: { a: '1', b: '3' }, health: 'critical', tags: [] })));
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(6);
      sm.apply(7, reg('eu/pay', inst('a', { meta: { a: '1' }, health: 'critical' })));
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(7);
      sm.apply(8, reg('eu/pay', inst('a', { meta: { a: '1', b: '3' }, health: 'critical' })));
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(8);
      expect(sm.resolve('eu/pay').instances).to.deep.equal([
        inst('a', { meta: { a: '1', b: '3' }, health: 'critical' }),
      ]);
    });

    it('deregisters an instance (removed=true, modifyIndex bumped); removing an absent id changes nothing', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a')));
      sm.apply(2, reg('eu/pay', inst('b')));
      expect(sm.apply(3, dereg('eu/pay', 'a'))).to.deep.equal({
        type: 'deregister',
        ok: true,
        removed: true,
        modifyIndex: 3,
      });
      expect(ids(sm, 'eu/pay')).to.deep.equal(['b']);
      expect(sm.apply(4, dereg('eu/pay', 'a'))).to.deep.equal({
        type: 'deregister',
        ok: true,
        removed: false,
        modifyIndex: 3,
      });
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(3);
      expect(sm.apply(5, dereg('eu/never', 'x'))).to.deep.include({ removed: false, modifyIndex: 0 });
      expect(sm.stats()).to.deep.equal({ names: 1, instances: 1 });
    });

    it('drops a name with no instances left, yet its modifyIndex never goes back (it reports the removal index)', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a')));
      sm.apply(2, dereg('eu/pay', 'a'));
      expect(sm.stats()).to.deep.equal({ names: 0, instances: 0 });
      expect(sm.resolve('eu/pay')).to.deep.equal({ name: 'eu/pay', instances: [], modifyIndex: 2 });
      sm.apply(3, NOOP);
      expect(sm.apply(4, reg('eu/pay', inst('a')))).to.deep.include({ modifyIndex: 4 });
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(4);
    });

    it('rejects undecodable bytes, bad names and bad instances identically, advancing appliedIndex like a no-op', () => {
      const bad: [Uint8Array, string, RegExp][] = [
        [
          new Uint8Array([1, 10, 0]),
          'malformed-command',
          /^cannot decode registry command at byte 1: unknown command type 10$/,
        ],
        [new Uint8Array([7]), 'malformed-command', /unsupported format version 7/],
        [
          reg('eu/Pay', inst('a')),
          'invalid-name',
          /^label "Pay" in name "eu\/Pay" has an uppercase letter 'P'/,
        ],
        [reg('eu/pay', inst('a', { port: 70000 })), 'invalid-instance', /port 70000 is not valid/],
        [
          reg('eu/pay', inst('a', { address: 'not an address' })),
          'invalid-instance',
          /neither an IP address/,
        ],
        [dereg('eu//pay', 'a'), 'invalid-name', /empty label/],
        [dereg('eu/pay', 'a b'), 'invalid-instance', /instance id "a b"/],
      ];
      const members = [new RegistryStateMachine(), new RegistryStateMachine(), new RegistryStateMachine()];
      const reference = new RegistryStateMachine(); // gets a no-op where the others get the bad entry
      for (const m of [...members, reference]) m.apply(1, reg('eu/pay', inst('a')));
      bad.forEach(([data, code, pattern], k) => {
        const results = members.map((m) => m.apply(k + 2, data));
        reference.apply(k + 2, NOOP);
        for (const r of results) {
          expect(r).to.deep.equal(results[0]);
          if (r.type !== 'rejected') throw new Error(`expected a rejection, got ${JSON.stringify(r)}`);
          expect(r.ok).to.equal(false);
          expect(r.code).to.equal(code);
          expect(r.message).to.match(pattern);
        }
      });
      for (const m of members) {
        expect(m.appliedIndex).to.equal(bad.length + 1);
        expect(hex(m.snapshot())).to.equal(hex(reference.snapshot()));
      }
    });

    it('hands out frozen instances and a fresh array: callers cannot change the state through resolve()', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a', { tags: ['t'], meta: { k: 'v' } })));
      const answer = sm.resolve('eu/pay');
      const first = answer.instances[0]!;
      expect(Object.isFrozen(first) && Object.isFrozen(first.tags) && Object.isFrozen(first.meta)).to.equal(
        true,
      );
      answer.instances.pop();
      expect(ids(sm, 'eu/pay')).to.deep.equal(['a']);
    });
  });

  describe('client sessions (Raft thesis §6.3)', () => {
    it('applies a duplicated command once: the same bytes at two indexes give a duplicate of the first result', () => {
      const sm = new RegistryStateMachine();
      const data = reg('eu/pay', inst('a'), { client: 'c1', seq: 1 });
      const first = sm.apply(1, data);
      expect(first).to.deep.equal({ type: 'register', ok: true, modifyIndex: 1 });
      expect(sm.apply(2, data)).to.deep.equal({ type: 'duplicate', result: first });
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(1);
      expect(sm.appliedIndex).to.equal(2);
    });

    it('does not re-apply a duplicated deregister after the instance was registered again (exactly once, not idempotence)', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a'), { client: 'c1', seq: 1 }));
      const deregister = dereg('eu/pay', 'a', { client: 'c1', seq: 2 });
      const removed = sm.apply(2, deregister);
      expect(removed).to.deep.include({ removed: true });
      sm.apply(3, reg('eu/pay', inst('a'), { client: 'c2', seq: 1 }));
      expect(sm.apply(4, deregister)).to.deep.equal({ type: 'duplicate', result: removed });
      expect(ids(sm, 'eu/pay')).to.deep.equal(['a']);
    });

    it('rejects a seq older than the last applied one as stale-session, without effect', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a'), { client: 'c1', seq: 5 }));
      const result = sm.apply(2, dereg('eu/pay', 'a', { client: 'c1', seq: 4 }));
      expect(result).to.deep.equal({
        type: 'rejected',
        ok: false,
        code: 'stale-session',
        message:
          'session "c1" seq 4 is older than its last applied seq 5: the command was already applied or superseded',
      });
      expect(ids(sm, 'eu/pay')).to.deep.equal(['a']);
      // ... and the session still answers duplicates of seq 5.
      expect(sm.apply(3, reg('eu/pay', inst('a'), { client: 'c1', seq: 5 }))).to.have.property(
        'type',
        'duplicate',
      );
    });

    it('accepts gaps in seq and keeps clients independent', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a'), { client: 'c1', seq: 1 }));
      expect(sm.apply(2, reg('eu/pay', inst('b'), { client: 'c1', seq: 10 }))).to.have.property(
        'type',
        'register',
      );
      expect(sm.apply(3, reg('eu/pay', inst('c'), { client: 'c2', seq: 1 }))).to.have.property(
        'type',
        'register',
      );
      expect(ids(sm, 'eu/pay')).to.deep.equal(['a', 'b', 'c']);
    });

    it('caches a rejection too: a retried invalid command gets the same rejection as a duplicate', () => {
      const sm = new RegistryStateMachine();
      const data = reg('eu/Pay', inst('a'), { client: 'c1', seq: 1 });
      const first = sm.apply(1, data);
      expect(first).to.have.property('code', 'invalid-name');
      expect(sm.apply(2, data)).to.deep.equal({ type: 'duplicate', result: first });
    });

    it('rejects a command whose session is malformed (invalid-session) and does not record it', () => {
      const sm = new RegistryStateMachine();
      const data = reg('eu/pay', inst('a'), { client: 'has space', seq: 1 });
      expect(sm.apply(1, data)).to.have.property('code', 'invalid-session');
      expect(sm.apply(2, data)).to.have.property('code', 'invalid-session');
      expect(sm.stats().instances).to.equal(0);
    });

    it('forgets the least recently used client beyond maxSessions, deterministically', () => {
      const sm = new RegistryStateMachine({ maxSessions: 2 });
      const a1 = reg('eu/pay', inst('a'), { client: 'a', seq: 1 });
      sm.apply(1, a1);
      sm.apply(2, reg('eu/pay', inst('b'), { client: 'b', seq: 1 }));
      expect(sm.apply(3, a1)).to.have.property('type', 'duplicate'); // touches a: b is now the oldest
      sm.apply(4, reg('eu/pay', inst('c'), { client: 'c', seq: 1 })); // evicts b
      expect(sm.apply(5, a1)).to.have.property('type', 'duplicate');
      expect(sm.apply(6, reg('eu/pay', inst('b'), { client: 'b', seq: 1 }))).to.have.property(
        'type',
        'register',
      );
      expect(() => new RegistryStateMachine({ maxSessions: 0 })).to.throw(RangeError);
    });
  });

  describe('snapshot and restore', () => {
    function busy(): RegistryStateMachine {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('zz/last', inst('b', { tags: ['x', 'y'], meta: { k: 'v', a: 'b' } })));
      sm.apply(2, reg('aa/first', inst('q', { address: 'fd00::1', port: 0, health: 'critical' })));
      sm.apply(3, reg('zz/last', inst('a'), { client: 'c1', seq: 7 }));
      sm.apply(4, reg('mm/gone', inst('g')));
      sm.apply(5, dereg('mm/gone', 'g', { client: 'c2', seq: 1 }));
      sm.apply(6, reg('Bad', inst('a'), { client: 'c3', seq: 2 }));
      sm.apply(7, NOOP);
      return sm;
    }

    it('restores identical resolve answers, stats, appliedIndex and snapshot bytes', () => {
      const sm = busy();
      const bytes = sm.snapshot();
      const restored = RegistryStateMachine.restore(bytes);
      for (const name of ['zz/last', 'aa/first', 'mm/gone', 'none']) {
        expect(restored.resolve(name)).to.deep.equal(sm.resolve(name));
      }
      expect(restored.stats()).to.deep.equal(sm.stats());
      expect(restored.appliedIndex).to.equal(7);
      expect(hex(restored.snapshot())).to.equal(hex(bytes));
      expect(hex(sm.snapshot())).to.equal(hex(bytes)); // snapshot() does not disturb the state
    });

    it('restores sessions: a duplicate applied after restore is still recognised', () => {
      const sm = busy();
      const restored = RegistryStateMachine.restore(sm.snapshot());
      const dup = reg('zz/last', inst('a'), { client: 'c1', seq: 7 });
      expect(restored.apply(8, dup)).to.deep.equal(sm.apply(8, dup));
      expect(restored.apply(9, dup)).to.deep.equal({
        type: 'duplicate',
        result: { type: 'register', ok: true, modifyIndex: 3 },
      });
      const stale = dereg('mm/gone', 'g', { client: 'c2', seq: 0 });
      expect(restored.apply(10, stale)).to.have.property('code', 'stale-session');
    });

    it('writes equal bytes for equal states built in different orders', () => {
      const a = new RegistryStateMachine();
      a.apply(1, reg('zz', inst('b')));
      a.apply(2, reg('aa', inst('b')));
      a.apply(3, reg('zz', inst('a')));
      const b = new RegistryStateMachine();
      b.apply(1, reg('zz', inst('a')));
      b.apply(2, reg('aa', inst('b')));
      b.apply(3, reg('zz', inst('b')));
      expect(a.resolve('zz')).to.deep.equal(b.resolve('zz'));
      expect(hex(a.snapshot())).to.equal(hex(b.snapshot()));
    });

    it('rejects malformed snapshots with a SnapshotDecodeError', () => {
      const bytes = busy().snapshot();
      const reject = (input: Uint8Array, pattern: RegExp): void => {
        expect(() => RegistryStateMachine.restore(input))
          .to.throw(SnapshotDecodeError)
          .with.property('message')
          .that.matches(pattern);
      };
      reject(
        new Uint8Array([1, 2, 3, 4, 1, 0, 0, 0, 0]),
        /at byte 0: not a registry snapshot \(bad magic\)$/,
      );
      reject(
        new Uint8Array([0x41, 0x51, 0x52, 0x53, 4]),
        /unsupported snapshot version 4 \(this build reads versions 1..3\)$/,
      );
      reject(new Uint8Array([...bytes, 0]), /unexpected trailing bytes after the snapshot$/);
      for (let n = 0; n < bytes.length; n++) {
        expect(() => RegistryStateMachine.restore(bytes.subarray(0, n)), `prefix ${n}`).to.throw(
          SnapshotDecodeError,
        );
      }
      const patch = (from: string, to: string): Uint8Array => {
        const text = Buffer.from(bytes).toString('latin1');
        expect(text).to.contain(from);
        return new Uint8Array(Buffer.from(text.replace(from, to), 'latin1'));
      };
      reject(patch('aa/first', 'aa/First'), /label "First" in name "aa\/First" has an uppercase letter 'F'/);
      reject(patch('aa/first', 'zz/zirst'), /name "zz\/last" is out of order/);
      reject(patch('fd00::1', 'fd00:;1'), /address "fd00:;1" is neither an IP address nor a host name/);
    });

    it('never throws anything but SnapshotDecodeError on corrupted snapshots (property)', () => {
      const bytes = [...busy().snapshot()];
      fc.assert(
        fc.property(fc.nat(bytes.length - 1), fc.nat(255), fc.boolean(), (at, value, insert) => {
          const b = [...bytes];
          if (insert) b.splice(at, 0, value);
          else b[at] = value;
          try {
            const restored = RegistryStateMachine.restore(new Uint8Array(b));
            // Whatever it accepted, it must describe itself the same way again.
            expect(hex(RegistryStateMachine.restore(restored.snapshot()).snapshot())).to.equal(
              hex(restored.snapshot()),
            );
          } catch (error) {
            if (!(error instanceof SnapshotDecodeError)) throw error;
          }
        }),
        { numRuns: 500 },
      );
    });
  });

  describe('snapshot formats', () => {
    it('restores a format 1 snapshot (instances get ttlMs 0) into the same state, written back as format 3', () => {
      const v1 = fromHex(BUSY_V1_SNAPSHOT);
      const restored = RegistryStateMachine.restore(v1);
      const busy = new RegistryStateMachine();
      busy.apply(1, reg('zz/last', inst('b', { tags: ['x', 'y'], meta: { k: 'v', a: 'b' } })));
      busy.apply(2, reg('aa/first', inst('q', { address: 'fd00::1', port: 0, health: 'critical' })));
      busy.apply(3, reg('zz/last', inst('a'), { client: 'c1', seq: 7 }));
      busy.apply(4, reg('mm/gone', inst('g')));
      busy.apply(5, dereg('mm/gone', 'g', { client: 'c2', seq: 1 }));
      busy.apply(6, reg('Bad', inst('a'), { client: 'c3', seq: 2 }));
      busy.apply(7, NOOP);
      expect(restored.resolve('aa/first').instances).to.deep.equal([
        inst('q', { address: 'fd00::1', port: 0, health: 'critical', ttlMs: 0 }),
      ]);
      const v2 = restored.snapshot();
      expect(v2[4]).to.equal(3);
      expect(hex(v2)).to.equal(hex(busy.snapshot()));
      expect(restored.stats()).to.deep.equal(busy.stats());
      expect(restored.apply(8, reg('zz/last', inst('a'), { client: 'c1', seq: 7 }))).to.have.property(
        'type',
        'duplicate',
      );
    });

    it('pins format 3 byte for byte (TTL after the health; set-health results are kind 4; the aux table last)', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('a', inst('i', { ttlMs: 1000 })));
      sm.apply(2, health('a', 'i', 'critical', { client: 'c', seq: 1 }));
      expect(hex(sm.snapshot())).to.equal(
        [
          '41515253 03', // magic, version 3
          '02 00', // applied index 2, last removal index 0
          '01 0161 02 01', // 1 name "a", modify index 2, 1 instance
          '0169 0831302e302e302e31 50 02 e807 00 00', // "i" 10.0.0.1 :80 critical ttl 1000, no tags, no meta
          '01 0163 01 04 01 02', // 1 session "c" seq 1: set-health changed=1 modifyIndex 2
          '00', // no aux rows (no genesis: no governance, no lineage)
        ]
          .join('')
          .replace(/\s+/g, ''),
      );
    });

    it('refuses a set-health result (kind 4) in a format 1 snapshot, and accepts it in format 2', () => {
      const patched = BUSY_V1_SNAPSHOT.replace('0263310701', '026331070401');
      expect(patched).to.not.equal(BUSY_V1_SNAPSHOT);
      expect(() => RegistryStateMachine.restore(fromHex(patched))).to.throw(
        SnapshotDecodeError,
        /unknown session result kind 4$/,
      );
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('a', inst('i')));
      sm.apply(2, health('a', 'i', 'warning', { client: 'c', seq: 1 }));
      const restored = RegistryStateMachine.restore(sm.snapshot());
      expect(restored.apply(3, health('a', 'i', 'warning', { client: 'c', seq: 1 }))).to.deep.equal({
        type: 'duplicate',
        result: { type: 'set-health', ok: true, changed: true, modifyIndex: 2 },
      });
    });

    it('restores into a given store, replacing what it held; a malformed snapshot leaves the store as it was', () => {
      const store = new MemoryRegistryStore();
      const sm = new RegistryStateMachine({ store });
      sm.apply(1, reg('old/name', inst('x')));
      const good = new RegistryStateMachine();
      good.apply(5, reg('new/name', inst('y')));
      const bytes = good.snapshot();
      expect(() => RegistryStateMachine.restore(bytes.subarray(0, bytes.length - 1), { store })).to.throw(
        SnapshotDecodeError,
      );
      expect(ids(new RegistryStateMachine({ store }), 'old/name')).to.deep.equal(['x']);
      const restored = RegistryStateMachine.restore(bytes, { store });
      expect(restored.store).to.equal(store);
      expect(restored.appliedIndex).to.equal(5);
      expect(restored.resolve('old/name').instances).to.deep.equal([]);
      expect(ids(restored, 'new/name')).to.deep.equal(['y']);
      // A state machine built later on the same store resumes from it.
      expect(new RegistryStateMachine({ store }).appliedIndex).to.equal(5);
    });
  });

  describe('health and TTLs', () => {
    it('set-health changes one instance (changed=true, modifyIndex bumped) and is a no-op otherwise', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a', { ttlMs: 5_000 })));
      sm.apply(2, reg('eu/pay', inst('b')));
      expect(sm.apply(3, health('eu/pay', 'a', 'critical'))).to.deep.equal({
        type: 'set-health',
        ok: true,
        changed: true,
        modifyIndex: 3,
      });
      expect(sm.resolve('eu/pay')).to.deep.equal({
        name: 'eu/pay',
        instances: [inst('a', { ttlMs: 5_000, health: 'critical' }), inst('b')],
        modifyIndex: 3,
      });
      // Already critical: nothing changes.
      expect(sm.apply(4, health('eu/pay', 'a', 'critical'))).to.deep.equal({
        type: 'set-health',
        ok: true,
        changed: false,
        modifyIndex: 3,
      });
      // Unknown instance, unknown name: no change; the modifyIndex reported is the name's.
      expect(sm.apply(5, health('eu/pay', 'zz', 'critical'))).to.deep.include({
        changed: false,
        modifyIndex: 3,
      });
      expect(sm.apply(6, health('eu/none', 'a', 'passing'))).to.deep.include({
        changed: false,
        modifyIndex: 0,
      });
      expect(sm.resolve('eu/pay').modifyIndex).to.equal(3);
      expect(sm.apply(7, health('eu/pay', 'a', 'passing'))).to.deep.include({
        changed: true,
        modifyIndex: 7,
      });
      expect(sm.resolve('eu/pay').instances[0]).to.deep.equal(inst('a', { ttlMs: 5_000 }));
      expect(sm.stats()).to.deep.equal({ names: 1, instances: 2 });
      expect(Object.isFrozen(sm.resolve('eu/pay').instances[0])).to.equal(true);
    });

    it('a registration replaces the instance, health and TTL included; a different TTL is a change', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a', { ttlMs: 5_000 })));
      sm.apply(2, health('eu/pay', 'a', 'critical'));
      expect(sm.apply(3, reg('eu/pay', inst('a', { ttlMs: 5_000 })))).to.deep.equal({
        type: 'register',
        ok: true,
        modifyIndex: 3,
      });
      expect(sm.resolve('eu/pay').instances).to.deep.equal([inst('a', { ttlMs: 5_000 })]);
      expect(sm.apply(4, reg('eu/pay', inst('a', { ttlMs: 5_000 })))).to.deep.include({ modifyIndex: 3 });
      expect(sm.apply(5, reg('eu/pay', inst('a', { ttlMs: 6_000 })))).to.deep.include({ modifyIndex: 5 });
      expect(sm.apply(6, reg('eu/pay', inst('a')))).to.deep.include({ modifyIndex: 6 });
      expect(sm.resolve('eu/pay').instances).to.deep.equal([inst('a')]);
    });

    it('rejects an invalid TTL as invalid-instance, identically, and a set-health of an invalid name', () => {
      const sm = new RegistryStateMachine();
      expect(sm.apply(1, reg('eu/pay', inst('a', { ttlMs: 999 })))).to.deep.equal({
        type: 'rejected',
        ok: false,
        code: 'invalid-instance',
        message:
          'instance "a" TTL 999 ms is not valid: a TTL is 0 (no TTL check) or an integer 1000..86400000 ms (1 s to 24 h)',
      });
      expect(sm.apply(2, health('eu/Pay', 'a', 'critical'))).to.have.property('code', 'invalid-name');
      expect(sm.stats()).to.deep.equal({ names: 0, instances: 0 });
    });

    it('applies a set-health with a session once (a duplicate gets the first result)', () => {
      const sm = new RegistryStateMachine();
      sm.apply(1, reg('eu/pay', inst('a')));
      const data = health('eu/pay', 'a', 'critical', { client: 'leader-1', seq: 1 });
      const first = sm.apply(2, data);
      sm.apply(3, reg('eu/pay', inst('a'))); // revived by a registration
      expect(sm.apply(4, data)).to.deep.equal({ type: 'duplicate', result: first });
      expect(sm.resolve('eu/pay').instances[0]?.health).to.equal('passing');
    });
  });

  describe('onChange', () => {
    it('reports every apply that really changed a name, after the state (sessions included) is updated', () => {
      const changes: RegistryChange[] = [];
      const seen: { applied: number; resolve: ResolveAnswer; session: unknown }[] = [];
      const sm: RegistryStateMachine = new RegistryStateMachine({
        onChange: (change) => {
          changes.push(change);
          seen.push({
            applied: sm.appliedIndex,
            resolve: sm.resolve(change.name),
            session: sm.store.getSession('c'),
          });
        },
      });
      const first = sm.apply(1, reg('eu/pay', inst('a'), { client: 'c', seq: 1 }));
      expect(changes).to.deep.equal([{ name: 'eu/pay', instances: [inst('a')], modifyIndex: 1 }]);
      expect(seen).to.deep.equal([
        {
          applied: 1,
          resolve: { name: 'eu/pay', instances: [inst('a')], modifyIndex: 1 },
          session: { seq: 1, result: first },
        },
      ]);
    });

    it('is not called for no-ops, identical registrations, absent removals, unchanged health, duplicates and rejections', () => {
      const changes: RegistryChange[] = [];
      const sm = new RegistryStateMachine({ onChange: (c) => changes.push(c) });
      const data = reg('eu/pay', inst('a'), { client: 'c', seq: 1 });
      sm.apply(1, data);
      sm.apply(2, data); // duplicate
      sm.apply(3, reg('eu/pay', inst('a'))); // identical
      sm.apply(4, NOOP);
      sm.apply(5, dereg('eu/pay', 'zz'));
      sm.apply(6, health('eu/pay', 'a', 'passing'));
      sm.apply(7, health('eu/pay', 'zz', 'critical'));
      sm.apply(8, reg('eu/Pay', inst('a')));
      sm.apply(9, new Uint8Array([1, 2, 3]));
      sm.apply(10, reg('eu/pay', inst('b')));
      sm.apply(11, health('eu/pay', 'b', 'warning'));
      sm.apply(12, dereg('eu/pay', 'a'));
      sm.apply(13, dereg('eu/pay', 'b'));
      expect(changes).to.deep.equal([
        { name: 'eu/pay', instances: [inst('a')], modifyIndex: 1 },
        { name: 'eu/pay', instances: [inst('a'), inst('b')], modifyIndex: 10 },
        { name: 'eu/pay', instances: [inst('a'), inst('b', { health: 'warning' })], modifyIndex: 11 },
        { name: 'eu/pay', instances: [inst('b', { health: 'warning' })], modifyIndex: 12 },
        { name: 'eu/pay', instances: [], modifyIndex: 13 },
      ]);
      for (const c of changes) expect(Object.isFrozen(c.instances)).to.equal(true);
    });
  });

  describe('list', () => {
    const all = ['a', 'a/b', 'a/b-x', 'a/b-x/y', 'a/b/c', 'a/b/c/d', 'a/bc', 'ab', 'b'];
    function populated(): RegistryStateMachine {
      const sm = new RegistryStateMachine();
      // Registered out of order, with a name that comes and goes.
      [...all].reverse().forEach((name, i) => {
        sm.apply(i + 1, reg(name, inst(`i${i}`)));
      });
      sm.apply(100, reg('a/b/gone', inst('g')));
      sm.apply(101, dereg('a/b/gone', 'g'));
      return sm;
    }

    it('lists the names equal to or under a prefix at label boundaries, in name order', () => {
      const sm = populated();
      expect(namesOf(sm.list('', '', 100))).to.deep.equal(all);
      expect(namesOf(sm.list('a/b', '', 100))).to.deep.equal(['a/b', 'a/b/c', 'a/b/c/d']);
      expect(namesOf(sm.list('a', '', 100))).to.deep.equal([
        'a',
        'a/b',
        'a/b-x',
        'a/b-x/y',
        'a/b/c',
        'a/b/c/d',
        'a/bc',
      ]);
      expect(namesOf(sm.list('a/b-x', '', 100))).to.deep.equal(['a/b-x', 'a/b-x/y']);
      expect(namesOf(sm.list('a/b/c/d', '', 100))).to.deep.equal(['a/b/c/d']);
      expect(namesOf(sm.list('a/b/c/d/e', '', 100))).to.deep.equal([]);
      expect(namesOf(sm.list('c', '', 100))).to.deep.equal([]);
      // A prefix without instances of its own still covers the names below it.
      sm.apply(200, dereg('a/b', 'i7'));
      expect(namesOf(sm.list('a/b', '', 100))).to.deep.equal(['a/b/c', 'a/b/c/d']);
      expect(sm.list('a/b/c', '', 1)).to.deep.equal([sm.resolve('a/b/c')]);
    });

    it('pages strictly after `after`, and answers like resolve (fresh arrays, frozen instances)', () => {
      const sm = populated();
      for (const prefix of ['', 'a', 'a/b']) {
        const whole = sm.list(prefix, '', 1000);
        for (const limit of [1, 2, 3]) {
          const paged: ResolveAnswer[] = [];
          let after = '';
          for (;;) {
            const page = sm.list(prefix, after, limit);
            expect(page.length).to.be.at.most(limit);
            paged.push(...page);
            if (page.length < limit) break;
            after = page.at(-1)?.name ?? '';
          }
          expect(paged).to.deep.equal(whole);
        }
      }
      expect(namesOf(sm.list('a/b', 'a/b', 10))).to.deep.equal(['a/b/c', 'a/b/c/d']);
      expect(namesOf(sm.list('a/b', 'a/b/c', 10))).to.deep.equal(['a/b/c/d']);
      expect(namesOf(sm.list('a/b', 'a/b-x/y', 10))).to.deep.equal(['a/b/c', 'a/b/c/d']);
      expect(namesOf(sm.list('a/b', 'a/b/c/d', 10))).to.deep.equal([]);
      expect(namesOf(sm.list('', 'a/bc', 10))).to.deep.equal(['ab', 'b']);
      expect(namesOf(sm.list('', 'zzz', 10))).to.deep.equal([]);
      const answer = sm.list('a/b/c', '', 1)[0]!;
      expect(answer).to.deep.equal(sm.resolve('a/b/c'));
      answer.instances.pop();
      expect(sm.resolve('a/b/c').instances).to.have.length(1);
      expect(() => sm.list('', '', 0)).to.throw(RangeError, /list limit 0 is not valid/);
      expect(() => sm.list('', '', 1.5)).to.throw(RangeError);
    });
  });

  describe('properties over random histories (fast-check)', () => {
    const names = ['eu/pay', 'eu/shop', 'us', 'eu/Bad'];
    const idArb = fc.constantFrom('i1', 'i2', 'i3');
    const instanceArb = fc.record({
      id: idArb,
      address: fc.constantFrom('10.0.0.1', 'fd00::2', 'svc.local', 'bad address'),
      port: fc.constantFrom(80, 8080, 70000),
      tags: fc.constantFrom([], ['a'], ['a', 'b']),
      meta: fc.constantFrom({}, { k: 'v' }, { k: 'w', z: '1' }),
      health: fc.constantFrom('passing', 'warning', 'critical' as const),
      ttlMs: fc.constantFrom(0, 0, 5_000, 10),
    });
    const sessionArb = fc.option(
      fc.record({ client: fc.constantFrom('c1', 'c2', 'c3', ''), seq: fc.nat(6) }),
      { freq: 2 },
    );
    const commandEntry = fc.oneof(
      fc
        .tuple(fc.constantFrom(...names), instanceArb, sessionArb)
        .map(
          ([name, instance, s]): Uint8Array => (s === null ? reg(name, instance) : reg(name, instance, s)),
        ),
      fc
        .tuple(fc.constantFrom(...names), idArb, sessionArb)
        .map(([name, id, s]): Uint8Array => (s === null ? dereg(name, id) : dereg(name, id, s))),
      fc
        .tuple(
          fc.constantFrom(...names),
          idArb,
          fc.constantFrom('passing', 'warning', 'critical' as const),
          sessionArb,
        )
        .map(([name, id, h, s]): Uint8Array => (s === null ? health(name, id, h) : health(name, id, h, s))),
    );
    type Step = { kind: 'data'; data: Uint8Array } | { kind: 'replay'; pick: number };
    const stepArb: fc.Arbitrary<Step> = fc.oneof(
      { weight: 8, arbitrary: commandEntry.map((data): Step => ({ kind: 'data', data })) },
      { weight: 1, arbitrary: fc.constant<Step>({ kind: 'data', data: NOOP }) },
      {
        weight: 1,
        arbitrary: fc
          .uint8Array({ minLength: 1, maxLength: 8 })
          .map((data): Step => ({ kind: 'data', data })),
      },
      { weight: 3, arbitrary: fc.nat().map((pick): Step => ({ kind: 'replay', pick })) },
    );
    /** A log: entries with strictly increasing indexes (with gaps), some replaying earlier bytes (duplicates). */
    const logArb = fc
      .tuple(
        fc.array(stepArb, { maxLength: 60 }),
        fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 60, maxLength: 60 }),
      )
      .map(([steps, gaps]) => {
        const log: { index: number; data: Uint8Array }[] = [];
        let index = 0;
        steps.forEach((step, k) => {
          index += gaps[k] ?? 1;
          const data =
            step.kind === 'data' || log.length === 0
              ? step.kind === 'data'
                ? step.data
                : NOOP
              : log[step.pick % log.length]!.data;
          log.push({ index, data });
        });
        return log;
      });

    /** A deliberately naive reference model of the rules in the brief. */
    function model(log: { index: number; data: Uint8Array }[]) {
      const state = new Map<string, Map<string, Instance>>();
      const lastChange = new Map<string, number>();
      let lastRemoval = 0;
      const sessions = new Map<string, { seq: number; result: ApplyResult }>();
      const results: ApplyResult[] = [];
      const current = (name: string): number => (state.has(name) ? lastChange.get(name)! : lastRemoval);
      const run = (index: number, cmd: Command): ApplyResult => {
        const rejection = validateCommand(cmd);
        if (rejection !== null) return { type: 'rejected', ok: false, ...rejection };
        const map = state.get(cmd.name) ?? new Map<string, Instance>();
        if (cmd.type === 'register') {
          const old = map.get(cmd.instance.id);
          if (old !== undefined && JSON.stringify(sortMeta(old)) === JSON.stringify(sortMeta(cmd.instance))) {
            return { type: 'register', ok: true, modifyIndex: current(cmd.name) };
          }
          map.set(cmd.instance.id, cmd.instance);
          state.set(cmd.name, map);
          lastChange.set(cmd.name, index);
          return { type: 'register', ok: true, modifyIndex: index };
        }
        if (cmd.type === 'set-health') {
          const old = map.get(cmd.id);
          if (old === undefined || old.health === cmd.health) {
            return { type: 'set-health', ok: true, changed: false, modifyIndex: current(cmd.name) };
          }
          map.set(cmd.id, { ...old, health: cmd.health });
          lastChange.set(cmd.name, index);
          return { type: 'set-health', ok: true, changed: true, modifyIndex: index };
        }
        if (cmd.type !== 'deregister') throw new Error(`the model has no ${cmd.type}`);
        if (!map.has(cmd.id))
          return { type: 'deregister', ok: true, removed: false, modifyIndex: current(cmd.name) };
        map.delete(cmd.id);
        if (map.size === 0) {
          state.delete(cmd.name);
          lastRemoval = index;
        } else lastChange.set(cmd.name, index);
        return { type: 'deregister', ok: true, removed: true, modifyIndex: index };
      };
      for (const { index, data } of log) {
        if (data.length === 0) {
          results.push({ type: 'noop' });
          continue;
        }
        let cmd: Command;
        try {
          cmd = decodeCommand(data);
        } catch (error) {
          results.push({
            type: 'rejected',
            ok: false,
            code: 'malformed-command',
            message: (error as Error).message,
          });
          continue;
        }
        const s = cmd.session;
        if (s === undefined || validateCommand(cmd)?.code === 'invalid-session') {
          results.push(run(index, cmd));
          continue;
        }
        const last = sessions.get(s.client);
        if (last !== undefined && s.seq === last.seq)
          results.push({ type: 'duplicate', result: last.result } as ApplyResult);
        else if (last !== undefined && s.seq < last.seq) {
          const message = `session "${s.client}" seq ${s.seq} is older than its last applied seq ${last.seq}: the command was already applied or superseded`;
          results.push({ type: 'rejected', ok: false, code: 'stale-session', message });
        } else {
          const result = run(index, cmd);
          sessions.set(s.client, { seq: s.seq, result });
          results.push(result);
        }
      }
      const resolve = (name: string) => ({
        name,
        instances: [...(state.get(name)?.values() ?? [])].sort((a, b) => (a.id < b.id ? -1 : 1)),
        modifyIndex: current(name),
      });
      const list = (prefix: string, after: string, limit: number) =>
        [...state.keys()]
          .filter((name) => isUnder(name, prefix) && name > after)
          .sort()
          .slice(0, limit)
          .map(resolve);
      return { results, resolve, list };
    }

    function sortMeta(i: Instance): unknown {
      return { ...i, meta: Object.fromEntries(Object.entries(i.meta).sort()) };
    }

    function applyAll(sm: RegistryStateMachine, log: { index: number; data: Uint8Array }[]): ApplyResult[] {
      return log.map(({ index, data }) => sm.apply(index, data));
    }

    it('agrees with a naive reference model on every result and on every final resolve answer', () => {
      fc.assert(
        fc.property(logArb, (log) => {
          const sm = new RegistryStateMachine();
          const expected = model(log);
          expect(applyAll(sm, log)).to.deep.equal(expected.results);
          for (const name of names) expect(sm.resolve(name)).to.deep.equal(expected.resolve(name));
          for (const [prefix, after, limit] of [
            ['', '', 10],
            ['eu', '', 10],
            ['eu', 'eu/pay', 10],
            ['', '', 1],
            ['us', '', 10],
            ['eu/pay', '', 10],
          ] as const) {
            expect(sm.list(prefix, after, limit)).to.deep.equal(expected.list(prefix, after, limit));
          }
          expect(sm.appliedIndex).to.equal(log.at(-1)?.index ?? 0);
        }),
        { numRuns: 200 },
      );
    });

    it('two members fed the same log give the same results and byte-identical snapshots', () => {
      fc.assert(
        fc.property(logArb, (log) => {
          const a = new RegistryStateMachine();
          const b = new RegistryStateMachine();
          expect(applyAll(a, log)).to.deep.equal(applyAll(b, log));
          expect(hex(a.snapshot())).to.equal(hex(b.snapshot()));
        }),
        { numRuns: 100 },
      );
    });

    it('snapshot at any point + restore + the rest of the log == applying the whole log', () => {
      fc.assert(
        fc.property(logArb, fc.nat(), (log, cut) => {
          const k = cut % (log.length + 1);
          const whole = new RegistryStateMachine();
          const wholeResults = applyAll(whole, log);
          const head = new RegistryStateMachine();
          applyAll(head, log.slice(0, k));
          const snap = head.snapshot();
          const restored = RegistryStateMachine.restore(snap);
          expect(hex(restored.snapshot())).to.equal(hex(snap));
          expect(applyAll(restored, log.slice(k))).to.deep.equal(wholeResults.slice(k));
          expect(hex(restored.snapshot())).to.equal(hex(whole.snapshot()));
          for (const name of names) expect(restored.resolve(name)).to.deep.equal(whole.resolve(name));
          expect(restored.stats()).to.deep.equal(whole.stats());
        }),
        { numRuns: 200 },
      );
    });
  });
});
