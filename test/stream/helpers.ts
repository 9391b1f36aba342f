/**
 * Helpers of the stream integration tests: the service as a child process (`pme serve`, built
 * into dist/ by the test command), its metrics, its snapshots read back into a trainer, and a
 * deterministic event set in which no token is frequent enough to be promoted by PME.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, type KafkaMessage, logLevel } from 'kafkajs';
import type { Interaction } from '../../src/data/event.js';
import { Trainer } from '../../src/engine/index.js';
import { applyRestored } from '../../src/service/state.js';
import { listSnapshots, readSnapshot } from '../../src/store/index.js';
import type { OffsetMap } from '../../src/stream/index.js';
import { uniqueName } from '../helpers/broker.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(root, 'dist', 'src', 'cli', 'main.js');

export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 45_000,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export interface ChildService {
  readonly url: string;
  readonly child: ChildProcess;
  /** Resolves when the process ends. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** What it wrote to stderr so far. */
  stderr(): string;
}

/** Starts `pme serve` with `env` (on top of this process's environment); resolves once it serves. */
export function spawnService(env: Record<string, string>): Promise<ChildService> {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let out = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const m = /PME_URL=(\S+)/.exec(out);
      if (m) resolve({ url: m[1], child, exited, stderr: () => err });
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`pme serve exited (${code ?? signal}) before serving:\n${err}`)),
    );
  });
}

/** The value of a Prometheus sample line `name{labels} value`, summed over label sets. */
export async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    found = true;
  }
  return found ? sum : Number.NaN;
}

/** Samples of one metric by their label set, e.g. `{reason="bad-label"}` -> 1. */
export async function metricByLabel(url: string, name: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    out[line.slice(name.length, line.lastIndexOf(' '))] = Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return out;
}

/** Waits until the service has applied `n` events and read every partition to its end. */
export async function untilApplied(url: string, n: number, timeoutMs = 45_000): Promise<void> {
  await until(
    `${n} events applied`,
    async () =>
      (await metric(url, 'pme_events_applied_total')) >= n && (await metric(url, 'pme_consumer_lag')) === 0,
    timeoutMs,
  );
}

/** SIGTERM, then the exit status (the service snapshots, commits and leaves the group first). */
export async function terminate(service: ChildService): Promise<number | null> {
  service.child.kill('SIGTERM');
  const { code } = await service.exited;
  return code;
}

export interface SnapshotView {
  learned: number;
  offsets: OffsetMap;
  trainer: Trainer;
  tokens: number;
}

/** The newest snapshot in `dir`, loaded into a trainer built as the service builds it. */
export async function loadSnapshot(dir: string): Promise<SnapshotView> {
  const { store, extra } = await readSnapshot(dir);
  const trainer = new Trainer(store, { negatives: 0, seed: 1 });
  const offsets = applyRestored(trainer, extra);
  return { learned: trainer.stats().learned, offsets, trainer, tokens: store.size };
}

export async function snapshotCount(dir: string): Promise<number> {
  return (await listSnapshots(dir)).length;
}

/** Sequence number of the newest snapshot in `dir` (0: none). It grows with every snapshot,
 *  where the count stops at the two the store keeps. */
export async function newestSnapshot(dir: string): Promise<number> {
  return (await listSnapshots(dir))[0]?.sequence ?? 0;
}

/**
 * kill -9 once a snapshot in `dir` holds all `service` applied before the call, then the newest
 * snapshot. The one in progress may have begun before the call, so it waits for the one after it.
 */
export async function killAfterNextSnapshot(
  service: ChildService,
  dir: string,
  timeoutMs = 45_000,
): Promise<SnapshotView> {
  const before = await newestSnapshot(dir);
  await until(
    'a snapshot begun after the call',
    async () => (await newestSnapshot(dir)) > before + 1,
    timeoutMs,
    10,
  );
  service.child.kill('SIGKILL');
  await service.exited;
  return loadSnapshot(dir);
}

/**
 * `n` events over `users` users and `items` items, each user and item appearing n/users and
 * n/items times (below PME's hot threshold of 20 when those are small, so no token is promoted:
 * promotions follow a frequency sketch that snapshots do not hold). Labels follow a planted rule,
 * so there is something to learn.
 */
export function plainEvents(
  n: number,
  users: number,
  items: number,
  start = 1_700_000_000_000,
): Interaction[] {
  const out: Interaction[] = [];
  for (let i = 0; i < n; i++) {
    const u = i % users;
    const it = (i * 7 + Math.floor(i / users)) % items;
    out.push({
      user: `u${u}`,
      item: `i${it}`,
      label: (u + it) % 3 === 0 ? 1 : 0,
      timestamp: start + i,
      fields: {},
    });
  }
  return out;
}

/** Environment of a `pme serve` child for a test. */
export function serviceEnv(
  brokers: string,
  topic: string,
  group: string,
  stateDir: string,
  more: Record<string, string> = {},
): Record<string, string> {
  return {
    KAFKA_BROKERS: brokers,
    PME_TOPIC_INTERACTIONS: topic,
    PME_TOPIC_ITEMS: `${topic}-items`,
    PME_GROUP: group,
    PME_STATE_DIR: stateDir,
    PME_PORT: '0',
    PME_PARTITIONS: '1',
    PME_SNAPSHOT_INTERVAL_MS: '300',
    // Windows move tokens between tiers in chunks that interleave with training by timing;
    // the tests that compare states turn them off.
    PME_PRUNE_EVERY_EVENTS: '0',
    PME_PRUNE_EVERY_MS: '0',
    ...more,
  };
}

/** The first `count` messages of `topic`, read from the beginning by a group of its own. */
export async function readTopic(brokers: string, topic: string, count: number): Promise<KafkaMessage[]> {
  const kafka = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: uniqueName('topic-reader'), maxWaitTimeInMs: 200 });
  const out: KafkaMessage[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        out.push(message);
      },
    });
    await until(`${count} messages on ${topic}`, () => out.length >= count, 30_000);
  } finally {
    await consumer.disconnect();
  }
  return out;
}
