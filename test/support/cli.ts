// CLI test helpers: an Io that captures output, and the one-line usage error a function throws.

import { expect } from 'chai';
import { CliError, EXIT } from '../../src/cli/errors.ts';

export function capture() {
  const io = {
    stdout: '',
    stderr: '',
    out(text: string) {
      io.stdout += text;
    },
    err(text: string) {
      io.stderr += text;
    },
  };
  return io;
}

/** Runs `fn`, expects a usage error (exit 2, one line) and returns its message. */
export function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(CliError);
    expect((error as CliError).exitCode).to.equal(EXIT.usage);
    expect((error as CliError).message).to.not.include('\n');
    return (error as CliError).message;
  }
  expect.fail('expected a usage error');
}
