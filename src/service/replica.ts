/**
 * A serving replica: no interactions consumer, no training, no snapshots. It rebuilds the
 * model from the trainer's compacted parameter topic and keeps following it, and serves the
 * same read API. Its staleness (now − the trainer's last publish it applied) is in `/metrics`
 * and `/readyz`.
 */
import { Gauge } from 'prom-client';
import { buildApi } from '../api/server.js';
import type { Config } from '../config.js';
import { initBackend, ReplicaApplier, startItemRefresh, Trainer } from '../engine/index.js';
import { PmeError } from '../errors.js';
import { EmbeddingStore } from '../store/index.js';
import {
  applyRecord,
  describeConnection,
  ensureParamsTopic,
  kafkaConnection,
  ParamsFollower,
  waitForKafka,
} from '../stream/index.js';
import { serviceApi, tierMetrics } from './adapter.js';
import { ITEM_REFRESH_MS, type Log, type Service } from './index.js';
import { ServiceMetrics } from './metrics.js';
import { RecentItems } from './recent.js';
import { storeOptions } from './state.js';

export async function startReplica(
  config: Config,
  log: Log = (line) => process.stderr.write(`${line}\n`),
): Promise<Service> {
  if (config.brokers.length === 0)
    throw new PmeError('PME_ERR_CONFIG_INVALID', 'no Kafka brokers: set KAFKA_BROKERS or --brokers');
  const connection = kafkaConnection(config);
  if (connection.ssl !== undefined || connection.sasl !== undefined)
    log(`pme: Kafka at ${describeConnection(connection)}`);
  await waitForKafka(connection, config.brokerWaitMs, log);
  const backend = await initBackend();
  // A replica never steps, so it keeps no optimizer state or importance: half the bytes; nor an
  // evicted-weights table: a token it creates takes the weight the trainer publishes.
  const store = new EmbeddingStore({
    ...storeOptions(config),
    optimizerSlots: 0,
    linearOptimizerSlots: 0,
    importance: false,
    evictedBuckets: 0,
  });
  const trainer = new Trainer(store, {
    seed: config.seed,
    model: { optimizer: 'sgd' },
    itemRefreshMs: ITEM_REFRESH_MS,
    crossUserItem: config.crossUserItem,
  });
  const applier = new ReplicaApplier(store, trainer);
  const stopItemRefresh = startItemRefresh(trainer);
  await ensureParamsTopic(connection, config.paramsTopic);
  const follower = new ParamsFollower({
    ...connection,
    topic: config.paramsTopic,
    onRecords: (records) => {
      const mismatched = applier.mismatch !== null;
      for (const record of records) applyRecord(record, applier);
      applier.done();
      if (!mismatched && applier.mismatch !== null) log(`pme: replica not ready: ${applier.mismatch}`);
    },
  });
  const staleness = (): number =>
    applier.lastMarker === null
      ? Number.POSITIVE_INFINITY
      : (Date.now() - applier.lastMarker.publishedAt) / 1000;
  // Ready once the topic as it was at start is applied and the last publish is recent.
  const maxStaleSeconds = Math.max(5, (10 * config.publishIntervalMs) / 1000);

  const metrics = new ServiceMetrics({
    trainer: () => trainer.stats(),
    consumer: () => ({ consumed: applier.applied, dlq: {}, lag: {} }),
    tiers: () => tierMetrics(store, trainer, null),
    pruneWindows: () => 0,
    backend: () => backend.name,
  });
  new Gauge({
    name: 'pme_replica_staleness_seconds',
    help: 'Seconds since the trainer published the newest parameters this replica has applied',
    registers: [metrics.registry],
    collect() {
      const s = staleness();
      this.set(Number.isFinite(s) ? s : -1);
    },
  });
  const api = serviceApi({
    store,
    trainer,
    pme: null,
    recent: new RecentItems(),
    prune: {
      start: () => {
        throw new PmeError('PME_ERR_BAD_REQUEST', 'this is a replica: start prune windows on the trainer');
      },
      windows: () => [],
    },
    metrics: () => metrics,
    readiness: () => {
      const s = staleness();
      const ready = follower.live && follower.caughtUp && s <= maxStaleSeconds && applier.mismatch === null;
      return {
        ready,
        modelLoaded: follower.caughtUp,
        consumerLive: follower.live,
        detail:
          applier.mismatch !== null
            ? `replica cannot follow the trainer: ${applier.mismatch}`
            : follower.caughtUp
              ? `replica ${Number.isFinite(s) ? `${s.toFixed(1)} s` : 'not yet'} behind the trainer`
              : 'replica rebuilding from the parameter topic',
      };
    },
  });
  const app = await buildApi(api, { adminToken: config.adminToken });
  await follower.start();
  const address = await app.listen({ host: config.host, port: config.port });
  log(`pme: replica API on ${address}, following ${config.paramsTopic}`);

  let stopping: Promise<void> | null = null;
  return {
    url: address,
    trainer,
    store,
    snapshot: async () => '',
    stop: () => {
      stopping ??= (async () => {
        stopItemRefresh();
        await app.close();
        await follower.stop();
      })();
      return stopping;
    },
    replica: { staleness, caughtUp: () => follower.caughtUp, marker: () => applier.lastMarker },
  };
}
