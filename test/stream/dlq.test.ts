/**
 * Every kind of bad event, produced to the real broker between good ones: each lands unchanged in
 * `<topic>.dlq` with its reason in the `pme-dlq-reason` header, is counted per reason in the
 * metrics, and the good events after it are trained (a bad event never stops a partition).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, type KafkaMessage, logLevel } from 'kafkajs';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import type { Interaction } from '../../src/data/event.js';
import { startService } from '../../src/service/index.js';
import {
  createInteractionCodec,
  createItemCodec,
  DLQ_REASON_HEADER,
  DLQ_SOURCE_HEADER,
  dlqTopic,
  ensureTopics,
  SCHEMA_HEADER,
} from '../../src/stream/index.js';
import { testBrokers, uniqueName } from '../helpers/broker.js';
import { metric, metricByLabel, plainEvents, readTopic, serviceEnv, until } from './helpers.js';

const header = (m: KafkaMessage, name: string): string | undefined => m.headers?.[name]?.toString();

t.test('bad events go to the DLQ unchanged, with their reason, and do not stop the partition', async (t) => {
  const brokers = await testBrokers();
  const topic = uniqueName('dlq');
  const stateDir = await mkdtemp(join(tmpdir(), 'pme-dlq-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  await ensureTopics(brokers, { interactions: topic, items: `${topic}-items`, partitions: 1 });

  const codec = await createInteractionCodec();
  const itemCodec = await createItemCodec();
  const good = plainEvents(60, 10, 11);
  const enc = (e: Partial<Interaction>): Buffer => codec.encode({ ...good[0], ...e });
  const headers = { ...codec.headers };
  // Each bad message, with the reason the service must give it.
  const bad: Array<{ reason: string; value: Buffer | null; headers: Record<string, string> }> = [
    { reason: 'undecodable', value: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x01]), headers },
    { reason: 'undecodable', value: null, headers },
    { reason: 'unknown-schema', value: enc({}), headers: { [SCHEMA_HEADER]: '0123456789abcdef' } },
    { reason: 'missing-user', value: enc({ user: '' }), headers },
    { reason: 'missing-item', value: enc({ item: '' }), headers },
    { reason: 'bad-label', value: enc({ label: Number.NaN }), headers },
    { reason: 'bad-label', value: enc({ label: Number.POSITIVE_INFINITY }), headers },
    { reason: 'oversized', value: enc({ fields: { blob: 'x'.repeat(70_000) } }), headers },
  ];
  // good[0..9], then the bad ones each followed by 5 good ones, then the rest.
  const messages: Array<{ key: string; value: Buffer | null; headers: Record<string, string> }> = [];
  let g = 0;
  const pushGood = (n: number): void => {
    for (let i = 0; i < n; i++, g++)
      messages.push({ key: good[g].user, value: codec.encode(good[g]), headers });
  };
  pushGood(10);
  for (const b of bad) {
    messages.push({ key: 'bad', value: b.value, headers: b.headers });
    pushGood(5);
  }
  pushGood(good.length - g);
  // The last three good ones name no schema: read as the current one, trained, and counted.
  const HEADERLESS = 3;
  for (const m of messages.slice(-HEADERLESS)) m.headers = {};

  const kafka = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const producer = kafka.producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  await producer.send({ topic, messages });
  await producer.send({
    topic: `${topic}-items`,
    messages: [
      {
        key: 'i1',
        value: itemCodec.encode({ item: 'i1', fields: { genre: 'Drama' }, active: true }),
        headers: { ...itemCodec.headers },
      },
      {
        key: 'x',
        value: itemCodec.encode({ item: '', fields: {}, active: true }),
        headers: { ...itemCodec.headers },
      },
    ],
  });

  const service = await startService(
    loadConfig([], serviceEnv(brokers, topic, uniqueName('dlq-group'), stateDir)),
    () => {},
  );
  t.teardown(() => service.stop());
  await until('the good events trained', () => service.trainer.stats().learned >= good.length);
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(
    service.trainer.stats().learned,
    good.length,
    'every good event trained, before and after each bad one',
  );

  const dlq = await readTopic(brokers, dlqTopic(topic), bad.length);
  t.equal(dlq.length, bad.length, 'one DLQ message per bad event');
  for (let i = 0; i < bad.length; i++) {
    const m = dlq[i];
    t.equal(header(m, DLQ_REASON_HEADER), bad[i].reason, `#${i}: reason ${bad[i].reason}`);
    t.ok(
      bad[i].value === null ? m.value === null || m.value.length === 0 : m.value?.equals(bad[i].value!),
      `#${i}: value unchanged`,
    );
    t.equal(m.key?.toString(), 'bad', `#${i}: key unchanged`);
    t.match(header(m, DLQ_SOURCE_HEADER), new RegExp(`^${topic}:0:\\d+$`), `#${i}: source offset`);
    t.equal(header(m, SCHEMA_HEADER), bad[i].headers[SCHEMA_HEADER], `#${i}: original headers kept`);
  }
  const itemDlq = await readTopic(brokers, dlqTopic(`${topic}-items`), 1);
  t.equal(header(itemDlq[0], DLQ_REASON_HEADER), 'missing-item', 'a catalog item without id too');

  const counts = await metricByLabel(service.url, 'pme_dlq_events_total');
  const expected: Record<string, number> = {};
  for (const b of bad) expected[`{reason="${b.reason}"}`] = (expected[`{reason="${b.reason}"}`] ?? 0) + 1;
  expected['{reason="missing-item"}'] += 1; // the catalog one
  t.same(counts, expected, 'counted per reason');
  t.equal(await metric(service.url, 'pme_events_consumed_total'), messages.length, 'all messages read');
  t.equal(
    await metric(service.url, 'pme_events_headerless_total'),
    HEADERLESS,
    'values without a schema header counted',
  );
});
