/**
 * Waiting for Kafka at start: a service started before its brokers (a supervisor bringing both up,
 * a broker restarting) waits for them with one clear line, instead of failing after kafkajs's own
 * retries with a raw ECONNREFUSED stack, and gives up with PME_ERR_KAFKA_UNREACHABLE after
 * `waitMs`, for its supervisor to see.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { logLevel } from 'kafkajs';
import { PmeError } from '../errors.js';
import { asConnection, type KafkaConnection, kafkaClient, securityFailure } from './kafka-client.js';

/** Time between two tries. */
const RETRY_MS = 1000;

/** Why a try failed, in one line (kafkajs nests the socket's error). */
function reason(error: unknown): string {
  const e = error as { message?: string; cause?: { code?: string }; code?: string };
  return e.cause?.code ?? e.code ?? e.message ?? String(error);
}

/** One try: connect and read the cluster's metadata. */
async function answers(connection: KafkaConnection): Promise<void> {
  const admin = kafkaClient(connection, {
    clientId: 'pme-reach',
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    retry: { retries: 0 },
  }).admin();
  try {
    await admin.connect();
    await admin.describeCluster();
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Resolves once a broker of `brokers` answers; logs one line when the first try fails and one
 * when Kafka answers after that. Throws PME_ERR_KAFKA_UNREACHABLE when none has after `waitMs`, and
 * PME_ERR_KAFKA_AUTH at once when a broker answers but refuses the credentials or TLS (waiting
 * would not change that).
 */
export async function waitForKafka(
  target: KafkaConnection | readonly string[],
  waitMs: number,
  log: (line: string) => void,
): Promise<void> {
  const connection = asConnection(target);
  const brokers = connection.brokers;
  const started = performance.now();
  let waiting = false;
  for (;;) {
    try {
      await answers(connection);
      if (waiting) log(`pme: Kafka answers after ${((performance.now() - started) / 1000).toFixed(1)} s`);
      return;
    } catch (error) {
      const refused = securityFailure(error);
      if (refused !== null) throw new PmeError('PME_ERR_KAFKA_AUTH', brokers.join(','), refused);
      const elapsed = performance.now() - started;
      if (elapsed >= waitMs)
        throw new PmeError(
          'PME_ERR_KAFKA_UNREACHABLE',
          brokers.join(','),
          Math.round(elapsed / 1000),
          reason(error),
        );
      if (!waiting)
        log(
          `pme: waiting for Kafka at ${brokers.join(',')} (${reason(error)}), up to ${Math.round(waitMs / 1000)} s (--broker-wait-ms)`,
        );
      waiting = true;
      await sleep(Math.min(RETRY_MS, waitMs - elapsed));
    }
  }
}
