/**
 * HTTP API latency with training running, measured with autocannon at fixed request rates.
 *
 * The server runs in a child process (this file with `--serve`): a real store, PME controller and
 * trainer, warmed on the synthetic workload, then learning continuously at `--train-rate` events/s
 * (batches between requests) while the real API (src/api over src/service/adapter) serves. A bare
 * fastify route runs in the same child, under the same training load: the latency floor of the
 * stack on this machine. autocannon runs in this (parent) process, so load generation does not
 * share the server's core. Cases:
 *   - bare route at 1,000 req/s; score of 100 items at 1,000 req/s; recommend k=10 over 10,000
 *     items at 1,000 req/s (one server); recommend k=10 over 100,000 items at 100 req/s (another).
 * Writes bench/results/api.json and prints a table. About 1.5 minutes.
 *
 *   npm run build && node dist/bench/api.js [--seconds 10] [--train-rate 10000]
 */
import { fork } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import Fastify from 'fastify';
import { buildApi } from '../src/api/server.js';
import { SyntheticWorkload } from '../src/data/index.js';
import { PmeController, Trainer } from '../src/engine/index.js';
import { serviceApi, tierMetrics, trainerReadiness } from '../src/service/adapter.js';
import { ServiceMetrics } from '../src/service/metrics.js';
import { RecentItems } from '../src/service/recent.js';
import { EmbeddingStore } from '../src/store/index.js';
import { createRandom } from '../src/util/random.js';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const SECONDS = arg('seconds', 10);
const TRAIN_RATE = arg('train-rate', 10_000);
const USERS = 20_000;
const FIELDS = [
  { name: 'category', cardinality: 20 },
  { name: 'brand', cardinality: 500 },
];
const WARM_EVENTS = 300_000;
const BATCH = 100;
/** Staleness bound of the item-only term of recommend (TrainerOptions.itemRefreshMs). */
const ITEM_REFRESH_MS = 1000;

// ───────────────────────────── server (child) ─────────────────────────────

interface ServerStats {
  learned: number;
  learnMs: number;
  longestLearnMs: number;
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
  });
  pme.attach(trainer);
  const recent = new RecentItems();
  const learn = (n: number): void => {
    const events = workload.take(n);
    trainer.learn(events);
    recent.record(events);
    pme.endBatch();
  };
  for (let i = 0; i < WARM_EVENTS; i += 1000) {
    learn(1000);
    if (pme.running !== null) await pme.running;
  }
  const metrics = new ServiceMetrics({
    trainer: () => trainer.stats(),
    consumer: () => ({ consumed: 0, skipped: 0, pauses: 0, dlq: {}, lag: {} }),
    tiers: () => tierMetrics(store),
    pruneWindows: () => pme.reports().length,
    backend: () => 'cpu',
  });
  const api = serviceApi({
    store,
    trainer,
    recent,
    prune: { start: (reason) => pme.startWindow(reason), windows: () => pme.reports() },
    metrics: () => metrics,
    readiness: trainerReadiness(() => true),
  });
  const app = await buildApi(api, { adminToken: '' });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const bare = Fastify();
  bare.get('/bare', async () => ({ ok: true }));
  const bareUrl = await bare.listen({ host: '127.0.0.1', port: 0 });

  // Training keeps pace with TRAIN_RATE: every tick learns what is due, one batch per macrotask,
  // so requests get in between batches (as between the consumer's batches in the service).
  const stats: ServerStats = { learned: 0, learnMs: 0, longestLearnMs: 0, windows: 0, tokens: 0, tiers: {} };
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
      learn(BATCH);
      const ms = performance.now() - t0;
      stats.learned += BATCH;
      stats.learnMs += ms;
      if (ms > stats.longestLearnMs) stats.longestLearnMs = ms;
      due -= BATCH;
      setImmediate(tick);
    } else setTimeout(tick, Math.max(1, ((BATCH - due) * 1000) / TRAIN_RATE));
  };
  tick();

  process.on('message', (message: { type: string }) => {
    if (message.type === 'stats') {
      const a = store.accounting();
      stats.windows = pme.reports().length;
      stats.tokens = a.tokens;
      stats.tiers = Object.fromEntries(a.tiers.map((t) => [String(t.size), t.tokens]));
      process.send?.({ type: 'stats', stats });
      stats.learned = 0;
      stats.learnMs = 0;
      stats.longestLearnMs = 0;
    } else if (message.type === 'inprocess') {
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
      void Promise.all([app.close(), bare.close()]).then(() => process.exit(0));
    }
  });
  process.send?.({ type: 'ready', url, bareUrl, items, learnedWarm: WARM_EVENTS });
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
  const child = fork(new URL(import.meta.url).pathname, [
    '--serve',
    String(items),
    '--train-rate',
    String(TRAIN_RATE),
  ]);
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
  requests: Array<Record<string, unknown>>;
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
  longestLearnBatchMs: number;
  pruneWindows: number;
}

async function run(server: Server, c: Case): Promise<CaseResult> {
  const options = {
    url: c.url,
    connections: 8,
    overallRate: c.rate,
    requests: c.requests,
  };
  await autocannon({ ...options, duration: 2 }); // JIT warm-up, not recorded
  await server.ask<ServerStats>('stats');
  const r = await autocannon({ ...options, duration: SECONDS });
  const s = await server.ask<ServerStats>('stats');
  return {
    case: c.name,
    targetRate: c.rate,
    requestsPerSecond: r.requests.average,
    p50Ms: r.latency.p50,
    p90Ms: r.latency.p90,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    goalP99Ms: c.goalP99Ms,
    met: c.goalP99Ms === null ? null : r.latency.p99 <= c.goalP99Ms,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    trainedEventsPerSecond: s.learned / SECONDS,
    longestLearnBatchMs: s.longestLearnMs,
    pruneWindows: s.windows,
  };
}

/** Request variants: autocannon cycles through them (users and item lists vary per request). */
function scoreRequests(items: number, n = 64): Array<Record<string, unknown>> {
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
function recommendRequests(n = 64): Array<Record<string, unknown>> {
  const random = createRandom(10);
  return Array.from({ length: n }, () => ({
    method: 'GET',
    path: `/v1/recommend?user=u${random.int(2000)}&k=10`,
  }));
}

async function main(): Promise<void> {
  const results: CaseResult[] = [];
  const inProcess: Record<string, InProcess> = {};
  const t0 = performance.now();
  // The machine may be shared: the load before and after says how much the figures can be trusted.
  const loadBefore = loadavg();
  const small = await startServer(10_000);
  process.stderr.write(
    `server with 10,000 items ready after ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
  );
  results.push(
    await run(small, {
      name: 'bare fastify route',
      rate: 1000,
      goalP99Ms: null,
      url: small.bareUrl,
      requests: [{ method: 'GET', path: '/bare' }],
    }),
    await run(small, {
      name: 'score 100 items (10k catalog)',
      rate: 1000,
      goalP99Ms: 5,
      url: small.url,
      requests: scoreRequests(10_000),
    }),
    await run(small, {
      name: 'recommend k=10 over 10,000 items',
      rate: 1000,
      goalP99Ms: 10,
      url: small.url,
      requests: recommendRequests(),
    }),
  );
  inProcess['10000'] = await small.ask<InProcess>('inprocess');
  await small.stop();
  const large = await startServer(100_000);
  process.stderr.write('server with 100,000 items ready\n');
  results.push(
    await run(large, {
      name: 'recommend k=10 over 100,000 items',
      rate: 100,
      goalP99Ms: 20,
      url: large.url,
      requests: recommendRequests(),
    }),
    await run(large, {
      name: 'score 100 items (100k catalog)',
      rate: 1000,
      goalP99Ms: 5,
      url: large.url,
      requests: scoreRequests(100_000),
    }),
  );
  inProcess['100000'] = await large.ask<InProcess>('inprocess');
  await large.stop();

  const pad = (s: string, n: number) => s.padEnd(n);
  const num = (x: number, d = 2) => x.toFixed(d).padStart(9);
  console.log(
    `${pad('case', 36)}${'target/s'.padStart(9)}${'req/s'.padStart(9)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'max ms'.padStart(9)}  goal   train ev/s`,
  );
  for (const r of results)
    console.log(
      `${pad(r.case, 36)}${num(r.targetRate, 0)}${num(r.requestsPerSecond, 0)}${num(r.p50Ms)}${num(r.p99Ms)}${num(r.maxMs)}  ${r.goalP99Ms === null ? '  -  ' : `${r.met ? 'ok ' : 'MISS'} ≤${r.goalP99Ms}`}  ${r.trainedEventsPerSecond.toFixed(0)}`,
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
        itemRefreshMs: ITEM_REFRESH_MS,
        warmEvents: WARM_EVENTS,
        users: USERS,
        fields: FIELDS,
        autocannon: { connections: 8, overallRate: 'per case', warmupSeconds: 2 },
        results,
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
