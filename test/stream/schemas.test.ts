/**
 * Schema evolution through the broker: events written with an older writer schema (no label, no
 * fields) and with a newer one (two added fields) are read by the consumer as the current
 * `pme.Interaction`, defaults filled and unknown fields dropped; an incompatible writer goes to the
 * DLQ as `unknown-schema`. Once with a schema registry (Confluent wire format, schemas fetched by
 * id over its REST API), once without (writer schemas known to the reader by fingerprint).
 */
import avro, { type Schema } from 'avsc';
import t, { type Test } from 'tap';
import type { Interaction } from '../../src/data/event.js';
import {
  type CodecOptions,
  createInteractionCodec,
  createItemCodec,
  HttpSchemaRegistry,
  SCHEMA_HEADER,
  StreamConsumer,
  toEventCodec,
} from '../../src/stream/index.js';
import { frame } from '../../src/stream/wire.js';
import { avroFixture } from '../helpers/avro-fixtures.js';
import { testBrokers, uniqueName } from '../helpers/broker.js';
import { fakeSchemaRegistry } from '../helpers/confluent.js';
import { newTopic, plainProducer } from '../helpers/kafka.js';
import { until } from './helpers.js';

const V0 = avroFixture('interaction-v0.avsc');
const V2 = avroFixture('interaction-v2.avsc');
const INCOMPATIBLE = avroFixture('interaction-incompatible.avsc');

const older = { user: 'u1', item: 'i9', timestamp: 1_700_000_000_000 };
const newer = {
  user: 'u2',
  item: 'i7',
  label: 0,
  timestamp: 1_700_000_000_001,
  fields: { device: 'tv' },
  session: 's-1',
  dwellMs: 1200,
};
const current: Interaction = { user: 'u3', item: 'i5', label: 0.5, timestamp: 1_700_000_000_002, fields: {} };

/** Consumes `topic` with the project's consumer and codec until `n` events are applied. */
async function consume(
  t: Test,
  brokers: string,
  topic: string,
  codecOptions: CodecOptions,
  n: number,
): Promise<{ events: Interaction[]; dlq: Record<string, number> }> {
  const events: Interaction[] = [];
  const consumer = new StreamConsumer({
    brokers: brokers.split(','),
    groupId: uniqueName('schemas'),
    interactionsTopic: topic,
    itemsTopic: `${topic}-items`,
    codec: toEventCodec(
      await createInteractionCodec({ ...codecOptions, topic }),
      await createItemCodec({ ...codecOptions, topic: `${topic}-items` }),
    ),
    onEvents: (batch) => {
      events.push(...batch);
    },
    onItems: () => {},
    withStateLock: (fn) => fn(),
  });
  await consumer.start();
  t.teardown(() => consumer.close());
  await until(`${n} events`, () => events.length >= n, 30_000);
  return { events, dlq: consumer.stats.dlq };
}

t.test('older and newer writer schemas, with a schema registry', async (t) => {
  const brokers = await testBrokers();
  const topic = await newTopic(brokers, 'schemas-registry', 1);
  const { url } = await fakeSchemaRegistry(t);
  const registry = new HttpSchemaRegistry(url);
  // Writers registering their own schema versions under the topic's subject, as producers do.
  const v0 = await registry.register(`${topic}-value`, V0);
  const v2 = await registry.register(`${topic}-value`, V2);
  const bad = await registry.register(`${topic}-value`, INCOMPATIBLE);
  const writer = await createInteractionCodec({ registry, topic, register: true });

  const producer = await plainProducer(t, brokers);
  await producer.send({
    topic,
    messages: [
      { key: 'u1', value: frame(v0, avro.Type.forSchema(V0).toBuffer(older)) },
      { key: 'x', value: frame(bad, avro.Type.forSchema(INCOMPATIBLE).toBuffer({ user: 5, timestamp: 1 })) },
      { key: 'u2', value: frame(v2, avro.Type.forSchema(V2).toBuffer(newer)) },
      { key: 'u3', value: writer.encode(current) },
    ],
  });

  const { events, dlq } = await consume(t, brokers, topic, { registry: new HttpSchemaRegistry(url) }, 3);
  t.same({ ...events[0] }, { ...older, label: 1, fields: {} }, 'older: defaults filled in');
  t.same(
    { ...events[1] },
    { user: 'u2', item: 'i7', label: 0, timestamp: newer.timestamp, fields: { device: 'tv' } },
    'newer: added fields dropped',
  );
  t.same({ ...events[2] }, current, 'current');
  t.same(dlq, { 'unknown-schema': 1 }, 'the incompatible writer goes to the DLQ');
});

t.test('older and newer writer schemas, without a registry (schema named in a header)', async (t) => {
  const brokers = await testBrokers();
  const topic = await newTopic(brokers, 'schemas-plain', 1);
  const codecFor = async (s: Schema) => {
    const type = avro.Type.forSchema(s);
    const c = await createInteractionCodec({ writerSchemas: [s] });
    return { type, header: c.registerWriterSchema(s) };
  };
  const w0 = await codecFor(V0);
  const w2 = await codecFor(V2);
  const producer = await plainProducer(t, brokers);
  await producer.send({
    topic,
    messages: [
      { key: 'u1', value: w0.type.toBuffer(older), headers: { [SCHEMA_HEADER]: w0.header } },
      { key: 'u2', value: w2.type.toBuffer(newer), headers: { [SCHEMA_HEADER]: w2.header } },
    ],
  });
  const { events, dlq } = await consume(t, brokers, topic, { writerSchemas: [V0, V2] }, 2);
  t.same({ ...events[0] }, { ...older, label: 1, fields: {} }, 'older: defaults filled in');
  t.same(
    { ...events[1] },
    { user: 'u2', item: 'i7', label: 0, timestamp: newer.timestamp, fields: { device: 'tv' } },
    'newer: added fields dropped',
  );
  t.same(dlq, {});
});
