/**
 * Hostile producers against the real broker and the real `pme serve` (issue 20, points 1 and 2):
 * a flood of events naming new fields (68,200 names, more than the store's field table holds),
 * events wider than a row, key parts too long and impossible labels, then good events. The service
 * sends each bad one to the DLQ with its reason, trains every good one, stays ready, and a restart
 * on the same state directory comes up and goes on training.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { createInteractionCodec, ensureTopics } from '../../src/stream/index.js';
import { testBrokers, uniqueName } from '../helpers/broker.js';
import { metric, metricByLabel, plainEvents, serviceEnv, spawnService, terminate, until } from './helpers.js';

t.test(
  'poison pills go to the DLQ; the good events around them are trained, before and after a restart',
  async (t) => {
    const brokers = await testBrokers();
    const topic = uniqueName('poison');
    const stateDir = await mkdtemp(join(tmpdir(), 'pme-poison-'));
    t.teardown(() => rm(stateDir, { recursive: true, force: true }));
    await ensureTopics(brokers, { interactions: topic, items: `${topic}-items`, partitions: 1 });
    const codec = await createInteractionCodec();

    const good = plainEvents(800, 20, 30);
    const bad: Array<{ reason: string; event: Interaction }> = [];
    // 1,100 events of 62 new field names each: 68,200 names.
    for (let e = 0; e < 1100; e++) {
      const fields: Record<string, string> = {};
      for (let f = 0; f < 62; f++) fields[`p${e}_${f}`] = 'v';
      bad.push({ reason: 'field-limit', event: { ...good[0], fields } });
    }
    const wide: Record<string, string> = {};
    for (let f = 0; f < 70; f++) wide[`w${f}`] = 'v';
    bad.push({ reason: 'too-many-fields', event: { ...good[0], fields: wide } });
    bad.push({ reason: 'oversized-key', event: { ...good[0], user: 'u'.repeat(2000) } });
    for (const label of [3e38, 1e30, -1e6, -5, 4])
      bad.push({ reason: 'bad-label', event: { ...good[0], label } });
    const headers = { ...codec.headers };
    const message = (e: Interaction) => ({ key: e.user.slice(0, 32), value: codec.encode(e), headers });

    const kafka = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING });
    const producer = kafka.producer();
    await producer.connect();
    t.teardown(() => producer.disconnect());
    // Half the good events, the poison, the other half.
    await producer.send({ topic, messages: good.slice(0, 400).map(message) });
    await producer.send({ topic, messages: bad.map((b) => message(b.event)) });
    await producer.send({ topic, messages: good.slice(400, 500).map(message) });

    // A limit of 200 field names: 3 of the flood's events fit (186 names), the rest do not.
    const env = serviceEnv(brokers, topic, uniqueName('poison-group'), stateDir, {
      PME_MAX_FIELD_NAMES: '200',
    });
    const first = await spawnService(env);
    await until(
      'every message read',
      async () => (await metric(first.url, 'pme_events_consumed_total')) >= 500 + bad.length,
    );
    await until(
      'the good events trained',
      async () => (await metric(first.url, 'pme_events_applied_total')) >= 503,
    );
    t.equal(
      await metric(first.url, 'pme_events_applied_total'),
      500 + 3,
      'the good events and 3 of the flood',
    );
    const counts = await metricByLabel(first.url, 'pme_dlq_events_total');
    t.same(
      counts,
      {
        '{reason="field-limit"}': 1100 - 3,
        '{reason="too-many-fields"}': 1,
        '{reason="oversized-key"}': 1,
        '{reason="bad-label"}': 5,
      },
      'each bad event in the DLQ, counted by reason',
    );
    const ready = await fetch(`${first.url}/readyz`);
    t.equal(ready.status, 200, 'still ready: the consumer is alive');
    const stats = (await (await fetch(`${first.url}/v1/stats`)).json()) as {
      auc: number | null;
      logloss: number | null;
    };
    t.ok(
      stats.logloss !== null && Number.isFinite(stats.logloss) && stats.logloss > 0,
      `logloss ${stats.logloss}`,
    );
    t.equal(await terminate(first), 0, 'stops cleanly');

    // The same state directory: the service comes up, and trains what comes next.
    await producer.send({ topic, messages: good.slice(500).map(message) });
    const second = await spawnService(env);
    t.teardown(async () => {
      if (second.child.exitCode === null) await terminate(second);
    });
    await until(
      'the rest trained',
      async () => (await metric(second.url, 'pme_events_applied_total')) >= 800 + 3,
    );
    t.equal(await metric(second.url, 'pme_events_applied_total'), 800 + 3, 'counted across the restart');
    t.equal((await fetch(`${second.url}/readyz`)).status, 200);
    t.equal(await terminate(second), 0);
  },
);
