/**
 * The consumer against the real broker, with the state replaced by a recorder: mini-batches are
 * aligned to offsets (so a restart trains in the same chunks as an uninterrupted run), messages
 * below the restored offsets are skipped, a long-held state lock pauses fetching without losing
 * or repeating anything, and bad options are refused.
 */
import { Kafka, logLevel } from 'kafkajs';
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { isPmeError, PmeError } from '../../src/errors.js';
import {
  type ConsumerOptions,
  compileMapping,
  createInteractionCodec,
  createItemCodec,
  type EventCodec,
  EventProducer,
  ensureTopic,
  type OffsetMap,
  StreamConsumer,
  toEventCodec,
} from '../../src/stream/index.js';
import { testBrokers, uniqueName } from '../helpers/broker.js';
import { newTopic, plainProducer } from '../helpers/kafka.js';
import { plainEvents, until } from './helpers.js';

async function codec(): Promise<EventCodec> {
  return toEventCodec(await createInteractionCodec(), await createItemCodec());
}

/** Produces `events` to `topic` with the project's producer, then disconnects it. */
async function produce(brokers: string, topic: string, events: Interaction[]): Promise<void> {
  const producer = new EventProducer({ brokers: brokers.split(','), batchSize: 1000 });
  await producer.connect();
  await producer.sendInteractions(topic, events);
  await producer.disconnect();
}

async function topicWith(events: Interaction[]): Promise<{ brokers: string; topic: string }> {
  const brokers = await testBrokers();
  const topic = await newTopic(brokers, 'consumer', 1);
  await produce(brokers, topic, events);
  return { brokers, topic };
}

type Tuning = Omit<
  ConsumerOptions,
  'brokers' | 'groupId' | 'interactionsTopic' | 'itemsTopic' | 'codec' | 'onItems' | 'withStateLock'
> &
  Partial<Pick<ConsumerOptions, 'onItems' | 'withStateLock'>>;

/**
 * A consumer of `topic` and its items topic in the group `group`, with the project's codec; the
 * catalog is ignored and the state lock never held unless `tuning`, what each test exercises, says.
 */
async function consumerOf(
  brokers: string,
  topic: string,
  group: string,
  tuning: Tuning,
): Promise<StreamConsumer> {
  return new StreamConsumer({
    brokers: brokers.split(','),
    groupId: group,
    interactionsTopic: topic,
    itemsTopic: `${topic}-items`,
    codec: await codec(),
    onItems: () => {},
    withStateLock: (fn) => fn(),
    ...tuning,
  });
}

/** A state lock that, once held (as by a slow snapshot), makes every batch wait until released. */
function holdableLock() {
  let held: Promise<void> | null = null;
  let release: () => void = () => {};
  return {
    hold(): void {
      held = new Promise((resolve) => {
        release = resolve;
      });
    },
    release(): void {
      held = null;
      release();
    },
    withStateLock: async <T>(fn: () => Promise<T>): Promise<T> => {
      if (held !== null) await held;
      return fn();
    },
  };
}

t.test('refuses bad tuning options', async (t) => {
  for (const bad of [
    { batchEvents: 0 },
    { maxWaitMs: -1 },
    { pauseAfterMs: 1.5 },
    { sessionTimeoutMs: Number.NaN },
    { lagRefreshMs: 0 },
  ]) {
    let caught: unknown;
    try {
      new StreamConsumer({
        brokers: ['127.0.0.1:1'],
        groupId: 'g',
        interactionsTopic: 'a',
        itemsTopic: 'b',
        codec: {
          decodeInteraction: () => plainEvents(1, 1, 1)[0],
          decodeItem: () => ({ item: 'x', fields: {}, active: true }),
        },
        onEvents: () => {},
        onItems: () => {},
        withStateLock: (fn) => fn(),
        ...bad,
      });
    } catch (error) {
      caught = error;
    }
    t.ok(isPmeError(caught, 'PME_ERR_CONFIG_INVALID'), `refused: ${JSON.stringify(bad)}`);
  }
});

t.test(
  'mini-batches end at offsets that are multiples of batchEvents; restored offsets are skipped',
  async (t) => {
    const events = plainEvents(1050, 30, 31);
    const { brokers, topic } = await topicWith(events);
    const run = async (applied: OffsetMap | undefined) => {
      const batches: Interaction[][] = [];
      const consumer = await consumerOf(brokers, topic, uniqueName('aligned'), {
        appliedOffsets: applied,
        batchEvents: 100,
        onEvents: (batch) => {
          batches.push(batch.slice());
        },
      });
      await consumer.start();
      const expected = events.length - Number(applied?.[`${topic}:0`] ?? 0);
      await until('all events', () => batches.reduce((s, b) => s + b.length, 0) >= expected, 30_000);
      await consumer.close();
      return { batches, consumer };
    };

    const whole = await run(undefined);
    t.same(
      whole.batches.map((b) => b.length),
      [...Array(10).fill(100), 50],
      'chunks of 100, then the caught-up tail',
    );
    t.same(
      whole.batches.flat(),
      events.map((e) => ({ ...e })),
      'every event once, in order',
    );
    t.same(whole.consumer.appliedOffsets(), { [`${topic}:0`]: '1050' });

    const resumed = await run({ [`${topic}:0`]: '250' });
    t.same(
      resumed.batches.map((b) => b.length),
      [50, ...Array(7).fill(100), 50],
      'after a restart at 250: the rest of its chunk, then the same chunks as before',
    );
    t.same(
      resumed.batches.flat(),
      events.slice(250).map((e) => ({ ...e })),
      'nothing below 250 again',
    );
    t.equal(resumed.consumer.stats.skipped, 250, 'the 250 already applied are read and skipped');
  },
);

t.test('a state lock held for long pauses fetching; nothing is lost or applied twice', async (t) => {
  const events = plainEvents(3000, 30, 31);
  const { brokers, topic } = await topicWith(events);
  const applied: Interaction[] = [];
  // Held (as by a slow snapshot) until released below.
  const lock = holdableLock();
  lock.hold();
  const consumer = await consumerOf(brokers, topic, uniqueName('paused'), {
    batchEvents: 500,
    pauseAfterMs: 200,
    onEvents: (batch) => {
      applied.push(...batch);
    },
    withStateLock: lock.withStateLock,
  });
  await consumer.start();
  t.teardown(() => consumer.close());
  await until('the consumer paused', () => consumer.stats.pauses > 0, 20_000);
  t.equal(applied.length, 0, 'nothing applied while the lock is held');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  lock.release();
  await until('all events', () => applied.length >= events.length, 30_000);
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.same(
    applied,
    events.map((e) => ({ ...e })),
    'every event once, in order, after the pause',
  );
  t.ok(consumer.stats.lockWaitMs >= 1500, `waited ${Math.round(consumer.stats.lockWaitMs)} ms for the lock`);

  // Heartbeats went on during the wait: the member kept its partition.
  t.same(consumer.assignment(), [`${topic}:0`]);
  t.same(consumer.stats.lag, { '0': 0 }, 'lag per partition, 0 at the end');
});

t.test('lag of a partition with nothing to fetch comes from the broker', async (t) => {
  const events = plainEvents(400, 30, 31);
  const { brokers, topic } = await topicWith(events);
  const groupId = uniqueName('idle-lag');
  // Restored at the end of the topic, and committed there: no fetch ever returns a message
  // to report lag with.
  const admin = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '400' }] });
  await admin.disconnect();
  const applied: Interaction[] = [];
  const consumer = await consumerOf(brokers, topic, groupId, {
    appliedOffsets: { [`${topic}:0`]: '400' },
    lagRefreshMs: 100,
    onEvents: (batch) => {
      applied.push(...batch);
    },
  });
  await consumer.start();
  t.teardown(() => consumer.close());
  await until('lag reported', () => consumer.stats.lag['0'] !== undefined, 20_000);
  t.same(consumer.stats.lag, { '0': 0 }, 'restored at the end: lag 0, not unknown');
  t.equal(consumer.stats.skipped + applied.length, 0, 'and nothing was read');

  // New events: the consumer reads them, and the lag returns to 0.
  await produce(brokers, topic, plainEvents(50, 30, 32));
  await until('new events applied', () => applied.length >= 50, 20_000);
  await until('lag back to 0', () => consumer.stats.lag['0'] === 0, 20_000);
  t.equal(applied.length, 50, 'only the new events');
});

t.test("a subscription's lag comes from the broker for partitions no fetch reports", async (t) => {
  const { brokers, topic } = await topicWith([]);
  const subTopic = uniqueName('sub-lag');
  await ensureTopic(brokers, subTopic, 2);
  const producer = await plainProducer(t, brokers);
  const send = (partition: number, count: number) =>
    producer.send({
      topic: subTopic,
      messages: Array.from({ length: count }, (_, k) => ({
        partition,
        value: JSON.stringify({ u: `u${k}`, i: `i${k % 5}` }),
      })),
    });
  const N = 30;
  await send(0, N);
  const applied: Interaction[] = [];
  const lock = holdableLock();
  const decode = compileMapping({ user: 'u', item: 'i', label: '1' });
  const consumer = await consumerOf(brokers, topic, uniqueName('sub-lag'), {
    sources: [{ name: 'mine', topic: subTopic, decode: (value) => decode(value) }],
    lagRefreshMs: 100,
    pauseAfterMs: 200,
    onEvents: (batch) => {
      applied.push(...batch);
    },
    withStateLock: lock.withStateLock,
  });
  await consumer.start();
  t.teardown(() => consumer.close());
  const lag = () => consumer.stats.subscriptions.mine.lag;
  await until('its events applied', () => applied.length >= N, 20_000);
  // Partition 1 never had a record: no fetch reports it, the broker does.
  await until('both partitions reported', () => lag()['0'] === 0 && lag()['1'] === 0, 20_000);
  t.same(lag(), { '0': 0, '1': 0 }, 'caught up: 0 on the fetched partition and on the never-fetched one');

  // The lock held (a slow snapshot): one batch waits for it, the topic pauses, and records
  // produced meanwhile are not fetched; their lag is read from the broker.
  lock.hold();
  await send(0, 1);
  await until('the consumer paused', () => consumer.stats.pauses > 0, 20_000);
  const M0 = 7;
  const M1 = 5;
  await send(0, M0);
  await send(1, M1);
  await until('the idle lag read', () => lag()['0'] === 1 + M0 && lag()['1'] === M1, 20_000);
  t.same(lag(), { '0': 1 + M0, '1': M1 }, 'what was produced while nothing was fetched');
  t.equal(applied.length, N, 'nothing applied meanwhile');
  lock.release();
  await until('all applied', () => applied.length >= N + 1 + M0 + M1, 20_000);
  await until('caught up again', () => lag()['0'] === 0 && lag()['1'] === 0, 20_000);
  t.equal(applied.length, N + 1 + M0 + M1, 'each once');
});

t.test('an error applying a batch stops consuming for good, and says so once', async (t) => {
  const { brokers, topic } = await topicWith(plainEvents(50, 5, 5));
  const fatal: Error[] = [];
  let applied = 0;
  const consumer = await consumerOf(brokers, topic, uniqueName('fatal'), {
    onEvents: () => {
      applied++;
      // The state may now hold part of the batch: nothing more may be applied on top of it.
      throw new PmeError('PME_ERR_INTERNAL');
    },
    onFatal: (error) => fatal.push(error),
  });
  t.teardown(() => consumer.close());
  await consumer.start();
  await until('the crash reported', () => fatal.length > 0, 30_000);
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(fatal.length, 1, 'reported once');
  t.match(fatal[0].message, /internal error/);
  t.equal(applied, 1, 'not retried: the same batch is not applied again');
  t.equal(consumer.live, false, 'not live');
  await consumer.stopFetching();
  t.pass('a stop after the crash does not throw (it did: "Consumer group was not initialized")');
});
