/**
 * `pme broker`: run a local Kafka until SIGINT/SIGTERM, or `--exec CMD` to run one command
 * (e.g. the whole test suite) against one broker and exit with that command's code.
 * This file owns the command's flags, usage, log lines, signals and exit codes, and running the
 * `--exec` command; the broker itself (jars, JVM, KAFKA_BROKERS) is src/broker. It imports nothing
 * from src/engine, so `pme broker` does not load TensorFlow.js.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { logTail, resolveBrokers, startBroker } from '../../broker/index.js';
import { PmeError } from '../../errors.js';
import { commandFlags } from '../args.js';

const USAGE = `usage: pme broker [--port N] [--controller-port N] [--data-dir DIR] [--heap-mb N] [--exec "CMD"]

Runs a single-node Apache Kafka (KRaft) on 127.0.0.1 and prints KAFKA_BROKERS=127.0.0.1:PORT
on stdout when it is ready. Stops on SIGINT/SIGTERM.

  --port N             client port (default: a free port)
  --controller-port N  KRaft controller port (default: a free port)
  --data-dir DIR       keep topics and offsets in DIR across runs (default: a temporary dir)
  --heap-mb N          JVM heap in MiB (default 512)
  --exec "CMD"         start the broker, run CMD through the shell with KAFKA_BROKERS set,
                       stop the broker, exit with CMD's exit code. When KAFKA_BROKERS is
                       already set, no broker is started and CMD uses that cluster.

Jars are cached in $PME_CACHE (default ~/.cache/pme); the first run downloads them with Maven.
`;

function integerFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n))
    throw new PmeError('PME_ERR_CONFIG_INVALID', `--${name} must be an integer, got "${value}"`);
  return n;
}

const say = (line: string) => process.stderr.write(`pme broker: ${line}\n`);

export async function brokerCommand(argv: string[]): Promise<number> {
  const values = commandFlags('broker', USAGE, argv, [
    'port',
    'controller-port',
    'data-dir',
    'heap-mb',
    'exec',
  ]);
  if (typeof values === 'number') return values;

  // Signals that arrive while the broker is starting are honoured as soon as it is up.
  let stopRequested: NodeJS.Signals | undefined;
  let wake: () => void = () => {};
  const onSignal = (signal: NodeJS.Signals) => {
    stopRequested ??= signal;
    wake();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    if (values.exec !== undefined) {
      const existing = resolveBrokers();
      if (existing !== undefined) {
        say(`using the existing cluster KAFKA_BROKERS=${existing.join(',')}`);
        return await runCommand(values.exec, existing.join(','), (w) => {
          wake = w;
        });
      }
    }
    const broker = await startBroker({
      port: integerFlag('port', values.port),
      controllerPort: integerFlag('controller-port', values['controller-port']),
      dataDir: values['data-dir'],
      heapMb: integerFlag('heap-mb', values['heap-mb']),
      onProgress: say,
    });
    say(`ready in ${broker.startMs} ms (pid ${broker.pid}, data ${broker.dataDir})`);
    try {
      if (values.exec !== undefined) {
        if (stopRequested) return 128 + constants.signals[stopRequested];
        return await runCommand(values.exec, broker.bootstrap, (w) => {
          wake = w;
        });
      }
      process.stdout.write(`KAFKA_BROKERS=${broker.bootstrap}\n`);
      // Nothing else holds the event loop open: the JVM child is unref'd on purpose.
      const keepAlive = setInterval(() => {}, 1 << 30);
      const unexpected = await new Promise<number | null | undefined>((ok) => {
        if (stopRequested) ok(undefined);
        wake = () => ok(undefined);
        broker.exited.then(ok);
      });
      clearInterval(keepAlive);
      if (unexpected !== undefined) {
        say(`the broker exited on its own (code ${unexpected}); log tail:\n${await logTail(broker.dataDir)}`);
        return 1;
      }
      say(`${stopRequested}: stopping`);
      return 0;
    } finally {
      await broker.stop();
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/**
 * Runs `command` through the shell with KAFKA_BROKERS set and stdio inherited; resolves with its
 * exit code (128 + signal number when a signal ended it, as shells report it).
 * A terminal's Ctrl-C reaches the command directly (same process group); a signal sent to this
 * process alone is passed on, so `kill <pme pid>` also ends the command before the broker stops.
 */
function runCommand(command: string, brokers: string, setWake: (wake: () => void) => void): Promise<number> {
  return new Promise((ok, fail) => {
    const child = spawn(command, {
      shell: true,
      stdio: 'inherit',
      env: { ...process.env, KAFKA_BROKERS: brokers },
    });
    setWake(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    });
    child.on('error', fail);
    child.on('exit', (code, signal) => ok(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
}
