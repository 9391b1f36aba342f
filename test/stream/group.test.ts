/**
 * Two instances (child processes, each with its own state) in one consumer group; one is stopped
 * (SIGTERM) in mid-stream. The guarantee tested: a member that stops gracefully snapshots, commits
 * the offsets its snapshot holds and only then leaves, so the survivor takes its partitions over
 * exactly where its final snapshot ends. Across the two final snapshots every event is applied
 * once: none lost, none in both.
 */
import { Kafka, logLevel } from 'kafkajs';
import t from 'tap';
import { testBrokers, uniqueName } from '../helpers/broker.js';
import { eventProducer, newTopic } from '../helpers/kafka.js';
import { tempDir } from '../helpers/temp-dir.js';
import {
  loadSnapshot,
  metric,
  plainEvents,
  serviceEnv,
  spawnService,
  terminate,
  until,
  untilApplied,
} from './helpers.js';

const N = 40_000;
const PARTITIONS = 4;

t.test('two instances in a group, one stopped mid-stream: no event lost, none applied twice', async (t) => {
  const brokers = await testBrokers();
  const topic = await newTopic(brokers, 'group', PARTITIONS);
  const group = uniqueName('group');
  const dirA = await tempDir(t, 'pme-group-a-');
  const dirB = await tempDir(t, 'pme-group-b-');
  // Sharing a group is what a trainer refuses by default (fence.test.ts); this test opts in.
  const env = (dir: string) =>
    serviceEnv(brokers, topic, group, dir, { PME_PARTITIONS: String(PARTITIONS), PME_SHARE_GROUP: 'true' });

  const a = await spawnService(env(dirA));
  t.teardown(() => a.child.kill('SIGKILL'));
  const b = await spawnService(env(dirB));
  t.teardown(() => b.child.kill('SIGKILL'));
  // Both members must own partitions before any event exists: a rebalance while both run moves
  // partitions at their last commit (see the report of this test's guarantee).
  await until(
    'both members assigned',
    async () =>
      (await metric(a.url, 'pme_consumer_partitions')) > 0 &&
      (await metric(b.url, 'pme_consumer_partitions')) > 0 &&
      (await metric(a.url, 'pme_consumer_partitions')) + (await metric(b.url, 'pme_consumer_partitions')) ===
        PARTITIONS,
    40_000,
    200,
  );

  const producer = await eventProducer(t, brokers, 1000);
  const events = plainEvents(N, 2000, 2001);
  // Half, then stop A while the second half is being produced and consumed.
  await producer.sendInteractions(topic, events.slice(0, N / 2));
  await until('A applied some events', async () => (await metric(a.url, 'pme_events_applied_total')) > 2000);
  const sending = producer.sendInteractions(topic, events.slice(N / 2));
  t.equal(await terminate(a), 0, 'A stopped with SIGTERM: exit 0');
  await sending;

  await until(
    'B owns every partition',
    async () => (await metric(b.url, 'pme_consumer_partitions')) === PARTITIONS,
  );
  const finalA = await loadSnapshot(dirA);
  await untilApplied(b.url, N - finalA.learned);
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(await terminate(b), 0, 'B stopped: exit 0');
  const finalB = await loadSnapshot(dirB);

  // End offset of every partition, from the broker.
  const admin = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const ends = new Map(
    (await admin.fetchTopicOffsets(topic)).map((p) => [`${topic}:${p.partition}`, Number(p.high)]),
  );
  const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  await admin.disconnect();

  t.ok(finalA.learned > 0 && finalA.learned < N, `A stopped in mid-stream (${finalA.learned} applied)`);
  t.equal(finalA.learned + finalB.learned, N, 'A + B applied N events: none lost, none twice');
  // A began every partition it owned at 0: what it applied is exactly the sum of its offsets.
  const sumA = Object.values(finalA.offsets).reduce((s, o) => s + Number(o), 0);
  t.equal(sumA, finalA.learned, "A's snapshot: applied events match its offsets");
  for (const [key, end] of ends) {
    t.equal(Number(finalB.offsets[key]), end, `${key}: B read it to its end (${end})`);
    const fromA = Number(finalA.offsets[key] ?? 0);
    t.ok(fromA <= end, `${key}: A applied [0, ${fromA}), B the rest`);
  }
  for (const p of committed[0].partitions)
    t.equal(
      Number(p.offset),
      ends.get(`${topic}:${p.partition}`),
      `partition ${p.partition}: committed at its end`,
    );
});
