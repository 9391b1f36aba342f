/**
 * `pme up`: everything at once for a first look — a local Kafka broker (unless KAFKA_BROKERS
 * names one), the topics, the service, and a demo producer streaming the synthetic workload.
 * This file owns the command's flags, help, log lines and exit code, and the order things start
 * and stop in; the broker is src/broker, the service src/service, the producer src/stream.
 */
import { parseArgs } from 'node:util';
import { connectOrStartBroker } from '../../broker/index.js';
import { loadConfig, schemaRegistryAuth } from '../../config.js';
import { SyntheticWorkload } from '../../data/index.js';
import { startService } from '../../service/index.js';
import { EventProducer, HttpSchemaRegistry, kafkaConnection } from '../../stream/index.js';
import { nodeFlagsHint } from '../node-flags.js';
import { stopOnSignals } from './serve.js';

const HELP = `usage: pme up [--rate EVENTS_PER_S] [--users N] [--items N] [service flags]

Starts a local Kafka broker (or uses KAFKA_BROKERS), the service and a demo producer that
streams a synthetic workload with planted preferences. Ctrl-C stops everything in order.
  --rate     demo events per second (default 2000; 0: no demo producer)
  --users    synthetic users (default 2000)
  --items    synthetic items (default 5000)
Service flags are those of \`pme serve --help\`; the state directory defaults to .pme-state/demo.
`;

export async function upCommand(argv: string[]): Promise<number> {
  const { values, tokens } = parseArgs({
    args: argv,
    options: {
      rate: { type: 'string', default: '2000' },
      users: { type: 'string', default: '2000' },
      items: { type: 'string', default: '5000' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: false,
    tokens: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  // Everything parseArgs did not claim goes to the service configuration.
  const own = new Set(['rate', 'users', 'items', 'help']);
  const rest: string[] = [];
  for (const token of tokens ?? []) {
    if (token.kind === 'option' && own.has(token.name)) continue;
    if (token.kind === 'option')
      rest.push(token.rawName, ...(token.value === undefined ? [] : [token.value]));
    else if (token.kind === 'positional') rest.push(token.value);
  }
  const rate = Number(values.rate);
  const users = Number(values.users);
  const items = Number(values.items);
  for (const [name, value] of [
    ['--rate', rate],
    ['--users', users],
    ['--items', items],
  ] as const)
    if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number`);

  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const started = Date.now();
  const hint = nodeFlagsHint();
  if (hint !== null) log(hint);
  const kafka = await connectOrStartBroker({ persistent: true, onProgress: log });
  log(`pme: Kafka at ${kafka.brokers.join(',')} (${kafka.local ? 'local broker' : 'KAFKA_BROKERS'})`);
  const config = loadConfig(rest, {
    PME_STATE_DIR: '.pme-state/demo',
    ...process.env,
    KAFKA_BROKERS: kafka.brokers.join(','),
  });
  const service = await startService(config, log);

  const workload = new SyntheticWorkload({ seed: config.seed, users, items, startTime: Date.now() });
  // The demo producer registers its schemas (the service only reads them) and connects as the service does.
  const registry =
    config.schemaRegistry === ''
      ? undefined
      : new HttpSchemaRegistry(config.schemaRegistry, schemaRegistryAuth(config));
  const producer = new EventProducer({
    ...kafkaConnection(config),
    codec: { registry, register: true },
  });
  await producer.connect();
  await producer.sendItems(config.itemsTopic, workload.catalog());
  const demo = rate > 0 ? producer.stream(config.interactionsTopic, () => workload.next(), rate) : null;

  const user = workload.next().user;
  process.stdout.write(
    [
      '',
      `pme is up in ${((Date.now() - started) / 1000).toFixed(1)} s: API ${service.url}, Kafka ${config.brokers.join(',')}`,
      `demo producer: ${rate} events/s of a synthetic workload (${users} users, ${items} items) into "${config.interactionsTopic}"`,
      'try:',
      `  curl '${service.url}/v1/recommend?user=${user}&k=5'`,
      `  curl -X POST ${service.url}/v1/score -H 'content-type: application/json' -d '{"user":"${user}","items":["i1","i2","i3"]}'`,
      `  curl ${service.url}/v1/tiers`,
      'Ctrl-C stops the demo, the service (snapshot, commit) and the broker.',
      '',
    ].join('\n'),
  );

  const failure = await Promise.race([
    stopOnSignals(async () => {
      await demo?.stop();
      await producer.disconnect();
      await service.stop();
      await kafka.stop();
    }).then(() => null),
    service.failed ?? new Promise<never>(() => {}),
  ]);
  if (failure === null) return 0;
  // The service halted by itself (see serve): stop the rest and exit non-zero.
  await demo?.stop();
  await producer.disconnect();
  await kafka.stop();
  process.stderr.write(`pme: stopped: ${failure.message}\n`);
  return 1;
}
