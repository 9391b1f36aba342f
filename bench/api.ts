/**
 * HTTP API latency with training running, measured with autocannon at fixed request rates.
 *
 * The server runs in a child process (this file with `--serve`): a real store, PME controller and
 * trainer, warmed on the synthetic workload, then learning continuously at `--train-rate` events/s
 * (batches between requests) while the real API (src/api over src/service/adapter) serves. A bare
 * fastify route runs in the same child, under the same training load: the latency floor of the
 * stack on this machine. Load comes from this (parent) process, so it does not share the server's
 * event loop: first an open-loop generator at a steady rate (see `paced`; the goals are judged on
 * it), then autocannon at the same overallRate (per-second bursts), reported beside it. Cases:
 *   - bare route at 1,000 req/s; score of 100 items at 1,000 req/s; recommend k=10 over 10,000
 *     items at 1,000 req/s (one server); recommend k=10 over 100,000 items at 100 req/s (another).
 * Writes bench/results/api.json and prints a table. About 1.5 minutes.
 *
 *   npm run build && node dist/bench/api.js [--seconds 10] [--train-rate 10000]
 */
import { fork } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Fastify from 'fastify';
import { buildApi } from '../src/api/server.js';
import { SyntheticWorkload } from '../src/data/index.js';
import { learnInSlices, PmeController, startItemRefresh, Trainer } from '../src/engine/index.js';
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
  });
  pme.attach(trainer);
  const recent = new RecentItems();
  // As the service learns (src/service/index.ts): mini-batches in ~1 ms slices, with the item-only
  // term of recommend refreshed on a timer.
  const learn = async (n: number): Promise<void> => {
    const events = workload.take(n);
    await learnInSlices(trainer, events);
    recent.record(events);
  };
  for (let i = 0; i < WARM_EVENTS; i += BATCH) {
    await learn(BATCH);
    if (pme.running !== null) await pme.running;
  }
  startItemRefresh(trainer);
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

  process.on('message', (message: { type: string }) => {
    if (message.type === 'stats') {
      const a = store.accounting();
      stats.windows = pme.reports().length;
      stats.longestStallMs = stalls.max / 1e6;
      stats.stallP99Ms = stalls.percentile(99) / 1e6;
      stats.tokens = a.tokens;
      stats.tiers = Object.fromEntries(a.tiers.map((t) => [String(t.size), t.tokens]));
      process.send?.({ type: 'stats', stats });
      stats.learned = 0;
      stats.learnMs = 0;
      stalls.reset();
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
  longestStallMs: number;
  stallP99Ms: number;
  pruneWindows: number;
  sendLateP99Ms: number;
  /** The same case through autocannon's per-second quotas (bursts), for comparison. */
  autocannon: Omit<PacedResult, 'sendLateP99Ms'>;
}

interface PacedResult {
  requestsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  non2xx: number;
  errors: number;
  /** How late the client sent its requests against the schedule (its own timer and load). */
  sendLateP99Ms: number;
}

/**
 * Open-loop load at a steady rate: request i is sent at start + i / rate whether or not earlier
 * ones have answered (keep-alive sockets, more opened as needed), and its latency runs from its
 * send to the end of its response. autocannon's overallRate is not that: each connection sends its
 * per-second quota back to back at the start of every second, then idles, so its figures measure
 * bursts of concurrent requests queueing behind each other.
 */
async function paced(
  url: string,
  requests: Array<Record<string, unknown>>,
  rate: number,
  seconds: number,
): Promise<PacedResult> {
  const target = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const total = Math.round(rate * seconds);
  const latencies: number[] = [];
  const late: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const start = performance.now() + 5;
  await new Promise<void>((done) => {
    let finished = 0;
    const finish = (): void => {
      if (++finished === total) done();
    };
    const send = (i: number): void => {
      const r = requests[i % requests.length];
      const sentAt = performance.now();
      late.push(sentAt - (start + (i * 1000) / rate));
      const request = http.request(
        {
          host: target.hostname,
          port: target.port,
          path: r.path as string,
          method: r.method as string,
          headers: r.headers as Record<string, string> | undefined,
          agent,
        },
        (response) => {
          const status = response.statusCode ?? 0;
          if (status < 200 || status >= 300) non2xx++;
          response.resume();
          response.on('end', () => {
            latencies.push(performance.now() - sentAt);
            finish();
          });
        },
      );
      request.on('error', () => {
        errors++;
        finish();
      });
      request.end(r.body as string | undefined);
    };
    let sent = 0;
    const pump = (): void => {
      const now = performance.now();
      while (sent < total && start + (sent * 1000) / rate <= now) send(sent++);
      if (sent < total) setTimeout(pump, 1);
    };
    setTimeout(pump, 5);
  });
  agent.destroy();
  const sorted = (a: number[]) => a.slice().sort((x, y) => x - y);
  const at = (a: number[], q: number) => a[Math.min(a.length - 1, Math.floor(q * a.length))] ?? Number.NaN;
  const l = sorted(latencies);
  return {
    requestsPerSecond: latencies.length / seconds,
    p50Ms: at(l, 0.5),
    p90Ms: at(l, 0.9),
    p99Ms: at(l, 0.99),
    maxMs: l[l.length - 1] ?? Number.NaN,
    non2xx,
    errors,
    sendLateP99Ms: at(sorted(late), 0.99),
  };
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
    `${pad('case', 36)}${'target/s'.padStart(9)}${'req/s'.padStart(9)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'max ms'.padStart(9)}  goal    train ev/s loop p99      max  autocannon p50/p99`,
  );
  for (const r of results)
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
        itemRefreshMs: ITEM_REFRESH_MS,
        warmEvents: WARM_EVENTS,
        users: USERS,
        fields: FIELDS,
        load: 'paced: open loop at the target rate, latency from send; goals judged on it',
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
