/**
 * Subscriptions over real sockets against the real broker: a JSON topic subscribed at runtime is
 * learned from (exactly its events), its misfits land in `<topic>.dlq` with their reason while the
 * partition moves on, the subscription survives a restart without anything learned twice, one
 * from `--subscriptions FILE` is added at start, and after DELETE its topic is no longer learned.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { ITEM_REFRESH_MS, startService } from '../../src/service/index.js';
import { DLQ_REASON_HEADER, DLQ_SOURCE_HEADER, dlqTopic, EventProducer } from '../../src/stream/index.js';
import { isolatedEnv, testBrokers, uniqueName } from '../helpers/broker.js';
import { confluentFramed } from '../helpers/confluent.js';
import { plainProducer } from '../helpers/kafka.js';
import { postSubscription } from '../helpers/subscriptions.js';
import { tempDir } from '../helpers/temp-dir.js';
import { metricByLabel, readTopic, until } from '../stream/helpers.js';

const TOKEN = 'sub-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const json = { 'content-type': 'application/json' };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('a JSON topic subscribed at runtime is learned, kept across a restart, and dropped', async (t) => {
  const brokers = await testBrokers();
  const stateDir = await tempDir(t, 'pme-subs-');
  const env = {
    ...isolatedEnv(brokers, stateDir),
    PME_SNAPSHOT_INTERVAL_MS: '500',
    PME_ADMIN_TOKEN: TOKEN,
    PME_LEARNING_RATE: '0.1',
  };
  const config = loadConfig([], env);
  const service = await startService(config, () => {});
  let current = service;
  t.teardown(() => current.stop());

  const topic = uniqueName('my-clicks');
  const subscription = {
    name: 'clicks',
    topic,
    format: 'json',
    mapping: {
      user: 'u.id',
      item: 'item',
      label: 'rating >= 4',
      timestamp: { path: 'ts', unit: 'ms' },
      fields: { device: 'ctx.device' },
    },
  };

  // What is wrong is said, and nothing is added.
  const refused: Array<[string, unknown, number, RegExp]> = [
    ['no token', subscription, 401, /Authorization/],
    ['bad name', { ...subscription, name: 'has space' }, 400, /^name: "has space" is not a name/],
    ['unknown format', { ...subscription, format: 'xml' }, 400, /^format: unknown format "xml"/],
    ['avro without its schema', { ...subscription, format: 'avro' }, 400, /^schema: format avro needs/],
    [
      'missing path',
      { ...subscription, mapping: { ...subscription.mapping, user: undefined } },
      400,
      /mapping\/user is required/,
    ],
    [
      'bad path',
      { ...subscription, mapping: { ...subscription.mapping, item: 'a..b' } },
      400,
      /^mapping\.item: "a\.\.b" is not a path/,
    ],
    [
      'label rule',
      { ...subscription, mapping: { ...subscription.mapping, label: 'rating => 4' } },
      400,
      /^mapping\.label: "rating => 4" does not parse/,
    ],
    [
      'timestamp unit',
      { ...subscription, mapping: { ...subscription.mapping, timestamp: { path: 'ts', unit: 'days' } } },
      400,
      /^mapping\.timestamp\.unit: unknown unit "days"/,
    ],
    [
      'own topic',
      { ...subscription, topic: config.interactionsTopic },
      400,
      /one of the service's own topics/,
    ],
  ];
  for (const [what, body, status, message] of refused) {
    const res = await postSubscription(service.url, body, what === 'no token' ? {} : auth);
    const reply = (await res.json()) as { message: string };
    t.equal(res.status, status, `${what}: ${status}`);
    t.match(reply.message, message, `${what}: says what is wrong`);
  }

  const created = await postSubscription(service.url, subscription, auth);
  t.equal(created.status, 201, 'subscribed');
  t.same(await created.json(), { ...subscription, created: true }, 'answered with it; its topic was created');
  const again = await postSubscription(service.url, subscription, auth);
  t.equal(again.status, 409);
  t.equal(((await again.json()) as { code: string }).code, 'PME_ERR_SUBSCRIPTION_EXISTS');
  const listed = async (url: string) =>
    ((await (await fetch(`${url}/v1/subscriptions`)).json()) as { subscriptions: unknown[] }).subscriptions;
  t.same(await listed(service.url), [subscription], 'GET lists it');

  // Scores of one user before and after its events are learned.
  const items = ['i0', 'i1', 'i2', 'i3'];
  const scoreOf = async (url: string, user: string) =>
    (
      (await (
        await fetch(`${url}/v1/score`, {
          method: 'POST',
          headers: json,
          body: JSON.stringify({ user, items }),
        })
      ).json()) as { scores: number[] }
    ).scores;
  const before = await scoreOf(service.url, '7');

  // Good records (a numeric user id), each misfit between good ones, all on one partition (key).
  const producer = await plainProducer(t, brokers);
  let n = 0;
  const good = (count: number) =>
    Array.from({ length: count }, () => {
      const i = n++;
      return {
        key: 'k',
        value: JSON.stringify({
          u: { id: i % 3 === 0 ? 7 : `u${i % 10}` },
          item: `i${i % 4}`,
          rating: i % 4 === 0 ? 5 : 1 + (i % 3),
          ts: 1_700_000_000_000 + i,
          ctx: { device: i % 2 ? 'ios' : 'web' },
        }),
      };
    });
  const misfits: Array<[string, string]> = [
    ['undecodable', '{"u": {"id": 1}, "item":'],
    ['missing-user', JSON.stringify({ u: {}, item: 'i1', rating: 5 })],
    ['missing-item', JSON.stringify({ u: { id: 1 }, rating: 5 })],
    ['bad-label', JSON.stringify({ u: { id: 1 }, item: 'i1', rating: 'five' })],
    ['mapping', JSON.stringify({ u: { id: 1 }, item: 'i1', rating: 5, ts: 'yesterday' })],
  ];
  const messages = good(40);
  for (const [, value] of misfits) messages.push({ key: 'k', value }, ...good(30));
  const GOOD = n;
  await producer.send({ topic, messages });
  // The interactions topic is read as before, beside it.
  const workload = new SyntheticWorkload({ seed: 3, users: 20, items: 30 });
  const avro = new EventProducer({ brokers: config.brokers });
  await avro.connect();
  t.teardown(() => avro.disconnect());
  const AVRO = 50;
  await avro.sendInteractions(
    config.interactionsTopic,
    Array.from({ length: AVRO }, () => workload.next()),
  );

  await until('the JSON and Avro events trained', () => service.trainer.stats().learned >= GOOD + AVRO);
  await sleep(1000);
  t.equal(service.trainer.stats().learned, GOOD + AVRO, 'exactly the good events learned, each once');
  await sleep(ITEM_REFRESH_MS + 100);
  t.notSame(await scoreOf(service.url, '7'), before, "the subscribed user's scores moved");

  const dlq = await readTopic(brokers, dlqTopic(topic), misfits.length);
  t.same(
    dlq.map((m) => m.headers?.[DLQ_REASON_HEADER]?.toString()),
    misfits.map(([reason]) => reason),
    'each misfit in <topic>.dlq with its reason, and the partition moved on past each',
  );
  t.same(
    dlq.map((m) => m.value?.toString()),
    misfits.map(([, value]) => value),
    'values unchanged',
  );
  t.match(dlq[0].headers?.[DLQ_SOURCE_HEADER]?.toString(), new RegExp(`^${topic}:\\d+:\\d+$`));

  const stats = (await (await fetch(`${service.url}/v1/stats`)).json()) as {
    eventsTrained: number;
    subscriptions: Record<
      string,
      { topic: string; consumed: number; trained: number; dlq: number; dlqByReason: Record<string, number> }
    >;
  };
  t.equal(stats.eventsTrained, GOOD + AVRO);
  t.match(stats.subscriptions.clicks, {
    topic,
    consumed: GOOD + misfits.length,
    trained: GOOD,
    dlq: misfits.length,
    dlqByReason: Object.fromEntries(misfits.map(([reason]) => [reason, 1])),
  });
  const counters = await metricByLabel(service.url, 'pme_subscription_events_total');
  t.equal(
    counters[`{subscription="clicks",topic="${topic}",outcome="trained",reason=""}`],
    GOOD,
    '/metrics: trained',
  );
  t.equal(
    counters[`{subscription="clicks",topic="${topic}",outcome="dlq",reason="mapping"}`],
    1,
    '/metrics: dlq by reason',
  );

  // Its records went to one partition (one key): the other's lag, never fetched, comes from the broker.
  const lagOf = () => metricByLabel(service.url, 'pme_subscription_lag');
  await until('the lag of both partitions', async () => Object.keys(await lagOf()).length === 2, 20_000);
  t.same(
    await lagOf(),
    { '{subscription="clicks",partition="0"}': 0, '{subscription="clicks",partition="1"}': 0 },
    '/metrics: lag 0 on every partition of its topic, fetched or not',
  );

  // Restart on the same state: the subscription is back, nothing is learned twice; a file adds one.
  await service.stop();
  const viewsTopic = uniqueName('my-views');
  const file = join(stateDir, 'subscriptions.json');
  const views = {
    name: 'views',
    topic: viewsTopic,
    format: 'json',
    mapping: { user: 'who', item: 'what', label: '1' },
  };
  await writeFile(file, JSON.stringify([views]));
  const second = await startService(loadConfig([], { ...env, PME_SUBSCRIPTIONS: file }), () => {});
  current = second;
  t.same(await listed(second.url), [subscription, views], 'restored from the snapshot, and the file added');
  await sleep(2000);
  t.equal(second.trainer.stats().learned, GOOD + AVRO, 'nothing learned twice after the restart');
  await producer.send({ topic, messages: good(10) });
  await producer.send({ topic: viewsTopic, messages: [{ value: JSON.stringify({ who: 'a', what: 'b' }) }] });
  await until('the new events trained', () => second.trainer.stats().learned >= GOOD + AVRO + 11);
  await sleep(500);
  t.equal(second.trainer.stats().learned, GOOD + AVRO + 11, 'only the new ones');

  // DELETE: its topic is no longer learned.
  const del = (name: string, headers: Record<string, string> = auth) =>
    fetch(`${second.url}/v1/subscriptions/${name}`, { method: 'DELETE', headers });
  t.equal((await del('clicks', {})).status, 401, 'DELETE needs the token');
  t.equal((await del('nope')).status, 404, 'an unknown name: 404');
  t.equal((await del('clicks')).status, 204, 'removed');
  t.same(await listed(second.url), [views]);
  const learned = second.trainer.stats().learned;
  await producer.send({ topic, messages: good(20) });
  await producer.send({ topic: viewsTopic, messages: [{ value: JSON.stringify({ who: 'c', what: 'd' }) }] });
  await until('the other subscription still learned', () => second.trainer.stats().learned >= learned + 1);
  await sleep(2000);
  t.equal(second.trainer.stats().learned, learned + 1, 'events of a removed subscription are not learned');
});

t.test('with the API in its own thread, subscriptions are asked of the training thread', async (t) => {
  const brokers = await testBrokers();
  const stateDir = await tempDir(t, 'pme-subs-');
  const config = loadConfig([], {
    ...isolatedEnv(brokers, stateDir),
    PME_SERVE_SYNC_MS: '100',
    PME_PARTITIONS: '1',
  });
  const service = await startService(config, () => {});
  t.teardown(() => service.stop());
  const topic = uniqueName('threaded');
  const subscription = {
    name: 'threaded',
    topic,
    format: 'json',
    mapping: { user: 'u', item: 'i', label: 'p' },
  };
  const res = await postSubscription(service.url, subscription);
  t.equal(res.status, 201, 'no admin token set: no token needed');
  t.same(await res.json(), { ...subscription, created: true });
  const bad = await postSubscription(service.url, {
    ...subscription,
    name: 'other',
    mapping: { ...subscription.mapping, label: 'p >' },
  });
  t.equal(bad.status, 400, 'a refusal crosses the thread with its status');
  t.match(((await bad.json()) as { message: string }).message, /^mapping\.label:/);
  const producer = await plainProducer(t, brokers);
  await producer.send({
    topic,
    messages: Array.from({ length: 5 }, (_, k) => ({ value: JSON.stringify({ u: 'a', i: `i${k}`, p: 1 }) })),
  });
  await until('5 events trained', () => service.trainer.stats().learned >= 5);
  t.equal(service.trainer.stats().learned, 5);

  // A topic of the user's own Avro records (schema inline, Confluent framing) is read the same way.
  const schema = {
    type: 'record',
    name: 'View',
    fields: [
      { name: 'u', type: 'string' },
      { name: 'i', type: 'string' },
      { name: 'p', type: 'double' },
    ],
  };
  const avroTopic = uniqueName('threaded-avro');
  const avroSub = {
    name: 'views',
    topic: avroTopic,
    format: 'avro',
    wire: 'confluent',
    schema,
    mapping: subscription.mapping,
  };
  const posted = await postSubscription(service.url, avroSub);
  t.equal(posted.status, 201, 'an avro subscription is taken');
  const framed = (value: object) => confluentFramed(1, schema, value);
  await producer.send({
    topic: avroTopic,
    messages: [
      ...Array.from({ length: 4 }, (_, k) => ({ value: framed({ u: 'b', i: `i${k}`, p: 1 }) })),
      { value: Buffer.from(JSON.stringify({ u: 'b', i: 'x', p: 1 })) },
    ],
  });
  await until('4 avro events trained', () => service.trainer.stats().learned >= 9);
  t.equal(service.trainer.stats().learned, 9, 'its records learned; the JSON one among them is not');
  const dlq = await readTopic(brokers, dlqTopic(avroTopic), 1);
  t.equal(dlq[0].headers?.[DLQ_REASON_HEADER]?.toString(), 'undecodable', 'it went to the DLQ');
  t.equal((await fetch(`${service.url}/v1/subscriptions/views`, { method: 'DELETE' })).status, 204);
  const list = (await (await fetch(`${service.url}/v1/subscriptions`)).json()) as {
    subscriptions: unknown[];
  };
  t.same(list.subscriptions, [subscription]);
  const doc = (await (await fetch(`${service.url}/docs/json`)).json()) as {
    paths: Record<string, Record<string, { requestBody?: unknown; security?: unknown }>>;
  };
  t.ok(doc.paths['/v1/subscriptions']?.get, 'OpenAPI documents GET /v1/subscriptions');
  t.match(
    doc.paths['/v1/subscriptions']?.post,
    {
      requestBody: {
        content: { 'application/json': { schema: { required: ['name', 'topic', 'format', 'mapping'] } } },
      },
      security: [{ bearer: [] }],
    },
    'and POST with its body and the admin token',
  );
  t.ok(doc.paths['/v1/subscriptions/{name}']?.delete, 'and DELETE /v1/subscriptions/{name}');
  const del = () => fetch(`${service.url}/v1/subscriptions/threaded`, { method: 'DELETE' });
  t.equal((await del()).status, 204);
  t.equal((await del()).status, 404, 'gone');
});
