/**
 * The parameter topic that serving replicas follow: a compacted, single-partition topic (one
 * partition keeps a publish's records in order, its `m:clock` marker last). The trainer
 * publishes what changed every few seconds; a replica reads the topic from the beginning,
 * so a new replica rebuilds the whole model from it and a restarted one catches up. The records'
 * keys and values are param-records.ts's; this file only carries them.
 */
import { CompressionTypes, type Kafka, Partitioners, type Producer } from 'kafkajs';
import { type KafkaConnection, kafkaClient } from './kafka-client.js';
import { kafkaLog } from './log.js';
import type { ParamRecord } from './param-records.js';

/** Creates the parameter topic when missing: compacted, segments rolled often so compaction runs. */
export async function ensureParamsTopic(
  connection: KafkaConnection | readonly string[],
  topic: string,
): Promise<void> {
  const admin = kafkaClient(connection, { clientId: 'pme-admin', logCreator: kafkaLog }).admin();
  await admin.connect();
  try {
    if ((await admin.listTopics()).includes(topic)) return;
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        {
          topic,
          numPartitions: 1,
          configEntries: [
            { name: 'cleanup.policy', value: 'compact' },
            { name: 'segment.ms', value: '60000' },
            { name: 'min.cleanable.dirty.ratio', value: '0.1' },
            { name: 'max.message.bytes', value: String(8 << 20) },
          ],
        },
      ],
    });
  } catch (error) {
    // Another process may have created it between the list and the create.
    if (!(await admin.listTopics()).includes(topic)) throw error;
  } finally {
    await admin.disconnect();
  }
}

export class ParamsPublisher {
  readonly #producer: Producer;
  readonly #topic: string;
  published = 0;

  constructor(connection: KafkaConnection | readonly string[], topic: string) {
    const kafka = kafkaClient(connection, { clientId: 'pme-params', logCreator: kafkaLog });
    this.#producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      maxInFlightRequests: 1,
      idempotent: false,
    });
    this.#topic = topic;
  }

  connect(): Promise<void> {
    return this.#producer.connect();
  }

  /** Sends records in order, in one request (the trainer's packs hold a few thousand). */
  async publish(records: readonly ParamRecord[]): Promise<void> {
    await this.#producer.send({
      topic: this.#topic,
      compression: CompressionTypes.None,
      messages: records.map((r) => ({ key: r.key, value: r.value, partition: 0 })),
    });
    this.published += records.length;
  }

  disconnect(): Promise<void> {
    return this.#producer.disconnect();
  }
}

export interface FollowerOptions extends KafkaConnection {
  topic: string;
  /** Applies one batch of records, in topic order. */
  onRecords(records: ParamRecord[]): void;
}

/**
 * Reads the parameter topic from the beginning (a fresh consumer group each start, never
 * committed: a replica's state is the topic itself). `caughtUp` turns true once the offsets
 * that existed at start have been applied.
 */
export class ParamsFollower {
  readonly #options: FollowerOptions;
  readonly #kafka: Kafka;
  readonly #consumer;
  #target = -1n;
  #position = 0n;
  caughtUp = false;
  live = false;

  constructor(options: FollowerOptions) {
    this.#options = options;
    this.#kafka = kafkaClient(options, { clientId: 'pme-replica', logCreator: kafkaLog });
    this.#consumer = this.#kafka.consumer({
      groupId: `pme-replica-${process.pid}-${Date.now().toString(36)}`,
      maxBytesPerPartition: 8 << 20,
      maxWaitTimeInMs: 200,
    });
  }

  async start(): Promise<void> {
    const admin = this.#kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(this.#options.topic);
      this.#target = BigInt(offsets[0]?.high ?? '0');
    } finally {
      await admin.disconnect();
    }
    this.caughtUp = this.#target === 0n;
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topics: [this.#options.topic], fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const records = batch.messages.map((m) => ({ key: m.key?.toString() ?? '', value: m.value }));
        this.#options.onRecords(records);
        if (batch.messages.length > 0) this.#position = BigInt(batch.lastOffset()) + 1n;
        if (!this.caughtUp && this.#position >= this.#target) this.caughtUp = true;
      },
    });
    this.live = true;
  }

  async stop(): Promise<void> {
    this.live = false;
    await this.#consumer.disconnect();
  }
}
