import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { DEFAULT_ANCHOR_CONFIG } from '../../src/anchor/config.ts';
import { buildAnchorConfig, type ConfigFile, readConfigFile } from '../../src/cli/anchor-config.ts';
import { usage } from '../support/cli.ts';

const file = (content: unknown): ConfigFile => ({ path: '/etc/aq/anchor.json', content });

describe('cli: aq anchor start configuration (flags > --config file > defaults)', () => {
  it('fills every unset value from DEFAULT_ANCHOR_CONFIG', () => {
    const { config, dns, warnings } = buildAnchorConfig({ dataDir: '/var/lib/aq' });
    expect(config).to.deep.equal({ ...DEFAULT_ANCHOR_CONFIG, dataDir: '/var/lib/aq' });
    expect(dns).to.equal(null);
    expect(warnings).to.deep.equal([]);
  });

  it('takes every key from the file, with the flag names as keys', () => {
    const { config } = buildAnchorConfig(
      {},
      file({
        'data-dir': '/data',
        grpc: '0.0.0.0:0',
        peer: '10.0.0.1:7401',
        http: '[::1]:0',
        p2p: '/ip4/0.0.0.0/tcp/0',
        bootstrap: ['/ip4/10.0.0.2/tcp/7403/p2p/12D3KooWabc'],
        region: 'eu-central',
        scope: ['eu-central', 'eu-central/payments'],
        'bootstrap-expect': 3,
        'log-level': 'debug',
        'cache-mb': 256,
        'snapshot-count': 1000,
      }),
    );
    expect(config).to.deep.equal({
      dataDir: '/data',
      grpc: '0.0.0.0:0',
      grpcTls: null,
      peer: '10.0.0.1:7401',
      http: '[::1]:0',
      p2p: '/ip4/0.0.0.0/tcp/0',
      bootstrap: ['/ip4/10.0.0.2/tcp/7403/p2p/12D3KooWabc'],
      region: 'eu-central',
      scopes: ['eu-central', 'eu-central/payments'],
      geneses: [],
      bootstrapExpect: 3,
      logLevel: 'debug',
      cacheMb: 256,
      snapshotCount: 1000,
    });
  });

  it('lets flags override the file, and a repeated flag replace the whole list', () => {
    const { config } = buildAnchorConfig(
      { dataDir: '/flag', scope: ['us-east'], bootstrapExpect: '5' },
      file({ 'data-dir': '/file', scope: ['eu', 'eu/x'], 'bootstrap-expect': 3, region: 'eu' }),
    );
    expect(config.dataDir).to.equal('/flag');
    expect(config.scopes).to.deep.equal(['us-east']);
    expect(config.bootstrapExpect).to.equal(5);
    expect(config.region).to.equal('eu'); // not given as a flag: the file's value stands
  });

  it('accepts a single string where the file takes a list', () => {
    const { config } = buildAnchorConfig({}, file({ 'data-dir': '/d', scope: 'eu' }));
    expect(config.scopes).to.deep.equal(['eu']);
  });

  it('refuses an unknown key, naming the key and the file', () => {
    const message = usage(() => buildAnchorConfig({}, file({ 'data-dir': '/d', datadir: '/x' })));
    expect(message).to.include('config file "/etc/aq/anchor.json"');
    expect(message).to.include('unknown key "datadir"');
  });

  it('refuses values of the wrong type, naming the key and the file', () => {
    expect(
      usage(() => buildAnchorConfig({}, file({ 'data-dir': '/d', 'bootstrap-expect': 'three' }))),
    ).to.equal(
      '"bootstrap-expect" in config file "/etc/aq/anchor.json": must be an integer, got the string "three"',
    );
    expect(usage(() => buildAnchorConfig({}, file({ 'data-dir': '/d', 'cache-mb': 1.5 })))).to.include(
      'must be an integer, got the number 1.5',
    );
    expect(usage(() => buildAnchorConfig({}, file({ 'data-dir': 7 })))).to.include(
      'must be a string, got the number 7',
    );
    expect(usage(() => buildAnchorConfig({}, file({ 'data-dir': '/d', scope: ['eu', 3] })))).to.include(
      'must be a list of strings, got a mixed list',
    );
    expect(usage(() => buildAnchorConfig({}, file({ 'data-dir': '/d', scope: null })))).to.include(
      'got null',
    );
    expect(usage(() => buildAnchorConfig({}, file(['data-dir'])))).to.include('not a JSON object');
  });

  it('checks values from the file with the same rules as flags, saying where the value came from', () => {
    expect(usage(() => buildAnchorConfig({}, file({ 'data-dir': '/d', scope: ['Eu'] })))).to.include(
      '"scope" in config file "/etc/aq/anchor.json": label "Eu" in name "Eu" has an uppercase letter',
    );
    expect(usage(() => buildAnchorConfig({}, file({ 'data-dir': '/d', 'bootstrap-expect': 0 })))).to.include(
      '"bootstrap-expect" in config file "/etc/aq/anchor.json" "0": out of range',
    );
    expect(usage(() => buildAnchorConfig({}, file({ 'data-dir': '/d', grpc: 'localhost' })))).to.include(
      'no port',
    );
  });

  it('requires --data-dir, from a flag or the file', () => {
    expect(usage(() => buildAnchorConfig({}))).to.include('--data-dir: required');
    expect(usage(() => buildAnchorConfig({}, file({ scope: ['eu'] })))).to.include('--data-dir: required');
    expect(usage(() => buildAnchorConfig({ dataDir: ' ' }))).to.include('empty');
  });

  it('validates scope names with validateName, and refuses duplicates', () => {
    expect(usage(() => buildAnchorConfig({ dataDir: '/d', scope: ['eu', 'eu//x'] }))).to.include(
      '--scope: name "eu//x" has an empty label',
    );
    expect(usage(() => buildAnchorConfig({ dataDir: '/d', scope: ['eu', 'eu'] }))).to.equal(
      '--scope "eu": given twice',
    );
  });

  it('checks addresses, multiaddrs, numbers and the log level', () => {
    expect(usage(() => buildAnchorConfig({ dataDir: '/d', grpc: '127.0.0.1:70000' }))).to.include('--grpc');
    expect(usage(() => buildAnchorConfig({ dataDir: '/d', peer: 'x' }))).to.include('--peer "x"');
    expect(usage(() => buildAnchorConfig({ dataDir: '/d', p2p: '127.0.0.1:7403' }))).to.include(
      'not a multiaddr',
    );
    expect(
      usage(() => buildAnchorConfig({ dataDir: '/d', bootstrap: ['/ip4/1.2.3.4/tcp/1', 'x'] })),
    ).to.include('--bootstrap "x": not a multiaddr');
    expect(usage(() => buildAnchorConfig({ dataDir: '/d', cacheMb: '0' }))).to.include(
      '--cache-mb "0": out of range',
    );
    expect(usage(() => buildAnchorConfig({ dataDir: '/d', logLevel: 'verbose' }))).to.equal(
      '--log-level "verbose": not one of fatal, error, warn, info, debug, trace, silent',
    );
    expect(usage(() => buildAnchorConfig({ dataDir: '/d', region: 'EU' }))).to.include('--region');
  });

  it('accepts --dns and reports it as not served yet (a warning, not an error)', () => {
    const { config, dns, warnings } = buildAnchorConfig({ dataDir: '/d', dns: '127.0.0.1:8600' });
    expect(dns).to.equal('127.0.0.1:8600');
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.include('not served yet');
    expect(config).to.not.have.property('dns');
    expect(usage(() => buildAnchorConfig({ dataDir: '/d', dns: 'nope' }))).to.include('--dns "nope"');
  });

  describe('reading the file', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'aq-cli-config-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('parses JSON and keeps the path for messages', () => {
      const path = join(dir, 'ok.json');
      writeFileSync(path, '{"data-dir": "/d", "scope": ["eu"]}');
      expect(readConfigFile(path)).to.deep.equal({ path, content: { 'data-dir': '/d', scope: ['eu'] } });
    });

    it('refuses a missing file and malformed JSON as usage errors naming the file', () => {
      expect(usage(() => readConfigFile(join(dir, 'missing.json')))).to.include(
        'cannot read it: no such file',
      );
      const bad = join(dir, 'bad.json');
      writeFileSync(bad, '{"data-dir": ');
      const message = usage(() => readConfigFile(bad));
      expect(message).to.include(`config file "${bad}"`);
      expect(message).to.include('not valid JSON');
    });
  });
});
