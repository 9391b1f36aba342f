import avro from 'avsc';
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import {
  createInteractionCodec,
  createItemCodec,
  DECODE_FAILURE_REASONS,
  type DecodeFailureReason,
  EventDecodeError,
  INTERACTION_SCHEMA,
  SCHEMA_HEADER,
  schemaFingerprint,
  toEventCodec,
} from '../../src/stream/avro.js';
import { DecodeError } from '../../src/stream/consumer.js';
import { frame, framedSchemaId, HttpSchemaRegistry, MemorySchemaRegistry } from '../../src/stream/wire.js';
import { avroFixture } from '../helpers/avro-fixtures.js';
import { fakeSchemaRegistry } from '../helpers/confluent.js';

const V0 = avroFixture('interaction-v0.avsc');
const V2 = avroFixture('interaction-v2.avsc');
const INCOMPATIBLE = avroFixture('interaction-incompatible.avsc');
const ITEM_V2 = avroFixture('item-v2.avsc');

const event: Interaction = {
  user: 'u42',
  item: 'i1193',
  label: 0.5, // exact in float32, so it survives the round trip unchanged
  timestamp: 1_700_000_123_456,
  fields: { genre: 'Drama', device: 'tv' },
};

function reasonOf(fn: () => unknown): DecodeFailureReason | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof EventDecodeError) return error.reason;
    throw error;
  }
  return undefined;
}

t.test('an interaction and an item round-trip, with the schema named in a header', async (t) => {
  const codec = await createInteractionCodec();
  const value = codec.encode(event);
  t.same(codec.headers, { [SCHEMA_HEADER]: codec.fingerprint });
  t.match(codec.fingerprint, /^[0-9a-f]{16}$/);
  t.same({ ...codec.decode(value, codec.headers) }, event);
  t.same({ ...codec.decode(value, undefined) }, event, 'no header: the current schema');
  t.same(
    { ...codec.decode(value, { [SCHEMA_HEADER]: Buffer.from(codec.fingerprint) }) },
    event,
    'Buffer header',
  );
  t.equal(codec.schemaId, -1, 'no registry, no id');

  const items = await createItemCodec();
  const item = { item: 'i1193', fields: { genre: 'Drama' }, active: false };
  t.same({ ...items.decode(items.encode(item), items.headers) }, item);
});

t.test('golden bytes of an older writer decode with defaults for the missing fields', async (t) => {
  // user "u1" (len 2 -> zigzag 04), item "i9", timestamp 1700000000000 as a zigzag varint:
  // hand-derived from the Avro spec, not produced by the encoder under test.
  const body = Buffer.from('04753104693980a0abfef962', 'hex');
  const codec = await createInteractionCodec({ writerSchemas: [V0] });
  const v0 = schemaFingerprint(avro.Type.forSchema(V0));
  t.not(v0, codec.fingerprint);
  t.same(
    { ...codec.decode(body, { [SCHEMA_HEADER]: v0 }) },
    {
      user: 'u1',
      item: 'i9',
      label: 1,
      timestamp: 1_700_000_000_000,
      fields: {},
    },
  );
});

t.test('older and newer writer schemas resolve to the reader schema', async (t) => {
  const codec = await createInteractionCodec();
  const v0Type = avro.Type.forSchema(V0);
  const v2Type = avro.Type.forSchema(V2);
  const old = v0Type.toBuffer({ user: 'a', item: 'b', timestamp: 5 });
  const newer = v2Type.toBuffer({ ...event, session: 's-1', dwellMs: 1200 });
  const oldHeader = { [SCHEMA_HEADER]: codec.registerWriterSchema(V0) };
  const newHeader = { [SCHEMA_HEADER]: schemaFingerprint(v2Type) };

  t.equal(
    reasonOf(() => codec.decode(newer, newHeader)),
    'unknown-schema',
    'an unregistered writer is unknown',
  );
  t.equal(codec.registerWriterSchema(V2), newHeader[SCHEMA_HEADER], 'registering returns the header value');
  t.same({ ...codec.decode(old, oldHeader) }, { user: 'a', item: 'b', label: 1, timestamp: 5, fields: {} });
  t.same({ ...codec.decode(newer, newHeader) }, event, 'extra fields are skipped');

  const items = await createItemCodec({ writerSchemas: [ITEM_V2] });
  const itemV2 = avro.Type.forSchema(ITEM_V2);
  const decoded = items.decode(itemV2.toBuffer({ item: 'x', fields: {}, active: true, price: 9.5 }), {
    [SCHEMA_HEADER]: schemaFingerprint(itemV2),
  });
  t.same({ ...decoded }, { item: 'x', fields: {}, active: true });
});

t.test('each kind of bad event fails with its reason', async (t) => {
  const codec = await createInteractionCodec({ maxMessageBytes: 200, writerSchemas: [INCOMPATIBLE] });
  const good = codec.encode(event);
  const bad = (patch: Partial<Interaction>) => codec.encode({ ...event, ...patch });
  const cases: Array<[string, DecodeFailureReason, () => unknown]> = [
    ['random bytes', 'undecodable', () => codec.decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1]))],
    ['a truncated body', 'undecodable', () => codec.decode(good.subarray(0, good.length - 3))],
    ['trailing bytes', 'undecodable', () => codec.decode(Buffer.concat([good, Buffer.from([1, 2])]))],
    ['a null value', 'undecodable', () => codec.decode(null)],
    [
      'an unknown writer',
      'unknown-schema',
      () => codec.decode(good, { [SCHEMA_HEADER]: '0123456789abcdef' }),
    ],
    [
      'an incompatible writer',
      'unknown-schema',
      () =>
        codec.decode(avro.Type.forSchema(INCOMPATIBLE).toBuffer({ user: 7, timestamp: 1 }), {
          [SCHEMA_HEADER]: schemaFingerprint(avro.Type.forSchema(INCOMPATIBLE)),
        }),
    ],
    ['an empty user', 'missing-user', () => codec.decode(bad({ user: '' }))],
    ['an empty item', 'missing-item', () => codec.decode(bad({ item: '' }))],
    ['a NaN label', 'bad-label', () => codec.decode(bad({ label: Number.NaN }))],
    ['an infinite label', 'bad-label', () => codec.decode(bad({ label: Number.NEGATIVE_INFINITY }))],
    ['an oversized value', 'oversized', () => codec.decode(bad({ fields: { blob: 'x'.repeat(300) } }))],
  ];
  for (const [name, reason, fn] of cases) t.equal(reasonOf(fn), reason, name);
  t.same(
    new Set(cases.map((c) => c[1])),
    new Set(DECODE_FAILURE_REASONS),
    'every reason is covered by a case',
  );
  t.equal(
    reasonOf(() => codec.decode(good)),
    undefined,
    'the good event still decodes',
  );

  try {
    codec.decode(bad({ user: '' }));
  } catch (error) {
    t.ok(error instanceof DecodeError, "a DecodeError, so the consumer's DLQ path classifies it");
    t.equal((error as EventDecodeError).retriable, false);
  }
  await t.rejects(createInteractionCodec({ maxMessageBytes: 0 }), { code: 'PME_ERR_CONFIG_INVALID' });
});

t.test('catalog tombstones and empty items', async (t) => {
  const items = await createItemCodec();
  t.same(items.decode(null, undefined, Buffer.from('i7')), { item: 'i7', fields: {}, active: false });
  t.equal(
    reasonOf(() => items.decode(null, undefined, null)),
    'missing-item',
  );
  t.equal(
    reasonOf(() => items.decode(items.encode({ item: '', fields: {}, active: true }))),
    'missing-item',
  );
});

t.test('the EventCodec adapter decodes what the codec encodes', async (t) => {
  const codec = await createInteractionCodec();
  const adapter = toEventCodec(codec, await createItemCodec());
  t.same(
    { ...adapter.decodeInteraction(codec.encode(event), codec.headers, null) },
    event,
    'the EventCodec adapter',
  );
});

t.test('Confluent wire format with an in-memory registry', async (t) => {
  const registry = new MemorySchemaRegistry();
  const producer = await createInteractionCodec({ registry, topic: 'clicks', register: true });
  t.same(registry.versions('clicks-value'), [producer.schemaId], 'registered under <topic>-value');
  const value = producer.encode(event);
  t.equal(value[0], 0, 'magic byte');
  t.equal(value.readUInt32BE(1), producer.schemaId, 'schema id, big-endian');
  t.equal(framedSchemaId(value), producer.schemaId);

  // A reader registers nothing: it learns even the current schema's id from the registry.
  const consumer = await createInteractionCodec({ registry, topic: 'clicks' });
  await consumer.prefetch([value]);
  t.same({ ...consumer.decode(value) }, event);

  // An older producer registered its own schema: unknown until prefetched from the registry.
  const oldId = await registry.register('clicks-value', V0);
  const old = frame(oldId, avro.Type.forSchema(V0).toBuffer({ user: 'a', item: 'b', timestamp: 9 }));
  t.equal(
    reasonOf(() => consumer.decode(old)),
    'unknown-schema',
  );
  await consumer.prefetch([old, null, value]);
  t.same({ ...consumer.decode(old) }, { user: 'a', item: 'b', label: 1, timestamp: 9, fields: {} });

  const missing = frame(999, Buffer.from('04753104693980a0abfef962', 'hex'));
  await consumer.prefetch([missing]);
  t.equal(
    reasonOf(() => consumer.decode(missing)),
    'unknown-schema',
    'an id the registry lacks',
  );
  t.equal(
    reasonOf(() => consumer.decode(Buffer.from([1, 2, 3, 4, 5, 6]))),
    'undecodable',
    'not framed',
  );
  t.equal(
    await registry.register('other-value', INTERACTION_SCHEMA),
    producer.schemaId,
    'same schema, same id',
  );
});

t.test('a reading codec registers nothing under the topic subject (issue 19)', async (t) => {
  const registry = new MemorySchemaRegistry();
  const reader = await createInteractionCodec({ registry, topic: 'clicks' });
  const items = await createItemCodec({ registry, topic: 'clicks-items' });
  t.same(registry.versions('clicks-value'), [], "nothing under the user's <topic>-value");
  t.same(registry.versions('clicks-items-value'), [], 'nor under the catalog topic');
  t.equal(reader.schemaId, -1, 'a reader has no writer id');
  t.throws(() => reader.encode(event), /register: true/, 'and cannot write framed values');
  t.throws(() => items.encode({ item: 'i', fields: {}, active: true }), /register: true/);

  // What a producer registered (here, the current schema) is read by the id in the value.
  const producer = await createInteractionCodec({ registry, topic: 'clicks', register: true });
  const value = producer.encode(event);
  t.equal(
    reasonOf(() => reader.decode(value)),
    'unknown-schema',
    'unknown until prefetched',
  );
  await reader.prefetch([value]);
  t.same({ ...reader.decode(value) }, event);
  t.same(registry.versions('clicks-value'), [producer.schemaId], "only the producer's registration");
});

t.test('the HTTP registry client speaks the Confluent REST API', async (t) => {
  const fake = await fakeSchemaRegistry(t);
  // A trailing slash, as users write base URLs: the client must not double it.
  const url = `${fake.url}/`;
  const registry = new HttpSchemaRegistry(url);

  const codec = await createInteractionCodec({ registry, register: true });
  t.equal(codec.schemaId, 1);
  t.equal(fake.requests[0]?.line, 'POST /subjects/interactions-value/versions');
  const reader = await createInteractionCodec({ registry: new HttpSchemaRegistry(url) });
  const value = codec.encode(event);
  await reader.prefetch([value]);
  t.same({ ...reader.decode(value) }, event);
  await t.rejects(registry.getSchema(77), /HTTP 404/);
});
