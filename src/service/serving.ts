/**
 * Serving off the training thread. Training, prune windows and their garbage share one event loop;
 * a request that arrives behind them waits (1–30 ms p99–max at 10,000 events/s, bench/api.ts).
 * So the HTTP API runs in a worker thread (serving-worker.ts) over a read-only copy of the model:
 * parameters and index only, no optimizer state. Every `syncMs` the training thread collects what
 * changed (the records replicas get: src/engine/replication.ts collects the changes,
 * src/stream/param-records.ts packs them) and posts it; the serving thread applies it in slices.
 * Reads lag training by about one sync interval.
 * What only the trainer knows (tiers with their optimizer bytes, token counts, prune windows,
 * readiness, training metrics and their typed reading) the serving thread asks of this thread,
 * through `api`.
 */
import { getPriority, setPriority } from 'node:os';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { ServiceApi } from '../api/contract.js';
import { ChangeTracker, type Trainer } from '../engine/index.js';
import { isPmeError, PmeError } from '../errors.js';
import type { EmbeddingStore } from '../store/index.js';
import { ParamPacker } from '../stream/index.js';
import type { Log } from './index.js';
import { type MainMessage, type ServingSetup, transferList, type WorkerMessage } from './serving-protocol.js';

export interface ServingOptions {
  host: string;
  port: number;
  adminToken: string;
  /** Milliseconds between syncs of the serving copy. */
  syncMs: number;
  itemRefreshMs: number;
  seed: number;
}

export interface ServingThread {
  /** Base URL of the HTTP API (served by the worker). */
  readonly url: string;
  /** Remembers events for `recommend?excludeRecent=true` on the serving side (sent with the next sync). */
  recordRecent(events: ReadonlyArray<{ user: string; item: string }>): void;
  /** Sends the changes made so far and resolves once the serving copy has applied them. */
  sync(): Promise<void>;
  /** Replaces the serving thread with a new one on the same port, rebuilt from a full sync (what
   *  happens by itself when the thread dies). Requests in flight on the old one fail. */
  restart(): Promise<void>;
  /** Serving threads started after the first (after a crash, or restart()). */
  readonly restarts: number;
  /** Closes the HTTP server and ends the thread. */
  stop(): Promise<void>;
}

/** Most recent (user, item) pairs kept between two syncs: only the last few per user matter. */
const MAX_RECENT_PER_SYNC = 100_000;

const workerUrl = new URL(
  import.meta.url.endsWith('.ts') ? './serving-worker.ts' : './serving-worker.js',
  import.meta.url,
);

/**
 * Nice value of the training (main) thread once a serving thread exists. Threads on 2 cores are
 * preempted in scheduler slices of several ms, so a request can wait a whole slice behind training
 * even off its thread; at nice 10 the scheduler gives the serving thread the core whenever it has
 * work (CFS weight 1024 vs 110), while training still gets every core time nobody else wants.
 * On Linux the priority of a thread id is per thread: the serving thread (created before) and
 * V8's helper threads keep theirs.
 */
const TRAINING_NICE = 10;

function lowerTrainingPriority(log: Log): void {
  try {
    if (getPriority(process.pid) < TRAINING_NICE) setPriority(process.pid, TRAINING_NICE);
  } catch (error) {
    log(
      `pme: could not lower the training thread's priority (${error instanceof Error ? error.message : error})`,
    );
  }
}

/** Young generation of the serving thread's heap: every
 *  request allocates several KB (a score of 100 items ~6.5 KB in the trainer alone), and a
 *  scavenge pauses the requests that arrive during it, so fewer of them is the aim. */
const SERVING_YOUNG_GENERATION_MB = 64;

export async function startServingThread(
  store: EmbeddingStore,
  trainer: Trainer,
  api: ServiceApi,
  options: ServingOptions,
  log: Log,
): Promise<ServingThread> {
  const setup: ServingSetup = {
    host: options.host,
    port: options.port,
    adminToken: options.adminToken,
    ladder: [...store.options.ladder],
    seed: options.seed,
    itemRefreshMs: options.itemRefreshMs,
    crossUserItem: trainer.options.crossUserItem,
    model: { maxTokens: trainer.model.maxTokens },
  };
  const tracker = new ChangeTracker(store, trainer);
  let recent: Array<{ user: string; item: string }> = [];
  let seq = 0;
  const waiting = new Map<number, () => void>();
  const release = (upTo: number): void => {
    for (const [at, done] of waiting)
      if (at <= upTo) {
        waiting.delete(at);
        done();
      }
  };
  let stopped = false;
  let worker: Worker;
  const post = (message: MainMessage, transfer: ArrayBuffer[] = []): void =>
    worker.postMessage(message, transfer);

  const answer = async (id: number, run: () => unknown): Promise<void> => {
    try {
      post({ type: 'reply', id, value: await run() });
    } catch (error) {
      const e = isPmeError(error) ? error : new PmeError('PME_ERR_INTERNAL');
      if (!isPmeError(error))
        log(`pme: serving call failed: ${error instanceof Error ? error.message : error}`);
      post({ type: 'reply', id, error: { code: e.code, message: e.message } });
    }
  };
  const onMessage = (message: WorkerMessage): void => {
    if (message.type === 'applied') release(message.seq);
    else if (message.type === 'call') {
      const [a = '', b = ''] = message.args;
      const calls = {
        startPrune: () => api.startPrune(a),
        pruneWindows: () => api.pruneWindows(),
        tiers: () => api.tiers(),
        token: () => api.token(a, b),
        readiness: () => api.readiness(),
        stats: () => api.stats(),
        metrics: () => api.metrics(),
        subscriptions: () => api.subscriptions?.(),
        // The body as sent, in JSON (call arguments are strings).
        subscribe: () => api.subscribe?.(JSON.parse(a)),
        unsubscribe: () => api.unsubscribe?.(a),
      };
      void answer(message.id, calls[message.method]);
    }
  };

  // One sync in flight at a time: a tick that finds one still applying is skipped, so a slow
  // serving thread gets fewer, larger syncs instead of a growing queue.
  let inFlight: Promise<void> | null = null;
  const sync = (): Promise<void> => {
    const run = async (): Promise<void> => {
      if (stopped) return;
      // A pack per message (~0.5 ms for the serving thread to receive and unpack): it
      // deserializes a message in one go, and a prune window's moves can make ~10^5 records.
      const packs = tracker.collect(Date.now(), new ParamPacker()).finish();
      packs.forEach((pack, i) => {
        const last = i === packs.length - 1;
        post(
          { type: 'sync', seq: ++seq, records: pack, recent: last ? recent : [], last },
          transferList(pack),
        );
      });
      recent = [];
      const at = seq;
      await new Promise<void>((resolve) => waiting.set(at, resolve));
    };
    const next: Promise<void> = (inFlight ?? Promise.resolve()).then(run).finally(() => {
      if (inFlight === next) inFlight = null;
    });
    inFlight = next;
    return next;
  };

  /** Starts a serving thread on `port` and gives it the whole state (it listens once that is applied). */
  const launch = (port: number): Promise<string> => {
    worker = new Worker(workerUrl, {
      workerData: { ...setup, port } satisfies ServingSetup,
      resourceLimits: { maxYoungGenerationSizeMb: SERVING_YOUNG_GENERATION_MB },
    });
    tracker.reset();
    const thread = worker;
    const listening = new Promise<string>((resolve, reject) => {
      thread.on('message', (message: WorkerMessage) => {
        if (message.type === 'listening') resolve(message.url);
        else if (message.type === 'failed') reject(new Error(`serving thread: ${message.message}`));
        else onMessage(message);
      });
      thread.once('error', (error) => {
        log(`pme: serving thread failed: ${error.message}`);
        reject(error);
      });
      thread.once('exit', (code) => {
        reject(new Error(`serving thread exited with code ${code}`));
        // Syncs waiting for this thread will not be answered by it.
        release(Number.POSITIVE_INFINITY);
        if (!stopped && thread === worker) relaunching = relaunch(`exited with code ${code}`);
      });
    });
    void sync();
    return listening;
  };

  let relaunching: Promise<void> = Promise.resolve();
  const url = await launch(options.port);
  const port = Number(new URL(url).port);
  let restarts = 0;
  /** A serving thread that died is replaced on the same port, from a full sync. */
  const relaunch = async (why: string): Promise<void> => {
    restarts++;
    log(`pme: serving thread ${why}; starting a new one on port ${port} (restart ${restarts})`);
    try {
      await launch(port);
    } catch (error) {
      log(
        `pme: serving thread restart failed: ${error instanceof Error ? error.message : error}; the API is down`,
      );
    }
  };
  lowerTrainingPriority(log);
  const timer = setInterval(() => {
    if (inFlight === null) void sync();
  }, options.syncMs);
  timer.unref();

  return {
    url,
    get restarts() {
      return restarts;
    },
    recordRecent(events) {
      for (const { user, item } of events) recent.push({ user, item });
      if (recent.length > MAX_RECENT_PER_SYNC) recent = recent.slice(-MAX_RECENT_PER_SYNC / 2);
    },
    sync,
    async restart() {
      // Its exit starts the new one, as after a crash.
      await worker.terminate();
      await nextTurn();
      await relaunching;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      release(Number.POSITIVE_INFINITY);
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      post({ type: 'stop' });
      await exited;
    },
  };
}
