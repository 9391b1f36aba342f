/** Creates the service's topics when they are missing: interactions, the compacted catalog, and their DLQs. */
import { Kafka, logLevel } from 'kafkajs';
import { kafkaLog } from './log.js';

export interface TopicNames {
  interactions: string;
  items: string;
  partitions: number;
}

export async function ensureTopics(brokers: readonly string[], names: TopicNames): Promise<string[]> {
  const admin = new Kafka({
    clientId: 'pme-admin',
    brokers: [...brokers],
    logLevel: logLevel.WARN,
    logCreator: kafkaLog,
  }).admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const wanted = [
      { topic: names.interactions, numPartitions: names.partitions },
      {
        topic: names.items,
        numPartitions: 1,
        configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
      },
      { topic: `${names.interactions}.dlq`, numPartitions: 1 },
      { topic: `${names.items}.dlq`, numPartitions: 1 },
    ].filter((t) => !existing.has(t.topic));
    if (wanted.length > 0) await admin.createTopics({ topics: wanted, waitForLeaders: true });
    return wanted.map((t) => t.topic);
  } finally {
    await admin.disconnect();
  }
}
