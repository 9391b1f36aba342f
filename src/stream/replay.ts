/**
 * The work of `pme replay` (src/cli/commands/replay.ts): sends events, Avro-encoded and keyed by
 * user, into the interactions topic, batch by batch and paced to a rate if asked, after the catalog
 * into the items topic; the topics are created first if missing.
 */
import type { CatalogItem, Interaction } from '../data/event.js';
import type { CodecOptions } from './avro.js';
import type { KafkaConnection } from './kafka-client.js';
import { EventProducer } from './producer.js';
import { ensureTopics } from './topics.js';

/** What a replay sends: `total` events drawn in order from `next`, and the catalog. */
export interface ReplaySource {
  total: number;
  next: () => Interaction;
  catalog: CatalogItem[];
}

export interface ReplayOptions extends KafkaConnection {
  /** Codec options: a schema registry, under whose `<topic>-value` subjects the schemas are registered. */
  codec?: CodecOptions;
  /** Interactions topic. */
  topic: string;
  /** Catalog topic. */
  itemsTopic: string;
  /** Partitions of the topics when they are created. */
  partitions: number;
  /** Events per second; 0 = as fast as the broker takes them. */
  rate: number;
  /** Called after every batch with the number of events sent so far. */
  onProgress?: (sent: number) => void;
}

export interface ReplayResult {
  /** Events sent. */
  sent: number;
  /** Catalog items sent. */
  items: number;
  /** Time spent sending the events (the catalog not included). */
  seconds: number;
}

/** Sends `source` into the topics; resolves once the last batch is acknowledged. */
export async function replay(source: ReplaySource, o: ReplayOptions): Promise<ReplayResult> {
  const { total, next, catalog } = source;
  await ensureTopics(o, { interactions: o.topic, items: o.itemsTopic, partitions: o.partitions });
  const producer = new EventProducer({ ...connectionOf(o), codec: o.codec });
  await producer.connect();
  try {
    if (catalog.length > 0) await producer.sendItems(o.itemsTopic, catalog);
    const started = performance.now();
    const batchSize = 1000;
    let sent = 0;
    while (sent < total) {
      const n = Math.min(batchSize, total - sent);
      const batch = new Array<Interaction>(n);
      for (let j = 0; j < n; j++) batch[j] = next();
      await producer.sendInteractions(o.topic, batch);
      sent += n;
      o.onProgress?.(sent);
      if (o.rate > 0) {
        const due = started + (sent / o.rate) * 1000;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
    return { sent, items: catalog.length, seconds: (performance.now() - started) / 1000 };
  } finally {
    await producer.disconnect();
  }
}

function connectionOf(o: KafkaConnection): KafkaConnection {
  return { brokers: o.brokers, ssl: o.ssl, sasl: o.sasl };
}
