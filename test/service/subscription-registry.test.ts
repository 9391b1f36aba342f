/**
 * An Avro subscription by schema-registry subject (issue 19): the service refuses it without a
 * registry or with a subject the registry lacks, and otherwise decodes each value by the writer
 * schema its id names, older and newer writers alike; a value of an id the registry lacks goes to
 * the DLQ as `unknown-schema`. The registry here is a real HTTP server speaking the Confluent API.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import avro from 'avsc';
import { Kafka, logLevel } from 'kafkajs';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { startService } from '../../src/service/index.js';
import { DLQ_REASON_HEADER, dlqTopic } from '../../src/stream/index.js';
import { isolatedEnv, testBrokers, uniqueName } from '../helpers/broker.js';
import { readTopic, until } from '../stream/helpers.js';

const V1 = {
  type: 'record',
  name: 'View',
  fields: [
    { name: 'u', type: 'string' },
    { name: 'i', type: 'string' },
  ],
};
const V2 = { ...V1, fields: [...V1.fields, { name: 'device', type: 'string' }] };
/** A writer no reader of V1's `u` can be resolved from (an int is not a string). */
const V3 = { ...V1, fields: [{ name: 'u', type: 'int' }, V1.fields[1]] };

/** A registry holding `subject` with the three versions, ids 1 to 3. */
async function fakeRegistry(subject: string): Promise<{ url: string; close: () => Promise<void> }> {
  const schemas = new Map([
    [1, V1],
    [2, V2],
    [3, V3],
  ]);
  const server = createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
      res.end(JSON.stringify(body));
    };
    const url = req.url ?? '';
    const byId = /^\/schemas\/ids\/(\d+)$/.exec(url);
    if (byId !== null) {
      const schema = schemas.get(Number(byId[1]));
      return schema === undefined
        ? reply(404, { error_code: 40403, message: 'Schema not found' })
        : reply(200, { schema: JSON.stringify(schema) });
    }
    if (url === `/subjects/${encodeURIComponent(subject)}/versions`) return reply(200, [1, 2, 3]);
    reply(404, { error_code: 40401, message: 'Subject not found' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const framed = (id: number, schema: object, value: object): Buffer => {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(id, 1);
  return Buffer.concat([header, avro.Type.forSchema(schema as avro.Schema).toBuffer(value)]);
};

t.test('an avro subscription by subject reads each value by its writer schema', async (t) => {
  const brokers = await testBrokers();
  const topic = uniqueName('views');
  const subject = `${topic}-value`;
  const registry = await fakeRegistry(subject);
  t.teardown(() => registry.close());
  const post = (url: string, body: unknown) =>
    fetch(`${url}/v1/subscriptions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const subscription = {
    name: 'views',
    topic,
    format: 'avro',
    subject,
    mapping: { user: 'u', item: 'i', label: '1', fields: { device: 'device' } },
  };

  // Without a registry: refused, saying why.
  const bareDir = await mkdtemp(join(tmpdir(), 'pme-subreg-'));
  t.teardown(() => rm(bareDir, { recursive: true, force: true }));
  const bare = await startService(
    loadConfig([], { ...isolatedEnv(brokers, bareDir), PME_PARTITIONS: '1' }),
    () => {},
  );
  const refused = await post(bare.url, subscription);
  t.equal(refused.status, 400);
  t.match(
    ((await refused.json()) as { message: string }).message,
    /subject: a subscription by subject needs --schema-registry/,
  );
  await bare.stop();

  const stateDir = await mkdtemp(join(tmpdir(), 'pme-subreg-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const service = await startService(
    loadConfig([], {
      ...isolatedEnv(brokers, stateDir),
      PME_PARTITIONS: '1',
      PME_SCHEMA_REGISTRY_URL: registry.url,
    }),
    () => {},
  );
  t.teardown(() => service.stop());
  const unknown = await post(service.url, { ...subscription, subject: 'nobody-value' });
  t.equal(unknown.status, 400);
  t.match(
    ((await unknown.json()) as { message: string }).message,
    /subject: nobody-value is not in the schema registry/,
  );
  t.equal((await post(service.url, subscription)).status, 201, 'a subject the registry has is taken');

  const producer = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  const misfit = framed(7, V2, { u: 'x', i: 'y', device: 'z' });
  await producer.send({
    topic,
    messages: [
      ...Array.from({ length: 5 }, (_, k) => ({ value: framed(1, V1, { u: `a${k}`, i: 'i1' }) })),
      { value: misfit },
      ...Array.from({ length: 5 }, (_, k) => ({
        value: framed(2, V2, { u: `b${k}`, i: 'i2', device: 'ios' }),
      })),
    ],
  });
  await until('10 events learned', () => service.trainer.stats().learned >= 10, 30_000);
  t.equal(service.trainer.stats().learned, 10, 'older and newer writers learned');
  t.ok(service.store.id('device=ios') >= 0, "the newer writer's field became a token");
  const dlq = await readTopic(brokers, dlqTopic(topic), 1);
  t.equal(dlq[0].headers?.[DLQ_REASON_HEADER]?.toString(), 'unknown-schema', 'an id the registry lacks: DLQ');
  t.same(dlq[0].value, misfit);
});

t.test('with a reader schema, every writer is resolved to it; paths are checked against it', async (t) => {
  const brokers = await testBrokers();
  const topic = uniqueName('views-read');
  const subject = `${topic}-value`;
  const registry = await fakeRegistry(subject);
  t.teardown(() => registry.close());
  const stateDir = await mkdtemp(join(tmpdir(), 'pme-subreg-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const service = await startService(
    loadConfig([], {
      ...isolatedEnv(brokers, stateDir),
      PME_PARTITIONS: '1',
      PME_SCHEMA_REGISTRY_URL: registry.url,
    }),
    () => {},
  );
  t.teardown(() => service.stop());
  const post = (body: unknown) =>
    fetch(`${service.url}/v1/subscriptions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  // The reader: V2 with a default for `device`, which V1's values lack.
  const reader = { ...V1, fields: [...V1.fields, { name: 'device', type: 'string', default: 'unknown' }] };
  const subscription = {
    name: 'views',
    topic,
    format: 'avro',
    subject,
    schema: reader,
    mapping: { user: 'u', item: 'i', label: '1', fields: { device: 'device' } },
  };
  const misnamed = await post({ ...subscription, mapping: { ...subscription.mapping, item: 'item' } });
  t.equal(misnamed.status, 400, 'a path the reader schema lacks');
  t.match(
    ((await misnamed.json()) as { message: string }).message,
    /^mapping\.item: "item" is not in the schema View/,
    'named',
  );
  const created = await post(subscription);
  t.equal(created.status, 201, 'a subject with a reader schema is taken');
  t.match(await created.json(), { schema: reader, subject });

  const producer = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  const incompatible = framed(3, V3, { u: 5, i: 'i9' });
  await producer.send({
    topic,
    messages: [
      ...Array.from({ length: 4 }, (_, k) => ({ value: framed(1, V1, { u: `a${k}`, i: 'i1' }) })),
      { value: incompatible },
      ...Array.from({ length: 4 }, (_, k) => ({
        value: framed(2, V2, { u: `b${k}`, i: 'i2', device: 'ios' }),
      })),
    ],
  });
  await until('8 events learned', () => service.trainer.stats().learned >= 8, 30_000);
  t.equal(service.trainer.stats().learned, 8, 'both writers learned');
  t.ok(service.store.id('device=unknown') >= 0, "the older writer's values got the reader's default");
  t.ok(service.store.id('device=ios') >= 0, "the newer writer's field read");
  const dlq = await readTopic(brokers, dlqTopic(topic), 1);
  t.equal(dlq[0].headers?.[DLQ_REASON_HEADER]?.toString(), 'unknown-schema', 'an incompatible writer: DLQ');
  t.match(
    dlq[0].headers?.['pme-dlq-detail']?.toString(),
    /schema id 3 cannot be resolved to the reader schema/,
    'saying why',
  );
  t.same(dlq[0].value, incompatible, 'unchanged');
});
