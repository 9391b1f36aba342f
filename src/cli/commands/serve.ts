/**
 * `pme serve`: the service alone, against the Kafka named by KAFKA_BROKERS / --brokers. This file
 * owns the command's help (`--help`, and `--help-markdown`: the table of README "Configuration"),
 * the PME_URL line and the stop on SIGINT/SIGTERM (`stopOnSignals`, also used by `pme up`); the
 * flags are read by src/config.ts, the service is src/service.
 */
import { describeOptions, loadConfig } from '../../config.js';
import { type Service, startService } from '../../service/index.js';
import { startReplica } from '../../service/replica.js';
import { nodeFlagsHint } from '../node-flags.js';

export const SERVE_HELP = `usage: pme serve [flags]

Consumes the interactions and items topics, learns from every event, serves the HTTP API.
Every flag can also be set through its environment variable.

${describeOptions(false)}
`;

/** Stops `service` on the first SIGINT/SIGTERM; a second one exits at once. */
export function stopOnSignals(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`pme: ${signal} again, exiting now\n`);
        process.exit(130);
      }
      stopping = true;
      process.stderr.write(`pme: ${signal}: stopping (snapshot, commit, leave the group)\n`);
      stop().then(resolve, (error: unknown) => {
        process.stderr.write(`pme: stop failed: ${error instanceof Error ? error.message : error}\n`);
        process.exitCode = 1;
        resolve();
      });
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}

export async function serveCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  if (argv.includes('--help-markdown')) {
    process.stdout.write(`${describeOptions(true)}\n`);
    return 0;
  }
  const config = loadConfig(argv);
  const hint = nodeFlagsHint();
  if (hint !== null) process.stderr.write(`${hint}\n`);
  const service: Service =
    config.role === 'replica' ? await startReplica(config) : await startService(config);
  process.stdout.write(`PME_URL=${service.url}\n`);
  // The service halts by itself when its consumer dies for good: exit non-zero, so a supervisor
  // restarts it from the last snapshot, rather than stay up without consuming.
  const failure = await Promise.race([
    stopOnSignals(() => service.stop()).then(() => null),
    service.failed ?? new Promise<never>(() => {}),
  ]);
  if (failure === null) return 0;
  process.stderr.write(`pme: stopped: ${failure.message}\n`);
  return 1;
}
