// Errors at the client API's edge: handlers throw typed errors; they become one gRPC status each here and
// only here (js-libp2p's habit: error classes with names, mapped to codes at the edge).

import { Metadata, type ServerErrorResponse, status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ProposalDroppedError } from '../consensus/index.ts';
import { ScopeRequestError } from '../scope/scope-group.ts';

export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly code: status;
  readonly metadata: Metadata | undefined;
  constructor(code: status, message: string, metadata?: Metadata) {
    super(message);
    this.code = code;
    this.metadata = metadata;
  }
}

/**
 * A refusal by the scope's authority: the reason code travels in the trailer "aq-reason", the outcome
 * (refuse or defer) in "aq-outcome", so clients act on them without parsing the message.
 */
export function refusal(
  code: status,
  reason: string,
  message: string,
  outcome: 'refuse' | 'defer' = 'refuse',
): ApiError {
  const md = new Metadata();
  md.set('aq-reason', reason);
  md.set('aq-outcome', outcome);
  return new ApiError(code, message, md);
}

export function toServiceError(
  error: unknown,
  logger: Logger,
  method: string,
): Partial<ServerErrorResponse> & { code: status } {
  if (error instanceof ApiError) {
    return {
      code: error.code,
      details: error.message,
      ...(error.metadata ? { metadata: error.metadata } : {}),
    };
  }
  if (error instanceof ScopeRequestError) {
    const code =
      error.code === 'stopped'
        ? status.UNAVAILABLE
        : error.code === 'deadline'
          ? status.DEADLINE_EXCEEDED
          : status.UNAVAILABLE;
    return { code, details: error.message };
  }
  if (error instanceof ProposalDroppedError)
    return { code: status.UNAVAILABLE, details: `${error.message}; retry` };
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return {
      code: status.DEADLINE_EXCEEDED,
      details:
        'not committed before the deadline: the outcome is unknown; retry with the same client_id and seq',
    };
  }
  logger.error({ err: error, method }, 'request failed unexpectedly');
  return {
    code: status.INTERNAL,
    details: `internal error in ${method}: ${(error as Error)?.message ?? String(error)}`,
  };
}
