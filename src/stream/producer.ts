/**
 * Writes interactions and catalog items to Kafka in the project's Avro contract, keyed as the
 * contract says (interactions by user, items by item). Used by `pme replay` and the demo.
 */
import { CompressionTypes, Partitioners, type Producer } from 'kafkajs';
import type { CatalogItem, Interaction } from '../data/event.js';
import { type AvroCodec, type CodecOptions, createInteractionCodec, createItemCodec } from './avro.js';
import { type KafkaConnection, kafkaClient } from './kafka-client.js';
import { kafkaLog } from './log.js';

/** The brokers, and TLS and SASL when the cluster needs them. */
export interface ProducerOptions extends KafkaConnection {
  clientId?: string;
  /** Messages per produce request. Default 500. */
  batchSize?: number;
  /** Codec options (schema registry); default: raw Avro with the `pme-schema` header. */
  codec?: CodecOptions;
}

/** A paced producer loop, stopped by `stop()`. */
export interface RunningStream {
  readonly sent: number;
  stop(): Promise<void>;
}

export class EventProducer {
  readonly #producer: Producer;
  readonly #batchSize: number;
  readonly #codecOptions: CodecOptions;
  /**
   * Codecs by topic: with a registry, each topic's writer schema is registered under that topic's
   * subject (`<topic>-value`), the first time the topic is written to. This producer is where the
   * project registers its schemas: the service's consumer only reads them by id.
   */
  readonly #interactions = new Map<string, Promise<AvroCodec<Interaction>>>();
  readonly #items = new Map<string, Promise<AvroCodec<CatalogItem>>>();

  constructor(options: ProducerOptions) {
    const kafka = kafkaClient(options, {
      clientId: options.clientId ?? 'pme-producer',
      logCreator: kafkaLog,
    });
    this.#producer = kafka.producer({
      allowAutoTopicCreation: true,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    this.#batchSize = options.batchSize ?? 500;
    this.#codecOptions = options.codec ?? {};
  }

  async connect(): Promise<void> {
    await this.#producer.connect();
  }

  #codec<T>(
    cache: Map<string, Promise<AvroCodec<T>>>,
    create: (options: CodecOptions) => Promise<AvroCodec<T>>,
    topic: string,
  ): Promise<AvroCodec<T>> {
    let codec = cache.get(topic);
    if (codec === undefined) {
      codec = create({ ...this.#codecOptions, topic, register: true });
      // A registry that failed is asked again on the next send.
      codec.catch(() => cache.delete(topic));
      cache.set(topic, codec);
    }
    return codec;
  }

  disconnect(): Promise<void> {
    return this.#producer.disconnect();
  }

  async sendInteractions(topic: string, events: readonly Interaction[]): Promise<void> {
    const codec = await this.#codec(this.#interactions, createInteractionCodec, topic);
    for (let i = 0; i < events.length; i += this.#batchSize) {
      await this.#producer.send({
        topic,
        compression: CompressionTypes.None,
        messages: events
          .slice(i, i + this.#batchSize)
          .map((event) => ({ key: event.user, value: codec.encode(event), headers: codec.headers })),
      });
    }
  }

  async sendItems(topic: string, items: readonly CatalogItem[]): Promise<void> {
    const codec = await this.#codec(this.#items, createItemCodec, topic);
    for (let i = 0; i < items.length; i += this.#batchSize) {
      const messages = items
        .slice(i, i + this.#batchSize)
        .map((item) => ({ key: item.item, value: codec.encode(item), headers: codec.headers }));
      await this.#producer.send({ topic, messages });
    }
  }

  /**
   * Sends `next()` events at about `rate` per second, in small batches every 50 ms, until
   * stopped. A send that fails is reported once and the loop goes on (the demo must not die
   * with a broker hiccup).
   */
  stream(
    topic: string,
    next: () => Interaction,
    rate: number,
    onError: (error: unknown) => void = () => {},
  ): RunningStream {
    let sent = 0;
    let running = true;
    const tickMs = 50;
    const perTick = Math.max(1, Math.round((rate * tickMs) / 1000));
    const loop = (async () => {
      const started = Date.now();
      while (running) {
        const batch: Interaction[] = [];
        for (let i = 0; i < perTick; i++) batch.push(next());
        try {
          await this.sendInteractions(topic, batch);
          sent += batch.length;
        } catch (error) {
          onError(error);
        }
        const due = started + (sent / rate) * 1000;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
      }
    })();
    return {
      get sent() {
        return sent;
      },
      stop: async () => {
        running = false;
        await loop;
      },
    };
  }
}
