/**
 * One trainer per consumer group, against the real broker: of two members the newer (by the
 * start time in its client id) is told to stop, and commits nothing after; two consumers started
 * at the same moment end with one owning every partition and the other stopped with
 * PME_ERR_GROUP_TAKEN; a service started into a group a trainer holds exits with that code, unless
 * sharing is asked for.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import t from 'tap';
import { isPmeError } from '../../src/errors.js';
import {
  createInteractionCodec,
  createItemCodec,
  ensureTopics,
  GroupFence,
  StreamConsumer,
  toEventCodec,
  trainerClientId,
} from '../../src/stream/index.js';
import { testBrokers, uniqueName } from '../helpers/broker.js';
import { serviceEnv, spawnService, until } from './helpers.js';

const PARTITIONS = 4;

async function topic(brokers: string, prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  await ensureTopics(brokers, { interactions: name, items: `${name}-items`, partitions: PARTITIONS });
  return name;
}

t.test('of two members, the newer is told to stop, the older is not', async (t) => {
  const brokers = await testBrokers();
  const name = await topic(brokers, 'fence-rule');
  const group = uniqueName('fence-rule');
  const older = trainerClientId('pme', 1_000, 11);
  const newer = trainerClientId('pme', 2_000, 22);
  t.not(trainerClientId('pme', 1_000, 11), older, 'two consumers of one process in one millisecond differ');
  // Plain kafkajs members, so the rule is read apart from StreamConsumer's wiring.
  const members = [older, newer].map((clientId) =>
    new Kafka({ clientId, brokers: brokers.split(','), logLevel: logLevel.NOTHING }).consumer({
      groupId: group,
      sessionTimeout: 10_000,
    }),
  );
  t.teardown(() => Promise.all(members.map((m) => m.disconnect())));
  let joined = 0;
  for (const member of members) {
    member.on(member.events.GROUP_JOIN, () => {
      joined++;
    });
    await member.connect();
    await member.subscribe({ topics: [name], fromBeginning: true });
    await member.run({ eachMessage: async () => {} });
  }
  await until('both members in one generation', async () => joined >= 3, 30_000, 100);
  const admin = new Kafka({
    clientId: 'fence-admin',
    brokers: brokers.split(','),
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  const lines: string[] = [];
  const fence = (clientId: string) =>
    new GroupFence({ admin, groupId: group, clientId, sessionTimeoutMs: 10_000, log: (l) => lines.push(l) });
  t.equal(await fence(older).check(), null, 'the older goes on');
  t.match(lines.join('\n'), /another trainer joined consumer group .*it is newer and stops/, 'and says so');
  const taken = await fence(newer).check();
  t.ok(isPmeError(taken, 'PME_ERR_GROUP_TAKEN'), `the newer stops: ${taken?.message}`);
  t.match(taken?.message ?? '', older, 'naming the trainer it yields to');
  // A third one that is not a member yet meets two it must wait for, and refuses once they stay.
  const started = performance.now();
  const refused = await fence(trainerClientId('pme', 3_000, 33))
    .awaitSole()
    .then(
      () => null,
      (error: unknown) => error,
    );
  t.ok(isPmeError(refused, 'PME_ERR_GROUP_TAKEN'), 'a trainer outside the group refuses to join it');
  t.ok(performance.now() - started >= 10_000, 'after giving members a session timeout to leave');
});

/**
 * A topic and group of their own, and a maker of consumers in it whose state is a no-op: consumer
 * `i` records in `fatal[i]` why it stopped. Construction order is age (the client id's time).
 */
async function groupOf(prefix: string) {
  const brokers = await testBrokers();
  const name = await topic(brokers, prefix);
  const group = uniqueName(prefix);
  const codec = toEventCodec(await createInteractionCodec(), await createItemCodec());
  const fatal: Array<Error | null> = [null, null];
  const consumer = (i: number, exclusive = true) =>
    new StreamConsumer({
      brokers: brokers.split(','),
      groupId: group,
      interactionsTopic: name,
      itemsTopic: `${name}-items`,
      codec,
      onEvents: () => {},
      onItems: () => {},
      withStateLock: (fn) => fn(),
      onFatal: (error) => {
        fatal[i] = error;
      },
      sessionTimeoutMs: 6_000,
      exclusive,
      log: () => {},
    });
  return { name, fatal, consumer };
}

t.test('a trainer that an older one joins stops at the rebalance and commits nothing', async (t) => {
  const { name, fatal, consumer } = await groupOf('fence-join');
  // The older joins without waiting for the group (as when two trainers start at the same
  // moment and both find it empty): the newer, already in, must notice at the rebalance.
  const older = consumer(0, false);
  await new Promise((resolve) => setTimeout(resolve, 5));
  const newer = consumer(1);
  t.teardown(() => Promise.all([older.close(), newer.close()]));
  await newer.start();
  await until(
    'the newer to own every partition',
    async () => newer.assignment().length === PARTITIONS,
    30_000,
  );
  t.equal(await newer.commit({ [`${name}:0`]: '0' }), true, 'alone in the group, it commits');
  await older.start();
  await until('the newer to stop', async () => fatal[1] !== null, 30_000, 100);
  t.ok(isPmeError(fatal[1], 'PME_ERR_GROUP_TAKEN'), `the newer stopped: ${fatal[1]?.message}`);
  t.notOk(newer.live, 'and is not live');
  t.equal(
    await newer.commit({ [`${name}:0`]: '1' }),
    false,
    'it commits nothing more (the older reads on from its own offsets)',
  );
  t.equal(fatal[0], null, 'the older goes on');
  // The newer left the group by itself (its owner has not closed it): the older reads every partition.
  await until(
    'the older to own every partition',
    async () => older.assignment().length === PARTITIONS,
    30_000,
  );
});

t.test('two trainers started at once: one keeps the group, the other stops', async (t) => {
  const { fatal, consumer } = await groupOf('fence-race');
  // Made a few ms apart, so that consumer 1 is the newer by its client id (made in the same
  // millisecond, their ages tie and the random nonce decides: a CI run saw consumer 0 yield).
  const first = consumer(0);
  await new Promise((resolve) => setTimeout(resolve, 5));
  const consumers = [first, consumer(1)];
  t.teardown(() => Promise.all(consumers.map((c) => c.close())));
  // Either one finds the other in the group, waits and refuses (whichever came second), or both
  // find it empty and meet at the rebalance, where the newer yields.
  const starts = await Promise.allSettled(consumers.map((c) => c.start()));
  const refusedAtStart = starts.map((s) => (s.status === 'rejected' ? (s.reason as Error) : null));
  t.ok(
    refusedAtStart.some((e) => e === null),
    'at least one starts',
  );
  await until(
    'one of them to stop',
    async () => [0, 1].some((i) => refusedAtStart[i] !== null || fatal[i] !== null),
    30_000,
    100,
  );
  const stopped = [0, 1].findIndex((i) => refusedAtStart[i] !== null || fatal[i] !== null);
  const kept = 1 - stopped;
  const why = refusedAtStart[stopped] ?? fatal[stopped];
  t.ok(isPmeError(why, 'PME_ERR_GROUP_TAKEN'), `one stopped: ${why?.message}`);
  if (refusedAtStart[stopped] === null) t.equal(stopped, 1, 'both joined: the newer is the one that stopped');
  await until(
    'the other to own every partition',
    async () => consumers[kept].assignment().length === PARTITIONS,
    60_000,
    200,
  );
  t.equal(refusedAtStart[kept] ?? fatal[kept], null, 'the other goes on');
  t.ok(consumers[kept].live, 'and is live');
});

t.test('a service refuses a group a trainer holds, unless told to share it', async (t) => {
  const brokers = await testBrokers();
  const name = await topic(brokers, 'fence-serve');
  const group = uniqueName('fence-serve');
  const dirs = await Promise.all([0, 1, 2].map((i) => mkdtemp(join(tmpdir(), `pme-fence-${i}-`))));
  t.teardown(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  const env = (dir: string, more: Record<string, string> = {}) =>
    serviceEnv(brokers, name, group, dir, { PME_PARTITIONS: String(PARTITIONS), ...more });
  const first = await spawnService(env(dirs[0]));
  t.teardown(() => first.child.kill('SIGKILL'));
  await until('the first to own the partitions', async () => {
    const text = await (await fetch(`${first.url}/metrics`)).text();
    return new RegExp(`pme_consumer_partitions ${PARTITIONS}\\b`).test(text);
  });
  const second = await spawnService(env(dirs[1])).then(
    (service) => {
      service.child.kill('SIGKILL');
      return null;
    },
    (error: Error) => error,
  );
  t.ok(second !== null, 'the second exits before serving');
  t.match(second?.message ?? '', /exited \(1\)/, 'non-zero');
  t.match(second?.message ?? '', /PME_ERR_GROUP_TAKEN/, 'with the code');
  t.match(second?.message ?? '', /waiting up to \d+ s for them to leave/, 'after one line saying it waits');
  t.equal((await fetch(`${first.url}/readyz`)).status, 200, 'the first is untouched');

  const sharing = await spawnService(env(dirs[2], { PME_SHARE_GROUP: 'true' }));
  t.teardown(() => sharing.child.kill('SIGKILL'));
  await until('the partitions split between the two', async () => {
    const text = await (await fetch(`${sharing.url}/metrics`)).text();
    return /pme_consumer_partitions [1-9]/.test(text);
  });
  t.pass('PME_SHARE_GROUP=true joins and takes partitions');
});
