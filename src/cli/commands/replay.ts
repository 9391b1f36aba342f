/**
 * `pme replay`: loads a data file (or a synthetic workload) into a topic, Avro-encoded, keyed
 * by user, in timestamp order when the data has one; the catalog goes to the items topic.
 * This file owns the command's flags, help, progress and closing line; reading the file is
 * src/data, sending it src/stream/replay.ts.
 */
import { resolveBrokers } from '../../broker/index.js';
import { loadConfig, schemaRegistryAuth } from '../../config.js';
import type { CatalogItem, Interaction } from '../../data/event.js';
import { FORMAT_NAMES, readEvents, SyntheticWorkload } from '../../data/index.js';
import { PmeError } from '../../errors.js';
import { HttpSchemaRegistry, kafkaConnection } from '../../stream/index.js';
import { replay } from '../../stream/replay.js';
import { Progress } from '../../util/progress.js';
import { parseFlags } from '../args.js';

const HELP = `usage: pme replay (--data FILE --format F [--items FILE] | --synthetic N) [flags]

  --data FILE        events file; --format one of: ${FORMAT_NAMES.join(', ')}
  --items FILE       catalog file (MovieLens movies.csv / movies.dat / u.item)
  --synthetic N      N events of the seeded synthetic workload instead of a file
  --users N, --items-count N, --seed S   shape of the synthetic workload (defaults 2000, 5000, 1)
  --topic T          interactions topic (default: PME_TOPIC_INTERACTIONS or "interactions")
  --items-topic T    catalog topic (default: PME_TOPIC_ITEMS or "items")
  --rate R           events per second (default: as fast as the broker takes them)
  --brokers LIST     Kafka bootstrap servers (default: KAFKA_BROKERS)

TLS, SASL and the schema registry are read from the environment variables of \`pme serve\`
(PME_KAFKA_SASL_*, PME_KAFKA_TLS*, PME_SCHEMA_REGISTRY_*); with a registry, the schemas are
registered under <topic>-value.
`;

function positive(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0)
    throw new PmeError('PME_ERR_CONFIG_INVALID', `${name} must be a positive number, got "${raw}"`);
  return value;
}

export async function replayCommand(argv: string[]): Promise<number> {
  const values = parseFlags(argv, [
    'data',
    'format',
    'items',
    'synthetic',
    'users',
    'items-count',
    'seed',
    'topic',
    'items-topic',
    'rate',
    'brokers',
  ]);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  // The service's options from the environment: Kafka's TLS and SASL, the schema registry.
  const config = loadConfig([], process.env);
  const brokers = values.brokers?.split(',') ?? resolveBrokers() ?? [];
  if (brokers.length === 0)
    throw new PmeError('PME_ERR_CONFIG_INVALID', 'no Kafka brokers: set KAFKA_BROKERS or --brokers');
  const connection = kafkaConnection({ ...config, brokers });
  const registry =
    config.schemaRegistry === ''
      ? undefined
      : new HttpSchemaRegistry(config.schemaRegistry, schemaRegistryAuth(config));
  const topic = values.topic ?? process.env.PME_TOPIC_INTERACTIONS ?? 'interactions';
  const itemsTopic = values['items-topic'] ?? process.env.PME_TOPIC_ITEMS ?? 'items';
  const rate = values.rate === undefined ? 0 : positive('--rate', values.rate, 0);

  let total: number;
  let next: () => Interaction;
  let catalog: CatalogItem[];
  if (values.synthetic !== undefined) {
    total = positive('--synthetic', values.synthetic, 0);
    const workload = new SyntheticWorkload({
      seed: positive('--seed', values.seed, 1),
      users: positive('--users', values.users, 2000),
      items: positive('--items-count', values['items-count'], 5000),
    });
    next = () => workload.next();
    catalog = workload.catalog();
  } else {
    if (values.data === undefined || values.format === undefined)
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        'give --data FILE --format F, or --synthetic N (see pme replay --help)',
      );
    const read = await readEvents({ path: values.data, format: values.format, itemsPath: values.items });
    const { events, report } = read;
    catalog = read.catalog;
    if (report.malformed > 0)
      process.stderr.write(
        `pme replay: ${report.malformed} malformed lines skipped ${JSON.stringify(report.malformedByReason)}\n`,
      );
    total = events.length;
    let i = 0;
    next = () => events[i++];
  }

  const progress = new Progress(`replay → ${topic}`, total);
  const { sent, items, seconds } = await replay(
    { total, next, catalog },
    {
      ...connection,
      codec: { registry, register: true },
      topic,
      itemsTopic,
      partitions: Number(process.env.PME_PARTITIONS ?? 4),
      rate,
      onProgress: (done) => progress.update(done),
    },
  );
  progress.done(
    `pme replay: ${sent} events and ${items} items into ${topic} / ${itemsTopic} in ${seconds.toFixed(1)} s (${Math.round(sent / seconds)} events/s)`,
  );
  return 0;
}
