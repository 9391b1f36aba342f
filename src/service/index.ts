/**
 * The service: the one place that wires stream → engine → store and the API, and owns the
 * lifecycle. Start: restore the newest snapshot, join the consumer group, serve HTTP.
 * Every `snapshotIntervalMs`: snapshot (store, model, applied offsets) atomically, then
 * commit those offsets. Stop, in order: stop HTTP intake, stop fetching, snapshot, commit,
 * leave the group.
 */
import { mkdir } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../api/server.js';
import { type Config, schemaRegistryAuth } from '../config.js';
import {
  ChangeTracker,
  initBackend,
  learnInSlices,
  memoryActions,
  PmeController,
  type PublishMarker,
  startItemRefresh,
  Trainer,
} from '../engine/index.js';
import { PmeError } from '../errors.js';
import type { EmbeddingStore } from '../store/index.js';
import {
  createInteractionCodec,
  createItemCodec,
  describeConnection,
  ensureParamsTopic,
  ensureTopic,
  ensureTopics,
  HttpSchemaRegistry,
  type KafkaConnection,
  kafkaConnection,
  type OffsetMap,
  ParamPacker,
  ParamsPublisher,
  StreamConsumer,
  toEventCodec,
  unpackRecords,
  waitForKafka,
} from '../stream/index.js';
import { serviceApi, tierMetrics, trainerReadiness } from './adapter.js';
import { admittingCodec } from './admission.js';
import { StateLock } from './lock.js';
import { ServiceMetrics } from './metrics.js';
import { RecentItems } from './recent.js';
import { type ServingThread, startServingThread } from './serving.js';
import {
  applyRestored,
  pmeOptions,
  restoreState,
  SnapshotAge,
  takeSnapshot,
  trainerOptions,
} from './state.js';
import { fileSubscriptions, restoredSubscriptions, Subscriptions } from './subscriptions.js';

export interface Service {
  /** Base URL of the HTTP API. */
  readonly url: string;
  readonly trainer: Trainer;
  readonly store: EmbeddingStore;
  /** Takes a snapshot now and commits its offsets; resolves with the snapshot's path. */
  snapshot(): Promise<string>;
  /** Ordered shutdown; safe to call more than once. */
  stop(): Promise<void>;
  /**
   * Settles, with its error, if the consumer stops for good (an error Kafka's client will not
   * retry). The service has then halted: HTTP closed, Kafka left, and no snapshot taken, since the
   * state in memory may hold part of a batch that the last snapshot and its offsets do not. The
   * process should exit non-zero, so that a supervisor restarts it from that snapshot.
   */
  failed?: Promise<Error>;
  /** Set on a replica: how far behind the trainer it is. */
  replica?: {
    staleness(): number;
    caughtUp(): boolean;
    marker(): PublishMarker | null;
  };
}

export type Log = (line: string) => void;

/** Longest wait for Kafka during shutdown. */
const STOP_GRACE_MS = 10_000;
/** How often the clock's work (windows due by time, TTL expiry) is looked at when idle. */
const CLOCK_TICK_MS = 1000;

/** Times the steps of a stop, so a slow one names the step that held it. */
class PhaseClock {
  #last = performance.now();
  readonly #start = this.#last;
  readonly #phases: string[] = [];
  end(name: string): void {
    const now = performance.now();
    this.#phases.push(`${name} ${Math.round(now - this.#last)} ms`);
    this.#last = now;
  }
  summary(): string {
    return `${Math.round(this.#last - this.#start)} ms (${this.#phases.join(', ')})`;
  }
}

async function bounded(work: Promise<unknown>, ms: number, onTimeout: () => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  const outcome = await Promise.race([work.catch(() => undefined), timeout]);
  clearTimeout(timer);
  if (outcome === 'timeout') onTimeout();
}

/**
 * The trainer's side of scale-out: every `publishIntervalMs`, the rows, projections, tier moves
 * and evictions changed since the last publish go to the compacted parameter topic that
 * replicas follow. Records are collected under the state lock (one consistent state), sent
 * outside it. A failed send is retried with the next publish's records plus a full resend.
 */
async function startPublishing(
  config: Config,
  connection: KafkaConnection,
  store: EmbeddingStore,
  trainer: Trainer,
  lock: StateLock,
  log: Log,
) {
  if (config.publishIntervalMs === 0) return null;
  await ensureParamsTopic(connection, config.paramsTopic);
  const tracker = new ChangeTracker(store, trainer);
  const publisher = new ParamsPublisher(connection, config.paramsTopic);
  await publisher.connect();
  let running: Promise<void> | null = null;
  const publish = (): Promise<void> => {
    running ??= (async () => {
      // Under the lock (no batch half-applied), in slices (requests served in between).
      const packer = await lock.run(() => tracker.collectInSlices(Date.now(), new ParamPacker()));
      const packs = packer.finish();
      try {
        for (const pack of packs) await publisher.publish(unpackRecords(pack));
      } catch (error) {
        log(
          `pme: parameter publish failed (${error instanceof Error ? error.message : error}); resending all next time`,
        );
        tracker.reset();
      }
    })().finally(() => {
      running = null;
    });
    return running;
  };
  await publish();
  const timer = setInterval(() => void publish(), config.publishIntervalMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
      await bounded(publish(), STOP_GRACE_MS, () => log('pme: final parameter publish timed out'));
      await bounded(publisher.disconnect(), STOP_GRACE_MS, () => {});
    },
    /** Stops without a last publish (after a failure: replicas keep the last consistent state). */
    halt: async () => {
      clearInterval(timer);
      await running;
      await bounded(publisher.disconnect(), STOP_GRACE_MS, () => {});
    },
  };
}

/**
 * How long the item-only term of score and recommend may lag the model, in ms (trainer and
 * replicas): a read then costs s multiply-adds per item instead of a full refresh (see the
 * consistency rule in src/engine/trainer.ts). Past it since the last change, reads are exact.
 */
export const ITEM_REFRESH_MS = 1000;

export async function startService(
  config: Config,
  log: Log = (line) => process.stderr.write(`${line}\n`),
): Promise<Service> {
  if (config.brokers.length === 0)
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      'no Kafka brokers: set KAFKA_BROKERS or --brokers (or run `pme up`)',
    );
  // Files (CA, client certificate, password file) are read once, here.
  const connection = kafkaConnection(config);
  if (connection.ssl !== undefined || connection.sasl !== undefined)
    log(`pme: Kafka at ${describeConnection(connection)}`);
  await waitForKafka(connection, config.brokerWaitMs, log);
  await mkdir(config.stateDir, { recursive: true });
  const backend = await initBackend();
  const skipped = backend.skipped.map((s) => s.name).join(', ');
  log(`pme: dense backend ${backend.name}${skipped ? ` (not available here: ${skipped})` : ''}`);
  const { store, extra, writtenAt, removedTemps, skipped: unusable } = await restoreState(config);
  if (removedTemps > 0)
    log(
      `pme: removed ${removedTemps} temporary file(s) of snapshot writes that died with an earlier process`,
    );
  for (const { path, reason } of unusable)
    log(`pme: snapshot ${path} is unusable (${reason}); restored an older one`);
  const snapshotAge = new SnapshotAge(writtenAt);
  const pme = new PmeController(store, pmeOptions(config));
  const trainer = new Trainer(store, {
    ...trainerOptions(config),
    observer: pme,
    itemRefreshMs: ITEM_REFRESH_MS,
  });
  pme.attach(trainer);
  const stopItemRefresh = startItemRefresh(trainer);
  const offsets = applyRestored(trainer, extra);
  if (extra !== null) pme.importState(extra);
  if (extra !== null)
    log(`pme: restored ${store.size} tokens from ${config.stateDir}, offsets ${JSON.stringify(offsets)}`);
  const recent = new RecentItems();
  let serving: ServingThread | null = null;
  const lock = new StateLock();

  await ensureTopics(connection, {
    interactions: config.interactionsTopic,
    items: config.itemsTopic,
    partitions: config.partitions,
  });
  const registry =
    config.schemaRegistry === ''
      ? undefined
      : new HttpSchemaRegistry(config.schemaRegistry, schemaRegistryAuth(config));
  // Readers only: writer schemas come by the ids in the values; nothing is registered under the
  // user's `<topic>-value` subjects (that is the producers' business).
  const codec = admittingCodec(
    toEventCodec(
      await createInteractionCodec({ registry, topic: config.interactionsTopic }),
      await createItemCodec({ registry, topic: config.itemsTopic }),
    ),
    trainer,
  );
  // Subscriptions: the snapshot's, then the file's (replacing one of the same name).
  const initial = new Map(restoredSubscriptions(extra, log).map((s) => [s.name, s]));
  if (config.subscriptions !== '')
    for (const s of await fileSubscriptions(config.subscriptions)) initial.set(s.name, s);
  for (const s of initial.values())
    await ensureTopic(connection, s.topic, config.partitions, 1, s.kind === 'items');
  const subscriptions: Subscriptions = new Subscriptions(
    {
      reserved: [config.interactionsTopic, config.itemsTopic, config.paramsTopic],
      trainer,
      ensureTopic: (topic, compacted) => ensureTopic(connection, topic, config.partitions, 1, compacted),
      apply: (sources): Promise<void> => consumer.setSources(sources),
      persist: (): Promise<string> => snapshot(),
      registry: registry ?? null,
    },
    [...initial.values()],
  );
  if (initial.size > 0)
    log(`pme: subscriptions ${[...initial.values()].map((s) => `${s.name} (${s.topic})`).join(', ')}`);
  const consumer: StreamConsumer = new StreamConsumer({
    ...connection,
    sources: subscriptions.sources(),
    groupId: config.group,
    exclusive: !config.shareGroup,
    log,
    interactionsTopic: config.interactionsTopic,
    itemsTopic: config.itemsTopic,
    codec,
    appliedOffsets: offsets,
    // In slices, so requests wait ~1 ms at most for training; the trainer ends each batch on its
    // observer (pme): promotions and due windows start there.
    onEvents: async (events) => {
      // A window that a batch started runs before the next batch is learned (reads go on):
      // what is learned then depends on the events alone, not on how fast the window ran.
      await pme.running?.catch(() => undefined);
      await learnInSlices(trainer, events);
      // Recent items are kept where recommend runs: the serving thread, or this one.
      if (serving === null) recent.record(events);
      else serving.recordRecent(events);
    },
    onItems: (items) => {
      for (const item of items) trainer.upsertItem(item);
    },
    withStateLock: (fn) => lock.run(fn),
    onFatal: (error) => onFatal(error),
  });
  // Until the service is up, a fatal error is kept for then (halt needs what is built below).
  let early: Error | null = null;
  let onFatal = (error: Error): void => {
    early ??= error;
  };

  // Offsets go to Kafka after the snapshot that holds them, one commit at a time, the newest
  // snapshot's offsets replacing any still waiting: a slow commit (a broker under load or
  // restarting) delays commits, never the next snapshot, and offsets never go back.
  let waitingOffsets: OffsetMap | null = null;
  let committing: Promise<void> | null = null;
  const commitLatest = (offsets: OffsetMap): Promise<void> => {
    waitingOffsets = offsets;
    committing ??= (async () => {
      while (waitingOffsets !== null) {
        const next = waitingOffsets;
        waitingOffsets = null;
        await bounded(consumer.commit(next), STOP_GRACE_MS, () =>
          log('pme: offset commit timed out (the snapshot holds them)'),
        );
      }
    })().finally(() => {
      committing = null;
    });
    return committing;
  };
  /** Writes a snapshot; its offsets are committed in the background (`committed`). */
  const snapshotOnly = async (): Promise<{ path: string; committed: Promise<void> }> => {
    const { path, offsets, writtenAt } = await takeSnapshot(
      config.stateDir,
      store,
      trainer,
      pme,
      lock,
      () => consumer.appliedOffsets(),
      () => subscriptions.section(),
    );
    snapshotAge.taken(writtenAt);
    return { path, committed: commitLatest(offsets) };
  };
  const snapshot = async (): Promise<string> => {
    const { path, committed } = await snapshotOnly();
    await committed;
    return path;
  };

  const prune = {
    start: (reason: string) => pme.startWindow(reason),
    windows: () => pme.reports(),
  };
  const threaded = config.serveSyncMs > 0;
  const metrics = new ServiceMetrics(
    {
      trainer: () => trainer.stats(),
      consumer: () => ({ ...consumer.stats, headerless: codec.headerless?.() ?? 0 }),
      tiers: () => tierMetrics(store, trainer, pme),
      pruneWindows: () => pme.reports().length,
      backend: () => backend.name,
      memory: () => memoryActions(store, pme),
      snapshotAge: () => snapshotAge.seconds(),
    },
    { requests: !threaded },
  );
  const api = serviceApi({
    store,
    trainer,
    pme,
    recent,
    prune,
    metrics: () => metrics,
    readiness: trainerReadiness(() => consumer.live),
    subscriptions: {
      list: () => subscriptions.list(),
      add: (value) => subscriptions.add(value),
      remove: (name) => subscriptions.remove(name),
    },
  });
  // The API answers from a copy in its own thread (serving.ts), or on this thread when syncs are off.
  let app: FastifyInstance | null = null;
  let address: string;
  if (threaded) {
    serving = await startServingThread(
      store,
      trainer,
      api,
      {
        host: config.host,
        port: config.port,
        adminToken: config.adminToken,
        syncMs: config.serveSyncMs,
        itemRefreshMs: ITEM_REFRESH_MS,
        seed: config.seed,
      },
      log,
    );
    address = serving.url;
  } else {
    app = await buildApi(api, { adminToken: config.adminToken });
    address = await app.listen({ host: config.host, port: config.port });
  }
  try {
    await consumer.start();
  } catch (error) {
    // Refused (the group has another trainer) or unreachable: close what started, so the
    // process ends with the error instead of serving a model that will never learn.
    stopItemRefresh();
    await app?.close();
    await serving?.stop();
    await bounded(consumer.close(), STOP_GRACE_MS, () => {});
    throw error;
  }
  log(`pme: API on ${address}${threaded ? ' (serving thread)' : ''}; state in ${config.stateDir}`);

  const publishing = await startPublishing(config, connection, store, trainer, lock, log);

  // Windows due by time, and TTL expiry, run on a timer too, so an idle service still prunes and
  // expires. Under the state lock: never while a batch is learned (its rows hold tokens a move
  // would pull away) nor while a snapshot copies the store.
  let ticking = false;
  const clockwork = setInterval(() => {
    if (ticking) return;
    ticking = true;
    void lock
      .run(async () => pme.tick())
      .catch((error: unknown) =>
        log(`pme: clock work failed: ${error instanceof Error ? error.message : error}`),
      )
      .finally(() => {
        ticking = false;
      });
  }, CLOCK_TICK_MS);
  clockwork.unref();

  let snapshotting = false;
  const timer = setInterval(() => {
    if (snapshotting) return;
    snapshotting = true;
    snapshotOnly()
      .catch((error: unknown) =>
        log(`pme: snapshot failed: ${error instanceof Error ? error.message : error}`),
      )
      .finally(() => {
        snapshotting = false;
      });
  }, config.snapshotIntervalMs);
  timer.unref();

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(timer);
      clearInterval(clockwork);
      stopItemRefresh();
      const phases = new PhaseClock();
      await app?.close();
      await serving?.stop();
      await consumer.stopFetching();
      phases.end('api');
      const path = await snapshot();
      log(`pme: final snapshot ${path}`);
      phases.end('snapshot');
      await publishing?.stop();
      phases.end('publish');
      // Leaving the group needs the broker; if it is gone, the snapshot already holds the state.
      await bounded(consumer.close(), STOP_GRACE_MS, () =>
        log('pme: Kafka did not answer; left without a goodbye'),
      );
      phases.end('leave');
      log(`pme: stopped in ${phases.summary()}`);
    })();
    return stopping;
  };
  let halting: Promise<void> | null = null;
  /** Stops everything but takes no snapshot and commits nothing (see Service.failed). */
  const halt = (): Promise<void> => {
    halting ??= (async () => {
      clearInterval(timer);
      clearInterval(clockwork);
      stopItemRefresh();
      await app?.close();
      await serving?.stop();
      await publishing?.halt();
      await bounded(consumer.close(), STOP_GRACE_MS, () => {});
    })().catch((error: unknown) => log(`pme: halt: ${error instanceof Error ? error.message : error}`));
    return halting;
  };
  const failed = new Promise<Error>((resolve) => {
    onFatal = (error) => {
      log(
        `pme: the consumer stopped for good: ${error.message}; halting without a snapshot (exit non-zero: a supervisor restarts from the last one)`,
      );
      void halt().then(() => resolve(error));
    };
  });
  if (early !== null) onFatal(early);
  return { url: address, trainer, store, snapshot, stop, failed };
}
