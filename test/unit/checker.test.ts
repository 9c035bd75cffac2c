import { expect } from 'chai';
import fc from 'fast-check';
import {
  type CheckResult,
  checkLinearizability,
  type Model,
  type Operation,
  type UnknownResult,
} from '../checker/linearizability.ts';
import {
  describeRegistryOp,
  type RegistryInput,
  type RegistryInstance,
  type RegistryOperation,
  type RegistryOutput,
  registryModel,
} from '../checker/registry-model.ts';

const INF = Number.POSITIVE_INFINITY;
const NAME = 'eu-central/payments/checkout';

// --- History builders. A return of INF makes the operation indeterminate (output undefined). ---

function register(
  clientId: number,
  call: number,
  ret: number,
  id: string,
  value: string,
  name = NAME,
): RegistryOperation {
  return {
    clientId,
    input: { kind: 'register', name, id, value },
    call,
    return: ret,
    output: ret === INF ? undefined : { kind: 'register' },
  };
}

function deregister(
  clientId: number,
  call: number,
  ret: number,
  id: string,
  removed: boolean,
  name = NAME,
): RegistryOperation {
  return {
    clientId,
    input: { kind: 'deregister', name, id },
    call,
    return: ret,
    output: ret === INF ? undefined : { kind: 'deregister', removed },
  };
}

function resolve(
  clientId: number,
  call: number,
  ret: number,
  instances: Record<string, string>,
  name = NAME,
): RegistryOperation {
  const sorted = Object.entries(instances).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    clientId,
    input: { kind: 'resolve', name },
    call,
    return: ret,
    output: { kind: 'resolve', instances: sorted },
  };
}

const check = (history: readonly RegistryOperation[]): CheckResult | UnknownResult =>
  checkLinearizability(registryModel, history);

function expectLinearizable(result: CheckResult | UnknownResult): void {
  expect(result.ok, 'reason' in result ? result.reason : '').to.equal(true);
}

function expectViolation(result: CheckResult | UnknownResult): Extract<CheckResult, { ok: false }> {
  expect(result.ok).to.equal(false);
  if (result.ok !== false) throw new Error('unreachable');
  return result;
}

/** Small deterministic PRNG (mulberry32) for the generated histories. */
function prng(seed: number): (bound: number) => number {
  let a = seed >>> 0;
  return (bound) => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) % bound) | 0;
  };
}

/** Runs inputs sequentially through the model (in the given order) and returns the outputs. */
function sequentialOutputs(inputs: readonly RegistryInput[]): RegistryOutput[] {
  const states = new Map<string, readonly RegistryInstance[]>();
  return inputs.map((input) => {
    const before = states.get(input.name) ?? registryModel.init();
    let output: RegistryOutput;
    if (input.kind === 'register') output = { kind: 'register' };
    else if (input.kind === 'deregister') {
      output = { kind: 'deregister', removed: before.some(([id]) => id === input.id) };
    } else output = { kind: 'resolve', instances: before };
    const { ok, state } = registryModel.step(before, input, output);
    if (!ok) throw new Error('the model rejected its own sequential output');
    states.set(input.name, state);
    return output;
  });
}

describe('linearizability checker (registry model)', () => {
  describe('basic histories', () => {
    it('accepts a sequential history that follows the model', () => {
      const history = [
        register(1, 0, 1, 'i1', '10.0.0.1:80'),
        register(2, 2, 3, 'i2', '10.0.0.2:80'),
        resolve(3, 4, 5, { i1: '10.0.0.1:80', i2: '10.0.0.2:80' }),
        register(1, 6, 7, 'i1', '10.0.0.9:80'), // replaces the instance with the same id
        deregister(2, 8, 9, 'i2', true),
        deregister(2, 10, 11, 'i2', false),
        resolve(3, 12, 13, { i1: '10.0.0.9:80' }),
      ];
      const result = check(history);
      expect(result).to.deep.equal({ ok: true, partitions: 1, operations: history.length });
    });

    it('accepts the empty history (zero partitions)', () => {
      expect(check([])).to.deep.equal({ ok: true, partitions: 0, operations: 0 });
    });

    it('rejects a sequential history whose read disagrees with the model', () => {
      const history = [register(1, 0, 1, 'i1', 'a'), resolve(2, 2, 3, { i1: 'b' })];
      expectViolation(check(history));
    });
  });

  describe('concurrency', () => {
    it('accepts a resolve concurrent with a register that sees the state before it', () => {
      expectLinearizable(check([register(1, 0, 10, 'i1', 'a'), resolve(2, 2, 8, {})]));
    });

    it('accepts a resolve concurrent with a register that sees the state after it', () => {
      expectLinearizable(check([register(1, 0, 10, 'i1', 'a'), resolve(2, 2, 8, { i1: 'a' })]));
    });

    it('rejects a concurrent resolve that sees neither the state before nor after the register', () => {
      expect(check([register(1, 0, 10, 'i1', 'a'), resolve(2, 2, 8, { i1: 'b' })]).ok).to.equal(false);
    });

    it('treats an operation returning at t and one invoked at t as concurrent (calls sort before returns)', () => {
      // The register returns at 5 and the resolve is invoked at 5: concurrent, so the resolve may precede it.
      expectLinearizable(check([register(1, 0, 5, 'i1', 'a'), resolve(2, 5, 6, {})]));
      // One tick earlier, the register strictly precedes the resolve: the empty read is stale.
      expectViolation(check([register(1, 0, 4, 'i1', 'a'), resolve(2, 5, 6, {})]));
    });

    it('accepts an instantaneous operation (call = return)', () => {
      expectLinearizable(check([register(1, 3, 3, 'i1', 'a'), resolve(2, 3, 3, { i1: 'a' })]));
      expectViolation(check([register(1, 3, 3, 'i1', 'a'), resolve(2, 4, 4, {})]));
    });
  });

  describe('violations', () => {
    it('rejects a stale read: resolve misses a register that completed before it was invoked', () => {
      const result = expectViolation(check([register(1, 0, 1, 'i1', 'a'), resolve(2, 2, 3, {})]));
      expect(result.partition).to.equal(0);
    });

    it('rejects a lost update: a later write of the same id is overwritten by an earlier one', () => {
      const history = [
        register(1, 0, 1, 'i1', 'a'),
        register(2, 2, 3, 'i1', 'b'),
        resolve(3, 4, 5, { i1: 'a' }),
      ];
      expectViolation(check(history));
    });

    it('rejects a lost update: one of two concurrent registers of distinct ids disappears', () => {
      const history = [
        register(1, 0, 5, 'i1', 'a'),
        register(2, 1, 4, 'i2', 'b'),
        resolve(3, 6, 7, { i1: 'a' }), // both registers completed before: both must be visible
      ];
      expectViolation(check(history));
      expectLinearizable(check([...history.slice(0, 2), resolve(3, 6, 7, { i1: 'a', i2: 'b' })]));
    });

    it('rejects a read of a value never written', () => {
      const history = [register(1, 0, 10, 'i1', 'a'), resolve(2, 1, 9, { i1: 'zzz' })];
      expectViolation(check(history));
    });

    it('rejects a deregister reporting removed=false while the instance was certainly present', () => {
      const history = [register(1, 0, 1, 'i1', 'a'), deregister(2, 2, 3, 'i1', false)];
      expectViolation(check(history));
      // Concurrent with the register, removed=false is fine (the deregister may come first).
      expectLinearizable(check([register(1, 0, 5, 'i1', 'a'), deregister(2, 2, 3, 'i1', false)]));
    });

    it('compares a resolve output as a set of instances (order-insensitive) with exact ids and values', () => {
      const writes = [register(1, 0, 1, 'i2', 'b'), register(1, 2, 3, 'i1', 'a')];
      const read = (instances: RegistryInstance[]): RegistryOperation => ({
        clientId: 2,
        input: { kind: 'resolve', name: NAME },
        call: 4,
        return: 5,
        output: { kind: 'resolve', instances },
      });
      expectLinearizable(
        check([
          ...writes,
          read([
            ['i2', 'b'],
            ['i1', 'a'],
          ]),
        ]),
      );
      expectViolation(
        check([
          ...writes,
          read([
            ['i2', 'a'],
            ['i1', 'b'],
          ]),
        ]),
      );
      expectViolation(
        check([
          ...writes,
          read([
            ['i1', 'a'],
            ['i1', 'a'],
          ]),
        ]),
      );
    });

    it('rejects a deregister reporting removed=true for an instance that was never registered', () => {
      expectViolation(check([deregister(1, 0, 1, 'i1', true)]));
    });

    it('reports the failing operations with their intervals and the longest linearizable prefix', () => {
      const history = [
        register(1, 0, 1, 'i1', 'a'),
        register(2, 2, 3, 'i2', 'b'),
        resolve(3, 4, 5, { i1: 'a' }),
        register(4, 6, INF, 'i3', 'c'),
      ];
      const { reason } = expectViolation(check(history));
      expect(reason).to.include('partition 0 is not linearizable (4 operations)');
      expect(reason).to.include(`#2 c3 resolve(${NAME}) -> {i1=a} @[4, 5]`);
      expect(reason).to.include(`#3 c4 register(${NAME}, i3=c) -> ? @[6, ∞)`);
      expect(reason).to.include('longest linearizable prefix: 2 operations');
      expect(reason).to.include(`1. #0 c1 register(${NAME}, i1=a) -> ok @[0, 1]`);
      expect(reason).to.include(`2. #1 c2 register(${NAME}, i2=b) -> ok @[2, 3]`);
      expect(reason).to.include('state after that prefix: [["i1","a"],["i2","b"]]');
    });
  });

  describe('indeterminate operations (return = +Infinity)', () => {
    const write = register(1, 0, INF, 'i1', 'a');

    it('accepts a later read that observes an indeterminate write', () => {
      expectLinearizable(check([write, resolve(2, 5, 6, { i1: 'a' })]));
    });

    it('accepts a later read that does not observe an indeterminate write (it may never take effect)', () => {
      expectLinearizable(check([write, resolve(2, 5, 6, {}), resolve(2, 7, 8, {})]));
    });

    it('accepts reads that do not observe, then observe, an indeterminate write (it took effect late)', () => {
      expectLinearizable(check([write, resolve(2, 5, 6, {}), resolve(3, 100, 101, { i1: 'a' })]));
    });

    it('rejects sequential reads that observe an indeterminate write, then no longer observe it', () => {
      expectViolation(check([write, resolve(2, 5, 6, { i1: 'a' }), resolve(2, 7, 8, {})]));
    });

    it('rejects linearizing an indeterminate write before its call', () => {
      // The read completed at 1, the write was only invoked at 2: the read cannot have observed it.
      expectViolation(check([resolve(2, 0, 1, { i1: 'a' }), register(1, 2, INF, 'i1', 'a')]));
      expectLinearizable(check([resolve(2, 0, 2, { i1: 'a' }), register(1, 2, INF, 'i1', 'a')]));
    });

    it('accepts an indeterminate deregister that never took effect', () => {
      const history = [
        register(1, 0, 1, 'i1', 'a'),
        deregister(2, 2, INF, 'i1', false),
        resolve(3, 3, 4, { i1: 'a' }),
        resolve(3, 5, 6, { i1: 'a' }),
      ];
      expectLinearizable(check(history));
    });

    it('does not let an indeterminate operation that can never be linearized block the search', () => {
      // A counter whose 'poison' operation is rejected by the model in every state: a completed poison is a
      // violation, an indeterminate one must simply be left out ("never took effect").
      type CounterInput = 'inc' | 'read' | 'poison';
      const counter: Model<number, CounterInput, number> = {
        init: () => 0,
        step: (state, input, output) => {
          if (input === 'poison') return { ok: false, state };
          if (input === 'inc') return { ok: true, state: state + 1 };
          return { ok: output === undefined || output === state, state };
        },
        hash: (state) => String(state),
      };
      const op = (
        input: CounterInput,
        call: number,
        ret: number,
        output?: number,
      ): Operation<CounterInput, number> => ({
        clientId: 0,
        input,
        call,
        return: ret,
        output,
      });
      const base = [op('inc', 0, 1, 0), op('read', 4, 5, 1)];
      expectLinearizable(checkLinearizability(counter, [...base, op('poison', 2, INF)]));
      expect(checkLinearizability(counter, [...base, op('poison', 2, 3, 0)]).ok).to.equal(false);
    });
  });

  describe('P-compositionality (partition by name)', () => {
    it('finds a violation on one name and reports it with that partition while other names are fine', () => {
      const history = [
        register(1, 0, 1, 'i1', 'a', 'eu/a'),
        register(1, 0, 1, 'i1', 'b', 'eu/b'),
        register(1, 0, 1, 'i1', 'c', 'eu/c'),
        resolve(2, 2, 3, { i1: 'a' }, 'eu/a'),
        resolve(2, 2, 3, {}, 'eu/b'), // stale read on eu/b only
        resolve(2, 2, 3, { i1: 'c' }, 'eu/c'),
      ];
      const result = expectViolation(check(history));
      expect(result.partition).to.equal(1); // partitions are in order of first appearance of each name
      expect(result.reason).to.include('resolve(eu/b)');
      expect(result.reason).not.to.include('eu/a');
      expect(result.reason).not.to.include('eu/c');
      // The same operations with a correct read on eu/b: three partitions, all linearizable.
      const fixed = history.map((op, k) => (k === 4 ? resolve(2, 2, 3, { i1: 'b' }, 'eu/b') : op));
      expect(check(fixed)).to.deep.equal({ ok: true, partitions: 3, operations: 6 });
    });

    it('does not mix names: a read of one name cannot observe a write of another', () => {
      const history = [register(1, 0, 10, 'i1', 'a', 'eu/a'), resolve(2, 1, 9, { i1: 'a' }, 'eu/b')];
      expectViolation(check(history));
    });

    it('drops indeterminate resolves before searching (they constrain nothing)', () => {
      const unknownRead: RegistryOperation = {
        clientId: 2,
        input: { kind: 'resolve', name: 'eu/x' },
        call: 0,
        return: INF,
        output: undefined,
      };
      expect(check([unknownRead])).to.deep.equal({ ok: true, partitions: 0, operations: 1 });
    });
  });

  describe('known-bad histories from the literature', () => {
    it('rejects the etcd-style stale read (Porcupine): an old value read after another client read the new one', () => {
      const history = [
        register(0, 0, 1, 'leader', 'n1'),
        register(1, 2, 20, 'leader', 'n2'), // still in flight during both reads
        resolve(2, 3, 4, { leader: 'n2' }), // the new value is visible...
        resolve(3, 5, 6, { leader: 'n1' }), // ...then a later read goes back to the old one
      ];
      expectViolation(check(history));
      // The same reads concurrent with each other are fine (the second may be linearized first).
      expectLinearizable(
        check([
          ...history.slice(0, 2),
          resolve(2, 3, 6, { leader: 'n2' }),
          resolve(3, 4, 5, { leader: 'n1' }),
        ]),
      );
    });

    it('rejects readers that disagree on the order of two concurrent writes (sequentially ordered reads)', () => {
      const history = [
        register(1, 0, 100, 'i1', 'w1'),
        register(2, 0, 100, 'i1', 'w2'),
        resolve(3, 10, 11, { i1: 'w1' }), // reader A: w1 ...
        resolve(3, 12, 13, { i1: 'w2' }), // ... then w2
        resolve(4, 20, 21, { i1: 'w2' }), // reader B: w2 ...
        resolve(4, 22, 23, { i1: 'w1' }), // ... then w1
      ];
      expectViolation(check(history));
      // If B's second read were concurrent with A's reads, it could be ordered before them.
      const concurrentB = history.map((op, k) => (k === 5 ? resolve(4, 9, 23, { i1: 'w1' }) : op));
      expectLinearizable(check(concurrentB));
    });

    it('rejects a read that sees a write which began after the read returned (causality reversal)', () => {
      expectViolation(check([resolve(1, 0, 1, { i1: 'a' }), register(2, 2, 3, 'i1', 'a')]));
    });
  });

  describe('input validation and budget', () => {
    it('throws on an operation whose return precedes its call, or whose call is not finite', () => {
      expect(() => check([register(1, 5, 4, 'i1', 'a')])).to.throw(RangeError, /precedes call/);
      expect(() => check([register(1, INF, INF, 'i1', 'a')])).to.throw(
        RangeError,
        /call time must be finite/,
      );
    });

    it("returns ok 'unknown' instead of searching forever when the step budget is exhausted", () => {
      // 12 mutually concurrent registers of distinct ids and a read that saw none of them after all returned:
      // every ordering must be refuted, which needs many more than 50 steps.
      const history: RegistryOperation[] = [];
      for (let k = 0; k < 12; k++) history.push(register(k, 0, 10, `i${k}`, 'v'));
      history.push(resolve(99, 11, 12, {}));
      const result = checkLinearizability(registryModel, history, { maxSteps: 50 });
      expect(result.ok).to.equal('unknown');
      expect((result as UnknownResult).reason).to.match(
        /partition 0 \(13 operations\): search budget of 50 steps/,
      );
      expect(check(history).ok).to.equal(false); // with the default budget the verdict is definite
    });
  });

  describe('describeRegistryOp', () => {
    it('renders each kind of operation and the indeterminate output', () => {
      expect(describeRegistryOp(register(3, 0, 1, 'i1', '10.0.0.1:80'))).to.equal(
        `c3 register(${NAME}, i1=10.0.0.1:80) -> ok`,
      );
      expect(describeRegistryOp(deregister(1, 0, 1, 'i1', false))).to.equal(
        `c1 deregister(${NAME}, i1) -> absent`,
      );
      expect(describeRegistryOp(deregister(1, 0, INF, 'i1', true))).to.equal(
        `c1 deregister(${NAME}, i1) -> ?`,
      );
      expect(describeRegistryOp(resolve(2, 0, 1, { b: '2', a: '1' }))).to.equal(
        `c2 resolve(${NAME}) -> {a=1, b=2}`,
      );
    });
  });

  describe('properties (fast-check)', () => {
    const names = ['eu/a', 'eu/b'] as const;
    const ids = ['i1', 'i2', 'i3'] as const;
    const inputArb: fc.Arbitrary<RegistryInput> = fc.oneof(
      fc.record({
        kind: fc.constant('register' as const),
        name: fc.constantFrom(...names),
        id: fc.constantFrom(...ids),
        value: fc.constantFrom('v1', 'v2', 'v3'),
      }),
      fc.record({
        kind: fc.constant('deregister' as const),
        name: fc.constantFrom(...names),
        id: fc.constantFrom(...ids),
      }),
      fc.record({ kind: fc.constant('resolve' as const), name: fc.constantFrom(...names) }),
    );
    // How the i-th operation of the sequential execution is turned into a concurrent one: its interval is widened
    // around its linearization point (10 * i + 5) by up to 25 ticks on each side (so up to ~6 overlapping
    // operations); a write may be indeterminate (took effect, return unknown) or a phantom (indeterminate and
    // never took effect: not applied in the sequential execution).
    const stepArb = fc.record({
      input: inputArb,
      before: fc.nat(25),
      after: fc.nat(25),
      fate: fc.constantFrom('completed', 'completed', 'completed', 'indeterminate', 'phantom'),
    });
    type Step = typeof stepArb extends fc.Arbitrary<infer T> ? T : never;

    function widenedHistory(plan: readonly Step[]): RegistryOperation[] {
      const applied = plan.filter((s) => s.fate !== 'phantom' || s.input.kind === 'resolve');
      const outputs = sequentialOutputs(applied.map((s) => s.input));
      const outputOf = new Map(applied.map((s, k) => [s, outputs[k]!]));
      return plan.map((s, i) => {
        const point = 10 * i + 5;
        const indeterminate = s.fate !== 'completed' && s.input.kind !== 'resolve';
        return {
          clientId: i,
          input: s.input,
          call: point - s.before,
          return: indeterminate ? INF : point + s.after,
          output: indeterminate ? undefined : outputOf.get(s),
        };
      });
    }

    it('accepts every widened sequential execution (intervals still contain the linearization points)', () => {
      fc.assert(
        fc.property(fc.array(stepArb, { maxLength: 30 }), (plan) => {
          const result = check(widenedHistory(plan));
          expect(result.ok, 'reason' in result ? result.reason : '').to.equal(true);
        }),
        { numRuns: 300 },
      );
    });

    it('rejects a widened sequential execution in which one read reports a value never written', () => {
      fc.assert(
        fc.property(fc.array(stepArb, { minLength: 1, maxLength: 30 }), fc.nat(), (plan, pick) => {
          const history = widenedHistory(plan);
          const reads = history
            .map((op, k) => [op, k] as const)
            .filter(([op]) => op.input.kind === 'resolve' && op.output !== undefined);
          fc.pre(reads.length > 0);
          const [read, k] = reads[pick % reads.length]!;
          const instances = read.output?.kind === 'resolve' ? read.output.instances : [];
          const corrupted: RegistryOperation = {
            ...read,
            output: {
              kind: 'resolve',
              instances: [...instances.filter(([id]) => id !== 'i1'), ['i1', 'never-written']],
            },
          };
          const result = check(history.map((op, j) => (j === k ? corrupted : op)));
          expect(result.ok).to.equal(false);
          if (result.ok === false) expect(result.reason).to.include('never-written');
        }),
        { numRuns: 300 },
      );
    });
  });

  describe('performance', () => {
    /**
     * 20 names x 5 clients x 20 operations: each client issues its operations one after the other, each with a
     * random linearization point strictly inside its interval; outputs are computed by running the operations
     * in linearization-point order. About 3% of the writes are indeterminate (the client times out and moves on).
     */
    function generatedHistory(seed: number): RegistryOperation[] {
      const rand = prng(seed);
      const planned: { clientId: number; input: RegistryInput; call: number; point: number; ret: number }[] =
        [];
      for (let n = 0; n < 20; n++) {
        const name = `eu/svc-${n}`;
        for (let c = 0; c < 5; c++) {
          let t = rand(5);
          for (let k = 0; k < 20; k++) {
            const roll = rand(10);
            const id = `i${rand(4)}`;
            const input: RegistryInput =
              roll < 4
                ? { kind: 'register', name, id, value: `10.0.${n}.${rand(5)}:80` }
                : roll < 6
                  ? { kind: 'deregister', name, id }
                  : { kind: 'resolve', name };
            const call = t;
            const point = call + 1 + rand(10);
            const end = point + 1 + rand(10);
            const indeterminate = input.kind !== 'resolve' && rand(100) < 3;
            planned.push({ clientId: n * 5 + c, input, call, point, ret: indeterminate ? INF : end });
            t = end + rand(3);
          }
        }
      }
      const order = planned.map((_, i) => i).sort((a, b) => planned[a]!.point - planned[b]!.point || a - b);
      const outputs = sequentialOutputs(order.map((i) => planned[i]!.input));
      const outputOf = new Map(order.map((i, k) => [i, outputs[k]!]));
      return planned.map((p, i) => ({
        clientId: p.clientId,
        input: p.input,
        call: p.call,
        return: p.ret,
        output: p.ret === INF ? undefined : outputOf.get(i),
      }));
    }

    it('checks 2,000 operations across 20 names (5 concurrent clients per name) in under 3 seconds', () => {
      const history = generatedHistory(42);
      expect(history).to.have.length(2000);
      const started = performance.now();
      const result = check(history);
      const elapsed = performance.now() - started;
      expect(result).to.deep.equal({ ok: true, partitions: 20, operations: 2000 });
      expect(elapsed).to.be.below(3000);
    });

    it('rejects the same history with one corrupted read in under 3 seconds', () => {
      const history = generatedHistory(42);
      const k = history.findIndex(
        (op) => op.input.kind === 'resolve' && op.input.name === 'eu/svc-7' && op.call > 100,
      );
      const read = history[k]!;
      history[k] = { ...read, output: { kind: 'resolve', instances: [['i0', 'never-written']] } };
      const started = performance.now();
      const result = expectViolation(check(history));
      const elapsed = performance.now() - started;
      expect(result.partition).to.equal(7);
      expect(elapsed).to.be.below(3000);
    });
  });
});
