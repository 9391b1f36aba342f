/**
 * An items subscription (issue 19: catalog topics the same way) over real sockets against the real
 * broker: a JSON topic of the user's catalog records, subscribed at runtime, feeds the catalog as
 * the service's own items topic does (recommend lists its active items; a tombstone or an
 * `active: false` record deactivates one; its fields join the item's events), its misfits land in
 * `<topic>.dlq` with their reason, it is read whole again after a restart, and after DELETE its
 * topic is no longer read.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { startService } from '../../src/service/index.js';
import { DLQ_REASON_HEADER, dlqTopic, EventProducer } from '../../src/stream/index.js';
import { isolatedEnv, testBrokers, uniqueName } from '../helpers/broker.js';
import { readTopic, until } from '../stream/helpers.js';

const json = { 'content-type': 'application/json' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('an items subscription feeds the catalog, deactivates, survives a restart', async (t) => {
  const brokers = await testBrokers();
  const stateDir = await mkdtemp(join(tmpdir(), 'pme-subitems-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  // One partition: the records' order (and so the DLQ's) is the order produced.
  const env = { ...isolatedEnv(brokers, stateDir), PME_SNAPSHOT_INTERVAL_MS: '500', PME_PARTITIONS: '1' };
  const config = loadConfig([], env);
  let service = await startService(config, () => {});
  t.teardown(() => service.stop());
  const post = (body: unknown) =>
    fetch(`${service.url}/v1/subscriptions`, { method: 'POST', headers: json, body: JSON.stringify(body) });
  const topic = uniqueName('my-catalog');
  const subscription = {
    name: 'catalog',
    topic,
    kind: 'items',
    format: 'json',
    mapping: { item: 'sku', fields: { brand: 'brand' }, active: 'live' },
  };

  for (const [what, body, message] of [
    ['an unknown kind', { ...subscription, kind: 'things' }, /^body\/kind must be equal to one of/],
    ['no item path', { ...subscription, mapping: { fields: {} } }, /^body\/mapping\/item is required/],
    [
      'an events key',
      { ...subscription, mapping: { ...subscription.mapping, user: 'u' } },
      /^body\/mapping\/user is not allowed/,
    ],
    [
      'a bad active',
      { ...subscription, mapping: { item: 'sku', active: 'a..b' } },
      /^mapping\.active: "a\.\.b"/,
    ],
    [
      'an active of another type',
      { ...subscription, mapping: { item: 'sku', active: 1 } },
      /^body\/mapping\/active must be string/,
    ],
  ] as const) {
    const res = await post(body);
    t.equal(res.status, 400, `${what}: 400`);
    t.match(((await res.json()) as { message: string }).message, message, `${what}: says what is wrong`);
  }
  const created = await post(subscription);
  t.equal(created.status, 201, 'subscribed');
  t.same(await created.json(), { ...subscription, created: true }, 'its topic was created');

  const recommended = async (): Promise<string[]> => {
    const res = await fetch(`${service.url}/v1/recommend?user=nobody&k=50`);
    return ((await res.json()) as { items: Array<{ item: string }> }).items.map((i) => i.item).sort();
  };
  const producer = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  // Keyed by item (a compacted topic refuses records without a key).
  const record = (value: { sku?: string; [k: string]: unknown }) => ({
    key: value.sku ?? 'no-sku',
    value: JSON.stringify(value),
  });
  const misfits: Array<[string, { key: string; value: string }]> = [
    ['missing-item', record({ brand: 'nobody' })],
    ['mapping', record({ sku: 's4', live: 'yes' })],
    ['undecodable', { key: 's5', value: '{"sku":' }],
  ];
  await producer.send({
    topic,
    messages: [
      record({ sku: 's1', brand: 'acme' }),
      misfits[0][1],
      record({ sku: 's2', brand: 'zen', live: true }),
      misfits[1][1],
      record({ sku: 's3', brand: 'acme', live: false }),
      misfits[2][1],
    ],
  });
  await until('its active items recommended', async () => (await recommended()).length >= 2, 30_000);
  t.same(await recommended(), ['s1', 's2'], 'the active items are in the catalog, the inactive one is not');
  const dlq = await readTopic(brokers, dlqTopic(topic), misfits.length);
  t.same(
    dlq.map((m) => m.headers?.[DLQ_REASON_HEADER]?.toString()),
    misfits.map(([reason]) => reason),
    'each misfit in <topic>.dlq with its reason',
  );
  t.same(
    dlq.map((m) => m.value?.toString()),
    misfits.map(([, m]) => m.value),
    'unchanged',
  );

  // Its fields are the item's: an event on s1 learns brand=acme too.
  const events = new EventProducer({ brokers: config.brokers });
  await events.connect();
  t.teardown(() => events.disconnect());
  await events.sendInteractions(config.interactionsTopic, [
    { user: 'u1', item: 's1', label: 1, timestamp: Date.now(), fields: {} },
  ]);
  await until('the event learned', () => service.trainer.stats().learned >= 1, 30_000);
  t.ok(service.store.id('brand=acme') >= 0, "the item's catalog field joined its event");

  // Deactivation: a tombstone, or a record saying so; and back.
  await producer.send({
    topic,
    messages: [{ key: 's1', value: null }, record({ sku: 's2', live: false }), record({ sku: 's3' })],
  });
  await until('deactivated', async () => (await recommended()).join() === 's3', 30_000);
  t.same(await recommended(), ['s3'], 'a tombstone and active: false deactivate; an absent active is true');

  const stats = async () =>
    (
      (await (await fetch(`${service.url}/v1/stats`)).json()) as {
        subscriptions: Record<
          string,
          { consumed: number; trained: number; dlqByReason: object; lag: Record<string, number> }
        >;
      }
    ).subscriptions.catalog;
  t.match(await stats(), {
    consumed: 9,
    trained: 6,
    dlqByReason: { 'missing-item': 1, mapping: 1, undecodable: 1 },
    lag: { '0': 0 },
  });

  // Restart: the subscription is restored, and its topic read whole again (as the items topic).
  await service.stop();
  service = await startService(config, () => {});
  await until('its topic read again', async () => (await stats())?.trained === 6, 30_000);
  t.match(await stats(), { consumed: 9, trained: 6 }, 'every record read again from the beginning');
  t.same(await recommended(), ['s3'], 'the same catalog');
  const listed = (await (await fetch(`${service.url}/v1/subscriptions`)).json()) as {
    subscriptions: unknown[];
  };
  t.same(listed.subscriptions, [subscription], 'restored with its kind');

  // DELETE: its topic is no longer read (its items stay in the catalog).
  t.equal(
    (await fetch(`${service.url}/v1/subscriptions/catalog`, { method: 'DELETE' })).status,
    204,
    'removed',
  );
  await producer.send({ topic, messages: [record({ sku: 's9' })] });
  await sleep(2000);
  t.same(await recommended(), ['s3'], 'a record produced after DELETE is not read');
});
