// `aq anchor start`: flags + config file → AnchorConfig, then run one anchor until SIGINT or SIGTERM.
// The anchor module (RocksDB, libp2p, gRPC servers) is imported only here, after the configuration is
// known to be good, so that no other command loads it.

import { type AnchorFlags, buildAnchorConfig, readConfigFile } from './anchor-config.ts';
import type { Io } from './commands.ts';
import { CliError, EXIT, type ExitCode, oneLine } from './errors.ts';

export async function anchorStart(flags: AnchorFlags, io: Io): Promise<ExitCode> {
  const file = flags.config === undefined ? undefined : readConfigFile(flags.config);
  const { config, warnings } = buildAnchorConfig(flags, file);
  for (const warning of warnings) io.err(`aq: warning: ${warning}\n`);

  const { startAnchor } = await import('../anchor/anchor.ts');
  const controller = new AbortController();
  let stopRequested = false;
  let requestStop: () => void = () => {};
  const stopRequestedPromise = new Promise<void>((resolve) => {
    requestStop = resolve;
  });
  const onSignal = () => {
    if (stopRequested) {
      // A second Ctrl-C while stopping: the user wants out now.
      io.err('aq: anchor start: stopping again: exiting without waiting for a clean stop\n');
      process.exit(EXIT.failure);
    }
    stopRequested = true;
    controller.abort();
    requestStop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let anchor: Awaited<ReturnType<typeof startAnchor>>;
    try {
      anchor = await startAnchor(config, { signal: controller.signal });
    } catch (error) {
      // Stopped while starting: that is what the user asked for.
      if (stopRequested) return EXIT.ok;
      throw new CliError(
        `anchor start: ${oneLine(error instanceof Error ? error.message : String(error))}`,
        EXIT.failure,
        {
          hint: null,
          cause: error,
        },
      );
    }
    await stopRequestedPromise;
    try {
      await anchor.stop();
    } catch (error) {
      throw new CliError(
        `anchor start: stopping failed: ${oneLine(error instanceof Error ? error.message : String(error))}`,
        EXIT.failure,
        { hint: null, cause: error },
      );
    }
    return EXIT.ok;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
