/**
 * The trainer's consumer group on the interactions topic, plus a catalog reader on the items
 * topic. Offsets are never auto-committed: the service commits only offsets that a durable
 * snapshot already holds (see `commit`), and after a restart messages below the snapshot's
 * offsets are skipped, so a crash at any point loses no event and applies none twice.
 *
 * Backpressure: kafkajs fetches a partition's next batch only after `eachBatch` returns, and
 * training is synchronous inside it, so memory holds at most one fetch per partition.
 */
import { type IHeaders, Kafka, type KafkaMessage, logLevel, Partitioners } from 'kafkajs';
import type { CatalogItem, Interaction } from '../data/event.js';
import { kafkaLog } from './log.js';
import { DLQ_REASON_HEADER, DLQ_SOURCE_HEADER, dlqTopic } from './topics.js';

/** Why a message could not be used; the DLQ header carries it. */
export type DlqReason =
  | 'undecodable'
  | 'unknown-schema'
  | 'missing-user'
  | 'missing-item'
  | 'bad-label'
  | 'oversized';

export class DecodeError extends Error {
  constructor(
    readonly reason: DlqReason,
    message: string,
  ) {
    super(message);
  }
}

/** Decoders of the wire format; they throw DecodeError for a message that cannot be used. */
export interface EventCodec {
  decodeInteraction(value: Buffer | null, headers: IHeaders | undefined, key: Buffer | null): Interaction;
  decodeItem(value: Buffer | null, headers: IHeaders | undefined, key: Buffer | null): CatalogItem;
  /** Loads the writer schemas a batch names (schema registry mode), before it is decoded. */
  prefetch?(values: Array<Buffer | null>): Promise<void>;
}

/** `topic:partition` -> next offset to read (the Kafka meaning of a committed offset). */
export type OffsetMap = Record<string, string>;

export interface ConsumerOptions {
  brokers: readonly string[];
  groupId: string;
  interactionsTopic: string;
  itemsTopic: string;
  codec: EventCodec;
  /** Offsets already applied to the restored state: messages below them are skipped. */
  appliedOffsets?: OffsetMap;
  /** Applies decoded events to the state, synchronously (so offsets and state move together). */
  onEvents(events: Interaction[]): void;
  onItems(items: CatalogItem[]): void;
  /** Serialises state changes with snapshots: eachBatch applies its events inside it. */
  withStateLock<T>(fn: () => Promise<T>): Promise<T>;
  clientId?: string;
}

export interface ConsumerStats {
  consumed: number;
  skipped: number;
  dlq: Record<string, number>;
  lag: Record<string, number>;
}

export class StreamConsumer {
  readonly stats: ConsumerStats = { consumed: 0, skipped: 0, dlq: {}, lag: {} };
  /** Next offset to read per partition, for events already applied to the in-memory state. */
  readonly #applied: Map<string, bigint>;
  readonly #options: ConsumerOptions;
  readonly #kafka: Kafka;
  readonly #consumer;
  readonly #catalog;
  readonly #producer;
  #live = false;

  constructor(options: ConsumerOptions) {
    this.#options = options;
    this.#applied = new Map(Object.entries(options.appliedOffsets ?? {}).map(([k, v]) => [k, BigInt(v)]));
    this.#kafka = new Kafka({
      clientId: options.clientId ?? 'pme',
      brokers: [...options.brokers],
      logLevel: logLevel.WARN,
      logCreator: kafkaLog,
      retry: { retries: 8 },
    });
    this.#consumer = this.#kafka.consumer({ groupId: options.groupId, maxBytesPerPartition: 1 << 20 });
    // The catalog is small and compacted: every instance reads all of it, from the beginning.
    this.#catalog = this.#kafka.consumer({
      groupId: `${options.groupId}-catalog-${process.pid}-${Date.now()}`,
    });
    this.#producer = this.#kafka.producer({
      allowAutoTopicCreation: true,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
  }

  /** True while the group consumer is running. */
  get live(): boolean {
    return this.#live;
  }

  /** Offsets of the state as it is now; call under the state lock to pair them with a snapshot. */
  appliedOffsets(): OffsetMap {
    const out: OffsetMap = {};
    for (const [key, offset] of this.#applied) out[key] = offset.toString();
    return out;
  }

  async start(): Promise<void> {
    const o = this.#options;
    await this.#producer.connect();
    await this.#catalog.connect();
    await this.#catalog.subscribe({ topics: [o.itemsTopic], fromBeginning: true });
    await this.#catalog.run({
      eachBatch: async ({ batch }) => {
        const items: CatalogItem[] = [];
        await o.codec.prefetch?.(batch.messages.map((m) => m.value));
        for (const message of batch.messages) {
          try {
            items.push(o.codec.decodeItem(message.value, message.headers, message.key));
          } catch (error) {
            await this.#toDlq(o.itemsTopic, batch.partition, message, error);
          }
        }
        if (items.length > 0) await o.withStateLock(async () => o.onItems(items));
      },
    });

    await this.#consumer.connect();
    await this.#consumer.subscribe({ topics: [o.interactionsTopic], fromBeginning: true });
    this.#consumer.on(this.#consumer.events.CRASH, () => {
      this.#live = false;
    });
    await this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        const key = `${batch.topic}:${batch.partition}`;
        this.stats.lag[String(batch.partition)] = Number(batch.offsetLag());
        await o.codec.prefetch?.(batch.messages.map((m) => m.value));
        await o.withStateLock(async () => {
          let pending: Interaction[] = [];
          let pendingNext = -1n;
          // Applies decoded events and moves the applied offset with them, in one synchronous step.
          const flush = (): void => {
            if (pending.length > 0) o.onEvents(pending);
            if (pendingNext >= 0n) this.#applied.set(key, pendingNext);
            pending = [];
            pendingNext = -1n;
          };
          for (const message of batch.messages) {
            if (!isRunning() || isStale()) break;
            const offset = BigInt(message.offset);
            const applied = this.#applied.get(key);
            if (applied !== undefined && offset < applied) {
              this.stats.skipped++;
              resolveOffset(message.offset);
              continue;
            }
            this.stats.consumed++;
            try {
              pending.push(o.codec.decodeInteraction(message.value, message.headers, message.key));
              pendingNext = offset + 1n;
            } catch (error) {
              flush();
              await this.#toDlq(batch.topic, batch.partition, message, error);
              this.#applied.set(key, offset + 1n);
            }
            resolveOffset(message.offset);
          }
          flush();
        });
        await heartbeat();
      },
    });
    this.#live = true;
  }

  async #toDlq(topic: string, partition: number, message: KafkaMessage, error: unknown): Promise<void> {
    const reason: DlqReason = error instanceof DecodeError ? error.reason : 'undecodable';
    this.stats.dlq[reason] = (this.stats.dlq[reason] ?? 0) + 1;
    await this.#producer.send({
      topic: dlqTopic(topic),
      messages: [
        {
          key: message.key,
          value: message.value,
          headers: {
            ...message.headers,
            [DLQ_REASON_HEADER]: reason,
            'pme-dlq-detail': error instanceof Error ? error.message.slice(0, 500) : String(error),
            [DLQ_SOURCE_HEADER]: `${topic}:${partition}:${message.offset}`,
          },
        },
      ],
    });
  }

  /**
   * Commits offsets that a durable snapshot holds. A failure here is harmless (the snapshot
   * has the offsets and messages below them are skipped after a restart), so it is reported,
   * not thrown.
   */
  async commit(offsets: OffsetMap): Promise<boolean> {
    const list = Object.entries(offsets).map(([key, offset]) => {
      const at = key.lastIndexOf(':');
      return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)), offset };
    });
    if (list.length === 0) return true;
    try {
      await this.#consumer.commitOffsets(list);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Stops fetching but stays in the group, so the final snapshot's offsets can still be
   * committed (kafkajs `stop()` would leave the group first). A batch in progress finishes
   * under the state lock, which the final snapshot waits for.
   */
  async stopFetching(): Promise<void> {
    this.#live = false;
    this.#consumer.pause([{ topic: this.#options.interactionsTopic }]);
    this.#catalog.pause([{ topic: this.#options.itemsTopic }]);
  }

  /** Leaves the group and closes every connection. */
  async close(): Promise<void> {
    this.#live = false;
    await this.#consumer.disconnect();
    await this.#catalog.disconnect();
    await this.#producer.disconnect();
  }
}
