/**
 * Two partitions, the service as a child process. Each stop lands mid-stream however fast the
 * service reads: part of the events are produced before it, the rest after. SIGTERM in mid-stream: it finishes the batch,
 * snapshots, commits exactly the snapshot's offsets, leaves the group and exits 0; the restart
 * resumes there with nothing read twice. Then kill -9 in mid-stream: the restart applies every
 * remaining event exactly once (what it reads again below its snapshot's offsets it skips).
 */
import { Kafka, logLevel } from 'kafkajs';
import t from 'tap';
import { testBrokers, uniqueName } from '../helpers/broker.js';
import { eventProducer, newTopic } from '../helpers/kafka.js';
import { tempDir } from '../helpers/temp-dir.js';
import {
  killAfterNextSnapshot,
  loadSnapshot,
  metric,
  plainEvents,
  serviceEnv,
  spawnService,
  terminate,
  until,
  untilApplied,
} from './helpers.js';

const N = 60_000;

t.test('SIGTERM then kill -9 in mid-stream, two partitions: each event applied once', async (t) => {
  const brokers = await testBrokers();
  const topic = await newTopic(brokers, 'shutdown', 2);
  const group = uniqueName('shutdown-group');
  const dir = await tempDir(t, 'pme-shutdown-');
  const producer = await eventProducer(t, brokers, 2000);
  const events = plainEvents(2 * N, 4000, 4001);
  await producer.sendInteractions(topic, events.slice(0, N / 2));
  const env = serviceEnv(brokers, topic, group, dir, {
    PME_PARTITIONS: '2',
    PME_SNAPSHOT_INTERVAL_MS: '150',
  });
  const admin = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  const committed = async (): Promise<Record<string, string>> => {
    const [{ partitions }] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    // -1: nothing committed (a partition that had no event applied before the stop).
    return Object.fromEntries(
      partitions.filter((p) => p.offset !== '-1').map((p) => [`${topic}:${p.partition}`, p.offset]),
    );
  };

  // SIGTERM in mid-stream.
  const first = await spawnService(env);
  t.teardown(() => first.child.kill('SIGKILL'));
  await until(
    'some events',
    async () => (await metric(first.url, 'pme_events_applied_total')) >= N / 10,
    45_000,
    10,
  );
  const stopAt = Date.now();
  t.equal(await terminate(first), 0, 'SIGTERM: exit 0');
  const stopMs = Date.now() - stopAt;
  t.ok(stopMs < 5000, `stopped in ${stopMs} ms`);
  t.match(first.stderr(), /final snapshot/, 'it took a final snapshot');
  const stopped = await loadSnapshot(dir);
  t.ok(stopped.learned < N, `stopped in mid-stream (${stopped.learned} of ${N})`);
  const sum = (o: Record<string, string>) => Object.values(o).reduce((s, v) => s + Number(v), 0);
  t.equal(sum(stopped.offsets), stopped.learned, 'snapshot offsets match its applied count');
  t.same(await committed(), stopped.offsets, 'committed exactly the final snapshot offsets');
  await producer.sendInteractions(topic, events.slice(N / 2, N));

  const second = await spawnService(env);
  t.teardown(() => second.child.kill('SIGKILL'));
  await untilApplied(second.url, N);
  t.equal(await metric(second.url, 'pme_events_applied_total'), N, 'N events applied in all');
  t.equal(await metric(second.url, 'pme_events_skipped_total'), 0, 'nothing read twice after a clean stop');

  // kill -9 in mid-stream, with a snapshot that holds some of the new events: the snapshot after
  // the next one started once they were applied (the next may have started before).
  await producer.sendInteractions(topic, events.slice(N, N + N / 2));
  await until(
    'more events',
    async () => (await metric(second.url, 'pme_events_applied_total')) >= N + N / 10,
    45_000,
    10,
  );
  const atCrash = await killAfterNextSnapshot(second, dir);
  t.ok(
    atCrash.learned > N && atCrash.learned < 2 * N,
    `killed in mid-stream (snapshot holds ${atCrash.learned})`,
  );
  await producer.sendInteractions(topic, events.slice(N + N / 2));

  const third = await spawnService(env);
  t.teardown(() => third.child.kill('SIGKILL'));
  await untilApplied(third.url, 2 * N);
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(await metric(third.url, 'pme_events_applied_total'), 2 * N, 'exactly 2N events applied');
  t.equal(await terminate(third), 0);
  const final = await loadSnapshot(dir);
  t.equal(final.learned, 2 * N, 'the final snapshot holds 2N events');
  t.equal(sum(final.offsets), 2 * N, 'and the end of both partitions');
});
