/**
 * The serving thread over real sockets: the HTTP API answers from a copy of the trainer's state in
 * a worker thread, synced from the training thread; what only the trainer knows is asked of it.
 */
import t from 'tap';
import { type DashboardStats, dashboardStats } from '../../src/api/dashboard/stats.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { PmeController, Trainer } from '../../src/engine/index.js';
import { parseCrossKey } from '../../src/engine/trainer/index.js';
import { RecentItems } from '../../src/service/recent.js';
import { startServingThread } from '../../src/service/serving.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { summaryFromMetrics } from '../api/metrics-text.js';
import { inProcessApi } from '../helpers/service-api.js';

async function start(t: { teardown(fn: () => unknown): void }, crossUserItem = false) {
  const store = new EmbeddingStore({ seed: 4 });
  const pme = new PmeController(store, { windowEvents: 0, hotThreshold: 5, chunk: 16 });
  // Exact reads on both sides (itemRefreshMs 0), so the copy must give the trainer's numbers (to
  // float32: rows are float32, the bias travels as one).
  const trainer = new Trainer(store, { seed: 4, observer: pme, crossUserItem });
  pme.attach(trainer);
  const workload = new SyntheticWorkload({
    seed: 4,
    users: 3000,
    items: 400,
    fields: [{ name: 'brand', cardinality: 30 }],
  });
  for (const item of workload.catalog()) trainer.upsertItem(item);
  const recent = new RecentItems();
  const learn = (n: number) => {
    const events = workload.take(n);
    trainer.learn(events);
    recent.record(events);
    return events;
  };
  learn(20_000);
  // The serving thread observes the requests itself.
  const api = inProcessApi({
    store,
    trainer,
    pme,
    recent,
    consumer: () => ({ consumed: 0, dlq: {}, lag: {} }),
    requests: false,
  });
  const logs: string[] = [];
  const serving = await startServingThread(
    store,
    trainer,
    api,
    { host: '127.0.0.1', port: 0, adminToken: '', syncMs: 50, itemRefreshMs: 0, seed: 4 },
    (line) => logs.push(line),
  );
  t.teardown(() => serving.stop());
  return { store, trainer, pme, workload, serving, learn, logs, api };
}

const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

t.test('reads come from the copy and equal the trainer’s, before and after more learning', async (t) => {
  const { trainer, serving, learn, workload } = await start(t);
  const items = workload
    .catalog()
    .slice(0, 30)
    .map((i) => i.item);
  const scores = async (user: string) =>
    ((await (await post(`${serving.url}/v1/score`, { user, items })).json()) as { scores: number[] }).scores;
  const gap = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

  const before = await scores('u1');
  t.ok(gap(before, trainer.score('u1', items)) < 1e-6, 'the first full sync gives the trainer’s scores');
  learn(5_000);
  await serving.sync();
  const after = await scores('u1');
  t.ok(gap(after, before) > 1e-6, 'scores change once the copy has the new rows');
  t.ok(gap(after, trainer.score('u1', items)) < 1e-6, 'and equal the trainer’s again');

  const rec = (await (await fetch(`${serving.url}/v1/recommend?user=u1&k=5`)).json()) as {
    items: Array<{ item: string; score: number }>;
  };
  t.same(
    rec.items.map((r) => r.item),
    trainer.recommend('u1', 5).items.map((r) => r.item),
    'recommend gives the trainer’s top items',
  );
});

t.test('with crossUserItem the copy reads the user × item pairs as the trainer does', async (t) => {
  const { store, trainer, serving } = await start(t, true);
  // The user with the most pairs, and the items of them.
  const pairs = new Map<string, string[]>();
  store.forEachInTier(0, (id) => {
    const pair = parseCrossKey(store.key(id));
    if (pair !== null) pairs.set(pair.user, [...(pairs.get(pair.user) ?? []), pair.item]);
  });
  const [user, all] = [...pairs].sort((a, b) => b[1].length - a[1].length)[0];
  t.ok(all.length >= 3, `${user} has ${all.length} pairs`);
  const items = all.slice(0, 12);
  const served = (
    (await (await post(`${serving.url}/v1/score`, { user, items })).json()) as { scores: number[] }
  ).scores;
  const own = trainer.score(user, items);
  t.ok(
    served.every((p, k) => Math.abs(p - own[k]) < 1e-6),
    `scores: ${served.map((p) => p.toFixed(4))} = ${own.map((p) => p.toFixed(4))}`,
  );
  const rec = (await (await fetch(`${serving.url}/v1/recommend?user=${user}&k=5`)).json()) as {
    items: Array<{ item: string; score: number }>;
  };
  const ownTop = trainer.recommend(user, 5).items;
  t.same(
    rec.items.map((r) => r.item),
    ownTop.map((r) => r.item),
  );
  t.ok(
    rec.items.every((r, k) => Math.abs(r.score - ownTop[k].score) < 1e-6),
    'recommend gives the trainer’s scores',
  );
});

t.test('recent items reach the copy with the syncs (excludeRecent)', async (t) => {
  const { serving, learn } = await start(t);
  const events = learn(5_000);
  serving.recordRecent(events);
  await serving.sync();
  // The most active user: its last 20 items are remembered, half the catalog is asked for.
  const counts = new Map<string, number>();
  for (const e of events) counts.set(e.user, (counts.get(e.user) ?? 0) + 1);
  const user = [...counts].sort((a, b) => b[1] - a[1])[0][0];
  const remembered = new RecentItems();
  remembered.record(events);
  const mine = new Set(remembered.of(user));
  const ask = async (excludeRecent: boolean) =>
    (
      (await (
        await fetch(`${serving.url}/v1/recommend?user=${user}&k=200&excludeRecent=${excludeRecent}`)
      ).json()) as { items: Array<{ item: string }> }
    ).items.filter((r) => mine.has(r.item)).length;
  t.ok((await ask(false)) > 0, `without excludeRecent some of ${user}'s items are recommended`);
  t.equal(await ask(true), 0, 'with it, none of its recent items');
});

t.test('tiers, tokens, prune windows, readiness and metrics are the training thread’s', async (t) => {
  const { serving, api, store, pme } = await start(t);
  const tiers = (await (await fetch(`${serving.url}/v1/tiers`)).json()) as { totalBytes: number };
  t.equal(
    tiers.totalBytes,
    store.accounting().totalBytes,
    'tier bytes of the trainer’s store (optimizer included)',
  );
  const stats = (await (await fetch(`${serving.url}/v1/stats`)).json()) as {
    totalBytes: number;
    memoryParts: { tiers: number; tokenColumns: number; keyIndex: number };
  };
  t.equal(stats.totalBytes, tiers.totalBytes, '/v1/stats counts the same bytes as /v1/tiers');
  t.equal(
    stats.memoryParts.tiers + stats.memoryParts.tokenColumns + stats.memoryParts.keyIndex,
    stats.totalBytes,
    'in parts that sum to it',
  );
  const token = (await (await fetch(`${serving.url}/v1/tokens/user/u1`)).json()) as { frequency: number };
  t.equal(token.frequency, ((await api.token('user', 'u1')) ?? { frequency: -1 }).frequency);
  t.equal((await fetch(`${serving.url}/v1/tokens/user/nobody`)).status, 404);

  // The window waits for the test to let it go, so the second request meets it running however
  // loaded the machine is (under load the window used to end first: 202, not 409).
  let release = (): void => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const runWindow = pme.runWindow.bind(pme);
  pme.runWindow = async (reason) => {
    await gate;
    return runWindow(reason);
  };
  const started = await post(`${serving.url}/v1/prune`, { reason: 'test' });
  t.equal(started.status, 202, 'a prune window starts on the training thread');
  const again = await post(`${serving.url}/v1/prune`, { reason: 'test' });
  t.equal(again.status, 409, 'a second one while it runs is refused, with the trainer’s error');
  t.equal(((await again.json()) as { code: string }).code, 'PME_ERR_PRUNE_RUNNING');
  release();
  await pme.running;
  const windows = (await (await fetch(`${serving.url}/v1/prune`)).json()) as {
    windows: Array<{ reason: string }>;
  };
  t.same(
    windows.windows.map((w) => w.reason),
    ['test'],
    'its report is listed',
  );

  t.equal((await fetch(`${serving.url}/readyz`)).status, 200, 'ready once the copy is loaded');
  const metrics = await (await fetch(`${serving.url}/metrics`)).text();
  for (const name of [
    'pme_events_trained_total',
    'pme_http_request_duration_seconds',
    'pme_serving_copy_bytes',
  ])
    t.equal(metrics.split(`# HELP ${name} `).length, 2, `${name} exposed once`);
  t.match(metrics, /pme_serving_loop_delay_seconds\{quantile="0.99"\} \d/);
});

t.test('/v1/stats is the training thread’s reading, the one its /metrics renders', async (t) => {
  const { serving, api } = await start(t);
  const stats = (await (await fetch(`${serving.url}/v1/stats`)).json()) as DashboardStats;
  const { at: _at, lastWindowId: _id, ...rest } = stats;
  t.same(rest, await summaryFromMetrics(serving.url), 'the JSON says what the text says');
  const own = dashboardStats(await api.stats(), await api.pruneWindows(), stats.at);
  t.same(stats, JSON.parse(JSON.stringify(own)), 'the summary of the training thread’s own stats');
});

t.test('a serving thread that dies is replaced on the same port, from a full sync', async (t) => {
  const { trainer, serving, workload, logs } = await start(t);
  const items = workload
    .catalog()
    .slice(0, 10)
    .map((i) => i.item);
  await serving.restart();
  t.equal(serving.restarts, 1);
  t.match(logs.join('\n'), /starting a new one on port/);
  const res = await post(`${serving.url}/v1/score`, { user: 'u2', items });
  t.equal(res.status, 200, 'the same URL answers');
  const scores = ((await res.json()) as { scores: number[] }).scores;
  t.ok(
    Math.max(...scores.map((x, i) => Math.abs(x - trainer.score('u2', items)[i]))) < 1e-6,
    'with the whole state',
  );
});
