/**
 * Replica staleness and catch-up, on a real broker with real processes.
 *
 * 1. A trainer (`pme serve`) and a replica (`pme serve --role replica`) run as child
 *    processes; this process produces the synthetic workload at --rate events/s (default
 *    20,000) and samples the replica's `pme_replica_staleness_seconds` every 250 ms.
 * 2. The trainer then learns --tokens more events, each from a new user, so the model grows by
 *    that many tokens (default 1,000,000), and a new replica joins: the time until its /readyz says the parameter topic is
 *    applied is its catch-up time.
 * Writes bench/results/replica.json and prints the figures.
 *
 *   npm run build && node dist/bench/replica.js [--rate 20000] [--seconds 30] [--tokens 1000000]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectOrStartBroker } from '../src/broker/index.js';
import { SyntheticWorkload } from '../src/data/index.js';
import { EventProducer } from '../src/stream/index.js';
import { numberArg as arg } from './args.js';

const RATE = arg('rate', 20_000);
const SECONDS = arg('seconds', 30);
const TOKENS = arg('tokens', 1_000_000);
const PUBLISH_MS = 1000;
const MAIN = new URL('../src/cli/main.js', import.meta.url).pathname;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
};

function serve(env: NodeJS.ProcessEnv, args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [MAIN, 'serve', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk;
      const m = /PME_URL=(\S+)/.exec(out);
      if (m) resolve({ child, url: m[1] });
    });
    child.once('exit', (code) => reject(new Error(`serve ${args.join(' ')} exited ${code}:\n${stderr}`)));
  });
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(20_000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

async function main(): Promise<void> {
  const kafka = await connectOrStartBroker({ heapMb: 512 });
  const state = await mkdtemp(join(tmpdir(), 'pme-bench-replica-'));
  const topic = `bench-${Date.now().toString(36)}`;
  const env = {
    ...process.env,
    KAFKA_BROKERS: kafka.brokers.join(','),
    PME_TOPIC_INTERACTIONS: topic,
    PME_TOPIC_ITEMS: `${topic}-items`,
    PME_TOPIC_PARAMS: `${topic}-params`,
    PME_GROUP: `${topic}-group`,
    PME_STATE_DIR: state,
    PME_PORT: '0',
    PME_PUBLISH_INTERVAL_MS: String(PUBLISH_MS),
    PME_BUDGET_BYTES: String(4 * 2 ** 30),
  };
  const children: ChildProcess[] = [];
  const result: Record<string, unknown> = {
    machine: { cores: cpus().length, node: process.version, loadBefore: loadavg() },
    rate: RATE,
    publishIntervalMs: PUBLISH_MS,
  };
  try {
    const trainer = await serve(env, []);
    children.push(trainer.child);
    const replica = await serve(env, ['--role', 'replica']);
    children.push(replica.child);
    const producer = new EventProducer({ brokers: kafka.brokers });
    await producer.connect();
    const workload = new SyntheticWorkload({ seed: 1, users: 20_000, items: 10_000 });
    await producer.sendItems(`${topic}-items`, workload.catalog());

    // 1. Staleness under a steady stream.
    process.stderr.write(`streaming ${RATE} events/s for ${SECONDS} s, sampling replica staleness\n`);
    const stream = producer.stream(topic, () => workload.next(), RATE);
    const samples: number[] = [];
    const started = Date.now();
    while (Date.now() - started < SECONDS * 1000) {
      await sleep(250);
      const s = await metric(replica.url, 'pme_replica_staleness_seconds');
      if (Number.isFinite(s) && s >= 0 && Date.now() - started > 3000) samples.push(s);
    }
    await stream.stop();
    const trained = await metric(trainer.url, 'pme_events_trained_total');
    result.staleness = {
      samples: samples.length,
      p50Seconds: percentile(samples, 50),
      p99Seconds: percentile(samples, 99),
      maxSeconds: Math.max(...samples),
      eventsSent: stream.sent,
      eventsTrained: trained,
      achievedRate: stream.sent / SECONDS,
    };
    process.stderr.write(`staleness ${JSON.stringify(result.staleness)}\n`);
    await stop(replica.child);

    // 2. Catch-up of a replica joining a model of TOKENS tokens.
    // One event per new user: the model grows by one token per event, to about TOKENS tokens.
    process.stderr.write(`growing the model by ${TOKENS} tokens\n`);
    const items = workload.catalog();
    const batch = 5000;
    for (let sent = 0; sent < TOKENS; sent += batch) {
      const events = Array.from({ length: Math.min(batch, TOKENS - sent) }, (_, i) => ({
        user: `w${sent + i}`,
        item: items[(sent + i) % items.length].item,
        label: (sent + i) % 4 === 0 ? 1 : 0,
        timestamp: Date.now(),
        fields: {},
      }));
      await producer.sendInteractions(topic, events);
    }
    await producer.disconnect();
    const target = stream.sent + TOKENS;
    for (;;) {
      await sleep(1000);
      const trainedNow = await metric(trainer.url, 'pme_events_trained_total');
      process.stderr.write(`\r${trainedNow} of ${target} events trained`);
      if (trainedNow >= target) break;
    }
    await sleep(2 * PUBLISH_MS);
    const tiers = (await (await fetch(`${trainer.url}/v1/tiers`)).json()) as {
      tiers: { tokens: number }[];
      totalBytes: number;
    };
    const modelTokens = tiers.tiers.reduce((n, t) => n + t.tokens, 0);
    process.stderr.write(
      `\nmodel: ${modelTokens} tokens, ${tiers.totalBytes} bytes; starting a new replica\n`,
    );
    const joinStarted = Date.now();
    const late = await serve(env, ['--role', 'replica']);
    children.push(late.child);
    for (;;) {
      const ready = await fetch(`${late.url}/readyz`);
      const body = (await ready.json()) as { modelLoaded: boolean };
      if (body.modelLoaded) break;
      await sleep(100);
    }
    const catchUp = (Date.now() - joinStarted) / 1000;
    const lateTiers = (await (await fetch(`${late.url}/v1/tiers`)).json()) as { tiers: { tokens: number }[] };
    result.catchUp = {
      modelTokens,
      modelBytes: tiers.totalBytes,
      replicaTokens: lateTiers.tiers.reduce((n, t) => n + t.tokens, 0),
      seconds: catchUp,
    };
    process.stderr.write(`catch-up ${JSON.stringify(result.catchUp)}\n`);
  } finally {
    for (const child of children) await stop(child);
    await kafka.stop();
    await rm(state, { recursive: true, force: true });
  }
  result.machine = { ...(result.machine as object), loadAfter: loadavg() };
  await mkdir(new URL('../../bench/results/', import.meta.url), { recursive: true });
  await writeFile(
    new URL('../../bench/results/replica.json', import.meta.url),
    `${JSON.stringify(result, null, 2)}\n`,
  );
  console.log(JSON.stringify(result, null, 2));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
