// The `aq` executable (bin/aq runs this file with the project's Node). Everything else is in program.ts,
// so tests can run the CLI in-process.

import { processIo, run } from './program.ts';

// `aq list | head` closes stdout early: that is the reader's choice, not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

const code = await run(process.argv.slice(2), processIo);
// Exit explicitly: a gRPC channel or timer left behind must not keep a finished command alive. On Linux
// stdout and stderr writes to pipes and files are synchronous, so nothing printed is lost.
process.exit(code);
