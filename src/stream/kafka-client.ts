/**
 * The one place that builds a kafkajs client: every consumer, producer and admin the service makes
 * (the trainer's group, the catalog reader, the DLQ producer, the lag reader, the parameter topic's
 * publisher and follower, topic creation, the start-up probe, the demo and replay producers) goes
 * through {@link kafkaClient}, so that they all reach the cluster the same way: the bootstrap list,
 * TLS (a CA, a client certificate) and SASL (PLAIN, SCRAM-SHA-256/512) of a {@link KafkaConnection}.
 * {@link kafkaConnection} reads one from the configuration once at start, files included.
 */
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import kafkajs, { type KafkaConfig, type logCreator, type RetryOptions } from 'kafkajs';
import type { Config } from '../config.js';
import { PmeError } from '../errors.js';

const { Kafka, logLevel: LogLevel } = kafkajs;
type Kafka = InstanceType<typeof Kafka>;

/** SASL mechanisms, as `--kafka-sasl-mechanism` takes them (and kafkajs names them). */
export const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

export interface KafkaSasl {
  readonly mechanism: SaslMechanism;
  readonly username: string;
  /** Not enumerable (see {@link saslCredentials}): a logged or serialised connection never shows it. */
  readonly password: string;
}

/** TLS to the brokers; PEM texts (not paths). Without `ca`, Node's trusted CAs. */
export interface KafkaTls {
  readonly ca?: string;
  /** Client certificate and its key, for brokers that authenticate clients by certificate (mTLS). */
  readonly cert?: string;
  readonly key?: string;
  /** false accepts any broker certificate (tests, never production). Default true. */
  readonly rejectUnauthorized?: boolean;
}

/** How to reach a cluster: what every client of the service shares. */
export interface KafkaConnection {
  readonly brokers: readonly string[];
  /** TLS; absent: plaintext. */
  readonly ssl?: KafkaTls;
  /** SASL; absent: none. */
  readonly sasl?: KafkaSasl;
}

/** A bootstrap list (`a:9092,b:9092` or an array) as a plaintext connection; a connection as is. */
export function asConnection(target: KafkaConnection | string | readonly string[]): KafkaConnection {
  if (typeof target === 'string')
    return {
      brokers: target
        .split(',')
        .map((b) => b.trim())
        .filter((b) => b !== ''),
    };
  if (isBrokerList(target)) return { brokers: [...target] };
  return target;
}

function isBrokerList(target: KafkaConnection | readonly string[]): target is readonly string[] {
  return Array.isArray(target);
}

/** SASL credentials whose password is kept out of `JSON.stringify`, `console.log` and spreads. */
export function saslCredentials(mechanism: SaslMechanism, username: string, password: string): KafkaSasl {
  const sasl = { mechanism, username } as { mechanism: SaslMechanism; username: string; password: string };
  Object.defineProperty(sasl, 'password', { value: password, enumerable: false });
  Object.defineProperty(sasl, inspect.custom, {
    value: () => `{ mechanism: '${mechanism}', username: '${username}', password: [hidden] }`,
    enumerable: false,
  });
  // Not frozen: kafkajs adds its authentication provider to the object.
  return sasl;
}

export interface ClientOptions {
  clientId: string;
  /** Default WARN. */
  logLevel?: (typeof LogLevel)[keyof typeof LogLevel];
  logCreator?: logCreator;
  retry?: RetryOptions;
  connectionTimeout?: number;
  requestTimeout?: number;
}

/** The kafkajs configuration of a client of `connection` (exported for the tests). */
export function clientConfig(
  target: KafkaConnection | string | readonly string[],
  options: ClientOptions,
): KafkaConfig {
  const connection = asConnection(target);
  const config: KafkaConfig = {
    clientId: options.clientId,
    brokers: [...connection.brokers],
    logLevel: options.logLevel ?? LogLevel.WARN,
  };
  if (options.logCreator !== undefined) config.logCreator = options.logCreator;
  if (options.retry !== undefined) config.retry = options.retry;
  if (options.connectionTimeout !== undefined) config.connectionTimeout = options.connectionTimeout;
  if (options.requestTimeout !== undefined) config.requestTimeout = options.requestTimeout;
  const tls = connection.ssl;
  if (tls !== undefined) {
    const ssl: NonNullable<Exclude<KafkaConfig['ssl'], boolean>> = {
      rejectUnauthorized: tls.rejectUnauthorized ?? true,
    };
    if (tls.ca !== undefined) ssl.ca = [tls.ca];
    if (tls.cert !== undefined) ssl.cert = tls.cert;
    if (tls.key !== undefined) ssl.key = tls.key;
    config.ssl = ssl;
  }
  // Passed as is: kafkajs reads the (non-enumerable) password from the object itself.
  if (connection.sasl !== undefined) config.sasl = connection.sasl as KafkaConfig['sasl'];
  return config;
}

/** Every `new Kafka(...)` of the service. */
export function kafkaClient(
  target: KafkaConnection | string | readonly string[],
  options: ClientOptions,
): Kafka {
  return new Kafka(clientConfig(target, options));
}

function readPem(what: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new PmeError('PME_ERR_CONFIG_INVALID', `${what} ${path} cannot be read (${code})`);
  }
}

type ConnectionConfig = Pick<
  Config,
  | 'brokers'
  | 'kafkaSaslMechanism'
  | 'kafkaSaslUsername'
  | 'kafkaSaslPassword'
  | 'kafkaSaslPasswordFile'
  | 'kafkaTls'
  | 'kafkaTlsCa'
  | 'kafkaTlsCert'
  | 'kafkaTlsKey'
  | 'kafkaTlsRejectUnauthorized'
>;

/**
 * The connection the configuration describes, its files read now (the CA, the client certificate
 * and key, the password file). Rules across options are loadConfig's; this adds only the files.
 * @throws PmeError PME_ERR_CONFIG_INVALID naming a file that cannot be read (never its content)
 */
export function kafkaConnection(config: ConnectionConfig): KafkaConnection {
  let ssl: KafkaTls | undefined;
  if (config.kafkaTls) {
    ssl = Object.freeze({
      rejectUnauthorized: config.kafkaTlsRejectUnauthorized,
      ...(config.kafkaTlsCa !== '' && { ca: readPem('--kafka-tls-ca', config.kafkaTlsCa) }),
      ...(config.kafkaTlsCert !== '' && { cert: readPem('--kafka-tls-cert', config.kafkaTlsCert) }),
      ...(config.kafkaTlsKey !== '' && { key: readPem('--kafka-tls-key', config.kafkaTlsKey) }),
    });
  }
  let sasl: KafkaSasl | undefined;
  if (config.kafkaSaslMechanism !== '') {
    let password = config.kafkaSaslPassword;
    if (config.kafkaSaslPasswordFile !== '') {
      // One trailing newline is the file's, not the password's (`echo secret > file`).
      password = readPem('--kafka-sasl-password-file', config.kafkaSaslPasswordFile).replace(/\r?\n$/, '');
      if (password === '')
        throw new PmeError(
          'PME_ERR_CONFIG_INVALID',
          `--kafka-sasl-password-file ${config.kafkaSaslPasswordFile} is empty`,
        );
    }
    sasl = saslCredentials(config.kafkaSaslMechanism as SaslMechanism, config.kafkaSaslUsername, password);
  }
  return Object.freeze({
    brokers: Object.freeze([...config.brokers]),
    ...(ssl !== undefined && { ssl }),
    ...(sasl !== undefined && { sasl }),
  });
}

/** How a connection reaches its brokers, for log lines: never a secret. */
export function describeConnection(connection: KafkaConnection): string {
  const security = [
    connection.ssl !== undefined ? 'TLS' : '',
    connection.sasl !== undefined
      ? `SASL ${connection.sasl.mechanism.toUpperCase()} as ${connection.sasl.username}`
      : '',
  ].filter((s) => s !== '');
  return `${connection.brokers.join(',')}${security.length > 0 ? ` (${security.join(', ')})` : ''}`;
}

/**
 * Why a connection failed when retrying cannot help: the brokers refused the credentials (SASL),
 * or TLS could not be set up (an untrusted or mismatched certificate, a TLS client on a plaintext
 * port). null for anything else (a broker down, a timeout), which may pass.
 */
export function securityFailure(error: unknown): string | null {
  let e = error as
    | { name?: string; message?: string; code?: unknown; type?: string; cause?: unknown }
    | undefined;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e.name === 'KafkaJSSASLAuthenticationError' || /SASL/.test(e.type ?? ''))
      return e.message ?? e.name ?? 'SASL authentication failed';
    const code = typeof e.code === 'string' ? e.code : '';
    if (/CERT|SELF_SIGNED|ERR_SSL|ERR_TLS|UNABLE_TO_VERIFY|EPROTO/.test(code))
      return `TLS ${code}${e.message ? `: ${e.message}` : ''}`;
    e = e.cause as typeof e;
  }
  return null;
}
