/**
 * An Avro subscription by schema-registry subject (issue 19): the service refuses it without a
 * registry or with a subject the registry lacks, and otherwise decodes each value by the writer
 * schema its id names, older and newer writers alike; a value of an id the registry lacks goes to
 * the DLQ as `unknown-schema`. The registry here is a real HTTP server speaking the Confluent API.
 */

import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { startService } from '../../src/service/index.js';
import { DLQ_REASON_HEADER, dlqTopic } from '../../src/stream/index.js';
import { isolatedEnv, testBrokers, uniqueName } from '../helpers/broker.js';
import { confluentFramed, fakeSchemaRegistry } from '../helpers/confluent.js';
import { plainProducer } from '../helpers/kafka.js';
import { postSubscription } from '../helpers/subscriptions.js';
import { tempDir } from '../helpers/temp-dir.js';
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

/** A service on the shared broker, one partition, with `env` on top; stopped when `t` ends. */
async function serviceWith(t: Test, brokers: string, env: Record<string, string> = {}) {
  const stateDir = await tempDir(t, 'pme-subreg-');
  const service = await startService(
    loadConfig([], { ...isolatedEnv(brokers, stateDir), PME_PARTITIONS: '1', ...env }),
    () => {},
  );
  t.teardown(() => service.stop());
  return service;
}

/** Values framed by `V1` and `V2` writers (ids 1 and 2), `count` of each, with `misfit` between. */
function writtenByBoth(count: number, misfit: Buffer): Array<{ value: Buffer }> {
  return [
    ...Array.from({ length: count }, (_, k) => ({ value: confluentFramed(1, V1, { u: `a${k}`, i: 'i1' }) })),
    { value: misfit },
    ...Array.from({ length: count }, (_, k) => ({
      value: confluentFramed(2, V2, { u: `b${k}`, i: 'i2', device: 'ios' }),
    })),
  ];
}

t.test('an avro subscription by subject reads each value by its writer schema', async (t) => {
  const brokers = await testBrokers();
  const topic = uniqueName('views');
  const subject = `${topic}-value`;
  const registry = await fakeSchemaRegistry(t, { subjects: { [subject]: [V1, V2, V3] } });
  const subscription = {
    name: 'views',
    topic,
    format: 'avro',
    subject,
    mapping: { user: 'u', item: 'i', label: '1', fields: { device: 'device' } },
  };

  // Without a registry: refused, saying why.
  const bare = await serviceWith(t, brokers);
  const refused = await postSubscription(bare.url, subscription);
  t.equal(refused.status, 400);
  t.match(
    ((await refused.json()) as { message: string }).message,
    /subject: a subscription by subject needs --schema-registry/,
  );
  await bare.stop();

  const service = await serviceWith(t, brokers, { PME_SCHEMA_REGISTRY_URL: registry.url });
  const unknown = await postSubscription(service.url, { ...subscription, subject: 'nobody-value' });
  t.equal(unknown.status, 400);
  t.match(
    ((await unknown.json()) as { message: string }).message,
    /subject: nobody-value is not in the schema registry/,
  );
  t.equal(
    (await postSubscription(service.url, subscription)).status,
    201,
    'a subject the registry has is taken',
  );

  const producer = await plainProducer(t, brokers);
  const misfit = confluentFramed(7, V2, { u: 'x', i: 'y', device: 'z' });
  await producer.send({ topic, messages: writtenByBoth(5, misfit) });
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
  const registry = await fakeSchemaRegistry(t, { subjects: { [subject]: [V1, V2, V3] } });
  const service = await serviceWith(t, brokers, { PME_SCHEMA_REGISTRY_URL: registry.url });
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
  const misnamed = await postSubscription(service.url, {
    ...subscription,
    mapping: { ...subscription.mapping, item: 'item' },
  });
  t.equal(misnamed.status, 400, 'a path the reader schema lacks');
  t.match(
    ((await misnamed.json()) as { message: string }).message,
    /^mapping\.item: "item" is not in the schema View/,
    'named',
  );
  const created = await postSubscription(service.url, subscription);
  t.equal(created.status, 201, 'a subject with a reader schema is taken');
  t.match(await created.json(), { schema: reader, subject });

  const producer = await plainProducer(t, brokers);
  const incompatible = confluentFramed(3, V3, { u: 5, i: 'i9' });
  await producer.send({ topic, messages: writtenByBoth(4, incompatible) });
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
