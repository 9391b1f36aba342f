#!/usr/bin/env node
/**
 * `pme`: the command line. This file only dispatches; each command (its flags, help, printing and
 * exit codes) is a file of src/cli/commands/ that calls the folder doing the work, loaded lazily so
 * `pme broker` does not load TensorFlow.js.
 */
import { isPmeError } from '../errors.js';

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  up: {
    summary: 'everything at once: local broker, topics, the service and a demo producer',
    load: async () => (await import('./commands/up.js')).upCommand,
  },
  serve: {
    summary: 'the service: consume topics, train, serve HTTP',
    load: async () => (await import('./commands/serve.js')).serveCommand,
  },
  broker: {
    summary: 'a local single-node Apache Kafka (KRaft), or --exec CMD with one',
    load: async () => (await import('./commands/broker.js')).brokerCommand,
  },
  replay: {
    summary: 'load a MovieLens / Criteo / Avazu / CSV file (or --synthetic) into a topic',
    load: async () => (await import('./commands/replay.js')).replayCommand,
  },
  'stream-eval': {
    summary: 'replay a file through the trainer in process: progressive AUC, throughput, memory per tier',
    load: async () => (await import('./commands/stream-eval.js')).streamEvalCommand,
  },
  offline: {
    summary: 'the offline PME protocol (search, prune to a budget, retrain) against baselines',
    load: async () => (await import('./commands/offline.js')).offlineCommand,
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: pme <command> [flags]   (pme <command> --help for its flags)\n\ncommands:\n${lines.join('\n')}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`pme: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return (await command.load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // A coded error is the user's to act on: one line, no stack.
    if (isPmeError(error)) process.stderr.write(`pme: ${error.code}: ${error.message}\n`);
    else
      process.stderr.write(
        `pme: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
    process.exitCode = 1;
  },
);
