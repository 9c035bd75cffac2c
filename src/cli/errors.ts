// The exit codes of `aq` (DESIGN.md §5) and the one error type commands throw to end with one of them.
// main.ts prints a CliError as one line on stderr; anything else is an internal error (one line, plus the
// stack only with AQ_DEBUG=1), so a user mistake or a remote refusal never shows a stack trace.

export const EXIT = {
  ok: 0,
  /** Anything that is not one of the outcomes below (including internal errors). */
  failure: 1,
  /** A usage error: bad flags or arguments, or INVALID_ARGUMENT from the anchor. */
  usage: 2,
  /** REFUSE: policy denied the request (PERMISSION_DENIED). */
  refuse: 3,
  /** DEFER: cannot decide now (anchor or leader unreachable, not committed in time); retrying is safe. */
  defer: 4,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export interface CliErrorOptions {
  /**
   * A follow-up such as `see 'aq register --help'`, printed after the message on the same line. Left
   * undefined, a usage error gets its command's help hint; null means no hint (e.g. a server's message).
   */
  readonly hint?: string | null;
  readonly cause?: unknown;
}

/** An error meant for the user: `aq: <message>[; <hint>]` on stderr, then exit with exitCode. */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  hint: string | null | undefined;

  constructor(message: string, exitCode: ExitCode, options: CliErrorOptions = {}) {
    super(oneLine(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.exitCode = exitCode;
    this.hint = options.hint;
  }
}

/** A usage error (exit 2): `what` failed, because `why`. */
export function usageError(what: string, why: string, hint?: string): CliError {
  return new CliError(`${what}: ${why}`, EXIT.usage, hint === undefined ? {} : { hint });
}

/** Collapses a possibly multi-line message (server details, commander suggestions) into one line. */
export function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/**
 * The stderr text for an error that ended a command. A CliError is one line; an unexpected error is one
 * line too, with its stack (and its cause's) only when debug is set.
 */
export function formatError(error: unknown, debug: boolean): string {
  if (error instanceof CliError) {
    const line = `aq: ${error.message}${error.hint == null ? '' : `; ${error.hint}`}\n`;
    return debug && error.cause instanceof Error ? `${line}${stackOf(error.cause)}\n` : line;
  }
  const message = error instanceof Error ? error.message : String(error);
  const line = `aq: internal error: ${oneLine(message)} (set AQ_DEBUG=1 for details)\n`;
  if (!debug) return line;
  return `aq: internal error: ${oneLine(message)}\n${error instanceof Error ? `${stackOf(error)}\n` : ''}`;
}

function stackOf(error: Error): string {
  let text = error.stack ?? String(error);
  if (error.cause instanceof Error) text += `\ncaused by: ${stackOf(error.cause)}`;
  return text;
}

/** The exit code an error ends the process with. */
export function exitCodeOf(error: unknown): ExitCode {
  return error instanceof CliError ? error.exitCode : EXIT.failure;
}
