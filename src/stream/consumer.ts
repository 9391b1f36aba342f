/**
 * The trainer's consumer group on the interactions topic (and event subscriptions' topics), plus
 * a catalog reader on the items topic and one on each items subscription's topic. Offsets are
 * never auto-committed: the service commits only offsets that a durable snapshot already holds
 * (see `commit`), and after a restart messages below the snapshot's offsets are skipped, so a
 * crash at any point loses no event and applies none twice to the state it restarts from.
 *
 * Mini-batches are aligned to offsets: a partition's events reach the trainer in chunks that end
 * after an offset that is a multiple of `batchEvents` (or where the partition is caught up), and a
 * chunk started in one fetch is completed by the next. The trainer steps its shared parameters
 * once per mini-batch, so this makes the state a function of the partition's contents alone, not
 * of how Kafka happened to cut fetches: a run restarted from a snapshot trains exactly as an
 * uninterrupted one (one partition; with several, their interleaving still depends on timing).
 *
 * Backpressure: kafkajs fetches a partition's next batch only after `eachBatch` returns, and
 * training is synchronous inside it, so memory holds at most one fetch per partition plus one
 * unfinished mini-batch. When the state lock is held longer (a slow snapshot), the batch waiting
 * for it heartbeats, so the group keeps the member, and the topic is paused until it gets the lock.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import {
  type Batch,
  type Consumer,
  type IHeaders,
  type Kafka,
  type KafkaMessage,
  logLevel,
  Partitioners,
} from 'kafkajs';
import type { CatalogItem, Interaction } from '../data/event.js';
import { PmeError } from '../errors.js';
import { GroupFence, trainerClientId } from './fence.js';
import { type KafkaConnection, kafkaClient } from './kafka-client.js';
import { kafkaLog } from './log.js';
import { DLQ_REASON_HEADER, DLQ_SOURCE_HEADER, dlqTopic } from './topics.js';

/** Why a message could not be used; the DLQ header carries it. */
export type DlqReason =
  | 'undecodable'
  | 'unknown-schema'
  | 'missing-user'
  | 'missing-item'
  | 'bad-label'
  | 'oversized'
  | 'too-many-fields'
  | 'field-limit'
  | 'oversized-key'
  | 'reserved-field'
  /** A subscription's mapping could not read the record (json-mapping.ts): the detail names the path. */
  | 'mapping';

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
  /** Values decoded as the current schema because they named none (no `pme-schema` header). */
  headerless?(): number;
}

/**
 * A topic read besides the interactions topic (a subscription, src/service/subscriptions.ts), in
 * the same group, with its own decoder; its misfits go to `<topic>.dlq` like the others'.
 */
export interface TopicSource {
  kind?: 'events';
  /** The subscription's name: the `subscription` label of its counters. */
  name: string;
  topic: string;
  decode(value: Buffer | null, headers: IHeaders | undefined, key: Buffer | null): Interaction;
  /** Loads what a batch's values need before they are decoded (writer schemas by id). */
  prefetch?(values: Array<Buffer | null>): Promise<void>;
}

/**
 * A topic of catalog records read besides the items topic (an `items` subscription). Like the
 * items topic, it is read whole from its beginning at every start, by a consumer of its own (a
 * group of this process alone, no offsets kept: applying an item again changes nothing), and its
 * records go to onItems; its misfits go to `<topic>.dlq`.
 */
export interface ItemSource {
  kind: 'items';
  name: string;
  topic: string;
  decode(value: Buffer | null, headers: IHeaders | undefined, key: Buffer | null): CatalogItem;
  prefetch?(values: Array<Buffer | null>): Promise<void>;
}

/** What setSources takes: the subscriptions of both kinds. */
export type Source = TopicSource | ItemSource;

/** Counters of one subscription (a TopicSource, or an ItemSource: `trained` counts the items
 *  applied to the catalog, and its messages are not in the interactions totals). */
export interface SourceStats {
  topic: string;
  /** Messages read from its topic (not counting those skipped). */
  consumed: number;
  /** Its events handed to the trainer. */
  trained: number;
  /** Its messages sent to `<topic>.dlq`, per reason. */
  dlq: Record<string, number>;
  /** Messages behind the end of each of its owned partitions, by partition number, as for the
   *  interactions topic (ConsumerStats.lag): from the last fetch, else from the broker. */
  lag: Record<string, number>;
}

/** `topic:partition` -> next offset to read (the Kafka meaning of a committed offset). */
export type OffsetMap = Record<string, string>;

/** The brokers, and TLS and SASL when the cluster needs them (kafka-client.ts). */
export interface ConsumerOptions extends KafkaConnection {
  groupId: string;
  interactionsTopic: string;
  itemsTopic: string;
  codec: EventCodec;
  /** Topics read besides the interactions and items topics, each with its decoder (setSources
   *  changes them). */
  sources?: readonly Source[];
  /** Offsets already applied to the restored state: messages below them are skipped. */
  appliedOffsets?: OffsetMap;
  /**
   * Applies decoded events to the state. It may return a promise (to learn in slices and let
   * requests in between); the next events wait for it, and offsets move only when it resolves.
   */
  onEvents(events: Interaction[]): void | Promise<void>;
  onItems(items: CatalogItem[]): void;
  /** Serialises state changes with snapshots: eachBatch applies its events inside it. */
  withStateLock<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Told, once, when consuming stops for good: onEvents or onItems threw (the state may hold part
   * of a batch, so nothing more is applied on top of it and no offset moves past it), or Kafka's
   * client crashed a consumer and will not restart it. The caller decides what the process does
   * (the service halts without a snapshot, and `pme serve` exits non-zero). Default: nothing.
   */
  onFatal?(error: Error): void;
  /** Prefix of the client id; the id itself also says when this consumer started (fence.ts). */
  clientId?: string;
  /**
   * One trainer per group (fence.ts): wait at start for other members to leave, else fail with
   * PME_ERR_GROUP_TAKEN; after each join, stop if an older trainer is in the group. Default true;
   * false lets several members split the partitions, each learning a model of its own share.
   */
  exclusive?: boolean;
  /** Lines for an operator (waiting for the group, a newer trainer joined). Default: stderr. */
  log?(line: string): void;
  /**
   * Events per trainer mini-batch; chunks end at offsets that are multiples of it (see the module
   * comment). Default 1024. Smaller: shared parameters step more often, more per-batch overhead.
   */
  batchEvents?: number;
  /**
   * Longest time, in ms, the broker holds a fetch open when there is nothing to read. Default 500.
   * It bounds how long leaving the group waits for the fetch in flight; lower costs idle requests.
   */
  maxWaitMs?: number;
  /** Wait for the state lock, in ms, after which the topic is paused until it is held. Default 1000. */
  pauseAfterMs?: number;
  /**
   * Group session timeout, in ms: how long a member that stopped heartbeating (killed) keeps its
   * partitions. Default 10 000 (kafkajs: 30 000), so a restarted instance resumes within about
   * that; the broker's group.min.session.timeout.ms (6 000 by default) is the floor.
   */
  sessionTimeoutMs?: number;
  /**
   * How often, in ms, the lag of a partition that no fetch reported lately is read from the
   * broker's end offsets. Default 2000. Fetches return only messages, so without this an idle
   * partition's lag would be unknown (after a restart at its end) or stale.
   */
  lagRefreshMs?: number;
}

export interface ConsumerStats {
  /** Messages read from the interactions topic (not counting those skipped). */
  consumed: number;
  /** Events handed to the trainer. */
  trained: number;
  /** Messages below the restored state's offsets, read again and skipped. */
  skipped: number;
  /** Messages sent to the DLQ, per reason. */
  dlq: Record<string, number>;
  /**
   * Messages behind the end of each owned partition, by partition number: from its last fetch,
   * or, for a partition with nothing to fetch (a restart at its end), from the broker's offsets.
   */
  lag: Record<string, number>;
  /** Partitions of the interactions topic this member owns now. */
  partitions: number;
  /** Times the topic was paused because the state lock was held too long. */
  pauses: number;
  /** Mini-batches handed to the trainer. */
  batches: number;
  /** Milliseconds spent decoding, applying to the state (training), and waiting for the lock. */
  decodeMs: number;
  applyMs: number;
  lockWaitMs: number;
  /** Per subscription (TopicSource name), its own counters; the totals above include them. */
  subscriptions: Record<string, SourceStats>;
}

interface Pending {
  events: Interaction[];
  /** Offset after the last message the chunk covers (events and DLQ'd messages). */
  next: bigint;
  /** offset / batchEvents of its messages. */
  chunk: bigint;
}

/** How long close() waits for the catalog consumer to leave its throwaway group. */
const CATALOG_GOODBYE_MS = 1000;

const DEFAULTS = Object.freeze({
  batchEvents: 1024,
  maxWaitMs: 500,
  pauseAfterMs: 1000,
  sessionTimeoutMs: 10_000,
  lagRefreshMs: 2000,
});
/** The tuning options: positive integers, with the defaults above. */
type Tuning = keyof typeof DEFAULTS;
type Resolved = Readonly<ConsumerOptions & Required<Pick<ConsumerOptions, Tuning>>>;

function resolveOptions(options: ConsumerOptions): Resolved {
  const o = { ...DEFAULTS, ...options };
  for (const name of Object.keys(DEFAULTS) as Tuning[]) {
    if (!(Number.isInteger(o[name]) && o[name] > 0))
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        `consumer ${name} must be a positive integer, got ${o[name]}`,
      );
  }
  return Object.freeze(o);
}

export class StreamConsumer {
  readonly stats: ConsumerStats = {
    consumed: 0,
    trained: 0,
    skipped: 0,
    dlq: {},
    lag: {},
    partitions: 0,
    pauses: 0,
    batches: 0,
    decodeMs: 0,
    applyMs: 0,
    lockWaitMs: 0,
    subscriptions: {},
  };
  /** Subscriptions' topics -> their source (setSources). */
  #sources = new Map<string, TopicSource>();
  /** Items subscriptions' topics -> their source and reader (null until started). */
  readonly #itemReaders = new Map<string, { source: ItemSource; consumer: Consumer | null }>();
  /** Next offset each partition of an items subscription's topic is read from. */
  readonly #itemNext = new Map<string, bigint>();
  /** The topic set change in progress (setSources), which the next change and a stop wait for. */
  #swap: Promise<void> = Promise.resolve();
  /** stopFetching was called: a topic change no longer starts the group consumer again. */
  #stopped = false;
  /** The group fence, made at start. */
  #fence: GroupFence | undefined;
  /** Next offset to read per partition, for events already applied to the in-memory state. */
  readonly #applied: Map<string, bigint>;
  /** Unfinished mini-batch per partition: read, not applied yet. */
  readonly #pending = new Map<string, Pending>();
  /** Partitions this member owns in the current generation (`topic:partition`). */
  #assigned = new Set<string>();
  readonly #options: Resolved;
  readonly #chunk: bigint;
  readonly #kafka: Kafka;
  #consumer;
  readonly #catalog;
  readonly #producer;
  readonly #admin;
  /** Reads lag: one try per read, short timeouts (see the constructor). */
  readonly #lagAdmin;
  /** When each partition's lag was last reported by a fetch (performance.now()). */
  readonly #fetchedAt = new Map<string, number>();
  #lagTimer: NodeJS.Timeout | undefined;
  /** The broker read of `refreshLag` in flight, awaited by `close` (a late one would reconnect). */
  #lagRead: Promise<void> | undefined;
  #closed = false;
  /** Running: started, not stopped, not failed (kafkajs may be retrying: see live). */
  #live = false;
  /** When the broker last answered a fetch or a heartbeat (performance.now()). */
  #lastContact = 0;
  /** Why consuming stopped for good (see onFatal), null while it goes on. */
  #failed: Error | null = null;
  readonly #clientId: string;
  /** The group check after the latest join, which commits wait for (a yielding trainer commits nothing). */
  #fenceCheck: Promise<void> = Promise.resolve();

  constructor(options: ConsumerOptions) {
    this.#options = resolveOptions(options);
    this.#chunk = BigInt(this.#options.batchEvents);
    this.#applied = new Map(Object.entries(options.appliedOffsets ?? {}).map(([k, v]) => [k, BigInt(v)]));
    this.#clientId = trainerClientId(options.clientId ?? 'pme', Date.now(), process.pid);
    this.#kafka = kafkaClient(options, {
      clientId: this.#clientId,
      logCreator: kafkaLog,
      retry: {
        retries: 8,
        // Backoffs capped at 2 s, not kafkajs's 30 s: after a broker outage the consumers resume
        // within seconds, and a stop (which waits out the backoff in progress) ends soon.
        maxRetryTime: 2000,
        // A consumer that crashes after close() stays down: kafkajs would restart one whose
        // disconnect came while it was joining, and it would retry for as long as the process ran.
        restartOnFailure: async () => !this.#closed,
      },
    });
    const maxWaitTimeInMs = this.#options.maxWaitMs;
    this.#consumer = this.#groupConsumer();
    for (const source of options.sources ?? []) this.#addSource(source);
    // The catalog is small and compacted: every instance reads all of it, from the beginning.
    this.#catalog = this.#kafka.consumer({
      groupId: `${options.groupId}-catalog-${process.pid}-${Date.now()}`,
      maxWaitTimeInMs,
    });
    this.#producer = this.#kafka.producer({
      allowAutoTopicCreation: true,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    this.#admin = this.#kafka.admin();
    // A lag read that fails is harmless (the next comes in lagRefreshMs), and close() waits for
    // the one in flight: with the client's own retries, a read on a connection the broker dropped
    // (a broker restart) held a stop for seconds.
    this.#lagAdmin = kafkaClient(options, {
      clientId: this.#clientId,
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
      connectionTimeout: 1000,
      requestTimeout: 2000,
    }).admin();
  }

  /** A group consumer (kafkajs cannot drop a topic from one: a topic change makes a new one). */
  #groupConsumer() {
    return this.#kafka.consumer({
      groupId: this.#options.groupId,
      maxBytesPerPartition: 1 << 20,
      maxWaitTimeInMs: this.#options.maxWaitMs,
      sessionTimeout: this.#options.sessionTimeoutMs,
      heartbeatInterval: Math.min(3000, Math.floor(this.#options.sessionTimeoutMs / 3)),
    });
  }

  #addSource(source: Source): void {
    if (source.kind === 'items') {
      const reader = this.#itemReaders.get(source.topic);
      if (reader === undefined) this.#itemReaders.set(source.topic, { source, consumer: null });
      else reader.source = source;
    } else this.#sources.set(source.topic, source);
    this.stats.subscriptions[source.name] ??= {
      topic: source.topic,
      consumed: 0,
      trained: 0,
      dlq: {},
      lag: {},
    };
  }

  /** Every topic the group consumer reads: the interactions topic, then the subscriptions'. */
  topics(): string[] {
    return [this.#options.interactionsTopic, ...this.#sources.keys()];
  }

  /**
   * Replaces the subscriptions' topics. kafkajs cannot change the topics of a running consumer,
   * so the group consumer stops at a batch boundary (the batch in progress ends; its unfinished
   * mini-batches are dropped, not applied, and read again), leaves the group, and a new one joins
   * with the new topic set. Offsets keep their rule: the new member starts from the group's
   * committed offsets, and what the state already holds (applied offsets) is skipped. A removed
   * subscription's offsets stay (harmless; they are skipped from if it comes back). Changes run
   * one at a time, in the order asked.
   */
  setSources(sources: readonly Source[]): Promise<void> {
    const next = this.#swap.then(async () => {
      await this.#setItemSources(sources.filter((s): s is ItemSource => s.kind === 'items'));
      const events = sources.filter((s): s is TopicSource => s.kind !== 'items');
      const same =
        events.length === this.#sources.size &&
        events.every((s) => this.#sources.get(s.topic)?.name === s.name);
      const apply = (): void => {
        this.#sources = new Map();
        for (const source of events) this.#addSource(source);
        for (const name of Object.keys(this.stats.subscriptions))
          if (!sources.some((s) => s.name === name)) delete this.stats.subscriptions[name];
      };
      if (!this.#live || this.#stopped || this.#closed || this.#failed !== null || same) {
        apply();
        return;
      }
      const old = this.#consumer;
      await old.disconnect();
      this.#pending.clear();
      apply();
      if (this.#stopped || this.#closed || this.#failed !== null) return;
      this.#consumer = this.#groupConsumer();
      try {
        await this.#runGroup();
      } catch (error) {
        // Out of the group for good: the service halts as for any consumer that stopped.
        this.#fail(error);
        throw error;
      }
    });
    this.#swap = next.catch(() => undefined);
    return next;
  }

  /** Starts the readers of items subscriptions added, stops those of the ones removed (their
   *  items stay in the catalog); no group rejoins, the readers are not in the group. */
  async #setItemSources(items: readonly ItemSource[]): Promise<void> {
    for (const [topic, reader] of this.#itemReaders) {
      if (items.some((s) => s.topic === topic && s.name === reader.source.name)) continue;
      this.#itemReaders.delete(topic);
      for (const key of [...this.#itemNext.keys()])
        if (key.startsWith(`${topic}:`)) this.#itemNext.delete(key);
      if (reader.consumer !== null) await this.#stopReader(reader.consumer);
    }
    for (const source of items) {
      this.#addSource(source);
      if (this.#live && !this.#stopped && !this.#closed && this.#failed === null)
        await this.#startItemReader(source.topic);
    }
  }

  /** Reads an items subscription's topic from its beginning, with a consumer of its own. */
  async #startItemReader(topic: string): Promise<void> {
    const reader = this.#itemReaders.get(topic);
    if (reader === undefined || reader.consumer !== null) return;
    const consumer = this.#kafka.consumer({
      groupId: `${this.#options.groupId}-catalog-${reader.source.name}-${process.pid}-${Date.now()}`,
      maxWaitTimeInMs: this.#options.maxWaitMs,
    });
    reader.consumer = consumer;
    const current = (): boolean => this.#itemReaders.get(topic)?.consumer === consumer;
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart && current()) this.#fail(payload.error);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        const source = this.#itemReaders.get(topic)?.source;
        if (source === undefined || !current()) return;
        const stats = this.stats.subscriptions[source.name];
        await this.#catalogBatch(batch, source, current, stats);
        const key = `${topic}:${batch.partition}`;
        if (batch.messages.length > 0) this.#itemNext.set(key, BigInt(batch.lastOffset()) + 1n);
        if (stats !== undefined && current())
          stats.lag[String(batch.partition)] = Math.max(0, Number(batch.offsetLag()));
        this.#fetchedAt.set(key, performance.now());
      },
    });
  }

  /** A reader's goodbye, bounded: its group is this process's alone and holds no offsets worth
   *  waiting for (after a broker restart its disconnect waits for a join held ~10 s). */
  async #stopReader(consumer: Consumer): Promise<void> {
    await Promise.race([consumer.disconnect(), sleep(CATALOG_GOODBYE_MS, undefined, { ref: false })]);
  }

  /**
   * One fetched batch of catalog records (the items topic's or an items subscription's): each
   * decoded, a misfit sent to `<topic>.dlq`, the rest applied together under the state lock
   * unless `current()` says the reader was stopped meanwhile.
   */
  async #catalogBatch(
    batch: Batch,
    decoder: Pick<ItemSource, 'decode' | 'prefetch'>,
    current: () => boolean,
    sourceStats?: SourceStats,
  ): Promise<void> {
    if (batch.messages.length === 0 || this.#failed !== null) return;
    const o = this.#options;
    const items: CatalogItem[] = [];
    await decoder.prefetch?.(batch.messages.map((m) => m.value));
    for (const message of batch.messages) {
      if (sourceStats !== undefined) sourceStats.consumed++;
      try {
        items.push(decoder.decode(message.value, message.headers, message.key));
      } catch (error) {
        await this.#toDlq(batch.topic, batch.partition, message, error, sourceStats);
      }
    }
    if (items.length === 0 || this.#failed !== null) return;
    await o.withStateLock(async () => {
      if (!current()) return;
      try {
        o.onItems(items);
      } catch (error) {
        this.#fail(error);
        return;
      }
      if (sourceStats !== undefined) sourceStats.trained += items.length;
    });
  }

  /**
   * True while the group consumer runs and the broker answers: a fetch or heartbeat answered
   * within the session timeout (what the group itself allows a member). kafkajs retries a lost
   * broker quietly for a long time; without this a service cut off from Kafka read as live.
   */
  get live(): boolean {
    return this.#live && this.silentMs < this.#options.sessionTimeoutMs;
  }

  /** Milliseconds since the broker last answered a fetch or a heartbeat. */
  get silentMs(): number {
    return performance.now() - this.#lastContact;
  }

  /** Offsets of the state as it is now; call under the state lock to pair them with a snapshot. */
  appliedOffsets(): OffsetMap {
    const out: OffsetMap = {};
    for (const [key, offset] of this.#applied) out[key] = offset.toString();
    return out;
  }

  /** Partitions of the interactions topic this member owns now, as `topic:partition`. */
  assignment(): string[] {
    return [...this.#assigned].sort();
  }

  async start(): Promise<void> {
    const o = this.#options;
    await this.#producer.connect();
    await this.#admin.connect();
    await this.#lagAdmin.connect();
    await this.#catalog.connect();
    await this.#catalog.subscribe({ topics: [o.itemsTopic], fromBeginning: true });
    const itemsTopic = {
      decode: o.codec.decodeItem.bind(o.codec),
      prefetch: o.codec.prefetch?.bind(o.codec),
    };
    await this.#catalog.run({
      eachBatch: async ({ batch }) => this.#catalogBatch(batch, itemsTopic, () => true),
    });
    for (const topic of this.#itemReaders.keys()) await this.#startItemReader(topic);

    const fence = new GroupFence({
      admin: this.#admin,
      groupId: o.groupId,
      clientId: this.#clientId,
      sessionTimeoutMs: o.sessionTimeoutMs,
      log: o.log ?? ((line) => console.error(line)),
    });
    this.#fence = fence;
    if (o.exclusive !== false) await fence.awaitSole();
    this.#catalog.on(this.#catalog.events.CRASH, ({ payload }) => {
      if (!payload.restart) this.#fail(payload.error);
    });
    await this.#runGroup();
    this.#live = true;
    this.#lastContact = performance.now();
    this.#lagTimer = setInterval(() => this.#readLag(), o.lagRefreshMs);
    this.#lagTimer.unref();
  }

  /** Joins the group on every topic (topics()) with the current group consumer, and runs it. */
  async #runGroup(): Promise<void> {
    const o = this.#options;
    const fence = this.#fence!;
    const consumer = this.#consumer;
    await consumer.connect();
    // A subscription's topic is read from its beginning the first time (its history is learned).
    await consumer.subscribe({ topics: this.topics(), fromBeginning: true });
    // kafkajs restarts a consumer after a retriable error by itself; after any other, it is gone.
    const contact = (): void => {
      this.#lastContact = performance.now();
    };
    consumer.on(consumer.events.FETCH, contact);
    consumer.on(consumer.events.HEARTBEAT, contact);
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart && consumer === this.#consumer) this.#fail(payload.error);
    });
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      contact();
      if (o.exclusive !== false)
        this.#fenceCheck = fence.check().then(
          (taken) => {
            if (taken === null) return;
            this.#fail(taken);
            // Yielding means leaving: a member that stays, paused, holds its partitions from the
            // trainer it yields to until its owner closes it.
            consumer.stop().catch(() => undefined);
          },
          () => undefined, // the group could not be read: the next join checks again
        );
      const assigned = new Set<string>();
      for (const [topic, partitions] of Object.entries(payload.memberAssignment))
        for (const partition of partitions) assigned.add(`${topic}:${partition}`);
      // An unfinished chunk of a partition now owned by another member is that member's to read.
      for (const key of this.#pending.keys()) if (!assigned.has(key)) this.#pending.delete(key);
      this.#assigned = assigned;
      this.stats.partitions = assigned.size;
      // Lag of a partition another member owns now is that member's to report.
      for (const topic of this.topics()) {
        const lag = this.#lagOf(topic);
        if (lag === undefined) continue;
        for (const partition of Object.keys(lag))
          if (!assigned.has(`${topic}:${partition}`)) delete lag[partition];
      }
      this.#readLag();
    });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (batch.messages.length === 0 || this.#failed !== null) return;
        const key = `${batch.topic}:${batch.partition}`;
        const source = this.#sources.get(batch.topic);
        const sourceStats = source === undefined ? undefined : this.stats.subscriptions[source.name];
        // Only a decoder that prefetches (registry mode) gets the batch's values listed.
        if (source === undefined) await o.codec.prefetch?.(batch.messages.map((m) => m.value));
        else await source.prefetch?.(batch.messages.map((m) => m.value));
        await this.#locked(batch.topic, heartbeat, async () => {
          const stats = this.stats;
          const chunkSize = this.#chunk;
          let last = -1n;
          let complete = true;
          const started = performance.now();
          let applyMs = 0;
          let yieldedMs = 0;
          const flush = async (p: Pending): Promise<void> => {
            this.#pending.delete(key);
            if (p.events.length > 0) {
              const t0 = performance.now();
              try {
                await o.onEvents(p.events);
              } catch (error) {
                // Its offsets do not move: a restart from the last snapshot reads it again.
                this.#fail(error);
                return;
              }
              applyMs += performance.now() - t0;
              stats.trained += p.events.length;
              if (sourceStats !== undefined) sourceStats.trained += p.events.length;
              stats.batches++;
            }
            this.#applied.set(key, p.next);
          };
          for (const message of batch.messages) {
            if (!isRunning() || isStale() || this.#failed !== null) {
              complete = false;
              break;
            }
            const offset = BigInt(message.offset);
            let pending = this.#pending.get(key);
            const applied = this.#applied.get(key) ?? -1n;
            if (offset < applied) {
              stats.skipped++;
              resolveOffset(message.offset);
              continue;
            }
            // Read again after a seek while its chunk is still open: it is in that chunk already.
            if (pending !== undefined && offset < pending.next) {
              resolveOffset(message.offset);
              continue;
            }
            const chunk = offset / chunkSize;
            if (pending !== undefined && pending.chunk !== chunk) {
              await flush(pending);
              pending = undefined;
            }
            if (pending === undefined) {
              pending = { events: [], next: offset, chunk };
              this.#pending.set(key, pending);
            }
            stats.consumed++;
            if (sourceStats !== undefined) sourceStats.consumed++;
            try {
              pending.events.push(
                source === undefined
                  ? o.codec.decodeInteraction(message.value, message.headers, message.key)
                  : source.decode(message.value, message.headers, message.key),
              );
            } catch (error) {
              // Sent before its offset can be applied: a crash in between sends it again, never loses it.
              await this.#toDlq(batch.topic, batch.partition, message, error, sourceStats);
            }
            pending.next = offset + 1n;
            resolveOffset(message.offset);
            last = offset;
            if (pending.next % chunkSize === 0n) {
              await flush(pending);
              // A fetch holds thousands of events: let HTTP requests in between mini-batches.
              const y0 = performance.now();
              await nextTurn();
              yieldedMs += performance.now() - y0;
            }
          }
          // Caught up with the partition: nothing more to wait for, train what is there.
          const open = this.#pending.get(key);
          if (
            complete &&
            open !== undefined &&
            last + 1n >= BigInt(batch.highWatermark) &&
            this.#failed === null
          )
            await flush(open);
          stats.applyMs += applyMs;
          // The rest of the time in this loop: decoding, DLQ sends, bookkeeping.
          stats.decodeMs += performance.now() - started - applyMs - yieldedMs;
        });
        const lag = Math.max(0, Number(batch.offsetLag()));
        if (sourceStats !== undefined) sourceStats.lag[String(batch.partition)] = lag;
        else this.stats.lag[String(batch.partition)] = lag;
        this.#fetchedAt.set(key, performance.now());
        await heartbeat();
      },
    });
  }

  /** Stops consuming for good, once: no more fetches, nothing more applied (see onFatal). */
  #fail(error: unknown): void {
    if (this.#failed !== null || this.#closed) return;
    this.#failed = error instanceof Error ? error : new Error(String(error));
    this.#live = false;
    clearInterval(this.#lagTimer);
    this.#pauseAll();
    this.#options.onFatal?.(this.#failed);
  }

  /** Starts a lag read unless one is in flight or the consumer is closing. */
  #readLag(): void {
    if (this.#closed || this.#lagRead !== undefined) return;
    this.#lagRead = this.#refreshLag()
      .catch(() => undefined)
      .finally(() => {
        this.#lagRead = undefined;
      });
  }

  /**
   * Lag of each partition that no fetch reported within `lagRefreshMs`, read from the broker: for
   * a partition of a topic the group reads (the interactions topic and the event subscriptions')
   * that this member owns, its end offset less the next offset this member reads (an unfinished
   * mini-batch's end, else the later of the applied and the group's committed offset, else the
   * start of the log); for an items subscription's topic, whose reader reads every partition, its
   * end less where that reader is. A failed read leaves the last figures; the next tick tries
   * again.
   */
  async #refreshLag(): Promise<void> {
    const o = this.#options;
    const now = performance.now();
    const isStale = (key: string): boolean =>
      (this.#fetchedAt.get(key) ?? Number.NEGATIVE_INFINITY) < now - o.lagRefreshMs;
    const stale = [...this.#assigned].filter(isStale);
    const topics = this.topics().filter((topic) => stale.some((key) => key.startsWith(`${topic}:`)));
    const itemTopics = [...this.#itemReaders.keys()];
    if (topics.length + itemTopics.length === 0) return;
    const [ends, committed] = await Promise.all([
      Promise.all([...topics, ...itemTopics].map((topic) => this.#lagAdmin.fetchTopicOffsets(topic))),
      topics.length === 0 ? [] : this.#lagAdmin.fetchOffsets({ groupId: o.groupId, topics }),
    ]);
    const committedAt = new Map<string, bigint>();
    for (const { topic, partitions } of committed)
      for (const p of partitions) committedAt.set(`${topic}:${p.partition}`, BigInt(p.offset));
    [...topics, ...itemTopics].forEach((topic, i) => {
      // A subscription removed while the read was in flight has no counters to write to.
      const lag = this.#lagOf(topic);
      if (lag === undefined) return;
      const grouped = i < topics.length;
      for (const { partition, high, low } of ends[i]) {
        const key = `${topic}:${partition}`;
        if (!isStale(key) || (grouped && !this.#assigned.has(key))) continue;
        let next = BigInt(low);
        const at = grouped ? [this.#applied.get(key), committedAt.get(key)] : [this.#itemNext.get(key)];
        for (const offset of at) if (offset !== undefined && offset > next) next = offset;
        if (grouped) next = this.#pending.get(key)?.next ?? next;
        lag[String(partition)] = Math.max(0, Number(BigInt(high) - next));
      }
    });
  }

  /** The lag figures of a topic: the interactions topic's, or its subscription's. */
  #lagOf(topic: string): Record<string, number> | undefined {
    if (topic === this.#options.interactionsTopic) return this.stats.lag;
    const source = this.#sources.get(topic) ?? this.#itemReaders.get(topic)?.source;
    return source === undefined ? undefined : this.stats.subscriptions[source.name]?.lag;
  }

  /**
   * Runs `fn` under the state lock. While it waits, the member heartbeats (kafkajs heartbeats only
   * between batches, and a wait longer than the session timeout would cost it its partitions), and
   * after `pauseAfterMs` the topic is paused, so no fetch piles up behind the lock.
   */
  async #locked(topic: string, heartbeat: () => Promise<void>, fn: () => Promise<void>): Promise<void> {
    const o = this.#options;
    const waitStart = performance.now();
    let waiting = true;
    let paused = false;
    const beat = setInterval(
      () => {
        if (!waiting) return;
        heartbeat().catch(() => undefined);
        if (!paused && performance.now() - waitStart >= o.pauseAfterMs && this.#live) {
          paused = true;
          this.stats.pauses++;
          this.#consumer.pause([{ topic }]);
        }
      },
      Math.min(1000, o.pauseAfterMs),
    );
    try {
      await o.withStateLock(async () => {
        waiting = false;
        clearInterval(beat);
        this.stats.lockWaitMs += performance.now() - waitStart;
        await fn();
      });
    } finally {
      waiting = false;
      clearInterval(beat);
      if (paused && this.#live) this.#consumer.resume([{ topic }]);
    }
  }

  async #toDlq(
    topic: string,
    partition: number,
    message: KafkaMessage,
    error: unknown,
    sourceStats?: SourceStats,
  ): Promise<void> {
    const reason: DlqReason = error instanceof DecodeError ? error.reason : 'undecodable';
    this.stats.dlq[reason] = (this.stats.dlq[reason] ?? 0) + 1;
    if (sourceStats !== undefined) sourceStats.dlq[reason] = (sourceStats.dlq[reason] ?? 0) + 1;
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
   * Commits offsets that a durable snapshot holds, for the partitions this member owns now: a
   * partition another member took over has moved on, and committing it would rewind that member.
   * A failure here is harmless (the snapshot has the offsets and messages below them are skipped
   * after a restart), so it is reported, not thrown.
   */
  async commit(offsets: OffsetMap): Promise<boolean> {
    await this.#fenceCheck;
    if (this.#failed !== null) return false;
    const list = Object.entries(offsets)
      .filter(([key]) => this.#assigned.has(key))
      .map(([key, offset]) => {
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
   * under the state lock, which the final snapshot waits for; an unfinished mini-batch is not
   * applied (its events are read again by whoever owns the partition next).
   */
  async stopFetching(): Promise<void> {
    this.#stopped = true;
    await this.#swap;
    this.#live = false;
    clearInterval(this.#lagTimer);
    this.#pauseAll();
  }

  /** Pauses every consumer; one that crashed has nothing to pause (kafkajs throws: not initialized). */
  #pauseAll(): void {
    const readers: Array<readonly [Consumer, string[]]> = [];
    for (const [topic, { consumer }] of this.#itemReaders)
      if (consumer !== null) readers.push([consumer, [topic]]);
    for (const [consumer, topics] of [
      [this.#consumer, this.topics()] as const,
      [this.#catalog, [this.#options.itemsTopic]] as const,
      ...readers,
    ]) {
      try {
        consumer.pause(topics.map((topic) => ({ topic })));
      } catch {}
    }
  }

  /** Leaves the group and closes every connection. */
  async close(): Promise<void> {
    this.#live = false;
    this.#closed = true;
    clearInterval(this.#lagTimer);
    await this.#lagRead;
    await this.#swap;
    await Promise.all([
      this.#consumer.disconnect(),
      // The catalog readers' goodbyes are bounded (#stopReader).
      this.#stopReader(this.#catalog),
      ...[...this.#itemReaders.values()].map(({ consumer }) => consumer && this.#stopReader(consumer)),
      this.#producer.disconnect(),
      this.#admin.disconnect(),
      this.#lagAdmin.disconnect(),
    ]);
  }
}
