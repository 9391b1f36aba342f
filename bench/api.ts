/**
 * HTTP API latency with training running, at fixed request rates.
 *
 * The server runs in a child process (this file with `--serve`): a real store, PME controller and
 * trainer, warmed on the synthetic workload, then learning continuously at `--train-rate` events/s
 * in the service's mini-batches (~1 ms slices) while the real API (src/api over
 * src/service/adapter) serves as the service does: from a serving thread over a copy synced every
 * `--serve-sync-ms` (src/service/serving.ts), or with 0 on the training thread itself. A bare
 * fastify route runs where the API runs (its own thread, or the training thread), under the same
 * training load: the latency floor of the stack on this machine. Load comes from this (parent)
 * process: first a lean open-loop generator at a steady rate (bench/paced.ts; the goals are judged
 * on it), then autocannon at the same overallRate (per-second bursts), reported beside it. Cases:
 *   - bare route at 1,000 req/s; score of 100 items at 1,000 req/s; recommend k=10 over 10,000
 *     items at 1,000 req/s (one server); recommend k=10 over 100,000 items at 100 req/s and score
 *     over a 100,000-item catalog at 1,000 req/s (another).
 * Writes bench/results/api.json and prints a table. About 1.5 minutes.
 *
 * Besides training, the server does the service's other periodic work at its defaults: the change
 * scan of the parameter publish every second and a snapshot every 5 s, each under the state lock
 * as the service takes it.
 *
 *   npm run build && node dist/bench/api.js [--seconds 10] [--train-rate 10000] [--serve-sync-ms 0]
 *     [--publish-ms 1000] [--snapshot-ms 5000] [--only <parts of case names, comma-separated>]
 *     [--server-node-flags "<node flags of the server>"] [--cross-user-item]
 * `--cross-user-item`: the trainer gives every event the user × item pair's weight
 * (TrainerOptions.crossUserItem), so the figures include what reading the pairs costs.
 */
import { fork } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import Fastify from 'fastify';
import { buildApi } from '../src/api/server.js';
import { SERVICE_NODE_FLAGS } from '../src/cli/node-flags.js';
import { SyntheticWorkload } from '../src/data/index.js';
import {
  ChangeTracker,
  learnInSlices,
  PmeController,
  startItemRefresh,
  Trainer,
} from '../src/engine/index.js';
import { serviceApi, tierMetrics, trainerReadiness } from '../src/service/adapter.js';
import { StateLock } from '../src/service/lock.js';
import { ServiceMetrics } from '../src/service/metrics.js';
import { RecentItems } from '../src/service/recent.js';
import { type ServingThread, startServingThread } from '../src/service/serving.js';
import { takeSnapshot } from '../src/service/state.js';
import { EmbeddingStore } from '../src/store/index.js';
import { ParamPacker } from '../src/stream/index.js';
import { createRandom } from '../src/util/random.js';
import { numberArg as arg } from './args.js';
import { type PacedRequest, type PacedResult, paced } from './paced.js';

const SECONDS = arg('seconds', 10);
const TRAIN_RATE = arg('train-rate', 10_000);
/** Sync interval of a serving thread's copy (the service's --serve-sync-ms; default 0: the API on the training thread). */
const SYNC_MS = arg('serve-sync-ms', 0);
/** The service's own periodic work besides training, at its defaults (0: off): the parameter
 *  publish's change scan, in slices as the service runs it (PME_PUBLISH_INTERVAL_MS; the Kafka send
 *  left out) and the snapshot
 *  (PME_SNAPSHOT_INTERVAL_MS: src/service/state.ts takeSnapshot). */
const PUBLISH_MS = arg('publish-ms', 1000);
const SNAPSHOT_MS = arg('snapshot-ms', 5000);
/** Node flags of the server process: the launchers' (package.json, docker/Dockerfile) unless
 *  `--server-node-flags "<flags>"` says otherwise ("" for V8's defaults). */
const SERVER_NODE_FLAGS = (() => {
  const i = process.argv.indexOf('--server-node-flags');
  return i > 0 ? process.argv[i + 1].split(' ').filter((f) => f !== '') : [...SERVICE_NODE_FLAGS];
})();
/** TrainerOptions.crossUserItem in the server (`--cross-user-item`). */
const CROSS_USER_ITEM = process.argv.includes('--cross-user-item');
const USERS = 20_000;
const FIELDS = [
  { name: 'category', cardinality: 20 },
  { name: 'brand', cardinality: 500 },
];
const WARM_EVENTS = 300_000;
/** Events per mini-batch: the consumer's default (StreamConsumer batchEvents). */
const BATCH = 1024;
/** Staleness bound of the item-only term of recommend (TrainerOptions.itemRefreshMs). */
const ITEM_REFRESH_MS = 1000;

// ───────────────────────────── server (child) ─────────────────────────────

interface ServerStats {
  learned: number;
  learnMs: number;
  /** Longest the event loop was blocked (monitorEventLoopDelay max): what a request may wait for. */
  longestStallMs: number;
  /** 99th percentile of the event loop's delay (1 ms timer). */
  stallP99Ms: number;
  windows: number;
  tokens: number;
  tiers: Record<string, number>;
}

interface InProcess {
  recommendMs: { p50: number; p99: number };
  scoreMs: { p50: number; p99: number };
}

async function serve(items: number): Promise<void> {
  const store = new EmbeddingStore({ seed: 1 });
  const pme = new PmeController(store, { windowEvents: 100_000 });
  const workload = new SyntheticWorkload({ seed: 1, users: USERS, items, fields: FIELDS });
  const trainer = new Trainer(store, {
    seed: 1,
    observer: pme,
    catalog: workload.catalog(),
    itemRefreshMs: ITEM_REFRESH_MS,
    crossUserItem: CROSS_USER_ITEM,
  });
  pme.attach(trainer);
  const recent = new RecentItems();
  let serving: ServingThread | null = null;
  // As the service learns (src/service/index.ts): mini-batches in ~1 ms slices, with the item-only
  // term of recommend refreshed on a timer.
  // Training, the publish's change scan and the snapshot's copy hold the state lock, as there.
  const lock = new StateLock();
  const learn = (n: number): Promise<void> =>
    lock.run(async () => {
      const events = workload.take(n);
      await learnInSlices(trainer, events);
      if (serving === null) recent.record(events);
      else serving.recordRecent(events);
    });
  for (let i = 0; i < WARM_EVENTS; i += BATCH) {
    await learn(BATCH);
    if (pme.running !== null) await pme.running;
  }
  startItemRefresh(trainer);
  const snapshotDir = await mkdtemp(join(tmpdir(), 'pme-bench-api-'));
  const background: NodeJS.Timeout[] = [];
  if (PUBLISH_MS > 0) {
    const tracker = new ChangeTracker(store, trainer);
    tracker.collect(Date.now(), new ParamPacker());
    background.push(
      setInterval(
        () => void lock.run(() => tracker.collectInSlices(Date.now(), new ParamPacker())),
        PUBLISH_MS,
      ),
    );
  }
  if (SNAPSHOT_MS > 0)
    background.push(
      setInterval(() => void takeSnapshot(snapshotDir, store, trainer, pme, lock, () => ({})), SNAPSHOT_MS),
    );
  const metrics = new ServiceMetrics({
    trainer: () => trainer.stats(),
    consumer: () => ({ consumed: 0, skipped: 0, pauses: 0, dlq: {}, lag: {} }),
    tiers: () => tierMetrics(store, trainer, pme),
    pruneWindows: () => pme.reports().length,
    backend: () => 'cpu',
  });
  const api = serviceApi({
    store,
    trainer,
    pme,
    recent,
    prune: { start: (reason) => pme.startWindow(reason), windows: () => pme.reports() },
    metrics: () => metrics,
    readiness: trainerReadiness(() => true),
  });
  // As the service serves: from a copy in a serving thread, or (--serve-sync-ms 0) on this thread.
  // The bare route runs where the API does: its thread's floor.
  let url: string;
  let bareUrl: string;
  let closeServers: () => Promise<unknown>;
  if (SYNC_MS > 0) {
    serving = await startServingThread(
      store,
      trainer,
      api,
      {
        host: '127.0.0.1',
        port: 0,
        adminToken: '',
        syncMs: SYNC_MS,
        itemRefreshMs: ITEM_REFRESH_MS,
        seed: 1,
      },
      (line) => process.stderr.write(`${line}\n`),
    );
    url = serving.url;
    const bare = bareRouteThread();
    bareUrl = await bare.url;
    closeServers = () => Promise.all([serving?.stop(), bare.stop()]);
  } else {
    const app = await buildApi(api, { adminToken: '' });
    url = await app.listen({ host: '127.0.0.1', port: 0 });
    const bare = Fastify();
    bare.get('/bare', async () => ({ ok: true }));
    bareUrl = await bare.listen({ host: '127.0.0.1', port: 0 });
    closeServers = () => Promise.all([app.close(), bare.close()]);
  }

  // Training keeps pace with TRAIN_RATE: every tick learns the mini-batch that is due, in slices,
  // so requests get in between them (as the service does with the consumer's batches).
  const stats: ServerStats = {
    learned: 0,
    learnMs: 0,
    longestStallMs: 0,
    stallP99Ms: 0,
    windows: 0,
    tokens: 0,
    tiers: {},
  };
  const stalls = monitorEventLoopDelay({ resolution: 1 });
  stalls.enable();
  let due = 0;
  let last = performance.now();
  let running = true;
  const tick = (): void => {
    if (!running) return;
    const now = performance.now();
    due += ((now - last) * TRAIN_RATE) / 1000;
    last = now;
    if (due >= BATCH) {
      const t0 = performance.now();
      void learn(BATCH).then(() => {
        const ms = performance.now() - t0;
        stats.learned += BATCH;
        stats.learnMs += ms;
        due -= BATCH;
        setImmediate(tick);
      });
    } else setTimeout(tick, Math.max(1, ((BATCH - due) * 1000) / TRAIN_RATE));
  };
  tick();

  // The loop that answers requests: this one, or the serving thread's (read from its /metrics).
  const sendStats = async (): Promise<void> => {
    const a = store.accounting();
    stats.windows = pme.reports().length;
    if (serving === null) {
      stats.longestStallMs = stalls.max / 1e6;
      stats.stallP99Ms = stalls.percentile(99) / 1e6;
    } else {
      const text = await (await fetch(`${url}/metrics`)).text();
      const delay = (q: string): number =>
        1000 *
        Number(new RegExp(`pme_serving_loop_delay_seconds\\{quantile="${q}"\\} (\\S+)`).exec(text)?.[1]);
      stats.longestStallMs = delay('1');
      stats.stallP99Ms = delay('0.99');
    }
    stats.tokens = a.tokens;
    stats.tiers = Object.fromEntries(a.tiers.map((t) => [String(t.size), t.tokens]));
    process.send?.({ type: 'stats', stats });
    stats.learned = 0;
    stats.learnMs = 0;
    stalls.reset();
  };
  process.on('message', (message: { type: string }) => {
    if (message.type === 'stats') void sendStats();
    else if (message.type === 'inprocess') {
      // The read paths alone (no HTTP), training paused: where the time of a request goes.
      running = false;
      const random = createRandom(5);
      const catalog = workload.catalog().map((c) => c.item);
      const time = (fn: () => void): { p50: number; p99: number } => {
        const ms: number[] = [];
        for (let i = 0; i < 300; i++) {
          const t0 = performance.now();
          fn();
          ms.push(performance.now() - t0);
        }
        ms.sort((a, b) => a - b);
        return { p50: ms[150], p99: ms[296] };
      };
      const recommendMs = time(() => trainer.recommend(`u${random.int(1000)}`, 10));
      const scoreMs = time(() =>
        trainer.score(
          `u${random.int(1000)}`,
          Array.from({ length: 100 }, () => catalog[random.int(catalog.length)]),
        ),
      );
      const result: InProcess = { recommendMs, scoreMs };
      process.send?.({ type: 'inprocess', result });
    } else if (message.type === 'stop') {
      running = false;
      for (const timer of background) clearInterval(timer);
      void closeServers()
        .then(() => rm(snapshotDir, { recursive: true, force: true }))
        .then(() => process.exit(0));
    }
  });
  process.send?.({ type: 'ready', url, bareUrl, items, learnedWarm: WARM_EVENTS });
}

/** A bare fastify route in a thread of its own, as the serving thread runs the API. */
function bareRouteThread(): { url: Promise<string>; stop(): Promise<number> } {
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads');
     const app = require('fastify')();
     app.get('/bare', async () => ({ ok: true }));
     app.listen({ host: '127.0.0.1', port: 0 }).then((url) => parentPort.postMessage(url));`,
    { eval: true },
  );
  return {
    url: new Promise((resolve) => worker.once('message', resolve)),
    stop: () => worker.terminate(),
  };
}

// ───────────────────────────── load (parent) ─────────────────────────────

interface AutocannonResult {
  latency: { p50: number; p99: number; p90: number; max: number; mean: number };
  requests: { average: number; total: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

interface Server {
  url: string;
  bareUrl: string;
  ask<T>(type: string): Promise<T>;
  stop(): Promise<void>;
}

function startServer(items: number): Promise<Server> {
  const child = fork(
    new URL(import.meta.url).pathname,
    [
      '--serve',
      String(items),
      '--train-rate',
      String(TRAIN_RATE),
      '--serve-sync-ms',
      String(SYNC_MS),
      '--publish-ms',
      String(PUBLISH_MS),
      '--snapshot-ms',
      String(SNAPSHOT_MS),
      ...(CROSS_USER_ITEM ? ['--cross-user-item'] : []),
    ],
    { execArgv: [...process.execArgv, ...SERVER_NODE_FLAGS] },
  );
  const ask = <T>(type: string): Promise<T> =>
    new Promise((resolve) => {
      const on = (m: { type: string; stats?: unknown; result?: unknown }) => {
        if (m.type !== type) return;
        child.off('message', on);
        resolve((m.stats ?? m.result) as T);
      };
      child.on('message', on);
      child.send({ type });
    });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    child.on('message', (m: { type: string; url: string; bareUrl: string }) => {
      if (m.type !== 'ready') return;
      resolve({
        url: m.url,
        bareUrl: m.bareUrl,
        ask,
        stop: () =>
          new Promise((done) => {
            child.removeAllListeners('exit');
            child.once('exit', () => done());
            child.send({ type: 'stop' });
          }),
      });
    });
  });
}

interface Case {
  name: string;
  rate: number;
  goalP99Ms: number | null;
  requests: PacedRequest[];
  url: string;
}

interface CaseResult {
  case: string;
  targetRate: number;
  requestsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  goalP99Ms: number | null;
  met: boolean | null;
  non2xx: number;
  errors: number;
  trainedEventsPerSecond: number;
  longestStallMs: number;
  stallP99Ms: number;
  pruneWindows: number;
  sendLateP99Ms: number;
  /** The same case through autocannon's per-second quotas (bursts), for comparison. */
  autocannon: Omit<PacedResult, 'sendLateP99Ms' | 'sockets' | 'clientLoopDelayP99Ms'>;
}

/** `--only score,bare`: run only the cases whose name contains one of these (the others are left
 *  out of the JSON). */
const ONLY = (() => {
  const i = process.argv.indexOf('--only');
  return i > 0 ? process.argv[i + 1].split(',') : [''];
})();
const wanted = (c: Case): boolean => ONLY.some((part) => c.name.includes(part));

async function run(server: Server, c: Case): Promise<CaseResult | null> {
  if (!wanted(c)) return null;
  const options = {
    url: c.url,
    connections: 8,
    overallRate: c.rate,
    requests: c.requests,
  };
  await autocannon({ ...options, duration: 2 }); // JIT warm-up, not recorded
  await server.ask<ServerStats>('stats');
  const p = await paced(c.url, c.requests, c.rate, SECONDS);
  const s = await server.ask<ServerStats>('stats');
  const r = await autocannon({ ...options, duration: SECONDS });
  return {
    case: c.name,
    targetRate: c.rate,
    ...p,
    goalP99Ms: c.goalP99Ms,
    met: c.goalP99Ms === null ? null : p.p99Ms <= c.goalP99Ms,
    trainedEventsPerSecond: s.learned / SECONDS,
    longestStallMs: s.longestStallMs,
    stallP99Ms: s.stallP99Ms,
    pruneWindows: s.windows,
    autocannon: {
      requestsPerSecond: r.requests.average,
      p50Ms: r.latency.p50,
      p90Ms: r.latency.p90,
      p99Ms: r.latency.p99,
      maxMs: r.latency.max,
      non2xx: r.non2xx,
      errors: r.errors + r.timeouts,
    },
  };
}

/** Request variants: autocannon cycles through them (users and item lists vary per request). */
function scoreRequests(items: number, n = 64): PacedRequest[] {
  const random = createRandom(9);
  return Array.from({ length: n }, () => ({
    method: 'POST',
    path: '/v1/score',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      user: `u${random.int(2000)}`,
      items: Array.from({ length: 100 }, () => `i${random.int(items)}`),
    }),
  }));
}
function recommendRequests(n = 64): PacedRequest[] {
  const random = createRandom(10);
  return Array.from({ length: n }, () => ({
    method: 'GET',
    path: `/v1/recommend?user=u${random.int(2000)}&k=10`,
  }));
}

async function main(): Promise<void> {
  const results: Array<CaseResult | null> = [];
  const inProcess: Record<string, InProcess> = {};
  const t0 = performance.now();
  // The machine may be shared: the load before and after says how much the figures can be trusted.
  const loadBefore = loadavg();
  // One server per catalog size, started only when --only leaves it a case to run.
  const servers: Array<{ items: number; cases: (server: Server) => Case[] }> = [
    {
      items: 10_000,
      cases: (server) => [
        {
          name: 'bare fastify route',
          rate: 1000,
          goalP99Ms: null,
          url: server.bareUrl,
          requests: [{ method: 'GET', path: '/bare' }],
        },
        {
          name: 'score 100 items (10k catalog)',
          rate: 1000,
          goalP99Ms: 5,
          url: server.url,
          requests: scoreRequests(10_000),
        },
        {
          name: 'recommend k=10 over 10,000 items',
          rate: 1000,
          goalP99Ms: 10,
          url: server.url,
          requests: recommendRequests(),
        },
      ],
    },
    {
      items: 100_000,
      cases: (server) => [
        {
          name: 'recommend k=10 over 100,000 items',
          rate: 100,
          goalP99Ms: 20,
          url: server.url,
          requests: recommendRequests(),
        },
        {
          name: 'score 100 items (100k catalog)',
          rate: 1000,
          goalP99Ms: 5,
          url: server.url,
          requests: scoreRequests(100_000),
        },
      ],
    },
  ];
  const placeholder = { url: '', bareUrl: '' } as Server;
  for (const { items, cases } of servers) {
    if (!cases(placeholder).some(wanted)) continue;
    const server = await startServer(items);
    process.stderr.write(
      `server with ${items.toLocaleString('en-US')} items ready after ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
    );
    for (const c of cases(server)) results.push(await run(server, c));
    inProcess[String(items)] = await server.ask<InProcess>('inprocess');
    await server.stop();
  }

  const pad = (s: string, n: number) => s.padEnd(n);
  const num = (x: number, d = 2) => x.toFixed(d).padStart(9);
  console.log(
    `${pad('case', 36)}${'target/s'.padStart(9)}${'req/s'.padStart(9)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'max ms'.padStart(9)}  goal    train ev/s loop p99      max  autocannon p50/p99`,
  );
  for (const r of results.filter((r) => r !== null))
    console.log(
      `${pad(r.case, 36)}${num(r.targetRate, 0)}${num(r.requestsPerSecond, 0)}${num(r.p50Ms)}${num(r.p99Ms)}${num(r.maxMs)}  ${r.goalP99Ms === null ? '  -  ' : `${r.met ? 'ok ' : 'MISS'} ≤${r.goalP99Ms}`}  ${r.trainedEventsPerSecond.toFixed(0).padStart(10)}${num(r.stallP99Ms, 1)}${num(r.longestStallMs, 1)}  ${r.autocannon.p50Ms}/${r.autocannon.p99Ms}`,
    );
  console.log('read paths in process (no HTTP, training paused), ms:', JSON.stringify(inProcess));
  await mkdir('bench/results', { recursive: true });
  await writeFile(
    'bench/results/api.json',
    `${JSON.stringify(
      {
        node: process.version,
        cpus: cpus().length,
        cpu: cpus()[0]?.model ?? 'unknown',
        secondsPerCase: SECONDS,
        trainRateTarget: TRAIN_RATE,
        trainBatch: BATCH,
        serveSyncMs: SYNC_MS,
        publishMs: PUBLISH_MS,
        snapshotMs: SNAPSHOT_MS,
        serverNodeFlags: SERVER_NODE_FLAGS,
        itemRefreshMs: ITEM_REFRESH_MS,
        warmEvents: WARM_EVENTS,
        users: USERS,
        fields: FIELDS,
        load: 'paced: open loop at the target rate, latency from send; goals judged on it',
        autocannon: { connections: 8, overallRate: 'per case', warmupSeconds: 2 },
        results: results.filter((r) => r !== null),
        inProcessMs: inProcess,
        loadAverageBefore: loadBefore,
        loadAverageAfter: loadavg(),
        totalSeconds: (performance.now() - t0) / 1000,
      },
      null,
      2,
    )}\n`,
  );
  console.log('wrote bench/results/api.json');
}

const serveAt = process.argv.indexOf('--serve');
if (serveAt > 0) await serve(Number(process.argv[serveAt + 1]));
else await main();
