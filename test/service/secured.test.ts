/**
 * A real cluster's connection (issue 19, point 3), against a broker of this test's own with a
 * SASL_PLAINTEXT listener (PLAIN, SCRAM-SHA-256/512) and an SSL listener whose certificate a CA made
 * here signed: the service trains over SASL PLAIN, SCRAM-SHA-256 (password from a file) and TLS;
 * wrong credentials or an untrusted certificate stop it at once with PME_ERR_KAFKA_AUTH, no secret
 * in the message; with a schema registry that needs basic auth, the service sends the credentials
 * and never registers a schema (the producer does).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { type LocalBroker, startBroker } from '../../src/broker/index.js';
import { loadConfig } from '../../src/config.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { startService } from '../../src/service/index.js';
import { EventProducer, HttpSchemaRegistry } from '../../src/stream/index.js';
import { kafkaConnection } from '../../src/stream/kafka-client.js';
import { isolatedEnv } from '../helpers/broker.js';
import { fakeSchemaRegistry } from '../helpers/confluent.js';
import { tempDir } from '../helpers/temp-dir.js';
import { until } from '../helpers/wait.js';

const PASSWORD = 'alice-secret-7f3a';

/** A CA, and a certificate it signed for 127.0.0.1 (PEM files in `dir`). */
function makeCertificates(dir: string): { ca: string; chain: string; key: string } {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const key = ['-newkey', 'rsa:2048', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...key,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-subj',
    '/CN=pme-test-ca',
    '-days',
    '2',
  );
  openssl('req', ...key, '-keyout', 'broker.key', '-out', 'broker.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl(
    'x509',
    '-req',
    '-in',
    'broker.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'broker.pem',
    '-days',
    '2',
    '-extfile',
    'san.ext',
  );
  return { ca: join(dir, 'ca.pem'), chain: join(dir, 'broker.pem'), key: join(dir, 'broker.key') };
}

let dir = '';
let broker: LocalBroker;
t.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pme-secured-'));
  const certs = makeCertificates(dir);
  broker = await startBroker({
    heapMb: 256,
    sasl: { users: { alice: PASSWORD } },
    tls: { chain: certs.chain, key: certs.key },
  });
});
t.teardown(async () => {
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Starts a service with `env`, produces events through the same connection, waits until it trained them. */
async function trains(
  t: Test,
  env: Record<string, string>,
  registryUrl?: string,
  onServiceUp: () => void = () => {},
): Promise<void> {
  const stateDir = await tempDir(t, 'pme-secured-state-');
  const lines: string[] = [];
  const config = loadConfig([], { ...isolatedEnv(env.KAFKA_BROKERS, stateDir), ...env });
  const service = await startService(config, (line) => lines.push(line));
  t.teardown(() => service.stop());
  onServiceUp();
  const producer = new EventProducer({
    ...kafkaConnection(config),
    codec:
      registryUrl === undefined
        ? {}
        : { registry: new HttpSchemaRegistry(registryUrl, basic()), register: true },
  });
  await producer.connect();
  t.teardown(() => producer.disconnect());
  const workload = new SyntheticWorkload({ seed: 3, users: 50, items: 40 });
  await producer.sendItems(config.itemsTopic, workload.catalog());
  await producer.sendInteractions(
    config.interactionsTopic,
    Array.from({ length: 500 }, () => workload.next()),
  );
  await until('500 events trained', () => service.trainer.stats().learned >= 500, 60_000);
  t.equal(service.trainer.stats().learned, 500, 'every event trained');
  t.notMatch(lines.join('\n'), PASSWORD, 'the password is in no log line');
}

function basic(): string {
  return `Basic ${Buffer.from(`registry-user:${PASSWORD}`).toString('base64')}`;
}

t.test('SASL PLAIN', async (t) => {
  await trains(t, {
    KAFKA_BROKERS: broker.saslBootstrap as string,
    PME_KAFKA_SASL_MECHANISM: 'plain',
    PME_KAFKA_SASL_USERNAME: 'alice',
    PME_KAFKA_SASL_PASSWORD: PASSWORD,
  });
});

t.test('SASL SCRAM-SHA-256, the password from a file', async (t) => {
  const file = join(dir, 'password');
  await writeFile(file, `${PASSWORD}\n`);
  await trains(t, {
    KAFKA_BROKERS: broker.saslBootstrap as string,
    PME_KAFKA_SASL_MECHANISM: 'scram-sha-256',
    PME_KAFKA_SASL_USERNAME: 'alice',
    PME_KAFKA_SASL_PASSWORD_FILE: file,
  });
});

t.test('TLS, the broker certificate checked against the CA given', async (t) => {
  await trains(t, {
    KAFKA_BROKERS: broker.tlsBootstrap as string,
    PME_KAFKA_TLS: 'true',
    PME_KAFKA_TLS_CA: join(dir, 'ca.pem'),
  });
});

t.test('refused credentials or certificate: PME_ERR_KAFKA_AUTH at once, no secret in it', async (t) => {
  for (const [what, env] of [
    [
      'wrong PLAIN password',
      {
        PME_KAFKA_SASL_MECHANISM: 'plain',
        PME_KAFKA_SASL_USERNAME: 'alice',
        PME_KAFKA_SASL_PASSWORD: 'not-it-91',
      },
    ],
    [
      'wrong SCRAM-SHA-512 password',
      {
        PME_KAFKA_SASL_MECHANISM: 'scram-sha-512',
        PME_KAFKA_SASL_USERNAME: 'alice',
        PME_KAFKA_SASL_PASSWORD: 'not-it-91',
      },
    ],
    [
      'unknown user',
      {
        PME_KAFKA_SASL_MECHANISM: 'scram-sha-256',
        PME_KAFKA_SASL_USERNAME: 'bob',
        PME_KAFKA_SASL_PASSWORD: 'not-it-91',
      },
    ],
  ] as const) {
    const stateDir = await tempDir(t, 'pme-secured-state-');
    const config = loadConfig([], {
      ...isolatedEnv(broker.saslBootstrap as string, stateDir),
      PME_BROKER_WAIT_MS: '30000',
      ...env,
    });
    const started = performance.now();
    const error = await startService(config, () => {}).then(
      () => null,
      (e: unknown) => e as Error & { code?: string },
    );
    const ms = performance.now() - started;
    t.equal(error?.code, 'PME_ERR_KAFKA_AUTH', `${what}: ${error?.message}`);
    t.match(error?.message, /refused the connection \(SASL .*authentication failed/i, `${what}: says why`);
    t.notMatch(error?.message, /not-it-91/, `${what}: no password in the message`);
    t.ok(ms < 10_000, `${what}: in ${Math.round(ms)} ms, not after --broker-wait-ms (30 s)`);
  }

  // TLS without the CA: the broker's certificate is not trusted.
  const stateDir = await tempDir(t, 'pme-secured-state-');
  const config = loadConfig([], {
    ...isolatedEnv(broker.tlsBootstrap as string, stateDir),
    PME_BROKER_WAIT_MS: '30000',
    PME_KAFKA_TLS: 'true',
  });
  const started = performance.now();
  await t.rejects(
    startService(config, () => {}),
    {
      code: 'PME_ERR_KAFKA_AUTH',
      message: /TLS .*certificate/,
    },
  );
  t.ok(performance.now() - started < 10_000, 'an untrusted certificate: at once');
});

t.test(
  'a schema registry behind basic auth: credentials sent, nothing registered by the service',
  async (t) => {
    const { url, requests } = await fakeSchemaRegistry(t, { auth: basic() });

    // The service starts first: it needs no schema of its own in the registry, and registers none.
    let postsAtServiceUp = -1;
    const posts = () => requests.filter((r) => r.line.startsWith('POST /subjects/')).length;
    await trains(
      t,
      {
        KAFKA_BROKERS: broker.saslBootstrap as string,
        PME_KAFKA_SASL_MECHANISM: 'scram-sha-512',
        PME_KAFKA_SASL_USERNAME: 'alice',
        PME_KAFKA_SASL_PASSWORD: PASSWORD,
        PME_SCHEMA_REGISTRY_URL: url,
        PME_SCHEMA_REGISTRY_USERNAME: 'registry-user',
        PME_SCHEMA_REGISTRY_PASSWORD: PASSWORD,
      },
      url,
      () => {
        postsAtServiceUp = posts();
      },
    );
    t.equal(postsAtServiceUp, 0, "the service registered nothing under the user's subjects");
    t.same(
      requests
        .filter((r) => r.line.startsWith('POST'))
        .map((r) =>
          r.line.replace(/^POST \/subjects\/interactions-[0-9a-z]+-[0-9a-f]+/, 'POST /subjects/<topic>'),
        ),
      ['POST /subjects/<topic>-items-value/versions', 'POST /subjects/<topic>-value/versions'],
      "the producer's two registrations, under its topics' subjects",
    );
    t.ok(
      requests.some((r) => r.line.startsWith('GET /schemas/ids/')),
      'the service fetched the writer schemas by id',
    );
    t.ok(
      requests.every((r) => r.auth === basic()),
      'every request carried the basic auth credentials',
    );
  },
);
