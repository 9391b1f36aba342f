/**
 * kill -9 while two JSON subscriptions run beside the interactions topic (issue 19): each event of
 * the three topics is applied exactly once over the crash, and the snapshot's offsets cover every
 * partition of the subscriptions' topics (their offsets follow the service's rule too).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { testBrokers, uniqueName } from '../helpers/broker.js';
import { eventProducer, newTopic, plainProducer } from '../helpers/kafka.js';
import { tempDir } from '../helpers/temp-dir.js';
import {
  killAfterNextSnapshot,
  loadSnapshot,
  metric,
  metricByLabel,
  plainEvents,
  serviceEnv,
  spawnService,
  terminate,
  until,
} from './helpers.js';

/** Events per topic: most produced before the service starts, so that the kill lands mid-stream. */
const N = 60_000;

t.test('kill -9 with two subscriptions running: every event of the three topics applied once', async (t) => {
  const brokers = await testBrokers();
  const topic = await newTopic(brokers, 'subcrash', 2);
  const clicks = uniqueName('subcrash-clicks');
  const views = uniqueName('subcrash-views');
  const group = uniqueName('subcrash-group');
  const admin = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({
    topics: [clicks, views].map((name) => ({ topic: name, numPartitions: 2 })),
  });
  await admin.disconnect();
  const dir = await tempDir(t, 'pme-subcrash-');
  const mapping = { user: 'who', item: 'what', label: 'clicked', timestamp: { path: 'at', unit: 'ms' } };
  const file = join(dir, 'subscriptions.json');
  await writeFile(
    file,
    JSON.stringify([
      { name: 'clicks', topic: clicks, format: 'json', mapping },
      { name: 'views', topic: views, format: 'json', mapping },
    ]),
  );
  const avro = await eventProducer(t, brokers, 2000);
  const json = await plainProducer(t, brokers);
  const sendJson = async (name: string, events: Interaction[]) => {
    for (let i = 0; i < events.length; i += 2000)
      await json.send({
        topic: name,
        messages: events.slice(i, i + 2000).map((e) => ({
          key: e.user,
          value: JSON.stringify({ who: e.user, what: e.item, clicked: e.label, at: e.timestamp }),
        })),
      });
  };
  const streams = [plainEvents(N, 3000, 3001), plainEvents(N, 2000, 2001), plainEvents(N, 1000, 1001)];
  const half = N - 2000;
  await avro.sendInteractions(topic, streams[0].slice(0, half));
  await sendJson(clicks, streams[1].slice(0, half));
  await sendJson(views, streams[2].slice(0, half));

  const env = serviceEnv(brokers, topic, group, dir, {
    PME_PARTITIONS: '2',
    PME_SNAPSHOT_INTERVAL_MS: '150',
    PME_SUBSCRIPTIONS: file,
  });
  const first = await spawnService(env);
  t.teardown(() => first.child.kill('SIGKILL'));
  // Killed once a snapshot holds events of both subscriptions (taken after each had some).
  const trained = async (name: string, topicName: string) =>
    (await metricByLabel(first.url, 'pme_subscription_events_total'))[
      `{subscription="${name}",topic="${topicName}",outcome="trained",reason=""}`
    ] ?? 0;
  await until(
    'events of both subscriptions',
    async () => (await trained('clicks', clicks)) > 0 && (await trained('views', views)) > 0,
    60_000,
    10,
  );
  const atCrash = await killAfterNextSnapshot(first, dir, 60_000);
  t.ok(
    atCrash.learned < 3 * half,
    `killed in mid-stream (the snapshot holds ${atCrash.learned} of the ${3 * half} sent before)`,
  );
  t.ok(
    [clicks, views].every((name) => Object.keys(atCrash.offsets).some((key) => key.startsWith(`${name}:`))),
    'the snapshot holds offsets of both subscriptions',
  );

  await avro.sendInteractions(topic, streams[0].slice(half));
  await sendJson(clicks, streams[1].slice(half));
  await sendJson(views, streams[2].slice(half));
  const second = await spawnService(env);
  t.teardown(() => second.child.kill('SIGKILL'));
  await until(
    'every event applied',
    async () => (await metric(second.url, 'pme_events_applied_total')) >= 3 * N,
    90_000,
  );
  await new Promise((resolve) => setTimeout(resolve, 1000));
  t.equal(await metric(second.url, 'pme_events_applied_total'), 3 * N, 'exactly 3N events applied');
  t.equal(await terminate(second), 0);
  const final = await loadSnapshot(dir);
  t.equal(final.learned, 3 * N, 'the final snapshot holds 3N events');
  const sum = Object.values(final.offsets).reduce((s, v) => s + Number(v), 0);
  t.equal(sum, 3 * N, 'and the end of all six partitions');
});
