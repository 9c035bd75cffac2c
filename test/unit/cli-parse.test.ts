import { expect } from 'chai';
import {
  parseDuration,
  parseHostPort,
  parseInteger,
  parseKeyValue,
  parseKeyValues,
  parsePort,
} from '../../src/cli/parse.ts';
import { usage } from '../support/cli.ts';

/** Runs `fn`, expects a usage error (exit 2), returns its message. */

describe('cli: durations (Go syntax, units ms s m h)', () => {
  it('reads single and composite durations into milliseconds', () => {
    const cases: [string, number][] = [
      ['0', 0],
      ['500ms', 500],
      ['10s', 10_000],
      ['1m', 60_000],
      ['1h', 3_600_000],
      ['1m30s', 90_000],
      ['1h2m3s4ms', 3_723_004],
      ['1.5s', 1500],
      ['1.5h', 5_400_000],
      ['.5s', 500],
      ['2s500ms', 2500],
    ];
    for (const [text, ms] of cases)
      expect(parseDuration(text, '--ttl', { allowZero: true }), text).to.equal(ms);
  });

  it('refuses a bare number, naming the unit to add', () => {
    expect(usage(() => parseDuration('10', '--ttl'))).to.equal(
      '--ttl "10": missing unit: use e.g. 10s or 10ms',
    );
  });

  it('refuses unknown units, negatives, garbage, fractions of a millisecond and the empty string', () => {
    expect(usage(() => parseDuration('10d', '--ttl'))).to.include('unknown unit "d"');
    expect(usage(() => parseDuration('10ns', '--ttl'))).to.include('unknown unit "ns"');
    expect(usage(() => parseDuration('-1s', '--ttl'))).to.include('negative');
    expect(usage(() => parseDuration('1s junk', '--ttl'))).to.include('a duration is a number with a unit');
    expect(usage(() => parseDuration('s', '--ttl'))).to.include('a duration is a number with a unit');
    expect(usage(() => parseDuration('0.5ms', '--ttl'))).to.include('not a whole number of milliseconds');
    expect(usage(() => parseDuration('', '--ttl'))).to.include('empty');
  });

  it('applies the zero and maximum limits', () => {
    expect(usage(() => parseDuration('0s', '--timeout'))).to.equal('--timeout "0s": must be more than 0');
    expect(parseDuration('0s', '--ttl', { allowZero: true })).to.equal(0);
    expect(usage(() => parseDuration('2h', '--timeout', { maxMs: 3_600_000 }))).to.include(
      'longer than the maximum',
    );
  });
});

describe('cli: K=V pairs', () => {
  it('splits at the first "=", keeping "=" and emptiness in the value', () => {
    expect(parseKeyValue('version=1.4.2', '--meta')).to.deep.equal(['version', '1.4.2']);
    expect(parseKeyValue('query=a=b', '--meta')).to.deep.equal(['query', 'a=b']);
    expect(parseKeyValue('empty=', '--meta')).to.deep.equal(['empty', '']);
  });

  it('refuses a pair without "=" or with an empty key', () => {
    expect(usage(() => parseKeyValue('version', '--meta'))).to.include('--meta "version": no "="');
    expect(usage(() => parseKeyValue('=1', '--meta'))).to.include('--meta "=1": empty key');
  });

  it('collects pairs and refuses a key given twice', () => {
    expect(parseKeyValues(['a=1', 'b=2'], '--meta')).to.deep.equal({ a: '1', b: '2' });
    expect(parseKeyValues([], '--meta')).to.deep.equal({});
    expect(usage(() => parseKeyValues(['a=1', 'a=2'], '--meta'))).to.equal(
      '--meta "a=2": key "a" is given twice',
    );
  });

  it('treats "__proto__" as a plain key', () => {
    const meta = parseKeyValues(['__proto__=x'], '--meta');
    expect(Object.keys(meta)).to.deep.equal(['__proto__']);
    expect(Object.getPrototypeOf(meta)).to.equal(Object.prototype);
  });
});

describe('cli: ports, HOST:PORT and integers', () => {
  it('reads ports, with 0 only where it means something', () => {
    expect(parsePort('8080', '--port', { allowZero: false })).to.equal(8080);
    expect(parsePort('0', '--port', { allowZero: true })).to.equal(0);
    expect(usage(() => parsePort('0', '--port', { allowZero: false }))).to.include(
      'a port is an integer 1..65535',
    );
    expect(usage(() => parsePort('65536', '--port', { allowZero: true }))).to.include('out of range');
    expect(usage(() => parsePort('http', '--port', { allowZero: true }))).to.include('not a port');
    expect(usage(() => parsePort('-1', '--port', { allowZero: true }))).to.include('not a port');
  });

  it('reads HOST:PORT with IPv4, host names and bracketed IPv6', () => {
    for (const text of [
      '127.0.0.1:7400',
      'anchor.example.internal:7400',
      'localhost:1',
      '[::1]:7400',
      '[fd00::7]:0',
    ]) {
      expect(parseHostPort(text, '--grpc', { allowZero: true })).to.equal(text);
    }
  });

  it('refuses HOST:PORT without a port, without a host, with a bare IPv6 host or a bad host', () => {
    expect(usage(() => parseHostPort('127.0.0.1', '--anchor', { allowZero: false }))).to.include('no port');
    expect(usage(() => parseHostPort(':7400', '--anchor', { allowZero: false }))).to.include('no host');
    expect(usage(() => parseHostPort('::1:7400', '--anchor', { allowZero: false }))).to.include(
      'in brackets',
    );
    expect(usage(() => parseHostPort('[nope]:7400', '--anchor', { allowZero: false }))).to.include(
      'not an IPv6',
    );
    expect(usage(() => parseHostPort('bad host:7400', '--anchor', { allowZero: false }))).to.include(
      'neither an IP address nor a host name',
    );
    expect(usage(() => parseHostPort('127.0.0.1:0', '--anchor', { allowZero: false }))).to.include(
      '1..65535',
    );
  });

  it('reads bounded integers', () => {
    expect(parseInteger('3', '--bootstrap-expect', 1, 99)).to.equal(3);
    expect(usage(() => parseInteger('0', '--bootstrap-expect', 1, 99))).to.include(
      'out of range: an integer 1..99',
    );
    expect(usage(() => parseInteger('three', '--bootstrap-expect', 1, 99))).to.include(
      'not an integer 1..99',
    );
    expect(usage(() => parseInteger('1e3', '--limit', 1, Number.MAX_SAFE_INTEGER))).to.include(
      'not an integer ≥ 1',
    );
    expect(
      usage(() => parseInteger('99999999999999999999', '--index', 0, Number.MAX_SAFE_INTEGER)),
    ).to.include('out of range');
  });
});
