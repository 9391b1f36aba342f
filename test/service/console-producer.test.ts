/**
 * A JSON topic fed by a client that is not ours (issue 19): Kafka's own console producer
 * (`org.apache.kafka.tools.ConsoleProducer`, from Maven Central like the broker) writes the
 * lines; the service, subscribed at runtime, learns exactly the records that fit its mapping and
 * sends the others to `<topic>.dlq` with their reason.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { defaultCacheDir, ensureKafkaJars, findJava } from '../../src/broker/index.js';
import { loadConfig } from '../../src/config.js';
import { startService } from '../../src/service/index.js';
import { DLQ_REASON_HEADER, dlqTopic } from '../../src/stream/index.js';
import { isolatedEnv, testBrokers, uniqueName } from '../helpers/broker.js';
import { readTopic, until } from '../stream/helpers.js';

/** Runs the console producer over `lines` (one record each) and waits for it to exit. */
async function consoleProduce(libs: string, brokers: string, topic: string, lines: string[]): Promise<void> {
  const child = spawn(
    findJava(),
    [
      '-cp',
      `${libs}/*`,
      'org.apache.kafka.tools.ConsoleProducer',
      '--bootstrap-server',
      brokers,
      '--topic',
      topic,
    ],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdin.end(`${lines.join('\n')}\n`);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`ConsoleProducer exited with ${code}: ${stderr}`);
}

t.test("Kafka's console producer feeds a subscribed JSON topic", async (t) => {
  const libs = await ensureKafkaJars(defaultCacheDir(), { kind: 'tools' });
  const brokers = await testBrokers();
  const stateDir = await mkdtemp(join(tmpdir(), 'pme-console-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const service = await startService(
    loadConfig([], { ...isolatedEnv(brokers, stateDir), PME_PARTITIONS: '1' }),
    () => {},
  );
  t.teardown(() => service.stop());
  const topic = uniqueName('console-clicks');
  const res = await fetch(`${service.url}/v1/subscriptions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'console',
      topic,
      format: 'json',
      mapping: {
        user: 'user.id',
        item: 'product',
        label: 'action == "purchase"',
        timestamp: { path: 'at', unit: 'iso' },
      },
    }),
  });
  t.equal(res.status, 201);
  t.equal(((await res.json()) as { created: boolean }).created, true, 'the topic was created');

  const good = Array.from({ length: 40 }, (_, k) =>
    JSON.stringify({
      user: { id: k % 7 },
      product: `p${k % 5}`,
      action: k % 3 === 0 ? 'purchase' : 'view',
      at: '2024-05-01T10:00:00Z',
    }),
  );
  const misfits = [
    'not json',
    JSON.stringify({ user: { id: 1 }, action: 'view' }),
    JSON.stringify({ user: { id: 1 }, product: 'p1', action: 'view', at: 'yesterday' }),
  ];
  await consoleProduce(libs, brokers, topic, [...good.slice(0, 20), ...misfits, ...good.slice(20)]);
  await until('the console records learned', () => service.trainer.stats().learned >= good.length, 30_000);
  t.equal(service.trainer.stats().learned, good.length, 'every record that fits, once');
  const dlq = await readTopic(brokers, dlqTopic(topic), misfits.length);
  t.same(
    dlq.map((m) => m.headers?.[DLQ_REASON_HEADER]?.toString()),
    ['undecodable', 'missing-item', 'mapping'],
    'the others in the DLQ, by reason',
  );
  t.same(
    dlq.map((m) => m.value?.toString()),
    misfits,
    'unchanged',
  );
});
