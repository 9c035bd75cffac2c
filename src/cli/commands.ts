// The client commands: validate (requests.ts), then call the anchor (client.ts, loaded only once the
// arguments are known to be good), then print (output.ts). Each returns its exit code; failures are thrown
// as CliErrors and printed by main.ts.

import { randomUUID } from 'node:crypto';
import { encodeCommand } from '../registry/commands.ts';
import type { AnchorClient, WatchEvent } from './client.ts';
import { EXIT, type ExitCode } from './errors.ts';
import {
  formatDeregister,
  formatHeartbeat,
  formatList,
  formatMembers,
  formatReceipt,
  formatRemove,
  formatResolve,
  formatWatchEvent,
  jsonLine,
  type MembersView,
  type ReceiptView,
  type ResolveView,
} from './output.ts';
import {
  buildDeregisterRequest,
  buildHeartbeatRequest,
  buildListRequest,
  buildMembersRequest,
  buildRegisterRequest,
  buildRemoveRequest,
  buildResolveRequest,
  buildWatchRequest,
  MAX_LIST_PAGE,
  parseTarget,
  type RegisterFlags,
  type Target,
  type TargetFlags,
} from './requests.ts';
import { type KeyFlags, RequestSigner } from './signing.ts';

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export interface ClientFlags extends TargetFlags {
  readonly json?: boolean | undefined;
}

/** The flags of a client command that can sign its requests (--key, --credential). */
export type SignedFlags = ClientFlags & KeyFlags;

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

export interface CommandContext {
  readonly io: Io;
  /** Where --anchor's value came from (commander knows: flag, AQ_ANCHOR or the default). */
  readonly anchorFrom: Target['from'];
  /** Ends `aq watch`; without one, SIGINT and SIGTERM do (and the watch exits 0). */
  readonly signal?: AbortSignal;
}

export async function withClient<T>(target: Target, use: (client: AnchorClient) => Promise<T>): Promise<T> {
  const { AnchorClient } = await import('./client.ts');
  const client = new AnchorClient(target);
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** One id per invocation: the anchor's exactly-once table keys retries of this command's write by it. */
export function newClientId(): string {
  return `aq-cli-${randomUUID()}`;
}

export async function register(
  name: string,
  flags: RegisterFlags & SignedFlags & { receipt?: string },
  ctx: CommandContext,
) {
  const request = buildRegisterRequest(name, flags, newClientId());
  const target = parseTarget(flags, ctx.anchorFrom);
  const response = await withClient(target, async (c) => {
    const signer = await RequestSigner.open(c, flags, { name }, 'register');
    // What is signed is the command the anchor will propose: the instance as it rebuilds it (health
    // passing) and the session, without the auth block.
    const body = () =>
      encodeCommand({
        type: 'register',
        name,
        instance: { ...request.instance, health: 'passing' },
        session: { client: request.clientId, seq: request.seq },
      });
    const signed = signer.signing ? await signer.sign(request, 'register', name, body()) : request;
    const response = await c.call<{ receipt?: ReceiptView | null; index?: number }>(
      'Registry',
      'Register',
      signed,
      'register',
      true,
    );
    if (flags.receipt === undefined) return response;
    const { writeUpgradedReceipt } = await import('./lineage-commands.ts');
    await writeUpgradedReceipt(c, signer, response, flags.receipt, ctx.io);
    return response;
  });
  ctx.io.out(
    flags.json === true
      ? jsonLine(response)
      : formatReceipt(name, request.instance.id, response.receipt ?? null, response.index ?? 0),
  );
  return EXIT.ok;
}

export async function deregister(name: string, flags: { id: string } & SignedFlags, ctx: CommandContext) {
  const request = buildDeregisterRequest(name, flags.id, newClientId());
  const target = parseTarget(flags, ctx.anchorFrom);
  const response = await withClient(target, async (c) => {
    const signer = await RequestSigner.open(c, flags, { name }, 'deregister');
    const body = () =>
      encodeCommand({
        type: 'deregister',
        name,
        id: request.id,
        session: { client: request.clientId, seq: request.seq },
      });
    const signed = signer.signing ? await signer.sign(request, 'deregister', name, body()) : request;
    return c.call<{ removed?: boolean; index?: number }>(
      'Registry',
      'Deregister',
      signed,
      'deregister',
      true,
    );
  });
  ctx.io.out(
    flags.json === true
      ? jsonLine(response)
      : formatDeregister(name, flags.id, response.removed === true, response.index ?? 0),
  );
  return EXIT.ok;
}

export async function heartbeat(name: string, flags: { id: string } & SignedFlags, ctx: CommandContext) {
  const request = buildHeartbeatRequest(name, flags.id);
  const target = parseTarget(flags, ctx.anchorFrom);
  // A heartbeat is idempotent, so it is retried like a write although it carries no client id.
  const response = await withClient(target, async (c) => {
    const signer = await RequestSigner.open(c, flags, { name }, 'heartbeat');
    const signed = await signer.sign(request, 'heartbeat', name, utf8(`${name}/${request.id}`));
    return c.call<{ health?: string }>('Registry', 'Heartbeat', signed, 'heartbeat', true);
  });
  ctx.io.out(flags.json === true ? jsonLine(response) : formatHeartbeat(name, flags.id, response.health));
  return EXIT.ok;
}

export async function resolve(
  name: string,
  flags: { stale?: boolean; passing?: boolean } & SignedFlags,
  ctx: CommandContext,
) {
  const request = buildResolveRequest(name, flags);
  const target = parseTarget(flags, ctx.anchorFrom);
  // Reads are not retried: a DEFER answer (exit 4) already says that running it again is safe.
  const response = await withClient(target, async (c) => {
    const signer = await RequestSigner.open(c, flags, { name }, 'resolve');
    const signed = await signer.sign(request, 'resolve', name, utf8(name));
    return c.call<ResolveView>('Registry', 'Resolve', signed, 'resolve', false);
  });
  ctx.io.out(flags.json === true ? jsonLine(response) : formatResolve(response));
  return EXIT.ok;
}

export async function list(
  prefix: string | undefined,
  flags: { stale?: boolean; limit?: string } & SignedFlags,
  ctx: CommandContext,
) {
  const plan = buildListRequest(prefix, flags);
  const target = parseTarget(flags, ctx.anchorFrom);
  const { names, next } = await withClient(target, async (c) => {
    const names: ResolveView[] = [];
    let request = plan.request;
    // A key signs for the one scope that owns PREFIX; listing every name (no prefix) asks every scope the
    // anchor serves and goes unsigned (a governed scope among them refuses it).
    const signer =
      request.prefix === ''
        ? RequestSigner.unsigned
        : await RequestSigner.open(c, flags, { name: request.prefix }, 'list');
    // Pages until the anchor has no more or --limit is reached.
    for (;;) {
      const page = await c.call<{ names?: ResolveView[]; next?: string }>(
        'Registry',
        'List',
        await signer.sign(request, 'resolve', request.prefix, utf8(request.prefix)),
        'list',
        false,
      );
      names.push(...(page.names ?? []));
      const after = page.next ?? '';
      if (after.length === 0) return { names, next: '' };
      if (plan.total !== null && names.length >= plan.total)
        return { names: names.slice(0, plan.total), next: after };
      const left = plan.total === null ? request.limit : Math.min(plan.total - names.length, MAX_LIST_PAGE);
      request = { ...request, after, limit: left };
    }
  });
  ctx.io.out(
    flags.json === true ? jsonLine({ names, next }) : formatList(names, plan.request.prefix, next !== ''),
  );
  return EXIT.ok;
}

export async function watch(
  name: string,
  flags: { prefix?: boolean; index?: string } & SignedFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  const request = buildWatchRequest(name, flags);
  const target = parseTarget(flags, ctx.anchorFrom);
  const { followWatch } = await import('./client.ts');
  const controller = new AbortController();
  const stop = () => controller.abort();
  ctx.signal?.addEventListener('abort', stop, { once: true });
  if (ctx.signal === undefined) {
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
  try {
    await withClient(target, async (c) => {
      const signer = await RequestSigner.open(c, flags, { name }, 'watch');
      const auth = await signer.authFor('resolve', name);
      return followWatch(c, request, {
        ...(auth === null ? {} : { auth: () => auth(utf8(name)) }),
        signal: controller.signal,
        onEvent: (event: WatchEvent) =>
          ctx.io.out(flags.json === true ? jsonLine(event) : formatWatchEvent(event)),
        onReconnect: (why: string, delayMs: number, afterIndex: number) => {
          ctx.io.err(`aq: watch: ${why}; reconnecting after index ${afterIndex} in ${delayMs}ms\n`);
        },
      });
    });
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    ctx.signal?.removeEventListener('abort', stop);
  }
  return EXIT.ok;
}

export async function members(scope: string, flags: ClientFlags, ctx: CommandContext) {
  const request = buildMembersRequest(scope);
  const target = parseTarget(flags, ctx.anchorFrom);
  const response = await withClient(target, (c) =>
    c.call<MembersView>('Membership', 'Members', request, 'members', false),
  );
  ctx.io.out(flags.json === true ? jsonLine(response) : formatMembers(response));
  return EXIT.ok;
}

export async function removeMember(scope: string, id: string, flags: ClientFlags, ctx: CommandContext) {
  const request = buildRemoveRequest(scope, id);
  const target = parseTarget(flags, ctx.anchorFrom);
  // Not retried: Remove carries no client id, and a repeated removal after a lost answer would fail
  // confusingly rather than answer the first one.
  const response = await withClient(target, (c) =>
    c.call<{ index?: number }>('Membership', 'Remove', request, 'members remove', false),
  );
  ctx.io.out(flags.json === true ? jsonLine(response) : formatRemove(scope, id, response.index ?? 0));
  return EXIT.ok;
}
