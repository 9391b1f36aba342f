/**
 * The Kafka client factory and its options (issue 19, point 3), without a broker: the rules across
 * the SASL and TLS options, files read at start (a bad path named, never a secret), what kafkajs is
 * given, and the password kept out of logs, JSON, `--help` and error messages.
 * test/service/secured.test.ts connects to a real broker with them.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import t from 'tap';
import { describeOptions, loadConfig, schemaRegistryAuth } from '../../src/config.js';
import { clientConfig, describeConnection, kafkaConnection } from '../../src/stream/kafka-client.js';

const SECRET = 's3cr3t-pw-42';
const BASE = { KAFKA_BROKERS: 'k1:9093,k2:9093' };

t.test('the rules across the SASL, TLS and registry options', async (t) => {
  const refused: Array<[Record<string, string>, RegExp]> = [
    [
      { PME_KAFKA_SASL_MECHANISM: 'gssapi' },
      /--kafka-sasl-mechanism must be one of plain, scram-sha-256, scram-sha-512/,
    ],
    [{ PME_KAFKA_SASL_MECHANISM: 'plain', PME_KAFKA_SASL_PASSWORD: SECRET }, /needs --kafka-sasl-username/],
    [
      { PME_KAFKA_SASL_MECHANISM: 'scram-sha-256', PME_KAFKA_SASL_USERNAME: 'a' },
      /needs --kafka-sasl-password or/,
    ],
    [{ PME_KAFKA_SASL_USERNAME: 'a', PME_KAFKA_SASL_PASSWORD: SECRET }, /--kafka-sasl-mechanism is not/],
    [
      {
        PME_KAFKA_SASL_MECHANISM: 'plain',
        PME_KAFKA_SASL_USERNAME: 'a',
        PME_KAFKA_SASL_PASSWORD: SECRET,
        PME_KAFKA_SASL_PASSWORD_FILE: '/x',
      },
      /not both/,
    ],
    [{ PME_KAFKA_TLS_CA: '/ca.pem' }, /--kafka-tls-ca needs --kafka-tls true/],
    [{ PME_KAFKA_TLS: 'true', PME_KAFKA_TLS_CERT: '/c.pem' }, /--kafka-tls-cert needs --kafka-tls-key/],
    [{ PME_KAFKA_TLS: 'true', PME_KAFKA_TLS_KEY: '/k.pem' }, /--kafka-tls-key needs --kafka-tls-cert/],
    [{ PME_SCHEMA_REGISTRY_URL: 'http://r:8081', PME_SCHEMA_REGISTRY_USERNAME: 'u' }, /go together/],
    [{ PME_SCHEMA_REGISTRY_USERNAME: 'u', PME_SCHEMA_REGISTRY_PASSWORD: SECRET }, /--schema-registry is not/],
    [{ PME_SCHEMA_REGISTRY_URL: `http://u:${SECRET}@r:8081` }, /must not hold credentials/],
  ];
  for (const [env, message] of refused) {
    const attempt = () => loadConfig([], { ...BASE, ...env });
    t.throws(attempt, { code: 'PME_ERR_CONFIG_INVALID', message }, JSON.stringify(env));
    try {
      attempt();
    } catch (error) {
      t.notMatch((error as Error).message, SECRET, 'no secret in the message');
    }
  }
  const config = loadConfig(['--kafka-sasl-mechanism', 'scram-sha-512', '--kafka-sasl-username', 'a'], {
    ...BASE,
    PME_KAFKA_SASL_PASSWORD: SECRET,
    PME_SCHEMA_REGISTRY_URL: 'https://r:8081',
    PME_SCHEMA_REGISTRY_USERNAME: 'key',
    PME_SCHEMA_REGISTRY_PASSWORD: SECRET,
  });
  t.equal(config.kafkaSaslMechanism, 'scram-sha-512');
  t.equal(schemaRegistryAuth(config), `Basic ${Buffer.from(`key:${SECRET}`).toString('base64')}`);
  t.equal(schemaRegistryAuth(loadConfig([], BASE)), undefined, 'no credentials, no header');
  t.notMatch(describeOptions(false) + describeOptions(true), SECRET);
});

t.test('files are read at start; a bad one is named', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pme-kafka-client-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'ca.pem'), 'CA PEM');
  await writeFile(join(dir, 'cert.pem'), 'CERT PEM');
  await writeFile(join(dir, 'key.pem'), 'KEY PEM');
  await writeFile(join(dir, 'password'), `${SECRET}\n`);
  const connection = kafkaConnection(
    loadConfig([], {
      ...BASE,
      PME_KAFKA_TLS: 'true',
      PME_KAFKA_TLS_CA: join(dir, 'ca.pem'),
      PME_KAFKA_TLS_CERT: join(dir, 'cert.pem'),
      PME_KAFKA_TLS_KEY: join(dir, 'key.pem'),
      PME_KAFKA_SASL_MECHANISM: 'plain',
      PME_KAFKA_SASL_USERNAME: 'alice',
      PME_KAFKA_SASL_PASSWORD_FILE: join(dir, 'password'),
    }),
  );
  t.equal(connection.sasl?.password, SECRET, 'the password file, its trailing newline dropped');

  // What kafkajs gets, for every client of the service.
  const config = clientConfig(connection, { clientId: 'x' });
  t.same(config.brokers, ['k1:9093', 'k2:9093']);
  t.same(config.ssl, { rejectUnauthorized: true, ca: ['CA PEM'], cert: 'CERT PEM', key: 'KEY PEM' });
  t.same(
    { mechanism: config.sasl?.mechanism, username: (config.sasl as { username: string }).username },
    {
      mechanism: 'plain',
      username: 'alice',
    },
  );
  t.equal((config.sasl as { password: string }).password, SECRET, 'kafkajs reads the password');
  const insecure = kafkaConnection(
    loadConfig([], { ...BASE, PME_KAFKA_TLS: 'true', PME_KAFKA_TLS_REJECT_UNAUTHORIZED: 'false' }),
  );
  t.same(clientConfig(insecure, { clientId: 'x' }).ssl, { rejectUnauthorized: false });
  t.equal(clientConfig(['a:1'], { clientId: 'x' }).ssl, undefined, 'a bare list: plaintext');
  t.equal(clientConfig('a:1, b:2', { clientId: 'x' }).sasl, undefined);
  t.same(clientConfig('a:1, b:2', { clientId: 'x' }).brokers, ['a:1', 'b:2']);

  // Out of logs and serialisations.
  t.notMatch(JSON.stringify(connection), SECRET, 'not in JSON');
  t.notMatch(inspect(connection, { depth: 5 }), SECRET, 'not in console.log');
  t.notMatch(JSON.stringify({ ...connection, ...connection.sasl }), SECRET, 'not in a spread');
  t.equal(describeConnection(connection), 'k1:9093,k2:9093 (TLS, SASL PLAIN as alice)');

  for (const [name, env] of [
    ['--kafka-tls-ca', { PME_KAFKA_TLS: 'true', PME_KAFKA_TLS_CA: join(dir, 'nope.pem') }],
    [
      '--kafka-tls-cert',
      {
        PME_KAFKA_TLS: 'true',
        PME_KAFKA_TLS_CERT: join(dir, 'nope.pem'),
        PME_KAFKA_TLS_KEY: join(dir, 'key.pem'),
      },
    ],
    [
      '--kafka-sasl-password-file',
      {
        PME_KAFKA_SASL_MECHANISM: 'plain',
        PME_KAFKA_SASL_USERNAME: 'a',
        PME_KAFKA_SASL_PASSWORD_FILE: join(dir, 'nope.pem'),
      },
    ],
  ] as const)
    t.throws(() => kafkaConnection(loadConfig([], { ...BASE, ...env })), {
      code: 'PME_ERR_CONFIG_INVALID',
      message: new RegExp(
        `${name} ${join(dir, 'nope.pem').replace(/[.]/g, '\\.')} cannot be read \\(ENOENT\\)`,
      ),
    });
});
