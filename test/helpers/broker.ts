/**
 * Brokers for integration tests. Under `pme broker --exec "tap"` (the test command) every test
 * process shares the one broker named by KAFKA_BROKERS; a test file run alone
 * (`npx tap test/x.test.ts`) starts its own broker, stopped when the process exits.
 */
import { randomBytes } from 'node:crypto';
import { type LocalBroker, resolveBrokers, startBroker } from '../../src/broker/index.js';

let shared: Promise<string> | undefined;
let local: LocalBroker | undefined;

/** Comma-separated bootstrap list: KAFKA_BROKERS, else a broker started for this process. */
export function testBrokers(): Promise<string> {
  shared ??= (async () => {
    const existing = resolveBrokers();
    if (existing !== undefined) return existing.join(',');
    local = await startBroker({ heapMb: 256 });
    // The broker dies with this process anyway (exit hook and orphan guard); stopping it here
    // first, when the event loop empties, lets it shut down in order and delete its data dir.
    process.once('beforeExit', () => {
      void local?.stop();
    });
    return local.bootstrap;
  })();
  return shared;
}

/** `prefix-<random>`: a topic or group name no other test (or earlier run) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/**
 * Service environment of one test: the shared broker, topics and a group no other test uses,
 * its own state directory, a free HTTP port and two partitions.
 */
export function isolatedEnv(brokers: string, stateDir: string): Record<string, string> {
  const topic = uniqueName('interactions');
  return {
    KAFKA_BROKERS: brokers,
    PME_TOPIC_INTERACTIONS: topic,
    PME_TOPIC_ITEMS: `${topic}-items`,
    PME_TOPIC_PARAMS: `${topic}-params`,
    PME_GROUP: uniqueName('group'),
    PME_STATE_DIR: stateDir,
    PME_PORT: '0',
    PME_PARTITIONS: '2',
  };
}
