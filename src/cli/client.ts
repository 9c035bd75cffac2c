// The CLI's side of gRPC: one channel to the anchor, unary calls with a deadline (writes retried while the
// anchor answers UNAVAILABLE), the Watch stream with reconnection, and the one place where a gRPC status
// becomes an exit code and a one-line message. Loaded lazily by commands.ts: `aq --help` and usage errors
// never pay for grpc-js and the .proto files.

import {
  type CallOptions,
  type Client,
  type ClientReadableStream,
  connectivityState,
  credentials,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { serviceClient } from '../api/proto.ts';
import { CliError, EXIT, type ExitCode, oneLine } from './errors.ts';
import type { WatchEventView } from './output.ts';
import type { Target } from './requests.ts';

/**
 * gRPC status → exit code (DESIGN.md §5): INVALID_ARGUMENT is a usage error, PERMISSION_DENIED is REFUSE,
 * and the statuses that mean "cannot decide now" are DEFER. Everything else is a plain failure.
 */
export function exitCodeForStatus(code: number): ExitCode {
  switch (code) {
    case status.OK:
      return EXIT.ok;
    case status.INVALID_ARGUMENT:
      return EXIT.usage;
    case status.PERMISSION_DENIED:
      return EXIT.refuse;
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
    case status.FAILED_PRECONDITION:
      return EXIT.defer;
    default:
      return EXIT.failure;
  }
}

export function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === 'number' &&
    'details' in error &&
    'metadata' in error
  );
}

// grpc-js reports a failure to reach the anchor as UNAVAILABLE with the socket error in the details.
const CONNECTION_FAILURE =
  /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|No connection established|Name resolution failed|Failed to connect/i;

/** True when the anchor could not be reached at all (as opposed to an anchor answering UNAVAILABLE). */
export function isConnectionFailure(error: ServiceError): boolean {
  return error.code === status.UNAVAILABLE && CONNECTION_FAILURE.test(error.details ?? '');
}

function connectionHint(target: Target): string {
  const how =
    target.from === 'env'
      ? 'change AQ_ANCHOR or pass --anchor HOST:PORT'
      : target.from === 'flag'
        ? 'check --anchor HOST:PORT (or AQ_ANCHOR)'
        : 'point aq at an anchor with --anchor HOST:PORT or AQ_ANCHOR';
  return `is an anchor running there? ${how}; retrying is safe`;
}

/** The services the CLI calls (all on the anchor's client port). */
export type ServiceName = 'Registry' | 'Membership' | 'Lineage' | 'Governance';

/**
 * A refusal by a governed scope's authority carries its reason code in the trailer "aq-reason" and its
 * outcome in "aq-outcome" (refuse or defer); the outcome decides the exit code, whatever the status.
 */
export function refusalOf(error: ServiceError): { reason: string; outcome: 'refuse' | 'defer' } | null {
  const reasonCode = error.metadata?.get('aq-reason')[0];
  const outcome = error.metadata?.get('aq-outcome')[0];
  if (reasonCode === undefined || (outcome !== 'refuse' && outcome !== 'defer')) return null;
  return { reason: String(reasonCode), outcome };
}

/** What to do about a refusal, by reason code (null: the message says it all). */
export function refusalHint(reasonCode: string): string | null {
  switch (reasonCode) {
    case 'unauthenticated':
      return "the scope is governed: pass --key KEYFILE (or AQ_KEY) with a credential's key (aq credential issue)";
    case 'unknown-credential':
      return 'list the credentials of the scope with aq credential list SCOPE';
    case 'revoked':
    case 'expired':
      return 'ask a scope admin for a new credential (aq credential issue)';
    case 'clock-skew':
      return "check this machine's clock";
    case 'policy-deferred':
      return 'retrying later is safe';
    default:
      return null;
  }
}

function reason(error: ServiceError): string {
  const details = oneLine(error.details ?? '');
  return details.length > 0 ? details : (status[error.code] ?? `status ${error.code}`);
}

/** The user-facing error for a failed call: one line that says what failed, why, and what to do. */
export function remoteError(error: ServiceError, command: string, target: Target, write = false): CliError {
  const exitCode = exitCodeForStatus(error.code);
  const at = `the anchor at ${target.address}`;
  if (isConnectionFailure(error)) {
    const why = /ECONNREFUSED/.test(error.details) ? 'connection refused' : reason(error);
    return new CliError(`${command}: cannot reach ${at}: ${why}`, EXIT.defer, {
      hint: connectionHint(target),
      cause: error,
    });
  }
  const make = (message: string, hint: string | null) =>
    new CliError(`${command}: ${message}`, exitCode, { hint, cause: error });
  const refused = refusalOf(error);
  if (refused !== null) {
    const word = refused.outcome === 'defer' ? 'deferred' : 'refused';
    return new CliError(
      `${command}: ${word} (${refused.reason}): ${reason(error)}`,
      refused.outcome === 'defer' ? EXIT.defer : EXIT.refuse,
      {
        // The anchor's own message may already say what to do (e.g. "--key or AQ_KEY").
        hint: /--key|aq credential/.test(reason(error)) ? null : refusalHint(refused.reason),
        cause: error,
      },
    );
  }
  switch (error.code) {
    case status.INVALID_ARGUMENT:
      return make(reason(error), null);
    case status.PERMISSION_DENIED:
      return make(`refused: ${reason(error)}`, null);
    case status.UNAVAILABLE:
      return make(
        `deferred: ${at} or its scope's leader is unavailable now (${reason(error)})`,
        'retrying is safe',
      );
    case status.DEADLINE_EXCEEDED:
      return make(
        `deferred: no answer from ${at} within ${seconds(target.timeoutMs)}${write ? '; the write may or may not have been applied' : ''}`,
        'retrying is safe (raise --timeout if the anchor is slow)',
      );
    case status.FAILED_PRECONDITION: {
      const leader = error.metadata?.get('aq-leader')[0];
      const where = leader === undefined ? '' : `; the leader is at ${String(leader)}`;
      return make(`deferred: ${reason(error)}${where}`, 'retrying is safe');
    }
    case status.UNIMPLEMENTED:
      return make(
        `${at} does not serve this call (${reason(error)})`,
        'is it an aqmesh anchor of this version?',
      );
    default:
      return make(`${status[error.code] ?? `status ${error.code}`}: ${reason(error)}`, null);
  }
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

// ---- retries ----

export interface RetryOptions {
  /** Absolute deadline (ms since the epoch) for all attempts together. */
  readonly deadline: number;
  /** Retry on UNAVAILABLE (and on a server-side DEADLINE_EXCEEDED with time left): writes and heartbeats. */
  readonly retry: boolean;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1000;

/**
 * Calls `attempt` until it succeeds, fails with a status not worth retrying, or the deadline passes.
 * The caller passes the same request to every attempt: for writes that is what makes a retry exactly-once
 * (same client_id and seq). When time runs out after the anchor could not be reached, the connection
 * failure is reported rather than the bare deadline, since it says what to fix.
 */
export async function callWithRetry<T>(
  attempt: (deadline: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const sleep = options.sleep ?? delay;
  const now = options.now ?? Date.now;
  let backoff = FIRST_BACKOFF_MS;
  let lastUnavailable: ServiceError | null = null;
  for (;;) {
    try {
      return await attempt(options.deadline);
    } catch (error) {
      if (!isServiceError(error) || !options.retry) throw error;
      const left = options.deadline - now();
      if (error.code === status.UNAVAILABLE) lastUnavailable = error;
      else if (!(error.code === status.DEADLINE_EXCEEDED && left > 0)) {
        throw error.code === status.DEADLINE_EXCEEDED && lastUnavailable !== null ? lastUnavailable : error;
      }
      if (left <= 0) throw error;
      await sleep(Math.min(jitter(backoff), left));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}

function jitter(ms: number): number {
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- the channel ----

// The CLI's calls are short: reconnect quickly instead of grpc-js's server-grade backoff (1s growing to 2m).
const CHANNEL_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.min_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
};

type UnaryCallback = (error: ServiceError | null, response?: unknown) => void;
type UnaryMethod = (request: object, options: CallOptions, callback: UnaryCallback) => unknown;
type StreamMethod = (request: object, options: CallOptions) => ClientReadableStream<unknown>;

export class AnchorClient {
  readonly target: Target;
  readonly #clients = new Map<ServiceName, Client>();

  constructor(target: Target) {
    this.target = target;
  }

  #client(service: ServiceName): Client {
    let client = this.#clients.get(service);
    if (client === undefined) {
      const Ctor = serviceClient(service);
      // The services share one channel (grpc-js pools channels by target and options).
      client = new Ctor(this.target.address, credentials.createInsecure(), CHANNEL_OPTIONS);
      this.#clients.set(service, client);
    }
    return client;
  }

  /**
   * One unary call under the --timeout deadline; `retry` for writes, which are safe to repeat (same
   * request, same client id and seq). A failure comes back as a CliError with its exit code. `request`
   * may be a function: it is called for each attempt (a signed request needs a fresh nonce each time, or
   * the anchor refuses the retry as a replay; the session inside keeps the write exactly-once).
   */
  async call<T>(
    service: ServiceName,
    method: string,
    request: object | (() => object),
    command: string,
    retry: boolean,
  ): Promise<T> {
    const client = this.#client(service);
    const fn = (client as unknown as Record<string, UnaryMethod>)[method];
    if (fn === undefined) throw new Error(`aq.v1.${service} has no method ${method}`);
    const attempt = (deadline: number) =>
      new Promise<T>((resolve, reject) => {
        const body = typeof request === 'function' ? request() : request;
        fn.call(client, body, { deadline }, (error, response) => {
          if (error !== null) reject(error);
          else resolve(response as T);
        });
      });
    try {
      return await callWithRetry(attempt, { deadline: Date.now() + this.target.timeoutMs, retry });
    } catch (error) {
      throw isServiceError(error) ? remoteError(error, command, this.target, retry) : error;
    }
  }

  /** A server stream without a deadline (it lives until cancelled). */
  stream(service: 'Registry' | 'Lineage', method: string, request: object): ClientReadableStream<unknown> {
    const client = this.#client(service);
    const fn = (client as unknown as Record<string, StreamMethod>)[method];
    if (fn === undefined) throw new Error(`aq.v1.${service} has no method ${method}`);
    return fn.call(client, request, {});
  }

  /** Whether the channel to the anchor is connected now. */
  isReady(): boolean {
    const client = this.#clients.values().next().value;
    return (
      client !== undefined && client.getChannel().getConnectivityState(false) === connectivityState.READY
    );
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

// ---- watch ----

/** The statuses after which reconnecting cannot help: the request itself is wrong or refused. */
const FINAL_WATCH_STATUSES: ReadonlySet<number> = new Set([
  status.INVALID_ARGUMENT,
  status.PERMISSION_DENIED,
  status.NOT_FOUND,
  status.UNIMPLEMENTED,
  status.UNAUTHENTICATED,
  status.OUT_OF_RANGE,
]);

const FIRST_WATCH_BACKOFF_MS = 100;
const MAX_WATCH_BACKOFF_MS = 5000;

/** One aq.v1.WatchResponse, as proto-loader decodes it. */
export type WatchEvent = WatchEventView;

export interface WatchOptions {
  readonly onEvent: (event: WatchEvent) => void;
  /** Told about each reconnection: why, when, and the index the next stream resumes after. */
  readonly onReconnect: (why: string, delayMs: number, afterIndex: number) => void;
  readonly signal: AbortSignal;
  /** Signs each (re)connection afresh (a governed scope refuses a repeated nonce as a replay). */
  readonly auth?: () => object | undefined;
}

/**
 * Follows aq.v1.Registry/Watch until the signal aborts. A lost stream is reopened after the last index
 * seen, with capped backoff; a usage-type status ends the watch with its error, and so does failing to
 * reach the anchor at all on the first attempt (the same answer every other command gives).
 */
export async function followWatch(
  anchor: AnchorClient,
  request: { name: string; prefix: boolean; afterIndex: number },
  options: WatchOptions,
): Promise<void> {
  let afterIndex = request.afterIndex;
  let everConnected = false;
  let connectTimedOut = false;
  let backoff = FIRST_WATCH_BACKOFF_MS;
  while (!options.signal.aborted) {
    // A state dump (KIND_STATE ... KIND_SYNCED) only counts once complete: resuming from the middle of
    // one would skip the names not sent yet.
    let stateMax = afterIndex;
    const error = await new Promise<ServiceError | null>((resolve) => {
      const auth = options.auth?.();
      const call = anchor.stream('Registry', 'Watch', {
        ...request,
        afterIndex,
        ...(auth === undefined ? {} : { auth }),
      });
      const onAbort = () => call.cancel();
      options.signal.addEventListener('abort', onAbort, { once: true });
      // Until the anchor has been reached once, --timeout bounds the wait for a connection (a stream
      // itself has no deadline). A channel that is READY counts as reached even before the first event.
      const connectTimer = everConnected
        ? undefined
        : setTimeout(() => {
            if (anchor.isReady()) everConnected = true;
            else {
              connectTimedOut = true;
              call.cancel();
            }
          }, anchor.target.timeoutMs);
      let settled = false;
      const settle = (e: ServiceError | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(connectTimer);
        options.signal.removeEventListener('abort', onAbort);
        resolve(e);
      };
      call.on('metadata', () => {
        everConnected = true;
      });
      call.on('data', (event: WatchEvent) => {
        everConnected = true;
        backoff = FIRST_WATCH_BACKOFF_MS;
        const index = event.index ?? 0;
        if (event.kind === 'KIND_STATE') stateMax = Math.max(stateMax, index);
        else if (event.kind === 'KIND_SYNCED') afterIndex = Math.max(afterIndex, stateMax, index);
        else afterIndex = Math.max(afterIndex, index);
        options.onEvent(event);
      });
      // grpc-js emits 'error' (non-OK) then 'status'; on OK, 'end' may come after 'status' with data still
      // queued, so an OK stream settles only when both have arrived.
      let failure: ServiceError | null = null;
      let ended = false;
      let gotStatus = false;
      call.on('error', (e: ServiceError) => {
        failure = e;
        if (gotStatus) settle(e);
      });
      call.on('status', () => {
        gotStatus = true;
        if (failure !== null) settle(failure);
        else if (ended) settle(null);
      });
      call.on('end', () => {
        ended = true;
        if (gotStatus) settle(failure);
      });
    });
    if (options.signal.aborted) return;
    if (connectTimedOut) {
      throw new CliError(
        `watch: no connection to the anchor at ${anchor.target.address} within ${seconds(anchor.target.timeoutMs)}`,
        EXIT.defer,
        { hint: connectionHint(anchor.target) },
      );
    }
    if (error !== null) {
      everConnected ||= anchor.isReady();
      if (FINAL_WATCH_STATUSES.has(error.code) || (!everConnected && isConnectionFailure(error))) {
        throw remoteError(error, 'watch', anchor.target);
      }
    }
    const wait = jitter(backoff);
    const why =
      error === null
        ? 'the anchor ended the stream'
        : `stream lost (${status[error.code] ?? error.code}: ${reason(error)})`;
    options.onReconnect(why, wait, afterIndex);
    await abortableDelay(wait, options.signal);
    backoff = Math.min(backoff * 2, MAX_WATCH_BACKOFF_MS);
  }
}

function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
