import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import t from 'tap';
import { findJava, resolveBrokers, startBroker } from '../../src/broker/index.js';
import { testBrokers, uniqueName } from '../helpers/broker.js';

const { Kafka, logLevel } = kafkajs;
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = join(root, 'src', 'cli', 'main.ts');
// The child runs TypeScript through the same loader tap gives this process.
const tsLoader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));

function pmeChild(args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  return spawn(process.execPath, [...tsLoader, cli, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Resolves with the first stdout line matching `pattern`, or rejects when the child exits first. */
function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = 90_000): Promise<RegExpExecArray> {
  return new Promise((ok, fail) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`timeout; stderr:\n${err}`)), timeoutMs);
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
    });
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      for (const line of out.split('\n')) {
        const match = pattern.exec(line);
        if (match) {
          clearTimeout(timer);
          ok(match);
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`exited with ${code} before printing ${pattern}; stderr:\n${err}`));
    });
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((ok) => child.once('exit', (code) => ok(code)));
}

/** Alive means: exists and is not a zombie (a dead child not yet reaped by its new parent). */
function isAlive(pid: number): boolean {
  try {
    const state = /State:\s+(\S)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return state !== undefined && state !== 'Z';
  } catch {
    return false;
  }
}

async function waitDead(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !isAlive(pid);
}

async function describe(bootstrap: string) {
  const admin = new Kafka({ brokers: [bootstrap], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    return await admin.describeCluster();
  } finally {
    await admin.disconnect();
  }
}

t.test('produce to and consume from the real broker with a consumer group', async (t) => {
  const brokers = (await testBrokers()).split(',');
  const kafka = new Kafka({ clientId: 'broker-test', brokers, logLevel: logLevel.NOTHING });
  const topic = uniqueName('broker-test');
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  t.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true }), true);
  t.ok((await admin.listTopics()).includes(topic), 'the topic is listed');

  const sent = Array.from({ length: 20 }, (_, i) => ({ key: `user-${i % 5}`, value: `event-${i}` }));
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  await producer.send({ topic, messages: sent });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: uniqueName('broker-test-group') });
  await consumer.connect();
  t.teardown(() => consumer.disconnect());
  await consumer.subscribe({ topic, fromBeginning: true });
  const received: Array<{ key: string; value: string; partition: number }> = [];
  await new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`only ${received.length} messages in 30 s`)), 30_000);
    consumer
      .run({
        eachMessage: async ({ message, partition }) => {
          received.push({ key: String(message.key), value: String(message.value), partition });
          if (received.length === sent.length) {
            clearTimeout(timer);
            done();
          }
        },
      })
      .catch(fail);
  });
  t.same(
    received.map((m) => m.value).sort(),
    sent.map((m) => m.value).sort(),
    'every message comes back once',
  );
  // One key always lands on one partition, so per-key order is kept.
  for (const key of new Set(sent.map((m) => m.key))) {
    const ofKey = received.filter((m) => m.key === key);
    t.equal(new Set(ofKey.map((m) => m.partition)).size, 1, `${key} stays on one partition`);
    t.same(
      ofKey.map((m) => m.value),
      sent.filter((m) => m.key === key).map((m) => m.value),
      `${key} in order`,
    );
  }
});

t.test('resolveBrokers reads KAFKA_BROKERS and starts nothing', async (t) => {
  t.equal(resolveBrokers({}), undefined);
  t.equal(resolveBrokers({ KAFKA_BROKERS: '  ' }), undefined);
  t.same(resolveBrokers({ KAFKA_BROKERS: 'a:9092, b:9093' }), ['a:9092', 'b:9093']);
  t.throws(() => resolveBrokers({ KAFKA_BROKERS: 'a:9092,nohost' }), { code: 'PME_ERR_CONFIG_INVALID' });
});

t.test('pme broker prints its address, serves, and leaves no JVM after SIGTERM', async (t) => {
  const child = pmeChild(['broker', '--heap-mb', '256']);
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const [, bootstrap] = await waitForLine(child, /^KAFKA_BROKERS=(127\.0\.0\.1:\d+)$/);
  const pid = Number(/\(pid (\d+), data ([^)]+)\)/.exec(stderr)?.[1]);
  const dataDir = /\(pid \d+, data ([^)]+)\)/.exec(stderr)?.[1] ?? '';
  t.ok(isAlive(pid), `the JVM (pid ${pid}) runs`);
  t.ok((await describe(bootstrap)).brokers.length === 1, 'the printed address answers');

  child.kill('SIGTERM');
  t.equal(await exitOf(child), 0, 'exits 0 on SIGTERM');
  t.notOk(isAlive(pid), 'the JVM is gone once the command has exited');
  t.notOk(existsSync(dataDir), 'the temporary data dir is deleted');
});

t.test('a kill -9 of the parent does not leave an orphan JVM', async (t) => {
  const child = pmeChild(['broker', '--heap-mb', '256']);
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  await waitForLine(child, /^KAFKA_BROKERS=/);
  const [, pidText, dataDir] = /\(pid (\d+), data ([^)]+)\)/.exec(stderr) ?? [];
  const pid = Number(pidText);
  t.ok(isAlive(pid), 'the JVM runs');
  child.kill('SIGKILL');
  await exitOf(child);
  t.ok(await waitDead(pid, 30_000), 'the orphan guard stopped the JVM');
  for (let i = 0; i < 50 && existsSync(dataDir); i++) await new Promise((r) => setTimeout(r, 100));
  t.notOk(existsSync(dataDir), 'and deleted its temporary data dir');
});

t.test('pme broker --exec runs the command with KAFKA_BROKERS and returns its exit code', async (t) => {
  const env = { ...process.env, KAFKA_BROKERS: await testBrokers() };
  const child = pmeChild(['broker', '--exec', 'echo "got=$KAFKA_BROKERS"; exit 7'], env);
  const [, got] = await waitForLine(child, /^got=(.*)$/);
  t.equal(got, env.KAFKA_BROKERS, 'the command sees the cluster');
  t.equal(await exitOf(child), 7, "the command's exit code is passed on");
});

t.test('without java: one line that says what is missing and what to do', async (t) => {
  // A PATH that has everything the command could need except java (and mvn).
  const bin = mkdtempSync(join(tmpdir(), 'pme-nojava-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  mkdirSync(join(bin, 'bin'));
  symlinkSync('/bin/sh', join(bin, 'bin', 'sh'));
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: join(bin, 'bin') };
  delete env.JAVA_HOME;
  delete env.KAFKA_BROKERS;
  t.throws(() => findJava(env), { code: 'PME_ERR_BROKER_JAVA_MISSING' });
  const child = pmeChild(['broker'], env);
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  t.equal(await exitOf(child), 1);
  const lines = stderr.trim().split('\n');
  t.equal(lines.length, 1, 'one line');
  t.match(lines[0], /PME_ERR_BROKER_JAVA_MISSING: java was not found/);
  t.match(lines[0], /KAFKA_BROKERS/, 'points to an existing cluster');
  t.match(lines[0], /docker/, 'points to docker/');
});

t.test('a persistent data dir is formatted once and keeps its topics across restarts', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'pme-persistent-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const topic = uniqueName('kept');
  const clusterId = () =>
    /cluster\.id=(\S+)/.exec(readFileSync(join(dataDir, 'kraft', 'meta.properties'), 'utf8'))?.[1];

  const first = await startBroker({ dataDir, heapMb: 256 });
  t.equal(first.persistent, true, 'a given data dir is persistent by default');
  const id = clusterId();
  const admin = new Kafka({ brokers: [first.bootstrap], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic }], waitForLeaders: true });
  await admin.disconnect();
  await first.stop();
  t.notOk(isAlive(first.pid), 'stopped');
  t.ok(existsSync(join(dataDir, 'kraft')), 'the data survives stop()');

  const second = await startBroker({ dataDir, heapMb: 256 });
  t.teardown(() => second.stop());
  t.equal(clusterId(), id, 'not formatted again');
  const again = new Kafka({ brokers: [second.bootstrap], logLevel: logLevel.NOTHING }).admin();
  await again.connect();
  t.ok((await again.listTopics()).includes(topic), 'the topic is still there');
  await again.disconnect();
});
