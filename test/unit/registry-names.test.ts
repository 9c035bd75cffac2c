import { expect } from 'chai';
import fc from 'fast-check';
import {
  classifyAddress,
  type Instance,
  isUnder,
  MAX_ADDRESS_BYTES,
  MAX_INSTANCE_ID_LENGTH,
  MAX_LABEL_LENGTH,
  MAX_META_KEY_LENGTH,
  MAX_META_KEYS,
  MAX_META_VALUE_BYTES,
  MAX_NAME_BYTES,
  MAX_TAG_BYTES,
  MAX_TAGS,
  MAX_TTL_MS,
  MIN_TTL_MS,
  parentOf,
  validateInstance,
  validateName,
} from '../../src/registry/index.ts';

function nameError(name: string) {
  const error = validateName(name);
  expect(error, `expected ${JSON.stringify(name)} to be rejected`).to.not.equal(null);
  return error!;
}

describe('registry names (DESIGN.md §2)', () => {
  it('accepts lowercase [a-z0-9-] labels separated by "/"', () => {
    for (const name of ['eu', 'eu-central/payments/checkout', '0/a-b/9z', 'a/b/c/d/e/f', 'x1-2-3']) {
      expect(validateName(name), name).to.equal(null);
    }
  });

  it('rejects the empty name with code "empty"', () => {
    const error = nameError('');
    expect(error.code).to.equal('empty');
    expect(error.message).to.equal(
      `name is empty: a name is one or more '/'-separated labels, such as "eu-central/payments"`,
    );
  });

  it('accepts a name of exactly MAX_NAME_BYTES (255) bytes and rejects 256 with code "too-long"', () => {
    const label = 'a'.repeat(MAX_LABEL_LENGTH); // 63
    const exact = [label, label, label, 'b'.repeat(MAX_NAME_BYTES - 3 * 64)].join('/');
    expect(exact.length).to.equal(255);
    expect(validateName(exact)).to.equal(null);
    const error = nameError(`${exact}c`);
    expect(error.code).to.equal('too-long');
    // Long strings are cut in messages (after 100 characters) so that a hostile name cannot flood a log line.
    expect(error.message).to.match(
      /^name "(a{63}\/){1}a{36}…" is 256 bytes long: a name is at most 255 bytes$/,
    );
  });

  it('measures the name limit in UTF-8 bytes, not characters (128 × "é" = 256 bytes is too long)', () => {
    const error = nameError('é'.repeat(128));
    expect(error.code).to.equal('too-long');
    expect(error.message).to.contain('is 256 bytes long');
  });

  it('rejects a leading "/", a trailing "/" and "//" with code "empty-label", each with its own message', () => {
    const leading = nameError('/eu/payments');
    expect(leading.code).to.equal('empty-label');
    expect(leading.message).to.equal(
      `name "/eu/payments" starts with '/': a name has no leading or trailing '/'`,
    );
    const trailing = nameError('eu/payments/');
    expect(trailing.code).to.equal('empty-label');
    expect(trailing.message).to.equal(
      `name "eu/payments/" ends with '/': a name has no leading or trailing '/'`,
    );
    const double = nameError('eu//payments');
    expect(double.code).to.equal('empty-label');
    expect(double.message).to.equal(
      `name "eu//payments" has an empty label between two '/': labels are 1..63 characters`,
    );
    expect(nameError('/').code).to.equal('empty-label');
  });

  it('accepts a 63-character label and rejects a 64-character one with code "label-too-long"', () => {
    expect(validateName(`eu/${'a'.repeat(63)}`)).to.equal(null);
    const long = 'a'.repeat(64);
    const error = nameError(`eu/${long}`);
    expect(error.code).to.equal('label-too-long');
    expect(error.message).to.equal(
      `label "${long}" in name "eu/${long}" is 64 characters long: labels are 1..63 characters`,
    );
  });

  it('names the uppercase letter and the rule (the brief`s example message, word for word)', () => {
    const error = nameError('eu/Pay');
    expect(error.code).to.equal('bad-character');
    expect(error.message).to.equal(
      `label "Pay" in name "eu/Pay" has an uppercase letter 'P': labels are lowercase [a-z0-9-]`,
    );
  });

  it('names any other disallowed character, escaping invisible and non-ASCII ones', () => {
    expect(nameError('eu/pa_y').message).to.equal(
      `label "pa_y" in name "eu/pa_y" has a character '_' that is not allowed: labels are lowercase [a-z0-9-]`,
    );
    expect(nameError('eu.central').message).to.contain(`has a character '.' that is not allowed`);
    expect(nameError('eu central').message).to.contain(`has a character ' ' (space) that is not allowed`);
    expect(nameError('café').message).to.equal(
      `label "caf\\u{e9}" in name "caf\\u{e9}" has a character U+00E9 that is not allowed: labels are lowercase [a-z0-9-]`,
    );
    const newline = nameError('eu/pay\nx');
    expect(newline.code).to.equal('bad-character');
    expect(newline.message).to.contain('U+000A').and.not.contain('\n');
    expect(nameError('eu/😀').message).to.contain('U+1F600');
  });

  it('rejects a label that starts or ends with "-" (like DNS labels) with code "bad-hyphen"', () => {
    const start = nameError('eu/-pay');
    expect(start.code).to.equal('bad-hyphen');
    expect(start.message).to.equal(
      `label "-pay" in name "eu/-pay" starts with '-': like DNS labels, labels do not start or end with '-'`,
    );
    const end = nameError('eu-/pay');
    expect(end.code).to.equal('bad-hyphen');
    expect(end.message).to.contain(`label "eu-" in name "eu-/pay" ends with '-'`);
    expect(nameError('-').code).to.equal('bad-hyphen');
    expect(validateName('e-u/p--y')).to.equal(null);
  });

  it('reports the first failing label, left to right', () => {
    expect(nameError('Eu/-pay').code).to.equal('bad-character');
    expect(nameError('-eu/Pay').code).to.equal('bad-hyphen');
  });

  it('gives every string a verdict with a one-line message of bounded length (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (name) => {
        const error = validateName(name);
        if (error === null) return;
        expect(error.message).to.not.match(/[\n\r\u2028\u2029]/);
        expect(error.message.length).to.be.below(500);
      }),
      { numRuns: 300 },
    );
  });

  it('parentOf drops the last label and returns null for a one-label name', () => {
    expect(parentOf('eu-central/payments/checkout')).to.equal('eu-central/payments');
    expect(parentOf('eu-central/payments')).to.equal('eu-central');
    expect(parentOf('eu-central')).to.equal(null);
  });

  it('isUnder is a label-wise prefix test: "eu" is not a prefix of "europe/x"', () => {
    expect(isUnder('eu/payments/checkout', 'eu')).to.equal(true);
    expect(isUnder('eu/payments/checkout', 'eu/payments')).to.equal(true);
    expect(isUnder('eu/payments', 'eu/payments')).to.equal(true);
    expect(isUnder('europe/x', 'eu')).to.equal(false);
    expect(isUnder('eu/paymentsx', 'eu/payments')).to.equal(false);
    expect(isUnder('eu', 'eu/payments')).to.equal(false);
    expect(isUnder('us/x', 'eu')).to.equal(false);
    expect(isUnder('anything/at/all', '')).to.equal(true);
  });
});

const good: Instance = {
  id: 'checkout-1',
  address: '10.0.0.7',
  port: 8080,
  tags: ['v1', 'primary'],
  meta: { version: '1.2.3', zone_id: 'a' },
  health: 'passing',
  ttlMs: 0,
};

function instanceError(patch: Partial<Record<keyof Instance, unknown>>) {
  const error = validateInstance({ ...good, ...patch } as Instance);
  expect(error, `expected ${JSON.stringify(patch)} to be rejected`).to.not.equal(null);
  return error!;
}

describe('registry instance validation', () => {
  it('accepts a well-formed instance', () => {
    expect(validateInstance(good)).to.equal(null);
  });

  it('accepts ids of 1..128 printable ASCII characters and rejects empty, longer, spaces and non-ASCII ids', () => {
    expect(validateInstance({ ...good, id: 'x' })).to.equal(null);
    expect(validateInstance({ ...good, id: '!'.repeat(MAX_INSTANCE_ID_LENGTH) })).to.equal(null);
    expect(validateInstance({ ...good, id: 'a:b/c@d~' })).to.equal(null);
    expect(instanceError({ id: '' }).message).to.equal(
      'instance id is empty: an instance id is 1..128 printable ASCII characters without spaces',
    );
    const long = instanceError({ id: 'a'.repeat(129) });
    expect(long.code).to.equal('bad-id');
    expect(long.message).to.contain('is 129 characters long');
    expect(instanceError({ id: 'a b' }).message).to.equal(
      `instance id "a b" has a character ' ' (space) at position 1: an instance id is 1..128 printable ASCII characters without spaces`,
    );
    expect(instanceError({ id: 'a\tb' }).message).to.contain('U+0009 at position 1');
    expect(instanceError({ id: 'ü' }).code).to.equal('bad-id');
    expect(instanceError({ id: 42 }).code).to.equal('bad-id');
  });

  it('accepts IPv4, IPv6 and host name addresses', () => {
    const cases: [string, string][] = [
      ['10.0.0.7', 'ipv4'],
      ['0.0.0.0', 'ipv4'],
      ['255.255.255.255', 'ipv4'],
      ['::1', 'ipv6'],
      ['::', 'ipv6'],
      ['fd00::7', 'ipv6'],
      ['2001:db8:0:0:0:0:0:1', 'ipv6'],
      ['::ffff:10.0.0.1', 'ipv6'],
      ['fe80::1%eth0', 'ipv6'],
      ['localhost', 'hostname'],
      ['api.example.internal', 'hostname'],
      ['api.example.internal.', 'hostname'],
      ['my_container-1.local', 'hostname'],
      ['1e100.net', 'hostname'],
    ];
    for (const [address, kind] of cases) {
      expect(classifyAddress(address), address).to.equal(kind);
      expect(validateInstance({ ...good, address }), address).to.equal(null);
    }
  });

  it('rejects addresses that are neither an IP address nor a host name, with code "bad-address"', () => {
    for (const address of [
      '256.1.1.1',
      '01.2.3.4',
      '1.2.3',
      '1.2.3.4.5',
      'a..b',
      '-a.example',
      'a-.example',
      'exa mple',
      ':::1',
      '1::2::3',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7',
      '12345::1',
      'http://x',
      'host:80',
      '.',
      `${'a'.repeat(64)}.example`,
    ]) {
      const error = instanceError({ address });
      expect(error.code, address).to.equal('bad-address');
    }
    expect(instanceError({ address: 'exa mple' }).message).to.equal(
      'instance "checkout-1" address "exa mple" is neither an IP address nor a host name: use e.g. 10.0.0.7, fd00::7 or api.example.internal',
    );
    expect(instanceError({ address: '' }).message).to.equal(
      'instance "checkout-1" has no address: an address is an IP address or a host name',
    );
    const long = instanceError({ address: `${'a.'.repeat(128)}b` });
    expect(long.message).to.contain(`is 257 bytes long: an address is at most ${MAX_ADDRESS_BYTES} bytes`);
  });

  it('accepts ports 0..65535 and rejects out-of-range and fractional ports with code "bad-port"', () => {
    expect(validateInstance({ ...good, port: 0 })).to.equal(null);
    expect(validateInstance({ ...good, port: 65535 })).to.equal(null);
    for (const port of [65536, -1, 1.5, Number.NaN, '80']) {
      expect(instanceError({ port }).code, String(port)).to.equal('bad-port');
    }
    expect(instanceError({ port: 65536 }).message).to.equal(
      'instance "checkout-1" port 65536 is not valid: a port is an integer 0..65535',
    );
  });

  it('accepts up to 64 tags of up to 255 bytes and rejects more, longer or ill-formed ones', () => {
    expect(validateInstance({ ...good, tags: Array.from({ length: MAX_TAGS }, (_, i) => `t${i}`) })).to.equal(
      null,
    );
    expect(validateInstance({ ...good, tags: ['x'.repeat(MAX_TAG_BYTES), ''] })).to.equal(null);
    const many = instanceError({ tags: Array.from({ length: 65 }, (_, i) => `t${i}`) });
    expect(many.code).to.equal('too-many-tags');
    expect(many.message).to.equal('instance "checkout-1" has 65 tags: at most 64 tags are allowed');
    const long = instanceError({ tags: ['ok', 'é'.repeat(128)] });
    expect(long.code).to.equal('bad-tag');
    expect(long.message).to.match(
      /^instance "checkout-1" tag #2 ".*" is 256 bytes long: a tag is well-formed/,
    );
    expect(instanceError({ tags: ['\ud800'] }).message).to.contain('has a lone UTF-16 surrogate');
    expect(instanceError({ tags: [7] }).code).to.equal('bad-tag');
    expect(instanceError({ tags: 'v1' }).code).to.equal('bad-tag');
  });

  it('accepts up to 64 meta keys of [A-Za-z0-9_-]{1,128} with values up to 512 bytes, and rejects the rest', () => {
    const full = Object.fromEntries(Array.from({ length: MAX_META_KEYS }, (_, i) => [`k${i}`, 'v']));
    expect(validateInstance({ ...good, meta: full })).to.equal(null);
    expect(
      validateInstance({
        ...good,
        meta: { ['K'.repeat(MAX_META_KEY_LENGTH)]: 'x'.repeat(MAX_META_VALUE_BYTES) },
      }),
    ).to.equal(null);
    expect(validateInstance({ ...good, meta: JSON.parse('{"__proto__":"x"}') })).to.equal(null);
    const many = instanceError({ meta: { ...full, extra: 'v' } });
    expect(many.code).to.equal('too-many-meta');
    expect(many.message).to.equal('instance "checkout-1" has 65 meta keys: at most 64 are allowed');
    for (const key of ['', 'a.b', 'a b', 'k'.repeat(129), 'ключ']) {
      expect(instanceError({ meta: { [key]: 'v' } }).code, key).to.equal('bad-meta-key');
    }
    expect(instanceError({ meta: { 'a.b': 'v' } }).message).to.equal(
      `instance "checkout-1" meta key "a.b" has a character '.' that is not allowed: meta keys are 1..128 characters [A-Za-z0-9_-]`,
    );
    const value = instanceError({ meta: { k: 'x'.repeat(513) } });
    expect(value.code).to.equal('bad-meta-value');
    expect(value.message).to.contain('instance "checkout-1" meta "k" value is 513 bytes long');
    expect(instanceError({ meta: { k: 1 } }).code).to.equal('bad-meta-value');
    expect(instanceError({ meta: ['a'] }).code).to.equal('bad-meta-key');
  });

  it('accepts the three health values only', () => {
    for (const health of ['passing', 'warning', 'critical'] as const) {
      expect(validateInstance({ ...good, health })).to.equal(null);
    }
    const error = instanceError({ health: 'ok' });
    expect(error.code).to.equal('bad-health');
    expect(error.message).to.equal(
      'instance "checkout-1" health "ok" is not one of passing, warning, critical',
    );
  });

  it('accepts a TTL of 0 (no TTL check) or 1 s..24 h in whole milliseconds, with a one-line reason otherwise', () => {
    expect(MIN_TTL_MS).to.equal(1_000);
    expect(MAX_TTL_MS).to.equal(86_400_000);
    for (const ttlMs of [0, 1_000, 1_001, 30_000, 86_400_000]) {
      expect(validateInstance({ ...good, ttlMs }), String(ttlMs)).to.equal(null);
    }
    const error = instanceError({ ttlMs: 999 });
    expect(error.code).to.equal('bad-ttl');
    expect(error.message).to.equal(
      'instance "checkout-1" TTL 999 ms is not valid: a TTL is 0 (no TTL check) or an integer 1000..86400000 ms (1 s to 24 h)',
    );
    for (const ttlMs of [
      1,
      -1,
      86_400_001,
      1500.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      '5000',
      undefined,
    ]) {
      const e = instanceError({ ttlMs });
      expect(e.code, String(ttlMs)).to.equal('bad-ttl');
      expect(e.message).to.not.contain('\n');
    }
  });
});
