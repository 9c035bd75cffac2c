import { expect } from 'chai';
import fc from 'fast-check';
import {
  checkQuota,
  checkRate,
  decodeQuota,
  MAX_QUOTA_BYTES,
  MAX_RATE_PRINCIPALS,
  type QuotaDocument,
  QuotaError,
  type QuotaInput,
  type QuotaUsage,
  quotaFromFlags,
  quotaFromObject,
  quotaToJson,
  RATE_HORIZON_MS,
  RateWindows,
} from '../../src/governance/quota.ts';

const usage = (instances: number, names: number, prefixes: Record<string, number> = {}) => {
  const asked: string[] = [];
  const u: QuotaUsage = {
    instances,
    names,
    prefixInstances: (prefix: string) => {
      asked.push(prefix);
      return prefixes[prefix] ?? 0;
    },
  };
  return { usage: u, asked };
};

const adds = (name = 'eu/payments/api') => ({ addsInstance: true, addsName: true, name });
const quota = (q: QuotaInput): QuotaDocument => quotaFromObject(q);

function quotaError(f: () => unknown): QuotaError {
  try {
    f();
  } catch (error) {
    expect(error).to.be.instanceOf(QuotaError);
    expect((error as QuotaError).message).to.not.match(/[\r\n]/);
    return error as QuotaError;
  }
  throw new Error('expected a QuotaError');
}

describe('governance quota: budgets', () => {
  it('refuses an instance at max_instances, naming the budget', () => {
    const doc = quota({ maxInstances: 1000 });
    expect(checkQuota(doc, usage(999, 10).usage, adds())).to.equal(null);
    expect(checkQuota(doc, usage(1000, 10).usage, adds())).to.deep.equal({
      budget: 'max_instances',
      limit: 1000,
      current: 1000,
      outcome: 'refuse',
      message: 'quota exceeded: scope max_instances 1000 reached (1000 registered)',
    });
    // Updating an existing instance adds nothing.
    expect(
      checkQuota(doc, usage(1000, 10).usage, { addsInstance: false, addsName: false, name: 'x' }),
    ).to.equal(null);
    // A quota lowered below the usage still refuses, and says how many there are.
    expect(checkQuota(quota({ maxInstances: 5 }), usage(7, 1).usage, adds())?.message).to.equal(
      'quota exceeded: scope max_instances 5 reached (7 registered)',
    );
  });

  it('refuses a new name at max_names, but not another instance of an existing name', () => {
    const doc = quota({ maxNames: 50 });
    expect(checkQuota(doc, usage(10, 49).usage, adds())).to.equal(null);
    const v = checkQuota(doc, usage(10, 50).usage, adds());
    expect(v).to.deep.include({ budget: 'max_names', limit: 50, current: 50, outcome: 'refuse' });
    expect(v?.message).to.equal('quota exceeded: scope max_names 50 reached (50 names)');
    expect(checkQuota(doc, usage(10, 50).usage, { addsInstance: true, addsName: false, name: 'x' })).to.equal(
      null,
    );
  });

  it('checks max_names before max_instances', () => {
    const doc = quota({ maxInstances: 1, maxNames: 1 });
    expect(checkQuota(doc, usage(1, 1).usage, adds())?.budget).to.equal('max_names');
  });

  it('applies a prefix budget to names starting with the prefix, checking every matching prefix', () => {
    const doc = quota({
      prefixes: [
        { prefix: 'eu/pay', maxInstances: 100 },
        { prefix: 'eu/', maxInstances: 1000 },
        { prefix: 'us/', maxInstances: 1 },
      ],
    });
    const within = usage(5000, 10, { 'eu/': 999, 'eu/pay': 99, 'us/': 1 });
    expect(checkQuota(doc, within.usage, adds('eu/payments/api'))).to.equal(null);
    expect(within.asked).to.deep.equal(['eu/', 'eu/pay']); // only the matching prefixes, in prefix order
    const full = usage(5000, 10, { 'eu/': 999, 'eu/pay': 100 });
    expect(checkQuota(doc, full.usage, adds('eu/payments/api'))).to.deep.equal({
      budget: 'prefix "eu/pay" max_instances',
      limit: 100,
      current: 100,
      outcome: 'refuse',
      message: 'quota exceeded: prefix "eu/pay" max_instances 100 reached (100 registered under it)',
    });
    // The broader prefix is checked too.
    const broad = usage(5000, 10, { 'eu/': 1000, 'eu/pay': 0 });
    expect(checkQuota(doc, broad.usage, adds('eu/other'))?.budget).to.equal('prefix "eu/" max_instances');
    // A name outside every prefix is not limited by them.
    expect(checkQuota(doc, usage(5000, 10, { 'eu/': 1000, 'us/': 1 }).usage, adds('ap/x'))).to.equal(null);
  });

  it('answers defer instead of refuse when over = "defer"', () => {
    const doc = quota({ maxInstances: 1, over: 'defer' });
    const v = checkQuota(doc, usage(1, 1).usage, adds());
    expect(v?.outcome).to.equal('defer');
    expect(v?.message).to.equal('quota exceeded: scope max_instances 1 reached (1 registered)');
  });

  it('passes everything when no budget is set', () => {
    expect(checkQuota(quota({}), usage(1e9, 1e9).usage, adds())).to.equal(null);
  });
});

describe('governance quota: documents', () => {
  it('writes canonical JSON: sorted keys, sorted prefixes, absent budgets omitted', () => {
    const doc = quota({
      registrationsPerSecond: 20,
      prefixes: [
        { prefix: 'us/', maxInstances: 5 },
        { prefix: 'eu/pay/', maxInstances: 100 },
      ],
      maxNames: 50,
      maxInstances: 1000,
    });
    const json =
      '{"maxInstances":1000,"maxNames":50,"over":"refuse","prefixes":[{"maxInstances":100,"prefix":"eu/pay/"},{"maxInstances":5,"prefix":"us/"}],"registrationsPerSecond":20,"version":1}';
    expect(quotaToJson(doc)).to.equal(json);
    expect(quotaToJson(decodeQuota(json))).to.equal(json);
    expect(decodeQuota(json)).to.deep.equal(doc);
    expect(quotaToJson({})).to.equal('{"over":"refuse","prefixes":[],"version":1}');
  });

  it('gives equal strings for equal quotas whatever the order (property)', () => {
    const budget = fc.record({
      prefix: fc.stringMatching(/^[a-z0-9/-]{1,12}$/),
      maxInstances: fc.nat(),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(budget, { selector: (b) => b.prefix, maxLength: 10 }),
        fc.option(fc.nat(), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
        fc.constantFrom('refuse' as const, 'defer' as const),
        (prefixes, max, rate, over) => {
          const a: Record<string, unknown> = { prefixes, over };
          if (max !== undefined) a.maxInstances = max;
          if (rate !== undefined) a.registrationsPerSecond = rate;
          const b = Object.fromEntries(Object.entries({ ...a, prefixes: [...prefixes].reverse() }).reverse());
          expect(quotaToJson(quotaFromObject(b))).to.equal(quotaToJson(quotaFromObject(a)));
          expect(quotaToJson(decodeQuota(quotaToJson(quotaFromObject(a))))).to.equal(
            quotaToJson(quotaFromObject(a)),
          );
        },
      ),
    );
  });

  it('refuses malformed quotas with one-line messages naming the budget', () => {
    const cases: [string, RegExp][] = [
      ['{"maxInstances": -1}', /^quota: max_instances -1 is not a non-negative integer/],
      ['{"maxNames": 1.5}', /^quota: max_names 1\.5 is not a non-negative integer/],
      ['{"registrationsPerSecond": 0}', /^quota: registrations_per_second 0 is not an integer 1\.\.1000000/],
      ['{"over": "drop"}', /^quota: over "drop" is not "refuse" or "defer"$/],
      ['{"maxInstance": 5}', /^quota: unknown field "maxInstance": a quota has version, maxInstances/],
      [
        '{"prefixes": [{"prefix": "eu/", "maxInstances": 1}, {"prefix": "eu/", "maxInstances": 2}]}',
        /prefix "eu\/" has two budgets/,
      ],
      ['{"prefixes": [{"prefix": "", "maxInstances": 1}]}', /prefix "" is empty: use max_instances/],
      [
        '{"prefixes": [{"prefix": "EU/", "maxInstances": 1}]}',
        /prefix "EU\/" has 'E', which no name contains/,
      ],
      ['{"prefixes": [{"prefix": "eu/", "max": 1}]}', /unknown field "max"/],
      ['{"version": 2}', /version 2 is not supported/],
      ['[1]', /^a quota is a JSON object/],
      ['{"maxInstances": 1,\n', /^the quota is not valid JSON: /],
    ];
    for (const [json, pattern] of cases) {
      expect(quotaError(() => decodeQuota(json)).message, json).to.match(pattern);
    }
    expect(quotaError(() => decodeQuota(' '.repeat(MAX_QUOTA_BYTES + 1))).message).to.match(
      /at most 65536 bytes/,
    );
  });

  it('builds a quota from command-line flags and names the flag at fault', () => {
    const doc = quotaFromFlags({
      maxInstances: '1000',
      maxNames: 50,
      prefix: ['eu/pay/=100', 'us/=7'],
      rate: '20',
      over: 'defer',
    });
    expect(doc).to.deep.equal(
      quota({
        maxInstances: 1000,
        maxNames: 50,
        prefixes: [
          { prefix: 'eu/pay/', maxInstances: 100 },
          { prefix: 'us/', maxInstances: 7 },
        ],
        registrationsPerSecond: 20,
        over: 'defer',
      }),
    );
    expect(quotaError(() => quotaFromFlags({ maxInstances: 'lots' })).message).to.equal(
      '--max-instances "lots": expected an integer of at least 0',
    );
    expect(quotaError(() => quotaFromFlags({ rate: '0' })).message).to.equal(
      '--rate "0": expected an integer 1..1000000',
    );
    expect(quotaError(() => quotaFromFlags({ prefix: ['eu/pay/'] })).message).to.match(
      /^--prefix "eu\/pay\/": expected PREFIX=MAX_INSTANCES/,
    );
    expect(quotaError(() => quotaFromFlags({ prefix: ['eu/pay/=x'] })).message).to.match(
      /^--prefix "eu\/pay\/=x": MAX_INSTANCES "x"/,
    );
    expect(quotaError(() => quotaFromFlags({ prefix: ['EU=1'] })).message).to.match(
      /^--prefix "EU=1": the prefix has 'E'/,
    );
    expect(quotaError(() => quotaFromFlags({ over: 'maybe' })).message).to.equal(
      '--over "maybe": expected refuse or defer',
    );
  });
});

describe('governance quota: rate windows', () => {
  it('admits `limit` registrations per principal per 1-second window of request timestamps', () => {
    const w = new RateWindows();
    const t0 = 1_700_000_000_000; // a window start
    expect([1, 2, 3, 4].map((i) => w.take('alice', t0 + i * 100, 3))).to.deep.equal([
      true,
      true,
      true,
      false,
    ]);
    expect(w.take('bob', t0 + 500, 3)).to.equal(true); // per principal
    expect(w.take('alice', t0 + 999, 3)).to.equal(false);
    expect(w.take('alice', t0 + 1000, 3)).to.equal(true); // the next window
    expect(w.count('alice')).to.equal(1);
    // A late timestamp counts in the principal's newer window; it cannot reopen the old one.
    expect(w.take('alice', t0 + 10, 3)).to.equal(true);
    expect(w.take('alice', t0 + 20, 3)).to.equal(true);
    expect(w.take('alice', t0 + 30, 3)).to.equal(false);
  });

  it('checkRate names the budget, follows over, and says when the next window starts', () => {
    const w = new RateWindows();
    const doc = quota({ registrationsPerSecond: 1, over: 'defer' });
    expect(checkRate(doc, w, 'k', 5_250)).to.equal(null);
    expect(checkRate(doc, w, 'k', 5_400)).to.deep.equal({
      budget: 'registrations_per_second',
      limit: 1,
      current: 1,
      outcome: 'defer',
      message:
        'quota exceeded: registrations_per_second 1 reached for this principal (1 in this second); retry in 600 ms',
      retryAfterMs: 600,
    });
    expect(checkRate(quota({}), w, 'k', 5_500)).to.equal(null); // no rate set
  });

  it('forgets windows older than the newest timestamp minus 60 s', () => {
    const w = new RateWindows();
    for (let i = 0; i < 10; i++) w.take(`p${i}`, 1_000 + i, 5);
    expect(w.size).to.equal(10);
    w.take('late', 1_000 + RATE_HORIZON_MS + 500, 5); // horizon window is still 1
    expect(w.size).to.equal(11);
    w.take('later', 2_000 + RATE_HORIZON_MS, 5); // horizon moves past window 1
    expect(w.size).to.equal(2);
    expect(w.count('p0')).to.equal(0);
    // A timestamp older than the horizon counts in the horizon's window, so it cannot dodge the limit.
    const fresh = new RateWindows();
    fresh.take('x', 100_000, 1);
    expect(fresh.take('old', 1, 1)).to.equal(true);
    expect(fresh.take('old', 2_000, 1)).to.equal(false);
  });

  it('stays bounded, forgetting the oldest window first (the principal that entered it first)', () => {
    const w = new RateWindows({ maxPrincipals: 3 });
    w.take('a', 1_000, 5);
    w.take('b', 2_000, 5);
    w.take('c', 1_500, 5); // window 1, after a
    w.take('d', 3_000, 5); // evicts a (oldest window 1, first in)
    expect(w.size).to.equal(3);
    expect(w.count('a')).to.equal(0);
    expect(w.count('c')).to.equal(1);
    w.take('e', 3_000, 5); // evicts c
    expect(w.count('c')).to.equal(0);
    expect(w.toJSON().windows).to.deep.equal([
      [2, [['b', 1]]],
      [
        3,
        [
          ['d', 1],
          ['e', 1],
        ],
      ],
    ]);
  });

  it('holds at most 65,536 principals by default', () => {
    const w = new RateWindows();
    for (let i = 0; i < MAX_RATE_PRINCIPALS + 1000; i++) w.take(`p${i}`, 10_000 + (i >> 10), 1);
    expect(w.size).to.equal(MAX_RATE_PRINCIPALS);
    expect(w.count('p0')).to.equal(0); // the oldest went first
    expect(w.count(`p${MAX_RATE_PRINCIPALS + 999}`)).to.equal(1);
  });

  it('is deterministic: same inputs give the same answers and the same serialized state (property)', () => {
    const op = fc.record({
      principal: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'),
      dt: fc.integer({ min: -3_000, max: 40_000 }),
      limit: fc.integer({ min: 1, max: 4 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), fc.nat({ max: 120 }), (ops, cut) => {
        const run = (w: RateWindows, from: number, to: number, out: boolean[], t: { now: number }) => {
          for (const o of ops.slice(from, to)) {
            t.now += o.dt;
            out.push(w.take(o.principal, t.now, o.limit));
          }
        };
        const a = new RateWindows({ maxPrincipals: 4 });
        const b = new RateWindows({ maxPrincipals: 4 });
        const outA: boolean[] = [];
        const outB: boolean[] = [];
        run(a, 0, ops.length, outA, { now: 1_000_000 });
        run(b, 0, ops.length, outB, { now: 1_000_000 });
        expect(outB).to.deep.equal(outA);
        expect(JSON.stringify(b.toJSON())).to.equal(JSON.stringify(a.toJSON()));
        expect(a.size).to.be.at.most(4);

        // Serialized and restored mid-way (through JSON text), it continues identically.
        const c = new RateWindows({ maxPrincipals: 4 });
        const outC: boolean[] = [];
        const t = { now: 1_000_000 };
        run(c, 0, cut, outC, t);
        const restored = RateWindows.fromJSON(JSON.parse(JSON.stringify(c.toJSON())));
        expect(JSON.stringify(restored.toJSON())).to.equal(JSON.stringify(c.toJSON()));
        run(restored, cut, ops.length, outC, t);
        expect(outC).to.deep.equal(outA);
        expect(JSON.stringify(restored.toJSON())).to.equal(JSON.stringify(a.toJSON()));
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a malformed serialized state', () => {
    const bad = [
      null,
      { version: 2, maxPrincipals: 1, newest: null, windows: [] },
      { version: 1, maxPrincipals: 0, newest: null, windows: [] },
      { version: 1, maxPrincipals: 4, newest: null, windows: [[1, [['a', 1]]]] },
      { version: 1, maxPrincipals: 4, newest: 5_000, windows: [[9, [['a', 1]]]] },
      { version: 1, maxPrincipals: 4, newest: 5_000, windows: [[5, [['a', 0]]]] },
      {
        version: 1,
        maxPrincipals: 4,
        newest: 5_000,
        windows: [
          [4, [['a', 1]]],
          [5, [['a', 1]]],
        ],
      },
      {
        version: 1,
        maxPrincipals: 1,
        newest: 5_000,
        windows: [
          [
            5,
            [
              ['a', 1],
              ['b', 1],
            ],
          ],
        ],
      },
      {
        version: 1,
        maxPrincipals: 4,
        newest: 5_000,
        windows: [
          [5, [['a', 1]]],
          [4, [['b', 1]]],
        ],
      },
    ];
    for (const state of bad) {
      expect(quotaError(() => RateWindows.fromJSON(state)).message, JSON.stringify(state)).to.match(
        /^rate windows state is malformed: /,
      );
    }
  });
});
