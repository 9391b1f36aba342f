/**
 * JSON subscriptions' mappings: every kind of wrong mapping is refused at compile time with a
 * message naming the part, and records that do not fit are refused at decode time with the DLQ
 * reason the consumer puts in the `pme-dlq-reason` header.
 */

import avro from 'avsc';
import t from 'tap';
import {
  checkSubscription,
  compileItemSubscription,
  compileMapping,
  compileSubscription,
  DecodeError,
  MappingError,
  MemorySchemaRegistry,
  RegistryReader,
  type Subscription,
} from '../../src/stream/index.js';
import { confluentFramed } from '../helpers/confluent.js';

const base = { user: 'user.id', item: 'item', label: 'rating >= 4' };
/** A user's own Avro schema: the same record as the JSON cases. */
const CLICK = {
  type: 'record',
  name: 'Click',
  namespace: 'shop',
  fields: [
    { name: 'user', type: { type: 'record', name: 'User', fields: [{ name: 'id', type: 'long' }] } },
    { name: 'item', type: 'string' },
    { name: 'rating', type: 'double' },
    { name: 'device', type: ['null', 'string'], default: null },
  ],
};
const NOW = 1_700_000_000_000;
const clock = () => NOW;
const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
/** What `fn` throws (undefined when it returns). */
function thrown(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  return undefined;
}

t.test('mapping compile errors name the part and say what is wrong', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an object', 'user', /^mapping: expected an object/],
    ['missing user path', { ...base, user: undefined }, /^mapping\.user: a path is required/],
    ['empty item path', { ...base, item: '' }, /^mapping\.item: a path is required/],
    ['bad path (empty key)', { ...base, user: 'user..id' }, /^mapping\.user: "user\.\.id" is not a path/],
    ['bad path (space)', { ...base, item: 'the item' }, /^mapping\.item: "the item" is not a path/],
    ['label missing', { ...base, label: undefined }, /^mapping\.label: a label rule is required/],
    [
      'label does not parse',
      { ...base, label: 'rating => 4' },
      /^mapping\.label: "rating => 4" does not parse/,
    ],
    ['label operand', { ...base, label: 'rating >= four' }, /neither a number nor a quoted string/],
    ['string with >=', { ...base, label: 'kind >= "click"' }, /a string compares with == or != only/],
    ['unquoted garbage', { ...base, label: 'a b' }, /does not parse/],
    [
      'unknown unit',
      { ...base, timestamp: { path: 'ts', unit: 'days' } },
      /^mapping\.timestamp\.unit: unknown unit "days"/,
    ],
    [
      'timestamp path',
      { ...base, timestamp: { path: '', unit: 'ms' } },
      /^mapping\.timestamp\.path: a path is required/,
    ],
    ['timestamp shape', { ...base, timestamp: 'ts' }, /^mapping\.timestamp: expected/],
    ['field name', { ...base, fields: { 'bad=name': 'x' } }, /^mapping\.fields\.bad=name: a field name/],
    ['field named user', { ...base, fields: { user: 'x' } }, /^mapping\.fields\.user: a field name/],
    [
      'field path',
      { ...base, fields: { device: 'ctx.' } },
      /^mapping\.fields\.device: "ctx\." is not a path/,
    ],
    ['unknown key', { ...base, weight: 'w' }, /^mapping\.weight: unknown key/],
  ];
  for (const [what, mapping, message] of cases) {
    const error = thrown(() => compileMapping(mapping));
    t.type(error, MappingError, what);
    t.match(error?.message, message, what);
  }
});

t.test('subscription checks: name, topic, format, then the mapping', async (t) => {
  const good = { name: 'clicks', topic: 'my-clicks', format: 'json', mapping: base };
  t.same(checkSubscription(good), good);
  const cases: Array<[unknown, RegExp]> = [
    [{ ...good, name: 'has space' }, /^name: "has space" is not a name/],
    [{ ...good, name: '' }, /^name:/],
    [{ ...good, topic: 'a/b' }, /^topic:/],
    [{ ...good, format: 'xml' }, /^format: unknown format "xml" \(expected one of: json, avro\)/],
    [{ ...good, format: 'avro' }, /^schema: format avro needs a record schema inline/],
    [{ ...good, format: 'avro', schema: { type: 'nope' } }, /^schema: not an Avro schema/],
    [
      { ...good, format: 'avro', schema: { type: 'string' } },
      /^schema: a record schema is needed, got string/,
    ],
    [{ ...good, format: 'avro', schema: CLICK, wire: 'json' }, /^wire: unknown wire "json"/],
    [{ ...good, schema: CLICK }, /^schema: only format avro takes a schema, a subject and a wire/],
    // The paths must be in the schema the records are read as.
    [
      { ...good, format: 'avro', schema: CLICK, mapping: { ...base, user: 'user.name' } },
      /^mapping\.user: "user\.name" is not in the schema shop\.Click/,
    ],
    [
      { ...good, format: 'avro', schema: CLICK, mapping: { ...base, label: 'stars >= 4' } },
      /^mapping\.label: "stars" is not in the schema/,
    ],
    [
      { ...good, format: 'avro', schema: CLICK, mapping: { ...base, timestamp: { path: 'at', unit: 'ms' } } },
      /^mapping\.timestamp\.path: "at" is not in the schema/,
    ],
    [
      { ...good, format: 'avro', schema: CLICK, mapping: { ...base, fields: { d: 'device.kind' } } },
      /^mapping\.fields\.d: "device\.kind" is not in the schema/,
    ],
    [{ ...good, mapping: { ...base, label: '>= 4' } }, /^mapping\.label:/],
    [{ ...good, extra: 1 }, /^extra: unknown key/],
  ];
  for (const [value, message] of cases)
    t.match(thrown(() => checkSubscription(value))?.message, message, String(message));
});

t.test('good records decode; numbers at id paths become strings', async (t) => {
  const decode = compileMapping(
    {
      user: 'user.id',
      item: 'item',
      label: 'rating >= 4',
      timestamp: { path: 'ts', unit: 's' },
      fields: { device: 'ctx.device', city: 'ctx.city' },
    },
    clock,
  );
  t.same(
    decode(json({ user: { id: 42 }, item: 'i1', rating: 5, ts: 1_700_000_001, ctx: { device: 'ios' } })),
    {
      user: '42',
      item: 'i1',
      label: 1,
      timestamp: 1_700_000_001_000,
      fields: { device: 'ios' },
    },
  );
  t.same(
    decode(json({ user: { id: 'u' }, item: 7, rating: 3, ctx: { device: 'web', city: 12 } })),
    {
      user: 'u',
      item: '7',
      label: 0,
      timestamp: NOW,
      fields: { device: 'web', city: '12' },
    },
    'missing timestamp: the clock; a number field as text',
  );

  const rules: Array<[string, unknown, number]> = [
    ['kind == "click"', { kind: 'click' }, 1],
    ['kind == "click"', { kind: 'view' }, 0],
    ['kind != "view"', { kind: 'click' }, 1],
    ['r > 3', { r: 3 }, 0],
    ['r < 3', { r: 2 }, 1],
    ['r <= 3', { r: 3 }, 1],
    ['r == 3.5', { r: 3.5 }, 1],
    ['r != 3.5', { r: 3.5 }, 0],
    ['p', { p: 0.25 }, 0.25],
    ['1', {}, 1],
    ['0', {}, 0],
  ];
  for (const [label, extra, want] of rules) {
    const d = compileMapping({ user: 'u', item: 'i', label }, clock);
    t.equal(
      d(json({ u: 'a', i: 'b', ...(extra as object) })).label,
      want,
      `${label} on ${JSON.stringify(extra)}`,
    );
  }
  const ms = compileMapping({ ...base, timestamp: { path: 'at', unit: 'ms' } }, clock);
  t.equal(ms(json({ user: { id: 1 }, item: 2, rating: 4, at: 123 })).timestamp, 123);
  const iso = compileMapping({ ...base, timestamp: { path: 'at', unit: 'iso' } }, clock);
  t.equal(
    iso(json({ user: { id: 1 }, item: 2, rating: 4, at: '2024-01-02T03:04:05Z' })).timestamp,
    Date.parse('2024-01-02T03:04:05Z'),
  );
});

t.test('misfit records: every reason, with the path in the detail', async (t) => {
  const decode = compileMapping(
    { ...base, timestamp: { path: 'at', unit: 'iso' }, fields: { device: 'ctx.device' } },
    clock,
  );
  const good = { user: { id: 'u' }, item: 'i', rating: 5 };
  const cases: Array<[string, Buffer | null, string, RegExp]> = [
    ['not JSON', Buffer.from('{"user":'), 'undecodable', /not JSON/],
    ['no value', null, 'undecodable', /no value/],
    ['JSON array', json([1, 2]), 'undecodable', /not an object/],
    ['no user', json({ ...good, user: {} }), 'missing-user', /no user at user\.id/],
    ['empty user', json({ ...good, user: { id: '' } }), 'missing-user', /user\.id/],
    ['user an object', json({ ...good, user: { id: { x: 1 } } }), 'missing-user', /user\.id/],
    ['no item', json({ user: { id: 'u' }, rating: 5 }), 'missing-item', /no item at item/],
    ['label not a number', json({ ...good, rating: 'five' }), 'bad-label', /rating/],
    ['bad timestamp', json({ ...good, at: 'yesterday' }), 'mapping', /timestamp at at is "yesterday"/],
    [
      'field an object',
      json({ ...good, ctx: { device: { os: 'x' } } }),
      'mapping',
      /field device at ctx\.device/,
    ],
  ];
  for (const [what, value, reason, detail] of cases) {
    try {
      decode(value);
      t.fail(`${what}: decoded`);
    } catch (error) {
      t.type(error, DecodeError, what);
      t.equal((error as DecodeError).reason, reason, `${what}: ${reason}`);
      t.match((error as Error).message, detail, `${what}: detail`);
    }
  }
  const prob = compileMapping({ user: 'u', item: 'i', label: 'p' }, clock);
  for (const p of [1.5, -0.1, '0.5', null])
    t.match(
      thrown(() => prob(json({ u: 'a', i: 'b', p }))),
      { reason: 'bad-label' },
      `label ${JSON.stringify(p)}`,
    );
  const seconds = compileMapping({ ...base, timestamp: { path: 'at', unit: 's' } }, clock);
  t.match(
    thrown(() => seconds(json({ ...good, at: true }))),
    { reason: 'mapping' },
    'seconds not a number',
  );
});

t.test("avro subscriptions: the user's own record schema, raw or in the Confluent wire format", async (t) => {
  const type = avro.Type.forSchema(CLICK as avro.Schema);
  const record = { user: { id: 42 }, item: 'p7', rating: 4.5, device: 'ios' };
  const mapping = { ...base, fields: { device: 'device' } };
  const raw: Subscription = { name: 'clicks', topic: 'shop.clicks', format: 'avro', schema: CLICK, mapping };
  t.same(checkSubscription(raw), raw);
  const decode = compileSubscription(raw, clock);
  const expected = { user: '42', item: 'p7', label: 1, timestamp: NOW, fields: { device: 'ios' } };
  t.same(decode(type.toBuffer(record)), expected, 'the mapping walks the decoded record');
  t.same(decode(type.toBuffer({ ...record, rating: 2, device: null })), {
    ...expected,
    label: 0,
    fields: {},
  });

  const framed = compileSubscription({ ...raw, wire: 'confluent' }, clock);
  const header = Buffer.from([0, 0, 0, 0, 7]);
  t.same(
    framed(Buffer.concat([header, type.toBuffer(record)])),
    expected,
    'past the magic byte and schema id',
  );

  const reasons = (fn: (v: Buffer | null) => unknown, value: Buffer | null) => {
    const error = thrown(() => fn(value));
    t.ok(error instanceof DecodeError, `${error?.message}`);
    return (error as DecodeError).reason;
  };
  t.equal(reasons(decode, Buffer.from('{"user":1}')), 'undecodable', 'JSON is not this Avro');
  t.equal(reasons(decode, type.toBuffer(record).subarray(0, 4)), 'undecodable', 'truncated');
  t.equal(
    reasons(decode, Buffer.concat([type.toBuffer(record), Buffer.from([1])])),
    'undecodable',
    'bytes left over',
  );
  t.equal(reasons(framed, type.toBuffer(record)), 'undecodable', 'no magic byte');
  t.equal(reasons(decode, type.toBuffer({ ...record, item: '' })), 'missing-item');
  t.equal(reasons(decode, null), 'undecodable');
});

t.test('avro by subject: each value decoded by the writer schema its id names', async (t) => {
  const registry = new MemorySchemaRegistry();
  const v1 = { ...CLICK, fields: CLICK.fields.filter((f) => f.name !== 'device') };
  const id1 = await registry.register('shop.clicks-value', v1 as avro.Schema);
  const id2 = await registry.register('shop.clicks-value', CLICK as avro.Schema);
  const sub: Subscription = {
    name: 'clicks',
    topic: 'shop.clicks',
    format: 'avro',
    subject: 'shop.clicks-value',
    mapping: { ...base, fields: { device: 'device' } },
  };
  t.same(checkSubscription(sub), sub);
  const old = confluentFramed(id1, v1, { user: { id: 1 }, item: 'p1', rating: 5 });
  const now = confluentFramed(id2, CLICK, { user: { id: 2 }, item: 'p2', rating: 1, device: 'ios' });
  const unknown = confluentFramed(99, CLICK, { user: { id: 3 }, item: 'p3', rating: 5, device: null });
  const reader = new RegistryReader(sub, registry);
  const decoder = { decode: compileSubscription(sub, clock, reader.read) };
  await reader.prefetch([old, now, unknown, Buffer.from('x'), null]);
  t.same(
    decoder.decode(old),
    { user: '1', item: 'p1', label: 1, timestamp: NOW, fields: {} },
    'an older writer',
  );
  t.same(decoder.decode(now), { user: '2', item: 'p2', label: 0, timestamp: NOW, fields: { device: 'ios' } });
  t.equal(
    (thrown(() => decoder.decode(unknown)) as DecodeError).reason,
    'unknown-schema',
    'an id the registry lacks',
  );
  t.equal((thrown(() => decoder.decode(Buffer.from('x'))) as DecodeError).reason, 'undecodable');
  // The registry unreachable: the batch is read again, not sent to the DLQ.
  const down = new RegistryReader(sub, { getSchema: () => Promise.reject(new Error('fetch failed')) });
  await t.rejects(down.prefetch([now]), /fetch failed/);

  for (const [value, message] of [
    [{ ...sub, schema: { type: 'nope' } }, /^schema: not an Avro schema/],
    [{ ...sub, schema: v1 }, /^mapping\.fields\.device: "device" is not in the schema shop\.Click/],
    [{ ...sub, wire: 'raw' }, /^wire: a subscription by subject reads the Confluent wire format/],
    [{ ...sub, subject: '' }, /^subject: a schema registry subject is a non-empty string/],
    [{ ...sub, format: 'json' }, /^subject: only format avro takes a schema, a subject and a wire/],
  ] as const)
    t.match(thrown(() => checkSubscription(value))?.message, message, String(message));
});

t.test('avro by subject with a reader schema: every writer resolved to it', async (t) => {
  const registry = new MemorySchemaRegistry();
  // The reader: CLICK with a field the writers lack (its default fills it) and without `device`.
  const reader = {
    ...CLICK,
    fields: [
      ...CLICK.fields.filter((f) => f.name !== 'device'),
      { name: 'channel', type: 'string', default: 'web' },
    ],
  };
  const incompatible = { ...CLICK, fields: [{ name: 'user', type: 'string' }, ...CLICK.fields.slice(1)] };
  const id1 = await registry.register('shop.clicks-value', CLICK as avro.Schema);
  const id2 = await registry.register('shop.clicks-value', incompatible as avro.Schema);
  const sub: Subscription = {
    name: 'clicks',
    topic: 'shop.clicks',
    format: 'avro',
    subject: 'shop.clicks-value',
    schema: reader,
    mapping: { ...base, fields: { channel: 'channel' } },
  };
  t.same(checkSubscription(sub), sub, 'a schema with a subject is the reader schema');
  const good = confluentFramed(id1, CLICK, { user: { id: 1 }, item: 'p1', rating: 5, device: 'ios' });
  const bad = confluentFramed(id2, incompatible, { user: 'u', item: 'p2', rating: 5, device: null });
  const registryReader = new RegistryReader(sub, registry);
  const decoder = { decode: compileSubscription(sub, clock, registryReader.read) };
  await registryReader.prefetch([good, bad]);
  t.same(
    decoder.decode(good),
    { user: '1', item: 'p1', label: 1, timestamp: NOW, fields: { channel: 'web' } },
    "resolved: the reader's default filled in",
  );
  const error = thrown(() => decoder.decode(bad)) as DecodeError;
  t.equal(error.reason, 'unknown-schema', 'a writer that cannot be resolved to the reader: DLQ');
  t.match(error.message, /schema id 2 cannot be resolved to the reader schema/);
  t.match(
    thrown(() => checkSubscription({ ...sub, mapping: { ...base, fields: { device: 'device' } } }))?.message,
    /^mapping\.fields\.device: "device" is not in the schema shop\.Click/,
    'the paths are checked against the reader schema, not the writers',
  );
});

t.test('items subscriptions: catalog records, tombstones deactivate, checked like events', async (t) => {
  const sub: Subscription = {
    name: 'catalog',
    topic: 'shop.items',
    kind: 'items',
    format: 'json',
    mapping: { item: 'sku', fields: { brand: 'meta.brand' }, active: 'live' },
  };
  t.same(checkSubscription(sub), sub);
  const decode = compileItemSubscription(sub);
  const key = Buffer.from('s1');
  t.same(decode(json({ sku: 's1', meta: { brand: 'acme' } }), key), {
    item: 's1',
    fields: { brand: 'acme' },
    active: true,
  });
  t.same(decode(json({ sku: 7, live: false }), key), { item: '7', fields: {}, active: false });
  t.same(decode(null, key), { item: 's1', fields: {}, active: false }, 'a tombstone deactivates its key');
  const reason = (value: Buffer | null, k: Buffer | null = key) =>
    (thrown(() => decode(value, k)) as DecodeError).reason;
  t.equal(reason(null, null), 'missing-item', 'a tombstone without a key');
  t.equal(reason(json({ meta: {} })), 'missing-item');
  t.equal(reason(json({ sku: 's1', live: 'yes' })), 'mapping', 'active not a boolean');
  t.equal(reason(json({ sku: 's1', meta: { brand: {} } })), 'mapping', 'a field that is an object');
  t.equal(reason(Buffer.from('{')), 'undecodable');
  const off = compileItemSubscription({ ...sub, mapping: { item: 'sku', active: false } });
  t.same(off(json({ sku: 's2' }), null), { item: 's2', fields: {}, active: false }, 'a constant');

  // Avro of an inline schema, the paths checked against it.
  const ITEM = {
    type: 'record',
    name: 'Product',
    fields: [
      { name: 'sku', type: 'string' },
      { name: 'meta', type: { type: 'map', values: 'string' } },
      { name: 'live', type: ['null', 'boolean'], default: null },
    ],
  };
  const avroSub = { ...sub, format: 'avro', schema: ITEM } as Subscription;
  t.same(checkSubscription(avroSub), avroSub, 'a map takes any key');
  const type = avro.Type.forSchema(ITEM as avro.Schema);
  t.same(
    compileItemSubscription(avroSub)(type.toBuffer({ sku: 'a', meta: { brand: 'b' }, live: null }), null),
    {
      item: 'a',
      fields: { brand: 'b' },
      active: true,
    },
  );

  for (const [value, message] of [
    [{ ...sub, kind: 'things' }, /^kind: unknown kind "things" \(expected one of: events, items\)/],
    [{ ...sub, mapping: { fields: {} } }, /^mapping\.item: a path is required/],
    [{ ...sub, mapping: { item: 'sku', user: 'u' } }, /^mapping\.user: unknown key \(item, fields, active\)/],
    [{ ...sub, mapping: { item: 'sku', active: 1 } }, /^mapping\.active: expected a PATH to a boolean/],
    [
      { ...sub, mapping: { item: 'sku', fields: { user: 'x' } } },
      /^mapping\.fields\.user: a field name .* not user or item/,
    ],
    [
      { ...avroSub, mapping: { item: 'sku', active: 'enabled' } },
      /^mapping\.active: "enabled" is not in the schema Product/,
    ],
    [{ ...sub, kind: 'events' }, /^mapping\.active: unknown key \(user, item, label/],
  ] as const)
    t.match(thrown(() => checkSubscription(value))?.message, message, String(message));
});
