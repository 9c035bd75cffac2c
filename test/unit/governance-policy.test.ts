import { expect } from 'chai';
import fc from 'fast-check';
import {
  type Action,
  compilePolicy,
  type Decision,
  decodePolicy,
  describePolicy,
  evaluatePolicy,
  MAX_POLICY_BYTES,
  MAX_RULES,
  type Outcome,
  PERMISSIVE_POLICY,
  type PolicyDocument,
  PolicyError,
  type PolicyInput,
  type PolicyRequest,
  type PolicyRuleInput,
  policyFromObject,
  policyToJson,
  type Role,
} from '../../src/governance/policy.ts';
import { parsePolicyFile, stopPolicyParser } from '../../src/governance/policy-file.ts';

const KEY_A = 'a1'.repeat(32);
const KEY_B = 'b2'.repeat(32);
const SCOPE_X = 'c3'.repeat(32);
/** An HCL interpolation, `${x}` (built so that it is not taken for a template placeholder here). */
const INTERPOLATION = `${'$'}{x}`;

const SAMPLE_HCL = `# the brief's example
default = "refuse"            # outcome when no rule matches

rule "nomad-clients" {
  roles    = ["registrar"]
  keys     = []
  scopes   = ["local"]
  actions  = ["register", "deregister"]
  prefixes = ["eu/payments/"]
  tags     = ["prod"]
  outcome  = "allow"
  attest   = false
}

rule "resolvers" {
  roles   = ["resolver", "*"]
  actions = ["resolve"]
  outcome = "allow"
  attest  = true
}

rule "no-secrets" {
  roles    = ["*"]
  actions  = ["*"]
  prefixes = ["eu/secret/", "eu/secret/"]
  scopes   = ["*"]
  outcome  = "refuse"
}
`;

const SAMPLE_JSON = `{
  "default": "refuse",
  "rule": {
    "resolvers": { "roles": ["*"], "actions": ["resolve"], "outcome": "allow", "attest": true },
    "no-secrets": { "roles": ["*"], "actions": ["*"], "prefixes": ["eu/secret/"], "scopes": ["*"], "outcome": "refuse" },
    "nomad-clients": {
      "roles": ["registrar"], "actions": ["deregister", "register"], "prefixes": ["eu/payments/"],
      "tags": ["prod"], "outcome": "allow"
    }
  }
}`;

const request = (over: Partial<PolicyRequest> = {}): PolicyRequest => ({
  role: 'registrar',
  key: KEY_A,
  scope: 'local',
  action: 'register',
  name: 'eu/payments/api',
  ...over,
});

const rule = (name: string, over: Partial<PolicyRuleInput> = {}): PolicyRuleInput => ({
  name,
  roles: ['*'],
  actions: ['*'],
  outcome: 'allow',
  ...over,
});

const policy = (rules: PolicyRuleInput[], fallback: Outcome = 'refuse'): PolicyDocument =>
  policyFromObject({ default: fallback, rules });

/** Awaits a parse that must fail; returns the PolicyError after checking it is one line. */
async function parseError(text: string, file = 'policy.hcl'): Promise<PolicyError> {
  try {
    await parsePolicyFile(text, file);
  } catch (error) {
    expect(error, String(error)).to.be.instanceOf(PolicyError);
    const e = error as PolicyError;
    expect(e.message).to.not.match(/[\r\n]/);
    expect(e.message).to.not.match(/\n\s+at /);
    return e;
  }
  throw new Error(`expected ${JSON.stringify(text.slice(0, 80))} to be refused`);
}

function decodeError(json: string): PolicyError {
  try {
    decodePolicy(json);
  } catch (error) {
    expect(error).to.be.instanceOf(PolicyError);
    expect((error as PolicyError).message).to.not.match(/[\r\n]/);
    return error as PolicyError;
  }
  throw new Error(`expected ${json.slice(0, 80)} to be refused`);
}

describe('governance policy: forms and canonical document', () => {
  it('reads the HCL and the JSON form of a policy into the same canonical document', async () => {
    const fromHcl = await parsePolicyFile(SAMPLE_HCL, 'policy.hcl');
    const fromJson = await parsePolicyFile(SAMPLE_JSON, 'policy.json');
    expect(policyToJson(fromHcl)).to.equal(policyToJson(fromJson));
    // hcl2json's shape ({NAME: [{...}]}) and the canonical shape are accepted as well.
    const hcl2jsonShape = JSON.stringify({
      default: 'refuse',
      rule: Object.fromEntries(fromHcl.rules.map(({ name, ...body }) => [name, [body]] as const).reverse()),
    });
    expect(policyToJson(await parsePolicyFile(hcl2jsonShape, 'p.json'))).to.equal(policyToJson(fromHcl));
    expect(policyToJson(await parsePolicyFile(policyToJson(fromHcl), 'p.json'))).to.equal(
      policyToJson(fromHcl),
    );
  });

  it('fills in defaults, sorts and deduplicates lists, sorts rules by name and keys alphabetically', async () => {
    const doc = await parsePolicyFile(SAMPLE_HCL, 'policy.hcl');
    expect(doc.rules.map((r) => r.name)).to.deep.equal(['no-secrets', 'nomad-clients', 'resolvers']);
    expect(policyToJson(doc)).to.equal(
      '{"default":"refuse","rules":[' +
        '{"actions":["*"],"attest":false,"keys":[],"name":"no-secrets","outcome":"refuse","prefixes":["eu/secret/"],"roles":["*"],"scopes":["*"],"tags":[]},' +
        '{"actions":["deregister","register"],"attest":false,"keys":[],"name":"nomad-clients","outcome":"allow","prefixes":["eu/payments/"],"roles":["registrar"],"scopes":["local"],"tags":["prod"]},' +
        '{"actions":["resolve"],"attest":true,"keys":[],"name":"resolvers","outcome":"allow","prefixes":[""],"roles":["*"],"scopes":["local"],"tags":[]}' +
        '],"version":1}',
    );
    expect(decodePolicy(policyToJson(doc))).to.deep.equal(doc);
  });

  it('lowercases keys and scope ids in the canonical form', () => {
    const doc = policy([
      rule('r', { keys: [KEY_A.toUpperCase()], scopes: [SCOPE_X.toUpperCase(), 'local'] }),
    ]);
    expect(doc.rules[0]!.keys).to.deep.equal([KEY_A]);
    expect(doc.rules[0]!.scopes).to.deep.equal([SCOPE_X, 'local']);
  });

  it('keeps the canonical JSON stable under reordering of rules and list entries (property)', () => {
    const entries = <T>(values: readonly T[]) => fc.subarray([...values], { minLength: 1 });
    const ruleArb = fc.record({
      roles: entries(['*', 'scope-admin', 'anchor', 'registrar', 'resolver', 'auditor']),
      actions: entries(['*', 'register', 'deregister', 'resolve', 'read-lineage', 'administer']),
      keys: fc.subarray([KEY_A, KEY_B]),
      scopes: entries(['local', '*', SCOPE_X]),
      prefixes: entries(['', 'eu/', 'eu/payments/', 'us/']),
      tags: fc.subarray(['prod', 'canary', 'eu']),
      outcome: fc.constantFrom<Outcome>('allow', 'refuse', 'defer'),
      attest: fc.boolean(),
    });
    const docArb = fc
      .uniqueArray(fc.tuple(fc.stringMatching(/^[A-Za-z0-9_.-]{1,8}$/), ruleArb), {
        selector: ([name]) => name,
        maxLength: 12,
      })
      .filter((rules) => rules.every(([name]) => name !== 'default'));
    fc.assert(
      fc.property(
        docArb,
        fc.constantFrom<Outcome>('allow', 'refuse', 'defer'),
        fc.nat(),
        (rules, fallback, seed) => {
          const inputs = rules.map(([name, r]) => ({
            name,
            ...r,
            attest: r.attest && r.outcome === 'allow',
          }));
          const shuffle = <T>(xs: readonly T[], salt: number): T[] =>
            xs
              .map((x, i) => [x, (i * 7919 + seed * 31 + salt) % 1009] as const)
              .sort((a, b) => a[1] - b[1])
              .map(([x]) => x);
          const reordered = shuffle(inputs, 1).map((r, i) => ({
            ...r,
            roles: shuffle([...r.roles, ...r.roles.slice(0, 1)], i),
            actions: shuffle(r.actions, i + 2),
            keys: shuffle(r.keys, i + 3),
            scopes: shuffle([...r.scopes, ...r.scopes], i + 4),
            prefixes: shuffle(r.prefixes, i + 5),
            tags: shuffle([...r.tags, ...r.tags], i + 6),
          }));
          const a = policyToJson({ default: fallback, rules: inputs });
          const b = policyToJson({ default: fallback, rules: reordered });
          // Also through the HCL-style map (object keys in another order).
          const c = policyToJson(
            policyFromObject({
              default: fallback,
              rule: Object.fromEntries(reordered.map(({ name, ...body }) => [name, [body]])),
            }),
          );
          expect(b).to.equal(a);
          expect(c).to.equal(a);
          expect(policyToJson(decodePolicy(a))).to.equal(a);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('exports the permissive development policy: default allow, no rules', () => {
    expect(policyToJson(PERMISSIVE_POLICY)).to.equal('{"default":"allow","rules":[],"version":1}');
    expect(Object.isFrozen(PERMISSIVE_POLICY)).to.equal(true);
    const d = evaluatePolicy(PERMISSIVE_POLICY, request({ role: 'resolver', action: 'administer' }));
    expect(d).to.deep.equal({
      outcome: 'allow',
      attest: false,
      rule: 'default',
      reason: 'no rule matches resolver to administer eu/payments/api: the default is allow',
    });
    expect(describePolicy(PERMISSIVE_POLICY)).to.equal(
      'default allow, no rules (the permissive development policy)',
    );
  });
});

describe('governance policy: evaluation', () => {
  it('allows by a matching rule and names it in a one-line reason', () => {
    const d = evaluatePolicy(decodePolicy(SAMPLE_JSON), request({ tags: ['prod'] }));
    expect(d).to.deep.equal({
      outcome: 'allow',
      attest: false,
      rule: 'nomad-clients',
      reason: 'rule "nomad-clients" allows registrar to register eu/payments/api',
    });
  });

  it('applies the default outcome when no rule matches (refuse, allow, defer)', () => {
    for (const fallback of ['refuse', 'allow', 'defer'] as const) {
      const doc = policy([rule('eu-only', { prefixes: ['eu/'] })], fallback);
      const d = evaluatePolicy(doc, request({ role: 'resolver', name: 'us/x' }));
      expect(d.outcome).to.equal(fallback);
      expect(d.rule).to.equal('default');
      expect(d.attest).to.equal(false);
      const verb = fallback === 'allow' ? 'matches' : 'allows';
      expect(d.reason).to.equal(`no rule ${verb} resolver to register us/x: the default is ${fallback}`);
    }
    expect(evaluatePolicy({ rules: [] }, request()).outcome).to.equal('refuse'); // "default" omitted
  });

  it('lets refuse beat defer beat allow among matching rules, whatever their specificity (deny overrides)', () => {
    const allow = rule('a-allow', { prefixes: ['eu/payments/api'], keys: [KEY_A], roles: ['registrar'] });
    const defer = rule('m-defer', { prefixes: ['eu/'], outcome: 'defer' });
    const refuse = rule('z-refuse', { prefixes: [''], outcome: 'refuse' });
    expect(evaluatePolicy(policy([allow, defer, refuse]), request())).to.include({
      outcome: 'refuse',
      rule: 'z-refuse',
      reason: 'rule "z-refuse" forbids registrar to register eu/payments/api',
    });
    expect(evaluatePolicy(policy([allow, defer]), request())).to.include({
      outcome: 'defer',
      rule: 'm-defer',
      reason: 'rule "m-defer" defers the decision for registrar to register eu/payments/api',
    });
    expect(evaluatePolicy(policy([allow, refuse]), request())).to.include({ outcome: 'refuse' });
    expect(evaluatePolicy(policy([allow]), request())).to.include({ outcome: 'allow', rule: 'a-allow' });
  });

  it('names the most specific rule: longest matching prefix first', () => {
    // The names are ordered against the expected winner, so that name order alone would pick the other.
    const doc = policy([
      rule('a-short', { prefixes: ['eu/', 'us/payments/api/v2'] }),
      rule('b-long', { prefixes: ['eu/pay'] }),
    ]);
    expect(evaluatePolicy(doc, request()).rule).to.equal('b-long');
  });

  it('then a rule naming keys, then more constrained dimensions, then the smaller name', () => {
    const byKeys = policy([
      rule('a-roles', { roles: ['registrar'], actions: ['register'], scopes: ['local'], tags: ['prod'] }),
      rule('b-keys', { keys: [KEY_A] }),
    ]);
    expect(evaluatePolicy(byKeys, request({ tags: ['prod'] })).rule).to.equal('b-keys');

    const byConstraints = policy([
      rule('a-two', { roles: ['registrar'], actions: ['register'], scopes: ['*'] }),
      rule('b-three', { roles: ['registrar'], actions: ['register'], scopes: ['local'] }),
    ]);
    expect(evaluatePolicy(byConstraints, request()).rule).to.equal('b-three');
    const withTags = policy([
      rule('a-one', { roles: ['registrar'] }),
      rule('b-tags', { roles: ['registrar'], tags: ['prod'] }),
    ]);
    expect(evaluatePolicy(withTags, request({ tags: ['prod'] })).rule).to.equal('b-tags');

    const tie = policy([rule('zeta', { roles: ['registrar'] }), rule('alpha', { actions: ['register'] })]);
    expect(evaluatePolicy(tie, request()).rule).to.equal('alpha');
  });

  it('does not depend on the order the rules were written in', () => {
    const rules = [
      rule('r1', { prefixes: ['eu/'] }),
      rule('r2', { prefixes: ['eu/'], roles: ['registrar'] }),
      rule('r3', { prefixes: ['eu/pay'], outcome: 'defer' }),
    ];
    const a = evaluatePolicy(policy(rules), request());
    const b = evaluatePolicy(policy([...rules].reverse()), request());
    expect(b).to.deep.equal(a);
    expect(a.rule).to.equal('r3');
  });

  it('attests when the outcome is allow and any matching allow rule asks for it', () => {
    const doc = policy([
      rule('specific', { prefixes: ['eu/payments/'] }),
      rule('broad', { prefixes: [''], attest: true }),
      rule('other', { prefixes: ['us/'], attest: true }),
    ]);
    const d = evaluatePolicy(doc, request({ action: 'resolve', role: 'resolver' }));
    expect(d).to.include({ outcome: 'allow', rule: 'specific', attest: true });
    expect(evaluatePolicy(doc, request({ name: 'ap/x' })).attest).to.equal(true);
    const noAttest = policy([
      rule('specific', { prefixes: ['eu/'] }),
      rule('other', { prefixes: ['us/'], attest: true }),
    ]);
    expect(evaluatePolicy(noAttest, request()).attest).to.equal(false);
    const refused = policy([
      rule('broad', { attest: true }),
      rule('deny', { outcome: 'refuse', prefixes: ['eu/'] }),
    ]);
    expect(evaluatePolicy(refused, request())).to.include({ outcome: 'refuse', attest: false });
  });

  it('matches keys (case-insensitively), scopes and tags', () => {
    const doc = policy([
      rule('key-a', { keys: [KEY_A], prefixes: ['k/'] }),
      rule('foreign', { scopes: [SCOPE_X], prefixes: ['f/'] }),
      rule('anywhere', { scopes: ['*'], prefixes: ['any/'] }),
      rule('tagged', { tags: ['prod', 'eu'], prefixes: ['t/'] }),
    ]);
    const allowed = (r: Partial<PolicyRequest>) => evaluatePolicy(doc, request(r)).outcome === 'allow';
    expect(allowed({ name: 'k/x' })).to.equal(true);
    expect(allowed({ name: 'k/x', key: KEY_A.toUpperCase() })).to.equal(true);
    expect(allowed({ name: 'k/x', key: KEY_B })).to.equal(false);
    // scopes default to ["local"]: a principal of another scope does not match.
    expect(allowed({ name: 'k/x', scope: SCOPE_X })).to.equal(false);
    expect(allowed({ name: 'f/x', scope: SCOPE_X })).to.equal(true);
    expect(allowed({ name: 'f/x', scope: SCOPE_X.toUpperCase() })).to.equal(true);
    expect(allowed({ name: 'f/x' })).to.equal(false);
    expect(allowed({ name: 'any/x', scope: SCOPE_X })).to.equal(true);
    expect(allowed({ name: 'any/x' })).to.equal(true);
    expect(allowed({ name: 't/x', tags: ['eu', 'canary', 'prod'] })).to.equal(true);
    expect(allowed({ name: 't/x', tags: ['prod'] })).to.equal(false);
    expect(allowed({ name: 't/x' })).to.equal(false);
  });

  it('uses plain string prefixes ("eu/pay" matches "eu/payments/api"; "" matches everything)', () => {
    const doc = policy([rule('pay', { prefixes: ['eu/pay'] })]);
    expect(evaluatePolicy(doc, request()).outcome).to.equal('allow');
    expect(evaluatePolicy(doc, request({ name: 'eu/pa' })).outcome).to.equal('refuse');
    expect(evaluatePolicy(policy([rule('all')]), request({ name: 'anything' })).outcome).to.equal('allow');
  });

  it('gives scope-admin nothing the rules do not say', () => {
    const doc = policy([rule('registrars', { roles: ['registrar'] })]);
    const d = evaluatePolicy(doc, request({ role: 'scope-admin', action: 'administer' }));
    expect(d).to.include({ outcome: 'refuse', rule: 'default' });
    expect(d.reason).to.equal(
      'no rule allows scope-admin to administer eu/payments/api: the default is refuse',
    );
  });

  it('quotes unusual names in reasons so that a reason stays one line', () => {
    const d = evaluatePolicy(PERMISSIVE_POLICY, request({ name: 'a\nb "c"' }));
    expect(d.reason).to.equal(
      'no rule matches registrar to register "a\\u{a}b \\"c\\"": the default is allow',
    );
  });

  it('evaluates like a naive reference evaluator on random policies and requests (property)', () => {
    const roles: Role[] = ['scope-admin', 'anchor', 'registrar', 'resolver', 'auditor'];
    const actions: Action[] = ['register', 'deregister', 'resolve', 'read-lineage', 'administer'];
    const prefixes = ['', 'a', 'a/', 'a/b', 'a/b/c', 'b/'];
    const names = ['a', 'a/', 'a/b', 'a/b/c', 'a/bc', 'b/x', 'c'];
    const tags = ['t1', 't2', 't3'];
    const sub = <T>(values: readonly T[]) => fc.subarray([...values], { minLength: 1 });
    const ruleArb = fc
      .record({
        roles: fc.oneof(fc.constant(['*']), sub(roles)),
        actions: fc.oneof(fc.constant(['*']), sub(actions)),
        keys: fc.subarray([KEY_A, KEY_B]),
        scopes: fc.oneof(fc.constant(['*']), sub(['local', SCOPE_X])),
        prefixes: sub(prefixes),
        tags: fc.subarray(tags, { maxLength: 2 }),
        outcome: fc.constantFrom<Outcome>('allow', 'refuse', 'defer'),
        attest: fc.boolean(),
      })
      .map((r) => ({ ...r, attest: r.attest && r.outcome === 'allow' }));
    const rulesArb = fc.uniqueArray(
      fc.tuple(fc.constantFrom('r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8'), ruleArb),
      {
        selector: ([n]) => n,
        maxLength: 8,
      },
    );
    const requestArb = fc.record({
      role: fc.constantFrom(...roles),
      key: fc.constantFrom(KEY_A, KEY_B),
      scope: fc.constantFrom('local', SCOPE_X),
      action: fc.constantFrom(...actions),
      name: fc.constantFrom(...names),
      tags: fc.subarray(tags),
    });

    type R = PolicyRuleInput & { readonly name: string };
    const reference = (fallback: Outcome, rules: readonly R[], req: PolicyRequest): Decision => {
      const matches = (r: R): boolean =>
        (r.roles.includes('*') || r.roles.includes(req.role)) &&
        (r.actions.includes('*') || r.actions.includes(req.action)) &&
        ((r.keys ?? []).length === 0 || (r.keys ?? []).includes(req.key)) &&
        ((r.scopes ?? ['local']).includes('*') || (r.scopes ?? ['local']).includes(req.scope)) &&
        (r.prefixes ?? ['']).some((p) => req.name.startsWith(p)) &&
        (r.tags ?? []).every((t) => (req.tags ?? []).includes(t));
      const matching = rules.filter(matches);
      if (matching.length === 0) return { outcome: fallback, attest: false, rule: 'default', reason: '' };
      const outcome: Outcome = matching.some((r) => r.outcome === 'refuse')
        ? 'refuse'
        : matching.some((r) => r.outcome === 'defer')
          ? 'defer'
          : 'allow';
      const longest = (r: R) =>
        Math.max(...(r.prefixes ?? ['']).filter((p) => req.name.startsWith(p)).map((p) => p.length));
      const constraints = (r: R) =>
        Number(!r.roles.includes('*')) +
        Number(!r.actions.includes('*')) +
        Number(!(r.scopes ?? ['local']).includes('*')) +
        Number((r.tags ?? []).length > 0);
      const ranked = matching
        .filter((r) => r.outcome === outcome)
        .sort(
          (x, y) =>
            longest(y) - longest(x) ||
            Number((y.keys ?? []).length > 0) - Number((x.keys ?? []).length > 0) ||
            constraints(y) - constraints(x) ||
            (x.name < y.name ? -1 : 1),
        );
      const attest = outcome === 'allow' && matching.some((r) => r.outcome === 'allow' && r.attest === true);
      return { outcome, attest, rule: ranked[0]!.name, reason: '' };
    };

    fc.assert(
      fc.property(
        rulesArb,
        fc.constantFrom<Outcome>('allow', 'refuse', 'defer'),
        fc.array(requestArb, { minLength: 1, maxLength: 20 }),
        (pairs, fallback, requests) => {
          const rules: R[] = pairs.map(([name, r]) => ({ name, ...r }));
          const evaluator = compilePolicy({ default: fallback, rules });
          for (const req of requests) {
            const got = evaluator.evaluate(req);
            const want = reference(fallback, rules, req);
            expect({ ...got, reason: '' }, JSON.stringify({ rules, req })).to.deep.equal(want);
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('governance policy: validation', () => {
  const refuseObject = (value: unknown): PolicyError => {
    try {
      policyFromObject(value);
    } catch (error) {
      expect(error).to.be.instanceOf(PolicyError);
      expect((error as PolicyError).message).to.not.match(/[\r\n]/);
      return error as PolicyError;
    }
    throw new Error('expected a PolicyError');
  };
  const withRule = (body: Record<string, unknown>, name = 'r') => ({
    rule: { [name]: { roles: ['*'], actions: ['*'], outcome: 'allow', ...body } },
  });

  it('refuses bad values with a message naming the rule and attribute', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { roles: ['registar'] },
        /^rule "r": roles: "registar" is not a role \(scope-admin, anchor, registrar, resolver, auditor, or "\*" for any\)$/,
      ],
      [{ actions: ['write'] }, /^rule "r": actions: "write" is not an action/],
      [{ outcome: 'deny' }, /^rule "r": outcome: "deny" is not an outcome \(allow, refuse, defer\)$/],
      [{ outcome: INTERPOLATION }, /HCL expressions are not evaluated/],
      [{ keys: ['abc'] }, /^rule "r": keys: "abc" is not a public key: a key is 64 hex digits$/],
      [{ scopes: ['other'] }, /^rule "r": scopes: "other" is not a scope/],
      [{ prefixes: ['EU/'] }, /^rule "r": prefixes: "EU\/" has 'E', which no name contains/],
      [{ prefixes: ['*'] }, /"" matches every name/],
      [{ prefixes: ['a'.repeat(257)] }, /is 257 bytes long: a prefix is at most 256 bytes/],
      [{ prefixes: [] }, /prefixes is empty, so the rule matches nothing/],
      [{ roles: [] }, /roles is empty: list at least one, or "\*" for any/],
      [{ roles: 'registrar' }, /roles must be a list of strings, such as \["registrar"\]/],
      [{ tags: [''] }, /tags: "" is empty/],
      [{ attest: 'yes' }, /attest must be true or false/],
      [{ attest: true, outcome: 'refuse' }, /attest = true only applies to rules whose outcome is "allow"/],
      [{ roles: Array.from({ length: 65 }, () => '*') }, /roles has 65 entries: a list has at most 64/],
      [{ rolez: [] }, /^rule "r": unknown attribute "rolez": a rule has roles, actions, outcome/],
    ];
    for (const [body, pattern] of cases) {
      const e = refuseObject(withRule(body));
      expect(e.message, JSON.stringify(body)).to.match(pattern);
      expect(e.rule).to.equal('r');
    }
    const missing = refuseObject({ rule: { r: { roles: ['*'], outcome: 'allow' } } });
    expect(missing.message).to.equal(
      'rule "r": actions is missing: every rule says its roles, actions and outcome',
    );
  });

  it('refuses bad rule names, the reserved name "default", and too many rules', () => {
    expect(refuseObject(withRule({}, 'has space')).message).to.match(/rule name "has space" is not valid/);
    expect(refuseObject(withRule({}, 'x'.repeat(65))).message).to.match(/1\.\.64 characters/);
    expect(refuseObject(withRule({}, 'default')).message).to.match(/rule name "default" is reserved/);
    const many = Object.fromEntries(
      Array.from({ length: MAX_RULES + 1 }, (_, i) => [
        `r${i}`,
        { roles: ['*'], actions: ['*'], outcome: 'allow' },
      ]),
    );
    expect(refuseObject({ rule: many }).message).to.equal(
      'the policy has 257 rules: at most 256 are allowed',
    );
    expect(() =>
      policyFromObject({ rule: Object.fromEntries(Object.entries(many).slice(0, MAX_RULES)) }),
    ).to.not.throw();
  });

  it('refuses a canonical document over 64 KiB even when each limit holds', () => {
    const keys = Array.from({ length: 64 }, (_, i) => i.toString(16).padStart(64, '0'));
    const rules = Array.from({ length: 20 }, (_, i) => rule(`r${i}`, { keys }));
    const e = refuseObject({ rules });
    expect(e.code).to.equal('too-large');
    expect(e.message).to.match(
      /^the canonical policy is \d+ bytes: a policy is at most 65536 bytes \(64 KiB\)/,
    );
  });

  it('decodePolicy refuses non-JSON, oversized and non-object documents in one line', () => {
    expect(decodeError('{"default": "refuse",\n"rules": [}').message).to.match(
      /^the policy is not valid JSON: /,
    );
    expect(decodeError(' '.repeat(MAX_POLICY_BYTES + 1)).message).to.match(/is at most 65536 bytes/);
    expect(decodeError('[1]').message).to.match(/^a policy is an object/);
    expect(decodeError('{"version": 2}').message).to.match(/version number 2 is not supported/);
    expect(decodeError('{"default": "refuse", "rules": [], "rule": {}}').message).to.match(/not both/);
  });
});

describe('governance policy: policy files and their errors', () => {
  after(async () => {
    await stopPolicyParser(); // the HCL parser's worker (it does not keep the process alive anyway)
  });

  it('names the file, line and column of an HCL syntax error', async () => {
    const e = await parseError('default = "refuse"\nrule "x" {\n  roles = ["a" "b"]\n}\n');
    expect(e.message).to.equal(
      'policy.hcl:3:16: Missing item separator: Expected a comma to mark the beginning of the next item.',
    );
    expect(e.line).to.equal(3);
    expect(e.code).to.equal('syntax');
    const redefined = await parseError('default = "refuse"\n\ndefault = "allow"\n');
    expect(redefined.message).to.match(/^policy\.hcl:3:1: Attribute redefined: .*already set at line 1/);
  });

  it('names the line of a JSON syntax error', async () => {
    const e = await parseError(
      '{\n  "default": "refuse",\n  "rule": {\n    "a": {"roles": ["*"] "actions": ["*"]}\n  }\n}',
      'p.json',
    );
    expect(e.message).to.equal("p.json:4: not valid JSON: Expected ',' or '}' after property value in JSON");
    expect(e.line).to.equal(4);
    // V8 gives no position for this one: the line comes from our scanner.
    const token = await parseError('{\n  "default": "refuse",\n\n  "rule": tru }', 'p.json');
    expect(token.message).to.match(/^p\.json:4: not valid JSON: Unexpected token/);
  });

  it('names the line of an unknown attribute (HCL and JSON)', async () => {
    const hcl = await parseError(
      'rule "x" {\n  roles = ["*"]\n  actions = ["*"]\n  outcome = "allow"\n  rolez = []\n}\n',
    );
    expect(hcl.message).to.equal(
      'policy.hcl:5: rule "x": unknown attribute "rolez": a rule has roles, actions, outcome, keys, scopes, prefixes, tags, attest',
    );
    expect(hcl.line).to.equal(5);
    const top = await parseError('default = "refuse"\n# comment\ndefualt = "allow"\n');
    expect(top.message).to.match(/^policy\.hcl:3: unknown attribute "defualt"/);
    const json = await parseError(
      '{\n  "rule": {\n    "x": {\n      "roles": ["*"],\n      "actions": ["*"],\n      "outcome": "allow",\n      "rolez": []\n    }\n  }\n}',
      'p.json',
    );
    expect(json.message).to.match(/^p\.json:7: rule "x": unknown attribute "rolez"/);
    expect(json.line).to.equal(7);
  });

  it('names the line of a bad enum value', async () => {
    const text =
      'rule "ok" {\n  roles = ["*"]\n  actions = ["*"]\n  outcome = "allow"\n}\n\nrule "bad" {\n  roles = ["*"]\n  actions = ["resolve", "write"]\n  outcome = "allow"\n}\n';
    const e = await parseError(text);
    expect(e.message).to.equal(
      'policy.hcl:9: rule "bad": actions: "write" is not an action (register, deregister, resolve, read-lineage, administer, or "*" for any)',
    );
    const outcome = await parseError('default = "permit"\n');
    expect(outcome.message).to.equal(
      'policy.hcl:1: default: "permit" is not an outcome (allow, refuse, defer)',
    );
    const unquoted = await parseError(
      'rule "x" {\n  roles = ["*"]\n  actions = ["*"]\n  outcome = allow\n}\n',
    );
    expect(unquoted.message).to.match(
      /^policy\.hcl:4: rule "x": outcome: "\$\{allow\}" is not an outcome.*write a quoted literal\)$/,
    );
    const missing = await parseError('rule "x" {\n  roles = ["*"]\n  outcome = "allow"\n}\n');
    expect(missing.message).to.match(/^policy\.hcl:1: rule "x": actions is missing/);
  });

  it('names the line of a duplicate rule (HCL and JSON)', async () => {
    const body = '{\n  roles = ["*"]\n  actions = ["*"]\n  outcome = "allow"\n}\n';
    const e = await parseError(`rule "x" ${body}\nrule "y" ${body}\nrule "x" ${body}`);
    expect(e.message).to.equal('policy.hcl:13: rule "x" is defined 2 times: rule names are unique');
    expect(e.code).to.equal('duplicate-rule');
    const json = await parseError(
      '{\n  "rule": {\n    "x": {"roles": ["*"], "actions": ["*"], "outcome": "allow"},\n    "x": {"roles": ["*"], "actions": ["*"], "outcome": "refuse"}\n  }\n}',
      'p.json',
    );
    expect(json.message).to.equal(
      'p.json:4: rule "x" is defined 2 times (lines 3, 4): rule names are unique',
    );
  });

  it('names the line of the first rule over the limit of 256', async () => {
    const rules = Array.from(
      { length: MAX_RULES + 1 },
      (_, i) => `rule "r${i}" {\n  roles = ["*"]\n  actions = ["*"]\n  outcome = "allow"\n}\n`,
    );
    const e = await parseError(rules.join(''));
    expect(e.message).to.equal(
      `policy.hcl:${MAX_RULES * 5 + 1}: the policy has 257 rules: at most 256 are allowed`,
    );
    const ok = await parsePolicyFile(rules.slice(0, MAX_RULES).join(''), 'policy.hcl');
    expect(ok.rules).to.have.length(MAX_RULES);
  });

  it('refuses a file over 64 KiB before parsing, naming the line where it crosses the limit', async () => {
    const line = `${'#'.repeat(99)}\n`; // 100 bytes
    const text = line.repeat(700);
    const e = await parseError(text);
    expect(e.code).to.equal('too-large');
    expect(e.message).to.equal(
      'policy.hcl:656: the file is 70000 bytes, over the 65536-byte (64 KiB) limit of a policy file from this line on',
    );
    const json = await parseError(`{${' '.repeat(MAX_POLICY_BYTES)}}`, 'p.json');
    expect(json.message).to.match(/^p\.json:1: the file is 65538 bytes/);
  });

  it('refuses HCL shapes hcl2json would silently lose, with their line', async () => {
    const body = '{\n  roles = ["*"]\n  actions = ["*"]\n  outcome = "refuse"\n}\n';
    const attr = await parseError(`rule "deny" ${body}rule = {}\n`);
    expect(attr.message).to.equal(
      'policy.hcl:6: rule is a block, not an attribute: write rule "NAME" { ... }',
    );
    const labels = await parseError(`rule "a" "b" ${body}`);
    expect(labels.message).to.match(/^policy\.hcl:1: a rule block takes exactly one label/);
    const mixed = await parseError(`rule "a" ${body}rule ${body}`);
    expect(mixed.message).to.match(/^policy\.hcl:6: a rule block takes exactly one label, .*has 0\)$/);
    const nested = await parseError('rule "a" {\n  roles = ["*"]\n  when {\n  }\n}\n');
    expect(nested.message).to.match(/^policy\.hcl:3: rule "a": unexpected block "when"/);
    const other = await parseError('default = "allow"\ndefault {\n}\n');
    expect(other.message).to.match(/^policy\.hcl:2: unexpected block "default"/);
  });

  it('reads comments, heredocs, single-line blocks and interpolation-like strings without losing lines', async () => {
    const text = [
      '/* a block comment',
      '   over lines */',
      'default = "refuse" // trailing',
      `rule "a" { roles = ["${INTERPOLATION}"] } # "a" sorts first but is fine up to roles`,
      'rule "b" {',
      '  roles = [',
      '    "registrar", # a comment with "quotes" and { braces',
      '  ]',
      '  actions = ["register"]',
      '  tags = [<<EOT',
      'prod',
      'EOT',
      '  ]',
      '  outcome = "allow"',
      '  oops = 1',
      '}',
    ].join('\n');
    const e = await parseError(text);
    expect(e.message).to.match(/^policy\.hcl:4: rule "a": actions is missing/);
    const b = await parseError(
      text.replace(`rule "a" { roles = ["${INTERPOLATION}"] }`, 'rule "a" { oops = "}" }'),
    );
    expect(b.message).to.match(/^policy\.hcl:4: rule "a": unknown attribute "oops"/);
    const c = await parseError(text.replace(`rule "a" { roles = ["${INTERPOLATION}"] }`, ''));
    expect(c.message).to.match(/^policy\.hcl:15: rule "b": unknown attribute "oops"/);
  });

  it('refuses nesting deeper than 64 brackets before parsing, and keeps parsing afterwards', async () => {
    const deep = `default = "refuse"\nx = ${'['.repeat(2000)}${']'.repeat(2000)}\n`;
    const e = await parseError(deep);
    expect(e.code).to.equal('too-deep');
    expect(e.message).to.equal(
      'policy.hcl:2: nesting deeper than 64 levels of brackets: a policy needs at most 3',
    );
    expect((await parsePolicyFile(SAMPLE_HCL, 'policy.hcl')).rules).to.have.length(3);
  });

  it('survives the HCL parser failing (stack overflow in WebAssembly) and parses the next file', async () => {
    const e = await parseError(`a = ${'-'.repeat(60_000)}1\n`);
    expect(e.code).to.equal('parser-failure');
    expect(e.message).to.match(/^policy\.hcl: the HCL parser could not read this file/);
    expect((await parsePolicyFile(SAMPLE_HCL, 'policy.hcl')).rules).to.have.length(3);
  });

  it('quotes a file name that would break the line', async () => {
    const e = await parseError('x = ]', 'evil\nname.hcl');
    expect(e.message).to.match(/^"evil\\u\{a\}name\.hcl":1:5: /);
  });

  it('throws nothing but a one-line PolicyError for arbitrary strings (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 200 }),
          fc.string({ unit: fc.constantFrom(...'{}[]()"=#\n ,:ab-*$%<\\/'.split('')), maxLength: 200 }),
          fc.string({ maxLength: 200 }).map((s) => `{${s}`),
          fc.json().map((s) => s),
        ),
        async (text) => {
          try {
            const doc = await parsePolicyFile(text, 'fuzz.hcl');
            expect(decodePolicy(policyToJson(doc))).to.deep.equal(doc);
          } catch (error) {
            expect(error, String(error)).to.be.instanceOf(PolicyError);
            expect((error as PolicyError).message).to.not.match(/[\r\n]/);
            expect((error as PolicyError).message.startsWith('fuzz.hcl')).to.equal(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('throws nothing but a one-line PolicyError for mutated valid files (property)', async () => {
    const pieces = [
      '{',
      '}',
      '[',
      ']',
      '"',
      '=',
      '#',
      '\n',
      ',',
      ':',
      'rule',
      '"x"',
      '${',
      '<<EOT\n',
      '1',
      ' ',
      '*',
    ];
    const edit = fc.record({
      at: fc.nat(),
      remove: fc.nat({ max: 6 }),
      insert: fc.oneof(fc.constantFrom(...pieces), fc.string({ maxLength: 4 })),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(SAMPLE_HCL, SAMPLE_JSON),
        fc.array(edit, { minLength: 1, maxLength: 4 }),
        async (base, edits) => {
          let text = base;
          for (const { at, remove, insert } of edits) {
            const i = at % (text.length + 1);
            text = text.slice(0, i) + insert + text.slice(i + remove);
          }
          try {
            const doc = await parsePolicyFile(text, 'mutant.hcl');
            expect(policyToJson(decodePolicy(policyToJson(doc)))).to.equal(policyToJson(doc));
          } catch (error) {
            expect(error, String(error)).to.be.instanceOf(PolicyError);
            const e = error as PolicyError;
            expect(e.message).to.not.match(/[\r\n]/);
            expect(e.message.startsWith('mutant.hcl')).to.equal(true);
            if (e.code === 'syntax' || e.code === 'unknown-attribute' || e.code === 'duplicate-rule') {
              expect(e.line, e.message).to.be.a('number');
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('governance policy: compiled evaluator', () => {
  it('exposes the canonical document and JSON it evaluates', () => {
    const input: PolicyInput = { default: 'defer', rules: [rule('b'), rule('a', { outcome: 'refuse' })] };
    const evaluator = compilePolicy(input);
    expect(evaluator.document.rules.map((r) => r.name)).to.deep.equal(['a', 'b']);
    expect(evaluator.json).to.equal(policyToJson(input));
    expect(describePolicy(input)).to.equal('default defer, 2 rules (1 allow, 1 refuse)');
  });
});
