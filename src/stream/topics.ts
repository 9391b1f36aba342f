/**
 * The project's topics: interactions, the compacted items catalog, and a dead-letter topic for
 * each. Created idempotently, so every start (service, replay, tests) may call it.
 */
import kafkajs, { type Admin, type ITopicConfig } from 'kafkajs';
import { PmeError } from '../errors.js';
import { type KafkaConnection, kafkaClient } from './kafka-client.js';

const { logLevel, ConfigResourceTypes } = kafkajs;

/** Suffix of a topic's dead-letter topic. */
export const DLQ_SUFFIX = '.dlq';
/** Header on a DLQ message: the {@link DecodeFailureReason} (or another reason) it was rejected for. */
export const DLQ_REASON_HEADER = 'pme-dlq-reason';
/** Header on a DLQ message: `<topic>:<partition>:<offset>` it came from. */
export const DLQ_SOURCE_HEADER = 'pme-dlq-source';

/** The dead-letter topic of `topic`. */
export function dlqTopic(topic: string): string {
  return `${topic}${DLQ_SUFFIX}`;
}

export interface TopicOptions {
  /** Interactions topic. Default `interactions`. */
  interactions?: string;
  /** Items (catalog) topic, compacted. Default `items`. */
  items?: string;
  /** Partitions of the interactions and items topics (DLQs get one). Default 4. */
  partitions?: number;
  /** Replication factor. Default 1 (a single-node broker); use 3 on a real cluster. */
  replicationFactor?: number;
  /** Client id for the admin connection. Default `pme-topics`. */
  clientId?: string;
}

/** The name callers used before the options grew; same shape. */
export type TopicNames = TopicOptions;

export interface TopicReport {
  /** Topics this call created. */
  created: string[];
  /** Topics that were there already (left unchanged). */
  existing: string[];
  /** Differences between an existing topic and what was asked (partitions, cleanup policy). */
  warnings: string[];
}

/**
 * Creates whatever is missing of: the interactions topic, the compacted items topic and their
 * `.dlq` topics. Existing topics are not changed; differences from what was asked are reported.
 * @throws PmeError PME_ERR_CONFIG_INVALID on bad options
 */
export async function ensureTopics(
  connection: KafkaConnection | string | readonly string[],
  options: TopicOptions = {},
): Promise<TopicReport> {
  const interactions = options.interactions ?? 'interactions';
  const items = options.items ?? 'items';
  const partitions = options.partitions ?? 4;
  const replicationFactor = options.replicationFactor ?? 1;
  if (!(Number.isInteger(partitions) && partitions > 0)) {
    throw new PmeError('PME_ERR_CONFIG_INVALID', `partitions must be a positive integer, got ${partitions}`);
  }
  if (!(Number.isInteger(replicationFactor) && replicationFactor > 0)) {
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `replicationFactor must be a positive integer, got ${replicationFactor}`,
    );
  }
  if (interactions === items) {
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `the interactions and items topics must differ ("${items}")`,
    );
  }
  const wanted: ITopicConfig[] = [
    { topic: interactions, numPartitions: partitions, replicationFactor },
    {
      topic: items,
      numPartitions: partitions,
      replicationFactor,
      configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
    },
    // DLQs keep every rejected event: one partition, never compacted.
    { topic: dlqTopic(interactions), numPartitions: 1, replicationFactor },
    { topic: dlqTopic(items), numPartitions: 1, replicationFactor },
  ];

  const admin = kafkaClient(connection, {
    clientId: options.clientId ?? 'pme-topics',
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    const present = new Set(await admin.listTopics());
    const missing = wanted.filter((t) => !present.has(t.topic));
    const report: TopicReport = { created: [], existing: [], warnings: [] };
    if (missing.length > 0) {
      try {
        await admin.createTopics({ topics: missing, waitForLeaders: true });
      } catch (error) {
        // Another process created some of them between listTopics and createTopics: fine.
        if ((error as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS') throw error;
      }
    }
    for (const t of wanted) (present.has(t.topic) ? report.existing : report.created).push(t.topic);
    if (report.existing.length > 0) await checkExisting(admin, wanted, report);
    return report;
  } finally {
    await admin.disconnect();
  }
}

async function checkExisting(admin: Admin, wanted: ITopicConfig[], report: TopicReport): Promise<void> {
  const existing = wanted.filter((t) => report.existing.includes(t.topic));
  const metadata = await admin.fetchTopicMetadata({ topics: existing.map((t) => t.topic) });
  for (const topic of metadata.topics) {
    const asked = existing.find((t) => t.topic === topic.name);
    if (asked?.numPartitions !== undefined && topic.partitions.length !== asked.numPartitions) {
      report.warnings.push(
        `${topic.name} has ${topic.partitions.length} partitions, ${asked.numPartitions} asked`,
      );
    }
  }
  const compacted = existing.filter((t) => t.configEntries?.some((e) => e.value === 'compact'));
  if (compacted.length === 0) return;
  const configs = await admin.describeConfigs({
    includeSynonyms: false,
    resources: compacted.map((t) => ({
      type: ConfigResourceTypes.TOPIC,
      name: t.topic,
      configNames: ['cleanup.policy'],
    })),
  });
  for (const resource of configs.resources) {
    const policy = resource.configEntries.find((e) => e.configName === 'cleanup.policy')?.configValue ?? '';
    if (!policy.includes('compact')) {
      report.warnings.push(`${resource.resourceName} has cleanup.policy=${policy}, compact expected`);
    }
  }
}

/**
 * Creates `topic` (with `partitions`; `compacted`: cleanup.policy=compact, for a catalog) and its
 * `.dlq` (one partition) when missing; an existing one is left as it is. Resolves true when
 * `topic` itself was created.
 */
export async function ensureTopic(
  connection: KafkaConnection | string | readonly string[],
  topic: string,
  partitions: number,
  replicationFactor = 1,
  compacted = false,
): Promise<boolean> {
  const admin = kafkaClient(connection, { clientId: 'pme-topics', logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const present = new Set(await admin.listTopics());
    const missing: ITopicConfig[] = [
      {
        topic,
        numPartitions: partitions,
        replicationFactor,
        ...(compacted ? { configEntries: [{ name: 'cleanup.policy', value: 'compact' }] } : {}),
      },
      { topic: dlqTopic(topic), numPartitions: 1, replicationFactor },
    ].filter((t) => !present.has(t.topic));
    if (missing.length > 0) {
      try {
        await admin.createTopics({ topics: missing, waitForLeaders: true });
      } catch (error) {
        if ((error as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS') throw error;
      }
    }
    return !present.has(topic);
  } finally {
    await admin.disconnect();
  }
}
