/**
 * The local Kafka broker: jars assembled from Maven Central, a single-node KRaft JVM started and
 * stopped from Node, and the `KAFKA_BROKERS` convention for using an existing cluster instead.
 */
import { PmeError } from '../errors.js';
import { type BrokerOptions, type LocalBroker, startBroker } from './broker.js';

export { type BrokerOptions, freePorts, type LocalBroker, logTail, startBroker } from './broker.js';
export {
  defaultCacheDir,
  type EnsureJarsOptions,
  ensureKafkaJars,
  findJava,
  findOnPath,
  KAFKA_VERSION,
} from './jars.js';

/**
 * The brokers named by `KAFKA_BROKERS` (comma-separated `host:port`), or `undefined` when it is
 * unset or blank. Starts nothing.
 * @throws PmeError PME_ERR_CONFIG_INVALID when an entry is not `host:port`
 */
export function resolveBrokers(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const raw = env.KAFKA_BROKERS?.trim();
  if (!raw) return undefined;
  const brokers = raw
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b !== '');
  for (const b of brokers) {
    const port = Number(b.slice(b.lastIndexOf(':') + 1));
    if (!b.includes(':') || !(Number.isInteger(port) && port > 0 && port < 65536)) {
      throw new PmeError('PME_ERR_CONFIG_INVALID', `KAFKA_BROKERS entry "${b}" is not host:port`);
    }
  }
  return brokers;
}

/** Brokers to use: `KAFKA_BROKERS` when set, else a local broker started now. */
export interface BrokerConnection {
  readonly brokers: string[];
  /** The broker this process started, or null when `KAFKA_BROKERS` named an existing cluster. */
  readonly local: LocalBroker | null;
  /** Stops the local broker, if any. */
  stop(): Promise<void>;
}

/** `KAFKA_BROKERS` if set (nothing is started), else {@link startBroker} with `options`. */
export async function connectOrStartBroker(
  options: BrokerOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<BrokerConnection> {
  const existing = resolveBrokers(env);
  if (existing !== undefined) return Object.freeze({ brokers: existing, local: null, stop: async () => {} });
  const local = await startBroker(options);
  return Object.freeze({ brokers: [local.bootstrap], local, stop: () => local.stop() });
}
