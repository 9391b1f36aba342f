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

/** A registry holding `subject` with the two versions, ids 1 and 2. */
async function fakeRegistry(subject: string): Promise<{ url: string; close: () => Promise<void> }> {
  const schemas = new Map([
    [1, V1],
    [2, V2],
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
    if (url === `/subjects/${encodeURIComponent(subject)}/versions`) return reply(200, [1, 2]);
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
