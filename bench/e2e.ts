/**
 * End to end, topic to trained state: the service runs as it does in production (`pme serve`, a
 * child process) against a broker, and this process produces Avro events and samples the
 * service's /metrics (events applied, consumer lag, time per consumer phase) every 250 ms.
 *
 * 1. backlog: EVENTS synthetic events are produced first, then the service is started and timed
 *    from its first applied event to the last (events/s of consumption alone);
 * 2. concurrent: CONCURRENT more events are produced as fast as the producer goes while the
 *    service consumes them; events/s from the first send to the last event applied, and lag over time.
 *
 * 3. json: JSON_EVENTS of the same events as JSON records on a topic of their own, subscribed at
 *    runtime (POST /v1/subscriptions, a mapping), consumed from a backlog: what JSON decoding and
 *    the mapping cost against the Avro backlog of step 1.
 *
 * Uses KAFKA_BROKERS, else starts a local broker. Writes bench/results/e2e.json.
 *
 *   npm run build && node dist/bench/e2e.js [--events 500000] [--concurrent 300000] [--json-events 300000]
 *                                           [--partitions 4]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { type LocalBroker, resolveBrokers, startBroker } from '../src/broker/index.js';
import type { Interaction } from '../src/data/event.js';
import { SyntheticWorkload } from '../src/data/index.js';
import { EventProducer, ensureTopics } from '../src/stream/index.js';
import { numberArg as arg } from './args.js';

const EVENTS = arg('events', 500_000);
const CONCURRENT = arg('concurrent', 300_000);
const JSON_EVENTS = arg('json-events', 300_000);
const PARTITIONS = arg('partitions', 4);
const SAMPLE_MS = 250;

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');

interface Sample {
  /** Seconds since the phase started. */
  t: number;
  applied: number;
  lag: number;
  decodeS: number;
  trainS: number;
  lockWaitS: number;
  rssMb: number;
}

function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const space = line.lastIndexOf(' ');
    const name = line.slice(0, line.indexOf('{') > 0 ? line.indexOf('{') : space);
    const key = line.slice(0, space).includes('phase=') ? line.slice(0, space) : name;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(space + 1)));
  }
  return out;
}

function rssMb(pid: number | undefined): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

async function sample(url: string, pid: number | undefined, t0: number): Promise<Sample> {
  const m = parseMetrics(await (await fetch(`${url}/metrics`)).text());
  return {
    t: (performance.now() - t0) / 1000,
    applied: m.get('pme_events_applied_total') ?? 0,
    lag: m.get('pme_consumer_lag') ?? 0,
    decodeS: m.get('pme_consumer_seconds_total{phase="decode"}') ?? 0,
    trainS: m.get('pme_consumer_seconds_total{phase="train"}') ?? 0,
    lockWaitS: m.get('pme_consumer_seconds_total{phase="lock-wait"}') ?? 0,
    rssMb: rssMb(pid),
  };
}

function startService(env: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [cli, 'serve'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const m = /PME_URL=(\S+)/.exec(out);
      if (m) resolve({ url: m[1], child });
    });
    child.once('exit', (code) => reject(new Error(`pme serve exited with ${code}`)));
  });
}

async function stopService(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** Samples until `applied >= target` and lag is 0; returns the samples. */
async function follow(url: string, pid: number | undefined, target: number, t0: number): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (;;) {
    const s = await sample(url, pid, t0);
    samples.push(s);
    if (s.applied >= target && s.lag === 0) return samples;
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
  }
}

function summarise(name: string, events: number, samples: Sample[], fromApplied: number) {
  const first = samples.find((s) => s.applied > fromApplied) ?? samples[0];
  const last = samples[samples.length - 1];
  const seconds = last.t - first.t;
  const base = samples[0];
  const decode = last.decodeS - base.decodeS;
  const train = last.trainS - base.trainS;
  const lockWait = last.lockWaitS - base.lockWaitS;
  // Sustained: the best 5-second stretch, to separate steady consumption from the start and tail.
  let sustained = 0;
  for (let i = 0; i < samples.length; i++)
    for (let j = i + 1; j < samples.length; j++)
      if (samples[j].t - samples[i].t >= 5) {
        sustained = Math.max(
          sustained,
          (samples[j].applied - samples[i].applied) / (samples[j].t - samples[i].t),
        );
        break;
      }
  const result = {
    events,
    seconds: Number(seconds.toFixed(3)),
    eventsPerSecond: Math.round(events / Math.max(seconds, 1e-9)),
    sustainedEventsPerSecond: Math.round(sustained),
    // Seconds the consumer spent in each phase; the rest of the wall time is fetching, the event
    // loop (HTTP, snapshots, prune windows) and waiting for the broker.
    timeSplit: {
      decodeSeconds: Number(decode.toFixed(3)),
      trainSeconds: Number(train.toFixed(3)),
      lockWaitSeconds: Number(lockWait.toFixed(3)),
      otherSeconds: Number(Math.max(0, seconds - decode - train - lockWait).toFixed(3)),
    },
    maxLag: Math.max(...samples.map((s) => s.lag)),
    peakRssMb: Math.max(...samples.map((s) => s.rssMb)),
    lagOverTime: samples.map((s) => ({ t: Number(s.t.toFixed(2)), lag: s.lag, applied: s.applied })),
  };
  console.log(
    `${name}: ${events} events in ${result.seconds} s = ${result.eventsPerSecond} events/s (best 5 s: ${result.sustainedEventsPerSecond}/s); ` +
      `decode ${result.timeSplit.decodeSeconds} s, train ${result.timeSplit.trainSeconds} s, lock wait ${result.timeSplit.lockWaitSeconds} s, other ${result.timeSplit.otherSeconds} s; ` +
      `max lag ${result.maxLag}, peak RSS ${result.peakRssMb} MB`,
  );
  return result;
}

/**
 * The JSON case: `events` as JSON records (user, item, label, time, fields) on a topic of their
 * own, produced first, then subscribed; timed from the first applied event to the last.
 */
async function jsonBacklog(
  url: string,
  pid: number | undefined,
  brokers: string,
  topic: string,
  events: Interaction[],
  appliedBefore: number,
) {
  const jsonTopic = `${topic}-json`;
  const kafka = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const producer = kafka.producer();
  await producer.connect();
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: jsonTopic, numPartitions: PARTITIONS }] });
  await admin.disconnect();
  for (let i = 0; i < events.length; i += 10_000)
    await producer.send({
      topic: jsonTopic,
      messages: events.slice(i, i + 10_000).map((e) => ({
        key: e.user,
        value: JSON.stringify({ user: e.user, item: e.item, label: e.label, ts: e.timestamp, ...e.fields }),
      })),
    });
  await producer.disconnect();
  const fields = Object.fromEntries(Object.keys(events[0]?.fields ?? {}).map((name) => [name, name]));
  const res = await fetch(`${url}/v1/subscriptions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'json',
      topic: jsonTopic,
      format: 'json',
      mapping: { user: 'user', item: 'item', label: 'label', timestamp: { path: 'ts', unit: 'ms' }, fields },
    }),
  });
  if (res.status !== 201) throw new Error(`subscribing failed: ${res.status} ${await res.text()}`);
  const t = performance.now();
  return summarise(
    'json backlog',
    events.length,
    await follow(url, pid, appliedBefore + events.length, t),
    appliedBefore,
  );
}

async function main(): Promise<void> {
  let local: LocalBroker | undefined;
  let brokers = resolveBrokers()?.join(',');
  if (brokers === undefined) {
    local = await startBroker({ heapMb: 512 });
    brokers = local.bootstrap;
    console.log(`broker started on ${brokers} in ${local.startMs} ms`);
  }
  const stateDir = await mkdtemp(join(tmpdir(), 'pme-e2e-'));
  const topic = `e2e-${Date.now().toString(36)}`;
  try {
    await ensureTopics(brokers, { interactions: topic, items: `${topic}-items`, partitions: PARTITIONS });
    const workload = new SyntheticWorkload({ seed: 7 });
    const producer = new EventProducer({ brokers: brokers.split(','), batchSize: 5000 });
    await producer.connect();
    await producer.sendItems(`${topic}-items`, workload.catalog());
    const make = (n: number): Interaction[] => Array.from({ length: n }, () => workload.next());

    const backlogEvents = make(EVENTS);
    let t = performance.now();
    for (let i = 0; i < backlogEvents.length; i += 50_000)
      await producer.sendInteractions(topic, backlogEvents.slice(i, i + 50_000));
    const produceSeconds = (performance.now() - t) / 1000;
    console.log(
      `produced ${EVENTS} events in ${produceSeconds.toFixed(2)} s (${Math.round(EVENTS / produceSeconds)}/s)`,
    );

    const { url, child } = await startService({
      KAFKA_BROKERS: brokers,
      PME_TOPIC_INTERACTIONS: topic,
      PME_TOPIC_ITEMS: `${topic}-items`,
      PME_GROUP: `${topic}-group`,
      PME_STATE_DIR: stateDir,
      PME_PORT: '0',
      PME_PARTITIONS: String(PARTITIONS),
    });
    try {
      t = performance.now();
      const backlog = summarise('backlog', EVENTS, await follow(url, child.pid, EVENTS, t), 0);

      const concurrentEvents = make(CONCURRENT);
      t = performance.now();
      const sending = (async () => {
        for (let i = 0; i < concurrentEvents.length; i += 10_000)
          await producer.sendInteractions(topic, concurrentEvents.slice(i, i + 10_000));
        return (performance.now() - t) / 1000;
      })();
      const samples = await follow(url, child.pid, EVENTS + CONCURRENT, t);
      const sendSeconds = await sending;
      const concurrent = summarise('concurrent', CONCURRENT, samples, EVENTS);
      // From the first send, not from the first applied event: producing is part of the path.
      const endToEnd = CONCURRENT / samples[samples.length - 1].t;
      console.log(
        `concurrent: producer done in ${sendSeconds.toFixed(2)} s; topic-to-state ${Math.round(endToEnd)} events/s from the first send`,
      );
      const json = await jsonBacklog(url, child.pid, brokers, topic, make(JSON_EVENTS), EVENTS + CONCURRENT);
      console.log(
        `json: ${json.eventsPerSecond} events/s against Avro's ${backlog.eventsPerSecond} (${((100 * json.eventsPerSecond) / backlog.eventsPerSecond).toFixed(0)}%)`,
      );
      const result = {
        node: process.version,
        cpus: cpus().length,
        partitions: PARTITIONS,
        broker: local ? 'local (started by the bench)' : 'KAFKA_BROKERS',
        produce: {
          events: EVENTS,
          seconds: Number(produceSeconds.toFixed(3)),
          eventsPerSecond: Math.round(EVENTS / produceSeconds),
        },
        backlog,
        concurrent: {
          ...concurrent,
          producerSeconds: Number(sendSeconds.toFixed(3)),
          endToEndEventsPerSecond: Math.round(endToEnd),
        },
        json: { ...json, avroShare: Number((json.eventsPerSecond / backlog.eventsPerSecond).toFixed(3)) },
      };
      const out = join(root, 'bench', 'results');
      await mkdir(out, { recursive: true });
      await writeFile(join(out, 'e2e.json'), `${JSON.stringify(result, null, 2)}\n`);
      console.log(`wrote ${join(out, 'e2e.json')}`);
    } finally {
      await stopService(child);
      await producer.disconnect();
    }
  } finally {
    await rm(stateDir, { recursive: true, force: true });
    await local?.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
