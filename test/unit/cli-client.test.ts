// The client side of `aq` against an in-process fake anchor (a real grpc-js server on loopback serving
// aq.v1.Registry and aq.v1.Membership from canned answers), plus the status → exit code map and retries.

import { type AddressInfo, createServer, type Socket } from 'node:net';
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceError,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import { expect } from 'chai';
import { serviceClient } from '../../src/api/proto.ts';
import {
  AnchorClient,
  callWithRetry,
  exitCodeForStatus,
  followWatch,
  remoteError,
} from '../../src/cli/client.ts';
import { watch } from '../../src/cli/commands.ts';
import { CliError, EXIT } from '../../src/cli/errors.ts';
import { run } from '../../src/cli/program.ts';
import type { Target } from '../../src/cli/requests.ts';
import { capture } from '../support/cli.ts';

function serviceError(code: number, details: string, metadata = new Metadata()): ServiceError {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata });
}

const TARGET: Target = { address: '127.0.0.1:7400', from: 'default', timeoutMs: 10_000 };

describe('cli: gRPC status → exit code (DESIGN.md §5)', () => {
  it('maps INVALID_ARGUMENT to 2, PERMISSION_DENIED to 3, the DEFER statuses to 4, the rest to 1', () => {
    const expected: Record<number, number> = {
      [status.OK]: 0,
      [status.INVALID_ARGUMENT]: 2,
      [status.PERMISSION_DENIED]: 3,
      [status.UNAVAILABLE]: 4,
      [status.DEADLINE_EXCEEDED]: 4,
      [status.FAILED_PRECONDITION]: 4,
    };
    for (let code = 0; code <= 16; code++) {
      expect(exitCodeForStatus(code), status[code]).to.equal(expected[code] ?? 1);
    }
  });

  it('words each outcome as one line: what failed, why, what to do', () => {
    const invalid = remoteError(serviceError(status.INVALID_ARGUMENT, 'name "x" is bad'), 'register', TARGET);
    expect([invalid.exitCode, invalid.message, invalid.hint]).to.deep.equal([
      2,
      'register: name "x" is bad',
      null,
    ]);

    const refused = remoteError(
      serviceError(status.PERMISSION_DENIED, 'outside the credential'),
      'register',
      TARGET,
    );
    expect([refused.exitCode, refused.message]).to.deep.equal([
      3,
      'register: refused: outside the credential',
    ]);

    const noLeader = remoteError(serviceError(status.UNAVAILABLE, 'no leader\nnow'), 'register', TARGET);
    expect(noLeader.exitCode).to.equal(4);
    expect(noLeader.message).to.equal(
      "register: deferred: the anchor at 127.0.0.1:7400 or its scope's leader is unavailable now (no leader now)",
    );
    expect(noLeader.hint).to.equal('retrying is safe');

    const late = remoteError(serviceError(status.DEADLINE_EXCEEDED, 'Deadline exceeded'), 'register', TARGET);
    expect(late.exitCode).to.equal(4);
    expect(late.message).to.include('no answer from the anchor at 127.0.0.1:7400 within 10s');

    const trailer = new Metadata();
    trailer.set('aq-leader', '10.0.0.9:7400');
    const follower = remoteError(
      serviceError(status.FAILED_PRECONDITION, 'not the leader', trailer),
      'x',
      TARGET,
    );
    expect([follower.exitCode, follower.message]).to.deep.equal([
      4,
      'x: deferred: not the leader; the leader is at 10.0.0.9:7400',
    ]);

    const missing = remoteError(serviceError(status.NOT_FOUND, 'no scope owns "zz"'), 'resolve', TARGET);
    expect([missing.exitCode, missing.message]).to.deep.equal([1, 'resolve: NOT_FOUND: no scope owns "zz"']);
  });

  it('names the address and --anchor / AQ_ANCHOR when the anchor cannot be reached', () => {
    const refused = serviceError(
      status.UNAVAILABLE,
      'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:7400',
    );
    const error = remoteError(refused, 'resolve', TARGET);
    expect(error.exitCode).to.equal(EXIT.defer);
    expect(error.message).to.equal('resolve: cannot reach the anchor at 127.0.0.1:7400: connection refused');
    expect(error.hint).to.include('--anchor HOST:PORT or AQ_ANCHOR');
    expect(remoteError(refused, 'resolve', { ...TARGET, from: 'env' }).hint).to.include('change AQ_ANCHOR');
  });
});

describe('cli: retries of writes', () => {
  const noSleep = async () => {};

  it('repeats the same request on UNAVAILABLE until it succeeds', async () => {
    const seen: object[] = [];
    const request = { clientId: 'c1', seq: 1 };
    let failures = 2;
    const result = await callWithRetry(
      async () => {
        seen.push(request);
        if (failures-- > 0) throw serviceError(status.UNAVAILABLE, 'no leader');
        return 'ok';
      },
      { deadline: Date.now() + 10_000, retry: true, sleep: noSleep },
    );
    expect(result).to.equal('ok');
    expect(seen).to.have.length(3);
    expect(seen.every((r) => r === request)).to.equal(true);
  });

  it('does not retry reads, or statuses other than UNAVAILABLE', async () => {
    let calls = 0;
    const attempt = async () => {
      calls++;
      throw serviceError(status.UNAVAILABLE, 'no leader');
    };
    await callWithRetry(attempt, { deadline: Date.now() + 10_000, retry: false, sleep: noSleep }).catch(
      () => {},
    );
    expect(calls).to.equal(1);
    calls = 0;
    const invalid = async () => {
      calls++;
      throw serviceError(status.INVALID_ARGUMENT, 'bad');
    };
    await callWithRetry(invalid, { deadline: Date.now() + 10_000, retry: true, sleep: noSleep }).catch(
      () => {},
    );
    expect(calls).to.equal(1);
  });

  it('stops at the deadline and reports why the anchor was unavailable rather than the bare deadline', async () => {
    let now = 0;
    let calls = 0;
    const error = await callWithRetry(
      async () => {
        calls++;
        if (now >= 1000) throw serviceError(status.DEADLINE_EXCEEDED, 'Deadline exceeded');
        throw serviceError(status.UNAVAILABLE, 'connect ECONNREFUSED');
      },
      {
        deadline: 1000,
        retry: true,
        now: () => now,
        sleep: async (ms) => {
          now += ms;
        },
      },
    ).catch((e: ServiceError) => e);
    expect((error as ServiceError).code).to.equal(status.UNAVAILABLE);
    expect(calls).to.be.greaterThan(3);
    expect(now).to.be.at.most(1000);
  });
});

// ---- a fake anchor ----

interface FakeAnchor {
  address: string;
  calls: Record<string, unknown[]>;
  stop(): Promise<void>;
}

type Handlers = Record<string, (request: unknown, call: number) => unknown>;
type StreamHandler = (request: unknown, call: ServerWritableStream<unknown, unknown>, n: number) => void;

async function fakeAnchor(unary: Handlers, watchHandler?: StreamHandler): Promise<FakeAnchor> {
  const server = new Server();
  const calls: Record<string, unknown[]> = {};
  const implement = (names: string[]) =>
    Object.fromEntries(
      names.map((name) => [
        name,
        (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
          const list = calls[name] ?? [];
          calls[name] = list;
          list.push(call.request);
          const handler = unary[name];
          if (handler === undefined) {
            callback({ code: status.UNIMPLEMENTED, details: `${name} not faked` });
            return;
          }
          try {
            callback(null, handler(call.request, list.length));
          } catch (error) {
            callback(error as ServiceError);
          }
        },
      ]),
    );
  let watches = 0;
  server.addService(serviceClient('Registry').service, {
    ...implement(['Register', 'Deregister', 'Heartbeat', 'Resolve', 'List']),
    Watch: (call: ServerWritableStream<unknown, unknown>) => {
      const list = calls.Watch ?? [];
      calls.Watch = list;
      list.push(call.request);
      watches++;
      if (watchHandler === undefined) call.emit('error', { code: status.UNIMPLEMENTED, details: 'no watch' });
      else watchHandler(call.request, call, watches);
    },
  });
  server.addService(serviceClient('Membership').service, implement(['Members', 'Remove']));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

function fail(code: number, details: string): never {
  throw { code, details };
}

const INSTANCE = {
  id: 'web-1',
  address: '10.0.0.7',
  port: 8080,
  tags: ['blue', 'v2'],
  meta: { version: '1.4.2', zone: 'a' },
  health: 'HEALTH_PASSING',
  ttlMs: 0,
};

describe('cli: client commands against a fake anchor', function () {
  this.timeout(20_000);
  let anchor: FakeAnchor;
  afterEach(async () => anchor?.stop());

  it('register: retries UNAVAILABLE with the same client_id and seq 1, then prints the receipt', async () => {
    const signature = Buffer.from([1, 2, 3, 250]);
    anchor = await fakeAnchor({
      Register: (request, n) => {
        if (n === 1) fail(status.UNAVAILABLE, 'no leader now');
        const { name, instance } = request as { name: string; instance: object };
        return {
          index: 42,
          receipt: { scope: 'eu', name, instance, index: 42, anchor: '12D3KooWfake', signature },
        };
      },
    });
    const io = capture();
    const code = await run(
      [
        'register',
        'eu/payments',
        '--id',
        'web-1',
        '--address',
        '10.0.0.7',
        '--port',
        '8080',
        '--tag',
        'blue',
        '--meta',
        'version=1.4.2',
        '--ttl',
        '1m30s',
        '--anchor',
        anchor.address,
      ],
      io,
    );
    expect(io.stderr).to.equal('');
    expect(code).to.equal(0);
    const requests = anchor.calls.Register as {
      clientId: string;
      seq: number;
      instance: { ttlMs: number; meta: object; tags: string[] };
    }[];
    expect(requests).to.have.length(2);
    expect(requests[0]!.clientId).to.match(/^aq-cli-/);
    expect(requests[1]!.clientId).to.equal(requests[0]!.clientId);
    expect(requests.map((r) => r.seq)).to.deep.equal([1, 1]);
    expect(requests[0]!.instance.ttlMs).to.equal(90_000);
    expect(requests[0]!.instance.meta).to.deep.equal({ version: '1.4.2' });
    expect(requests[0]!.instance.tags).to.deep.equal(['blue']);
    expect(io.stdout).to.include('registered web-1 under eu/payments at index 42');
    expect(io.stdout).to.include('anchor     12D3KooWfake');
    expect(io.stdout).to.include(`signature  ${signature.toString('base64')}`);
  });

  it('register --json prints the whole response on one line, the signature in base64', async () => {
    anchor = await fakeAnchor({
      Register: () => ({
        index: 7,
        receipt: { scope: 'eu', index: 7, anchor: 'a', signature: Buffer.from('sig') },
      }),
    });
    const io = capture();
    const args = ['register', 'eu/x', '--id', 'i', '--address', 'h.local', '--port', '1', '--json'];
    expect(await run([...args, '--anchor', anchor.address], io)).to.equal(0);
    const lines = io.stdout.trimEnd().split('\n');
    expect(lines).to.have.length(1);
    const response = JSON.parse(lines[0]!);
    expect(response.index).to.equal(7);
    expect(response.receipt.signature).to.equal(Buffer.from('sig').toString('base64'));
  });

  it('maps a PERMISSION_DENIED answer to exit 3 and INVALID_ARGUMENT to exit 2, one line each', async () => {
    anchor = await fakeAnchor({
      Register: () => fail(status.PERMISSION_DENIED, 'eu/x is outside your credential'),
      Deregister: () => fail(status.INVALID_ARGUMENT, 'the anchor says no'),
    });
    const io = capture();
    const code = await run(
      ['register', 'eu/x', '--id', 'i', '--address', '10.0.0.1', '--port', '1', '--anchor', anchor.address],
      io,
    );
    expect(code).to.equal(EXIT.refuse);
    expect(io.stderr).to.equal('aq: register: refused: eu/x is outside your credential\n');
    expect(anchor.calls.Register).to.have.length(1);

    const io2 = capture();
    expect(await run(['deregister', 'eu/x', '--id', 'i', '--anchor', anchor.address], io2)).to.equal(
      EXIT.usage,
    );
    expect(io2.stderr).to.equal('aq: deregister: the anchor says no\n');
  });

  it('resolve prints a table of instances, and says so when there are none (exit 0 both times)', async () => {
    anchor = await fakeAnchor({
      Resolve: (request) => {
        const { name, consistency, health } = request as {
          name: string;
          consistency: string;
          health: string;
        };
        expect(consistency).to.equal(name === 'eu/empty' ? 'CONSISTENCY_STALE' : 'CONSISTENCY_LINEARIZABLE');
        expect(health).to.equal(name === 'eu/empty' ? 'HEALTH_PASSING' : 'HEALTH_UNSPECIFIED');
        if (name === 'eu/empty') return { name, scope: 'eu', instances: [], index: 0 };
        return {
          name,
          scope: 'eu',
          instances: [INSTANCE, { ...INSTANCE, id: 'web-2', tags: [], meta: {} }],
          index: 9,
        };
      },
    });
    const io = capture();
    expect(await run(['resolve', 'eu/payments', '--anchor', anchor.address], io)).to.equal(0);
    expect(io.stdout).to.equal(
      [
        'eu/payments: 2 instances (scope eu, index 9)',
        'ID     ADDRESS   PORT  HEALTH   TAGS     META',
        'web-1  10.0.0.7  8080  passing  blue,v2  version=1.4.2,zone=a',
        'web-2  10.0.0.7  8080  passing  -        -',
        '',
      ].join('\n'),
    );
    const empty = capture();
    expect(
      await run(['resolve', 'eu/empty', '--stale', '--passing', '--anchor', anchor.address], empty),
    ).to.equal(0);
    expect(empty.stdout).to.equal('eu/empty: no instances (scope eu, index 0)\n');
  });

  it('list pages through the answer up to --limit', async () => {
    const all = ['eu/a', 'eu/b', 'eu/c', 'eu/d', 'eu/e'];
    anchor = await fakeAnchor({
      List: (request) => {
        const { after, limit } = request as { after: string; limit: number };
        const start = after === '' ? 0 : all.indexOf(after) + 1;
        const page = all.slice(start, start + Math.min(limit, 2)); // the fake serves at most 2 per page
        const next = start + page.length < all.length ? (page[page.length - 1] ?? '') : '';
        return { names: page.map((name) => ({ name, scope: 'eu', instances: [INSTANCE], index: 1 })), next };
      },
    });
    const io = capture();
    expect(await run(['list', 'eu', '--limit', '3', '--anchor', anchor.address], io)).to.equal(0);
    expect(io.stdout.split('\n').filter((l) => l.startsWith('eu/'))).to.have.length(3);
    expect(io.stdout).to.include('more names follow');
    const everything = capture();
    expect(await run(['list', '--json', '--anchor', anchor.address], everything)).to.equal(0);
    expect(JSON.parse(everything.stdout).names.map((n: { name: string }) => n.name)).to.deep.equal(all);
  });

  it('members prints the group; members remove prints the index', async () => {
    anchor = await fakeAnchor({
      Members: () => ({
        scope: 'eu',
        term: 3,
        commitIndex: 10,
        appliedIndex: 10,
        members: [
          { id: '12D3KooWaaa', role: 'voter', leader: true, grpc: '127.0.0.1:7400', matchIndex: 10 },
          { id: '12D3KooWbbb', role: 'learner', leader: false, grpc: '', matchIndex: 4 },
        ],
      }),
      Remove: () => ({ index: 11 }),
    });
    const io = capture();
    expect(await run(['members', 'eu', '--anchor', anchor.address], io)).to.equal(0);
    expect(io.stdout).to.equal(
      [
        'scope eu: term 3, commit index 10, applied index 10',
        'ID           ROLE     LEADER  GRPC            MATCH INDEX',
        '12D3KooWaaa  voter    yes     127.0.0.1:7400  10',
        '12D3KooWbbb  learner  no      -               4',
        '',
      ].join('\n'),
    );
    const removed = capture();
    expect(
      await run(['members', 'remove', 'eu', '12D3KooWbbb', '--anchor', anchor.address], removed),
    ).to.equal(0);
    expect(removed.stdout).to.equal('removed 12D3KooWbbb from scope eu at index 11\n');
    expect(anchor.calls.Remove).to.deep.equal([{ scope: 'eu', id: '12D3KooWbbb' }]);
  });

  it('watch prints one line per event and resumes after the last index seen when the stream breaks', async () => {
    const controller = new AbortController();
    anchor = await fakeAnchor({}, (_request, call, n) => {
      if (n === 1) {
        call.write({ kind: 'KIND_STATE', name: 'eu/x', instances: [INSTANCE], index: 3 });
        call.write({ kind: 'KIND_SYNCED', index: 5 });
        call.write({ kind: 'KIND_CHANGE', name: 'eu/x', instances: [], index: 7 });
        setTimeout(() => call.emit('error', { code: status.UNAVAILABLE, details: 'leader lost' }), 20);
      } else {
        call.write({ kind: 'KIND_CHANGE', name: 'eu/x', instances: [INSTANCE], index: 8 });
        setTimeout(() => controller.abort(), 20);
      }
    });
    const io = capture();
    const code = await watch(
      'eu/x',
      { anchor: anchor.address, timeout: '10s' },
      { io, anchorFrom: 'flag', signal: controller.signal },
    );
    expect(code).to.equal(0);
    // An unsigned watch (an open scope) carries no auth: the fake server decodes the absent field as null.
    expect((anchor.calls.Watch as Record<string, unknown>[]).map(({ auth: _auth, ...r }) => r)).to.deep.equal(
      [
        { name: 'eu/x', prefix: false, afterIndex: 0 },
        { name: 'eu/x', prefix: false, afterIndex: 7 },
      ],
    );
    expect(io.stdout).to.equal(
      [
        '[3] state eu/x: web-1 10.0.0.7:8080 passing',
        '[5] synced',
        '[7] change eu/x: no instances',
        '[8] change eu/x: web-1 10.0.0.7:8080 passing',
        '',
      ].join('\n'),
    );
    expect(io.stderr).to.match(
      /^aq: watch: stream lost \(UNAVAILABLE: leader lost\); reconnecting after index 7 in \d+ms\n$/,
    );
  });

  it('watch does not resume from the middle of a state dump', async () => {
    const controller = new AbortController();
    anchor = await fakeAnchor({}, (_request, call, n) => {
      if (n === 1) {
        call.write({ kind: 'KIND_STATE', name: 'eu/a', instances: [], index: 4 });
        setTimeout(() => call.emit('error', { code: status.UNAVAILABLE, details: 'gone' }), 20);
      } else setTimeout(() => controller.abort(), 20);
    });
    const client = new AnchorClient({ address: anchor.address, from: 'flag', timeoutMs: 10_000 });
    try {
      await followWatch(
        client,
        { name: 'eu', prefix: true, afterIndex: 2 },
        { signal: controller.signal, onEvent: () => {}, onReconnect: () => {} },
      );
    } finally {
      client.close();
    }
    expect((anchor.calls.Watch as { afterIndex: number }[]).map((r) => r.afterIndex)).to.deep.equal([2, 2]);
  });

  it('watch gives up with DEFER when the anchor cannot be reached within --timeout', async () => {
    // A TCP listener that never speaks HTTP/2: the connection is accepted but never becomes ready.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    anchor = { address: '', calls: {}, stop: async () => {} };
    try {
      const { port } = silent.address() as AddressInfo;
      const io = capture();
      const started = Date.now();
      const error = await watch(
        'eu/x',
        { anchor: `127.0.0.1:${port}`, timeout: '300ms' },
        { io, anchorFrom: 'flag' },
      ).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(CliError);
      expect((error as CliError).exitCode).to.equal(EXIT.defer);
      expect((error as CliError).message).to.equal(
        `watch: no connection to the anchor at 127.0.0.1:${port} within 300ms`,
      );
      expect(Date.now() - started).to.be.lessThan(5000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('watch ends with the error, without reconnecting, on a usage-type status', async () => {
    anchor = await fakeAnchor({}, (_request, call) => {
      call.emit('error', { code: status.INVALID_ARGUMENT, details: 'name too long' });
    });
    const io = capture();
    const error = await watch(
      'eu/x',
      { anchor: anchor.address, timeout: '10s' },
      { io, anchorFrom: 'flag' },
    ).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(CliError);
    expect((error as CliError).exitCode).to.equal(EXIT.usage);
    expect((error as CliError).message).to.equal('watch: name too long');
    expect(anchor.calls.Watch).to.have.length(1);
  });
});
