/**
 * Scale-out: serving replicas follow the trainer through the compacted parameter topic, on
 * the real broker. A replica's scores equal the trainer's (once its item-only term is current)
 * within 2 × the publish interval; a replica started late rebuilds from the topic alone; a trainer
 * restart does not break replicas.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { ITEM_REFRESH_MS, type Service, startService } from '../../src/service/index.js';
import { startReplica } from '../../src/service/replica.js';
import { EventProducer } from '../../src/stream/index.js';
import { isolatedEnv, testBrokers } from '../helpers/broker.js';
import { until } from '../helpers/wait.js';

const PUBLISH_MS = 1000;
/** Scores agree to this (float32 rows sent as-is; the tolerance covers summation order only). */
const TOLERANCE = 1e-5;

t.test('replicas follow the trainer through the parameter topic', async (t) => {
  const brokers = await testBrokers();
  const stateDir = await mkdtemp(join(tmpdir(), 'pme-replica-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const env = {
    ...isolatedEnv(brokers, stateDir),
    PME_SNAPSHOT_INTERVAL_MS: '500',
    PME_PUBLISH_INTERVAL_MS: String(PUBLISH_MS),
  };
  const quiet = (): void => {};
  const trainerConfig = loadConfig([], env);
  const replicaConfig = loadConfig(['--role', 'replica'], env);
  let trainer: Service = await startService(trainerConfig, quiet);
  const replicas: Service[] = [];
  t.teardown(async () => {
    for (const r of replicas) await r.stop();
    await trainer.stop();
  });
  const replica = await startReplica(replicaConfig, quiet);
  replicas.push(replica);

  const workload = new SyntheticWorkload({ seed: 9, users: 200, items: 500 });
  const producer = new EventProducer({ brokers: trainerConfig.brokers });
  await producer.connect();
  t.teardown(() => producer.disconnect());
  await producer.sendItems(trainerConfig.itemsTopic, workload.catalog());
  const users = ['u0', 'u1', 'u2', 'u3', 'u7'];
  const items = workload
    .catalog()
    .slice(0, 20)
    .map((i) => i.item);
  const scores = async (service: Service): Promise<number[]> => {
    const out: number[] = [];
    for (const user of users) {
      const res = await fetch(`${service.url}/v1/score`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user, items }),
      });
      out.push(...((await res.json()) as { scores: number[] }).scores);
    }
    return out;
  };
  const maxGap = (a: number[], b: number[]): number => Math.max(...a.map((x, i) => Math.abs(x - b[i])));
  // Reads take the item-only term as of at most ITEM_REFRESH_MS ago: once that has passed since
  // the trainer's last change, its scores are exact, the reference a replica must reach.
  const settled = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, ITEM_REFRESH_MS + 100));

  await producer.sendInteractions(trainerConfig.interactionsTopic, workload.take(20_000));
  await until('20,000 events trained', () => trainer.trainer.stats().learned >= 20_000);
  await trainer.snapshot();
  const snapshotAt = Date.now();
  await settled();
  const expected = await scores(trainer);
  await until(
    'the replica to match the trainer',
    async () => maxGap(await scores(replica), expected) < TOLERANCE,
  );
  const caughtUpMs = Date.now() - snapshotAt;
  t.ok(
    caughtUpMs <= 2 * PUBLISH_MS + 500,
    `replica matched ${caughtUpMs} ms after the snapshot (bound ${2 * PUBLISH_MS} ms + 0.5 s)`,
  );
  // Both sides bound the item-only term to ITEM_REFRESH_MS of staleness: past it, both are exact.
  await settled();
  const rec = (await (await fetch(`${replica.url}/v1/recommend?user=u0&k=5`)).json()) as {
    items: { item: string }[];
  };
  const recTrainer = (await (await fetch(`${trainer.url}/v1/recommend?user=u0&k=5`)).json()) as {
    items: { item: string }[];
  };
  t.same(
    rec.items.map((i) => i.item),
    recTrainer.items.map((i) => i.item),
    'the replica recommends what the trainer recommends',
  );
  t.equal((await fetch(`${replica.url}/readyz`)).status, 200, 'replica ready');
  t.ok(replica.replica!.staleness() < 5, 'replica reports its staleness');
  const metrics = await (await fetch(`${replica.url}/metrics`)).text();
  t.match(metrics, /pme_replica_staleness_seconds \d/);
  t.match(metrics, /pme_budget_used_bytes \d/, "the replica's store: what its budget counts");
  t.match(metrics, /pme_store_bytes\{part="key-index"\} [1-9]/, 'and its parts');
  // Its memory is its own store's accounting (a publish may land between the two reads: retry).
  await until("the replica's /v1/stats to be its store's accounting", async () => {
    const stats = (await (await fetch(`${replica.url}/v1/stats`)).json()) as { totalBytes: number };
    return stats.totalBytes === replica.store.accounting().totalBytes;
  });
  const denied = await fetch(`${replica.url}/v1/prune`, { method: 'POST' });
  t.equal(denied.status, 400, 'replicas do not prune');

  // The replica is stopped; the trainer learns on to 100,000 events; a new replica rebuilds from the topic alone.
  await replica.stop();
  replicas.length = 0;
  await producer.sendInteractions(trainerConfig.interactionsTopic, workload.take(80_000));
  await until('100,000 events trained', () => trainer.trainer.stats().learned >= 100_000, 180_000);
  await trainer.snapshot();
  await settled();
  const late = await startReplica(replicaConfig, quiet);
  replicas.push(late);
  const expected2 = await scores(trainer);
  const lateMs = await until(
    'a late replica to rebuild',
    async () => maxGap(await scores(late), expected2) < TOLERANCE,
  );
  t.pass(`a replica started after 100,000 events matched the trainer ${lateMs} ms after it started`);
  t.equal(late.store.size, trainer.store.size, 'the same tokens');

  // A trainer restart: the replica keeps following and matches the restarted trainer.
  await trainer.stop();
  trainer = await startService(trainerConfig, quiet);
  await producer.sendInteractions(trainerConfig.interactionsTopic, workload.take(5_000));
  await until('5,000 more events trained', () => trainer.trainer.stats().learned >= 5_000);
  await trainer.snapshot();
  await settled();
  const expected3 = await scores(trainer);
  await until(
    'the replica to follow the restarted trainer',
    async () => maxGap(await scores(late), expected3) < TOLERANCE,
  );
  t.pass('the replica follows the restarted trainer');
});
