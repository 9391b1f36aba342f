/**
 * kill -9 in mid-stream (one partition, so the order of events is fixed): the service, a child
 * process, is killed after it has applied part of the topic and taken at least one snapshot,
 * then restarted on the same state directory while the stream goes on (the rest of the events
 * are produced after the kill, so the kill lands mid-stream however fast the service reads). PME
 * runs (hot tokens searched, a window every 8 mini-batches) under a budget that does not hold
 * every token. The state it ends with has applied every event exactly once, and equals the state
 * of a run that was never interrupted.
 */
import t from 'tap';
import { readSnapshot } from '../../src/store/index.js';
import { testBrokers, uniqueName } from '../helpers/broker.js';
import { eventProducer, newTopic } from '../helpers/kafka.js';
import { tempDir } from '../helpers/temp-dir.js';
import {
  loadSnapshot,
  metric,
  plainEvents,
  serviceEnv,
  snapshotCount,
  spawnService,
  terminate,
  until,
  untilApplied,
} from './helpers.js';

const N = 60_000;
/** Events in the topic before the kill: whole mini-batches (1024), as an uninterrupted run cuts them. */
const BEFORE_KILL = 24 * 1024;
/** PME windows every 8 mini-batches and a budget that binds: searched tokens, prunes and demotions. */
const PME_ON = { PME_PRUNE_EVERY_EVENTS: String(8 * 1024), PME_BUDGET_BYTES: '75000' };

t.test('kill -9 mid-stream, restart: every event applied once, state equal to a clean run', async (t) => {
  const t0 = Date.now();
  const lap = (what: string): void => t.comment(`${what}: ${Date.now() - t0} ms`);
  const brokers = await testBrokers();
  const topic = await newTopic(brokers, 'crash', 1);
  const producer = await eventProducer(t, brokers, 2000);
  // 300 users and items, each seen 200 times: hot enough for PME to search them.
  const events = plainEvents(N, 300, 300);
  await producer.sendInteractions(topic, events.slice(0, BEFORE_KILL));
  lap('produced the first part');

  const cleanDir = await tempDir(t, 'pme-clean-');
  const crashDir = await tempDir(t, 'pme-crash-');

  // The run that is killed: wait for a snapshot and part of the topic, then SIGKILL.
  const crashEnv = serviceEnv(brokers, topic, uniqueName('crash-group'), crashDir, {
    PME_SNAPSHOT_INTERVAL_MS: '150',
    ...PME_ON,
  });
  const first = await spawnService(crashEnv);
  lap('first up');
  t.teardown(() => first.child.kill('SIGKILL'));
  let appliedAtKill = 0;
  await until(
    'a snapshot and some events',
    async () => {
      appliedAtKill = await metric(first.url, 'pme_events_applied_total');
      return appliedAtKill >= N / 10 && (await snapshotCount(crashDir)) > 0;
    },
    45_000,
    10,
  );
  first.child.kill('SIGKILL');
  const killed = await first.exited;
  lap('killed');
  t.equal(killed.signal, 'SIGKILL');
  const atCrash = await loadSnapshot(crashDir);
  t.ok(
    atCrash.learned > 0 && atCrash.learned < N,
    `killed mid-stream (snapshot holds ${atCrash.learned} of ${N})`,
  );
  t.equal(
    Number(atCrash.offsets[`${topic}:0`]),
    atCrash.learned,
    'the snapshot offset matches its applied count',
  );
  await producer.sendInteractions(topic, events.slice(BEFORE_KILL));
  lap('produced the rest');

  const second = await spawnService(crashEnv);
  lap('second up');
  t.teardown(() => second.child.kill('SIGKILL'));
  t.ok(
    (await metric(second.url, 'pme_events_applied_total')) >= atCrash.learned,
    'restarted from the snapshot, not from nothing',
  );
  await untilApplied(second.url, N);
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(await metric(second.url, 'pme_events_applied_total'), N, 'exactly N events applied');
  lap('second done');
  t.equal(await terminate(second), 0, 'SIGTERM: exit 0');
  lap('second stopped');
  const crashed = await loadSnapshot(crashDir);
  t.equal(crashed.learned, N, 'the final snapshot holds N events');
  t.same(crashed.offsets, { [`${topic}:0`]: String(N) });

  // The run that is never interrupted, over the same topic.
  const clean = await spawnService(serviceEnv(brokers, topic, uniqueName('clean-group'), cleanDir, PME_ON));
  t.teardown(() => clean.child.kill('SIGKILL'));
  lap('clean up');
  await untilApplied(clean.url, N);
  lap('clean done');
  t.equal(await terminate(clean), 0);
  lap('clean stopped');
  const reference = await loadSnapshot(cleanDir);
  t.equal(reference.learned, N);
  t.equal(crashed.tokens, reference.tokens, `same tokens (${crashed.tokens})`);
  t.ok(reference.tokens < 600, 'the budget binds: not all 600 tokens fit');
  const pme = JSON.parse(
    new TextDecoder().decode((await readSnapshot(crashDir)).extra['pme/state.json']),
  ) as { windows: number; reports: Array<{ promoted: number }> };
  t.ok(pme.windows >= 6, `${pme.windows} PME windows ran`);
  t.ok(pme.reports.reduce((sum, r) => sum + r.promoted, 0) > 0, 'hot tokens were searched at full size');

  const items = Array.from({ length: 40 }, (_, i) => `i${i * 7}`);
  let worst = 0;
  let spread = 0;
  for (let u = 0; u < 300; u += 7) {
    const a = crashed.trainer.score(`u${u}`, items);
    const b = reference.trainer.score(`u${u}`, items);
    for (let i = 0; i < items.length; i++) {
      worst = Math.max(worst, Math.abs(a[i] - b[i]));
      spread = Math.max(spread, Math.abs(b[i] - b[0]));
    }
  }
  t.ok(spread > 1e-3, `the model learned something (scores spread ${spread.toFixed(4)})`);
  t.ok(worst < 1e-6, `scores equal a clean run's (largest difference ${worst})`);
});
