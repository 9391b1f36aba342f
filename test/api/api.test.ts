/**
 * The HTTP API over real sockets, against a real store, trainer and PME controller (no
 * Kafka here: test/service covers the path from the broker).
 */
import t from 'tap';
import { buildApi } from '../../src/api/server.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { PmeController, Trainer } from '../../src/engine/index.js';
import { RecentItems } from '../../src/service/recent.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { createRandom } from '../../src/util/random.js';
import { inProcessApi } from '../helpers/service-api.js';

async function startApi(adminToken = '') {
  const store = new EmbeddingStore({ seed: 3 });
  const pme = new PmeController(store, { windowEvents: 0, hotThreshold: 5 });
  const trainer = new Trainer(store, { seed: 3, observer: pme });
  pme.attach(trainer);
  const workload = new SyntheticWorkload({ seed: 3, users: 50, items: 200 });
  for (const item of workload.catalog()) trainer.upsertItem(item);
  const recent = new RecentItems();
  const learn = (n: number): void => {
    const events = Array.from({ length: n }, () => workload.next());
    trainer.learn(events);
    recent.record(events);
    pme.endBatch();
  };
  let live = true;
  const api = inProcessApi({
    store,
    trainer,
    pme,
    recent,
    consumer: () => ({ consumed: 0, skipped: 0, pauses: 0, dlq: { undecodable: 2 }, lag: { '0': 5 } }),
    live: () => live,
  });
  const app = await buildApi(api, { adminToken });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    app,
    pme,
    workload,
    learn,
    setLive: (value: boolean) => {
      live = value;
    },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
const json = async (response: Response | Promise<Response>): Promise<any> => (await response).json();

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

t.test('score reflects learning; recommend finds planted favourites', async (t) => {
  const { url, app, learn, workload } = await startApi();
  t.teardown(() => app.close());
  const user = 'u0';
  const items = workload
    .catalog()
    .slice(0, 20)
    .map((i) => i.item);
  const before = await json(post(`${url}/v1/score`, { user, items }));
  t.equal(before.scores.length, items.length);
  learn(30000);
  const afterRes = await post(`${url}/v1/score`, { user, items });
  t.equal(afterRes.status, 200);
  const after = await json(afterRes);
  t.notSame(after.scores, before.scores, 'scores move after learning');
  t.ok(
    after.scores.every((s: number) => s > 0 && s < 1),
    'probabilities',
  );

  const rec = await json(fetch(`${url}/v1/recommend?user=${user}&k=10`));
  t.equal(rec.items.length, 10);
  t.equal(rec.fallback, null);
  const favourites = new Set(workload.favourites(user, 50));
  const hits = rec.items.filter((r: { item: string }) => favourites.has(r.item)).length;
  // 50 of 200 items are favourites: chance is 2.5 of 10.
  t.ok(hits >= 5, `recommend hits ${hits}/10 planted favourites (chance: 2.5)`);
  const scores = rec.items.map((r: { score: number }) => r.score);
  t.same(
    scores,
    [...scores].sort((a, b) => b - a),
    'best first',
  );

  const excluded = rec.items[0].item;
  const rec2 = await json(fetch(`${url}/v1/recommend?user=${user}&k=10&exclude=${excluded}`));
  t.notOk(
    rec2.items.some((r: { item: string }) => r.item === excluded),
    'exclude leaves the item out',
  );

  const unknown = await json(fetch(`${url}/v1/recommend?user=nobody&k=3`));
  t.equal(unknown.fallback, 'popularity');
  t.equal(unknown.items.length, 3);
});

t.test('a prune window started through the API shows in /v1/prune and /v1/tiers', async (t) => {
  const { url, app, learn, pme } = await startApi('s3cret');
  t.teardown(() => app.close());
  learn(20000);
  const denied = await post(`${url}/v1/prune`, {});
  t.equal(denied.status, 401);
  t.match(await json(denied), { code: 'PME_ERR_UNAUTHORIZED' });
  const wrong = await post(`${url}/v1/prune`, {}, { authorization: 'Bearer nope!!' });
  t.equal(wrong.status, 401);
  const started = await post(`${url}/v1/prune`, { reason: 'test' }, { authorization: 'Bearer s3cret' });
  t.equal(started.status, 202);
  const { window } = await json(started);
  t.equal(window, 1);
  await pme.running;
  const list = await json(fetch(`${url}/v1/prune`));
  t.equal(list.windows.length, 1);
  t.equal(list.windows[0].reason, 'test');
  t.ok(list.windows[0].before.length > 0 && list.windows[0].after.length > 0);
  const tiers = await json(fetch(`${url}/v1/tiers`));
  const tokens = tiers.tiers.reduce((n: number, tier: { tokens: number }) => n + tier.tokens, 0);
  t.ok(tokens > 0);
  t.ok(tiers.totalBytes <= tiers.budgetBytes || tiers.budgetBytes === null);
  t.ok(tiers.fields.some((f: { field: string }) => f.field === 'user'));

  const token = await fetch(`${url}/v1/tokens/user/u0`);
  t.equal(token.status, 200);
  t.match(await json(token), { token: 'user=u0', field: 'user' });
  const missing = await fetch(`${url}/v1/tokens/user/never-seen`);
  t.equal(missing.status, 404);
  t.match(await json(missing), { code: 'PME_ERR_NOT_FOUND', message: /user=never-seen/ });
});

t.test('metrics, health, readiness and the OpenAPI document', async (t) => {
  const { url, app, learn, setLive } = await startApi();
  t.teardown(() => app.close());
  learn(2000);
  await fetch(`${url}/v1/recommend?user=u1`);
  const text = await (await fetch(`${url}/metrics`)).text();
  for (const name of [
    'pme_events_trained_total',
    'pme_dlq_events_total{reason="undecodable"} 2',
    'pme_consumer_lag{partition="0"} 5',
    'pme_progressive_auc',
    'pme_tier_bytes',
    'pme_tier_tokens',
    'pme_prune_windows_total',
    'pme_http_request_duration_seconds_bucket',
    'pme_backend_info{backend="cpu"} 1',
  ])
    t.ok(text.includes(name), name);
  t.equal((await fetch(`${url}/healthz`)).status, 200);
  t.equal((await fetch(`${url}/readyz`)).status, 200);
  setLive(false);
  const notReady = await fetch(`${url}/readyz`);
  t.equal(notReady.status, 503);
  t.match(await json(notReady), { ready: false, consumerLive: false });
  const doc = await json(fetch(`${url}/docs/json`));
  t.equal(doc.openapi.slice(0, 2), '3.');
  for (const path of ['/v1/score', '/v1/recommend', '/v1/prune', '/v1/tiers', '/v1/tokens/{field}/{value}'])
    t.ok(doc.paths[path], `OpenAPI documents ${path}`);
});

t.test('bad input gets a 4xx that says what is wrong, never a 500', async (t) => {
  const { url, app, learn } = await startApi();
  t.teardown(() => app.close());
  learn(500);
  const cases: Array<[string, Promise<Response>, number, RegExp]> = [
    ['missing items', post(`${url}/v1/score`, { user: 'u1' }), 400, /items/],
    ['unknown property', post(`${url}/v1/score`, { user: 'u1', items: ['i1'], extra: 1 }), 400, /additional/],
    ['items not an array', post(`${url}/v1/score`, { user: 'u1', items: 'i1' }), 400, /items/],
    ['empty items', post(`${url}/v1/score`, { user: 'u1', items: [] }), 400, /items/],
    ['too many items', post(`${url}/v1/score`, { user: 'u1', items: Array(1001).fill('i') }), 400, /items/],
    ['not JSON', post(`${url}/v1/score`, '{"user":'), 400, /JSON|Unexpected|body/i],
    ['k too large', fetch(`${url}/v1/recommend?user=u1&k=100000`), 400, /k/],
    ['k not a number', fetch(`${url}/v1/recommend?user=u1&k=ten`), 400, /k/],
    ['no user', fetch(`${url}/v1/recommend?k=3`), 400, /user/],
    ['unknown query', fetch(`${url}/v1/recommend?user=u1&kk=3`), 400, /additional/],
    ['unknown route', fetch(`${url}/v1/nothing`), 404, /not found/],
    [
      'body too large',
      post(`${url}/v1/score`, { user: 'u', items: ['x'.repeat(300 * 1024)] }),
      413,
      /large/i,
    ],
  ];
  for (const [name, response, status, message] of cases) {
    const res = await response;
    t.equal(res.status, status, name);
    const body = await json(res);
    t.match(body.message, message, `${name}: ${body.message}`);
  }

  // Random and hostile bodies to every route: whatever comes back, it is not a 5xx.
  const random = createRandom(11);
  const junk = (): unknown => {
    const pick = random.int(9);
    if (pick === 0) return null;
    if (pick === 1) return random.next();
    if (pick === 2) return 'x'.repeat(random.int(50));
    if (pick === 3) return [junk(), junk()];
    if (pick === 4) return { user: junk(), items: junk() };
    if (pick === 5) return { __proto__: { polluted: true }, constructor: { prototype: { x: 1 } } };
    if (pick === 6) return { user: 'u1', items: ['i1'], fields: { a: junk() } };
    if (pick === 7) return '\u0000\uffff'.repeat(random.int(5));
    return { reason: junk() };
  };
  const routes: Array<[string, string]> = [
    ['POST', '/v1/score'],
    ['POST', '/v1/prune'],
    ['GET', '/v1/recommend?user=%00&k=-1'],
    ['GET', '/v1/tokens/%2F%2E%2E/%00'],
    ['GET', '/v1/tiers'],
    ['GET', '/v1/prune'],
  ];
  let served = 0;
  for (let i = 0; i < 120; i++) {
    const [method, path] = routes[i % routes.length];
    const raw = JSON.stringify(junk()) ?? 'null';
    const body = random.next() < 0.2 ? raw.slice(0, random.int(raw.length + 1)) : raw;
    const res = await fetch(`${url}${path}`, {
      method,
      headers: method === 'POST' ? { 'content-type': 'application/json' } : {},
      body: method === 'POST' ? body : undefined,
    });
    await res.arrayBuffer();
    t.ok(res.status < 500, `${method} ${path} ${body.slice(0, 60)} -> ${res.status}`);
    served++;
  }
  t.equal(served, 120);
});
