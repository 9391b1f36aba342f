/**
 * The serving thread (see serving.ts): the HTTP API over a read-only copy of the trainer's state.
 * Its event loop does nothing but answer requests, apply the trainer's changes in ~1 ms slices and
 * sweep the item-only term, so a request never waits behind training, prune windows or the
 * trainer's garbage collections. Reads of the trainer's own bookkeeping (tiers, tokens, prune
 * windows, readiness, its metrics and their typed reading) and starting a prune window are asked
 * of the training thread.
 */

import { setImmediate as nextTurn } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import type { ServiceApi, ServiceStats } from '../api/contract.js';
import { buildApi } from '../api/server.js';
import { initBackend, ReplicaApplier, startItemRefresh, Trainer } from '../engine/index.js';
import { type ErrorCode, PmeError } from '../errors.js';
import { EmbeddingStore } from '../store/index.js';
import { applyRecord, unpackRecords } from '../stream/index.js';
import { readApi } from './adapter.js';
import { RequestMetrics } from './metrics.js';
import { RecentItems } from './recent.js';
import type { CallMethod, MainMessage, ServingSetup, WorkerMessage } from './serving-protocol.js';

/** Longest stretch of applying, in ms, before requests get a turn. */
const APPLY_SLICE_MS = 1;
const RECORDS_PER_CHECK = 64;

const port = parentPort!;
const setup = workerData as ServingSetup;
const send = (message: WorkerMessage): void => port.postMessage(message);

async function main(): Promise<void> {
  await initBackend();
  // The copy never steps: no optimizer state, no importance (parameters and index only), and no
  // budget of its own (the trainer's store enforces it; the copy holds what the trainer holds),
  // and no evicted-weights table (a token it creates takes the weight the trainer sends).
  const store = new EmbeddingStore({
    ladder: setup.ladder,
    seed: setup.seed,
    optimizerSlots: 0,
    linearOptimizerSlots: 0,
    importance: false,
    evictedBuckets: 0,
  });
  const trainer = new Trainer(store, {
    seed: setup.seed,
    model: { ...setup.model, optimizer: 'sgd', importance: false },
    itemRefreshMs: setup.itemRefreshMs,
    crossUserItem: setup.crossUserItem,
  });
  const applier = new ReplicaApplier(store, trainer);
  const recent = new RecentItems();
  const requests = new RequestMetrics(() => store.accounting().totalBytes);

  let nextCall = 0;
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  const call = <T>(method: CallMethod, ...args: string[]): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = nextCall++;
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      send({ type: 'call', id, method, args });
    });

  let synced = false;
  let loaded: () => void = () => {};
  const firstSync = new Promise<void>((resolve) => {
    loaded = resolve;
  });
  const api: ServiceApi = {
    ...readApi(trainer, recent),
    startPrune: (reason) => call<number>('startPrune', reason),
    pruneWindows: () => call('pruneWindows'),
    tiers: () => call('tiers'),
    token: (field, value) => call('token', field, value),
    readiness: async () => {
      const readiness = await call<Awaited<ReturnType<ServiceApi['readiness']>>>('readiness');
      return synced ? readiness : { ...readiness, ready: false, detail: 'serving copy loading' };
    },
    // The training thread's reading, as /metrics text below is its rendering of the same getters.
    stats: () => call<ServiceStats>('stats'),
    metrics: async () => `${await call<string>('metrics')}${await requests.registry.metrics()}`,
    subscriptions: () => call('subscriptions'),
    subscribe: (value) => call('subscribe', JSON.stringify(value)),
    unsubscribe: (name) => call('unsubscribe', name),
    metricsContentType: requests.registry.contentType,
    observeRequest: (route, method, status, seconds) =>
      requests.observeRequest(route, method, status, seconds),
  };

  // Changes are applied in order, one sync at a time, in slices; reads between slices see a
  // partly applied sync (rows are each whole; the item-only term follows within its bound).
  const queue: Array<Extract<MainMessage, { type: 'sync' }>> = [];
  let applying = false;
  const applyQueued = async (): Promise<void> => {
    applying = true;
    while (queue.length > 0) {
      const sync = queue.shift()!;
      const records = unpackRecords(sync.records);
      let sliceStart = performance.now();
      for (let i = 0; i < records.length; i++) {
        applyRecord(records[i], applier);
        if (
          i % RECORDS_PER_CHECK === RECORDS_PER_CHECK - 1 &&
          performance.now() - sliceStart >= APPLY_SLICE_MS
        ) {
          await nextTurn();
          sliceStart = performance.now();
        }
      }
      applier.done();
      recent.record(sync.recent);
      if (sync.last && !synced) {
        synced = true;
        loaded();
      }
      send({ type: 'applied', seq: sync.seq });
    }
    applying = false;
  };

  let stopping: (() => Promise<void>) | null = null;
  port.on('message', (message: MainMessage) => {
    if (message.type === 'sync') {
      queue.push(message);
      if (!applying) void applyQueued();
    } else if (message.type === 'reply') {
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (waiter === undefined) return;
      if (message.error === undefined) waiter.resolve(message.value);
      else {
        const error = new PmeError(message.error.code as ErrorCode);
        error.message = message.error.message;
        waiter.reject(error);
      }
    } else if (message.type === 'stop') void stopping?.();
  });

  const stopItemRefresh = startItemRefresh(trainer);
  const app = await buildApi(api, { adminToken: setup.adminToken });
  // Listen once the copy holds the trainer's state: no request sees an empty model.
  await firstSync;
  const url = await app.listen({ host: setup.host, port: setup.port });
  stopping = async () => {
    stopItemRefresh();
    await app.close();
    port.close();
  };
  send({ type: 'listening', url });
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  port.close();
});
