/**
 * The service and a broker that is not there (issue 20, point 3), on a broker of this test's own
 * (the shared one cannot be stopped): started before its broker, the service waits for it, and
 * gives up with PME_ERR_KAFKA_UNREACHABLE when it never comes; `/readyz` answers 503 while the
 * broker is down and 200 again once it is back, and then stops in well under the grace bound.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { freePorts, type LocalBroker, startBroker } from '../../src/broker/index.js';
import { loadConfig } from '../../src/config.js';
import { startService } from '../../src/service/index.js';
import { isolatedEnv } from '../helpers/broker.js';
import { until } from '../helpers/wait.js';

t.test('a service waits for its broker, and is not ready while the broker is down', async (t) => {
  const [port, controllerPort] = await freePorts(2);
  const brokerDir = await mkdtemp(join(tmpdir(), 'pme-outage-broker-'));
  const stateDir = await mkdtemp(join(tmpdir(), 'pme-outage-state-'));
  t.teardown(() => rm(brokerDir, { recursive: true, force: true }));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const env = isolatedEnv(`127.0.0.1:${port}`, stateDir);
  const lines: string[] = [];
  const log = (line: string): void => {
    lines.push(line);
  };
  let broker: LocalBroker | null = null;
  t.teardown(() => broker?.stop());
  const startOwnBroker = () =>
    startBroker({ port, controllerPort, dataDir: brokerDir, persistent: true, heapMb: 256 });

  // No broker at all: a bounded wait, one line, then the code (not a raw kafkajs stack).
  await t.rejects(startService(loadConfig([], { ...env, PME_BROKER_WAIT_MS: '1500' }), log), {
    code: 'PME_ERR_KAFKA_UNREACHABLE',
  });
  t.match(lines.join('\n'), /waiting for Kafka at 127\.0\.0\.1:\d+ .*--broker-wait-ms/);

  // Started before its broker: it waits, and comes up once the broker does.
  lines.length = 0;
  const starting = startService(loadConfig([], { ...env, PME_BROKER_WAIT_MS: '120000' }), log);
  await sleep(2000);
  broker = await startOwnBroker();
  const service = await starting;
  t.match(lines.join('\n'), /Kafka answers after \d+\.\d s/);
  const readyz = async () => {
    const res = await fetch(`${service.url}/readyz`);
    return { status: res.status, body: (await res.json()) as { consumerLive: boolean; detail: string } };
  };
  await until('ready', async () => (await readyz()).status === 200, 60_000);

  // The broker goes away: not ready within about the group's session timeout.
  await broker.stop();
  broker = null;
  const waited = await until('503 without a broker', async () => (await readyz()).status === 503, 30_000);
  t.ok(waited < 20_000, `503 after ${waited} ms`);
  t.equal((await readyz()).body.consumerLive, false);

  // Back: ready again.
  broker = await startOwnBroker();
  await until('ready again', async () => (await readyz()).status === 200, 90_000);

  // Stopped after the broker came back. A lag read in flight on a dropped connection used to hold
  // the stop (21 s in the issue), then the catalog consumer's goodbye, waiting ~10 s on a join the
  // coordinator held (4.7-10.1 s with three of these tests at once); now about 1 s.
  const stopping = performance.now();
  await service.stop();
  const stopMs = Math.round(performance.now() - stopping);
  t.ok(stopMs < 5000, `stopped in ${stopMs} ms: ${lines.find((line) => line.startsWith('pme: stopped in'))}`);
  t.notMatch(lines.join('\n'), /did not answer|timed out/, 'no step ran into its grace bound');
});
