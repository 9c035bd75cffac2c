// One real anchor serving a single-anchor scope, driven by clients the project did not write (buf curl,
// by reflection alone) and by its own: watches resumed after a reconnect, heartbeats that cost no log
// write, stale reads, metrics and health.

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { serviceClient } from '../../src/api/proto.ts';
import {
  type AnchorProcess,
  client,
  eventually,
  killAll,
  metricsText,
  metricValue,
  ROOT,
  removeDir,
  startAnchorProcess,
  tempDir,
} from './anchor-harness.ts';

const run = promisify(execFile);
const BUF = join(ROOT, 'node_modules', '.bin', 'buf');

interface WatchEventWire {
  kind: string;
  name: string;
  index: number;
  instances: { id: string; health: string }[];
}

function watch(address: string, request: Record<string, unknown>) {
  const Ctor = serviceClient('Registry');
  const c = new Ctor(address, credentials.createInsecure()) as unknown as {
    Watch(req: unknown): NodeJS.EventEmitter & { cancel(): void };
    close(): void;
  };
  const events: WatchEventWire[] = [];
  const stream = c.Watch(request);
  stream.on('data', (e: WatchEventWire) => events.push(e));
  stream.on('error', () => {});
  return {
    events,
    stop: () => {
      stream.cancel();
      c.close();
    },
  };
}

describe('anchor API (one real process)', function () {
  this.timeout(60_000);
  let dir = '';
  let anchor: AnchorProcess;

  before(async () => {
    dir = await tempDir('api');
    anchor = await startAnchorProcess({ dataDir: dir, scopes: ['dev'] });
    const c = client(anchor.info.grpc, 'Membership');
    await eventually('the single-anchor scope to elect itself', async () => {
      const m = await c.call<{ members: { leader: boolean }[] }>('Members', { scope: 'dev' });
      return m.members[0]?.leader === true ? true : undefined;
    });
    c.close();
  });

  after(async () => {
    await killAll();
    await removeDir(dir);
  });

  it('lists every service by reflection and takes Register and Resolve from buf curl', async () => {
    const base = `http://${anchor.info.grpc}`;
    const flags = ['curl', '--protocol', 'grpc', '--http2-prior-knowledge'];
    const listed = await run(BUF, [...flags, '--list-services', base]);
    const services = listed.stdout.trim().split('\n').sort();
    // The client port serves the client API; Consensus lives on the mutually authenticated peer port.
    expect(services).to.include.members(['aq.v1.Membership', 'aq.v1.Registry']);
    expect(services).to.not.include('aq.v1.Consensus');
    const methods = await run(BUF, [...flags, '--list-methods', base]);
    for (const m of ['Register', 'Deregister', 'Heartbeat', 'Resolve', 'List', 'Watch']) {
      expect(methods.stdout).to.include(`aq.v1.Registry/${m}`);
    }
    const body = JSON.stringify({
      name: 'dev/payments',
      instance: { id: 'p-1', address: '10.0.0.9', port: 8443, tags: ['canary'], meta: { zone: 'b' } },
    });
    const registered = await run(BUF, [...flags, '-d', body, `${base}/aq.v1.Registry/Register`]);
    const receipt = (JSON.parse(registered.stdout) as { receipt: { anchor: string; index: string } }).receipt;
    expect(receipt.anchor).to.equal(anchor.info.peerId);
    expect(Number(receipt.index)).to.be.greaterThan(0);
    const resolved = await run(BUF, [
      ...flags,
      '-d',
      '{"name":"dev/payments"}',
      `${base}/aq.v1.Registry/Resolve`,
    ]);
    const answer = JSON.parse(resolved.stdout) as {
      instances: { id: string; port: number; tags: string[] }[];
    };
    expect(answer.instances).to.have.length(1);
    expect(answer.instances[0]).to.include({ id: 'p-1', port: 8443 });
  });

  it('resumes a watch from the last index seen, with nothing missed and nothing repeated', async () => {
    const name = 'dev/queue';
    const c = client(anchor.info.grpc, 'Registry');
    try {
      const first = watch(anchor.info.grpc, { name, afterIndex: 0 });
      await eventually('the initial state marker', async () =>
        first.events.some((e) => e.kind === 'KIND_SYNCED') ? true : undefined,
      );
      await c.call('Register', { name, instance: { id: 'q-1', address: '10.0.0.1', port: 1 } });
      await eventually('the first change', async () =>
        first.events.some((e) => e.kind === 'KIND_CHANGE') ? true : undefined,
      );
      const lastSeen = Math.max(...first.events.filter((e) => e.kind === 'KIND_CHANGE').map((e) => e.index));
      first.stop(); // the client goes away; two changes happen meanwhile
      await c.call('Register', { name, instance: { id: 'q-2', address: '10.0.0.2', port: 2 } });
      await c.call('Deregister', { name, id: 'q-1' });
      const resumed = watch(anchor.info.grpc, { name, afterIndex: lastSeen });
      await eventually('both missed changes', async () => (resumed.events.length >= 2 ? true : undefined));
      await new Promise((r) => setTimeout(r, 200));
      resumed.stop();
      expect(resumed.events.map((e) => e.kind)).to.deep.equal(['KIND_CHANGE', 'KIND_CHANGE']);
      expect(resumed.events.map((e) => e.instances.map((i) => i.id))).to.deep.equal([
        ['q-1', 'q-2'],
        ['q-2'],
      ]);
      expect(resumed.events.every((e) => e.index > lastSeen)).to.equal(true);
    } finally {
      c.close();
    }
  });

  it('watches a prefix: the current state first, then changes under it only', async () => {
    const c = client(anchor.info.grpc, 'Registry');
    try {
      await c.call('Register', {
        name: 'dev/shop/cart',
        instance: { id: 'c-1', address: '10.0.0.3', port: 3 },
      });
      const w = watch(anchor.info.grpc, { name: 'dev/shop', prefix: true, afterIndex: 0 });
      await eventually('the synced marker', async () =>
        w.events.some((e) => e.kind === 'KIND_SYNCED') ? true : undefined,
      );
      await c.call('Register', { name: 'dev/shopping', instance: { id: 'x', address: '10.0.0.4', port: 4 } });
      await c.call('Register', { name: 'dev/shop/pay', instance: { id: 'p', address: '10.0.0.5', port: 5 } });
      await eventually('the change under the prefix', async () =>
        w.events.some((e) => e.name === 'dev/shop/pay') ? true : undefined,
      );
      w.stop();
      expect(w.events.filter((e) => e.kind === 'KIND_STATE').map((e) => e.name)).to.deep.equal([
        'dev/shop/cart',
      ]);
      expect(w.events.map((e) => e.name)).to.not.include('dev/shopping');
    } finally {
      c.close();
    }
  });

  it('watches every name of its one scope with an empty prefix', async () => {
    const w = watch(anchor.info.grpc, { name: '', prefix: true, afterIndex: 0 });
    await eventually('the synced marker', async () =>
      w.events.some((e) => e.kind === 'KIND_SYNCED') ? true : undefined,
    );
    w.stop();
    const names = w.events.filter((e) => e.kind === 'KIND_STATE').map((e) => e.name);
    expect(names).to.include.members(['dev/payments', 'dev/shop/cart', 'dev/shopping']);
  });

  it('ends a watch of an invalid name at once with INVALID_ARGUMENT', async () => {
    const Ctor = serviceClient('Registry');
    const c = new Ctor(anchor.info.grpc, credentials.createInsecure()) as unknown as {
      Watch(req: unknown): NodeJS.EventEmitter;
      close(): void;
    };
    const error = await new Promise<{ code: number; details: string }>((resolve) => {
      c.Watch({ name: 'dev/Bad' })
        .on('error', resolve)
        .on('data', () => {});
    });
    c.close();
    expect(error.code).to.equal(3);
    expect(error.details).to.include('uppercase');
  });

  it('refuses an empty-prefix watch on an anchor that serves several scopes, naming them', async () => {
    const dir2 = await tempDir('api2');
    try {
      const two = await startAnchorProcess({ dataDir: dir2, scopes: ['alpha', 'beta'] });
      const m = client(two.info.grpc, 'Membership');
      for (const scope of ['alpha', 'beta']) {
        await eventually(`scope ${scope} to be served`, async () => {
          const r = await m.call<{ members: { leader: boolean }[] }>('Members', { scope });
          return r.members.some((x) => x.leader) ? true : undefined;
        });
      }
      m.close();
      const Ctor = serviceClient('Registry');
      const c = new Ctor(two.info.grpc, credentials.createInsecure()) as unknown as {
        Watch(req: unknown): NodeJS.EventEmitter;
        close(): void;
      };
      const error = await new Promise<{ code: number; details: string }>((resolve) => {
        c.Watch({ name: '', prefix: true })
          .on('error', resolve)
          .on('data', () => {});
      });
      c.close();
      expect(error.code).to.equal(3); // INVALID_ARGUMENT
      expect(error.details, error.details).to.include('serves 2 scopes (alpha, beta)');
    } finally {
      await removeDir(dir2);
    }
  });

  it('takes heartbeats without a log write, and answers stale reads locally', async () => {
    const name = 'dev/beat';
    const c = client(anchor.info.grpc, 'Registry');
    try {
      await c.call('Register', {
        name,
        instance: { id: 'b-1', address: '10.0.0.6', port: 6, ttlMs: 10_000 },
      });
      const before = metricValue(await metricsText(anchor.info.http), 'aq_raft_commit_index{scope="dev"}');
      for (let i = 0; i < 50; i++) {
        const hb = await c.call<{ health: string }>('Heartbeat', { name, id: 'b-1' });
        expect(hb.health).to.equal('HEALTH_PASSING');
      }
      const after = metricValue(await metricsText(anchor.info.http), 'aq_raft_commit_index{scope="dev"}');
      expect(before).to.be.a('number');
      expect(after).to.equal(before);
      const stale = await c.call<{ instances: { id: string }[] }>('Resolve', {
        name,
        consistency: 'CONSISTENCY_STALE',
      });
      expect(stale.instances.map((i) => i.id)).to.deep.equal(['b-1']);
      const err = await c.call('Heartbeat', { name, id: 'nope' }).catch((e: Error) => e);
      expect(String((err as Error).message)).to.match(/NOT_FOUND.*no instance nope with a TTL check/);
    } finally {
      c.close();
    }
  });

  it('serves /health and the metrics the issue names', async () => {
    const health = await fetch(`http://${anchor.info.http}/health`);
    expect(health.status).to.equal(200);
    const text = await metricsText(anchor.info.http);
    for (const m of [
      'aq_raft_term',
      'aq_raft_commit_index',
      'aq_raft_applied_index',
      'aq_raft_apply_lag',
      'aq_proposals_total',
      'aq_fsync_seconds_bucket',
      'aq_grpc_request_seconds_bucket',
    ]) {
      expect(text, m).to.include(m);
    }
  });
});
