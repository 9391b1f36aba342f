/**
 * A single-node Apache Kafka (KRaft, broker and controller in one JVM) run as a child process:
 * the `pme broker` command and the test harness both use it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import kafkajs from 'kafkajs';
import { PmeError } from '../errors.js';
import type { Milliseconds } from '../util/clock.js';
import { defaultCacheDir, ensureKafkaJars, findJava } from './jars.js';

const { Kafka, logLevel } = kafkajs;

export interface BrokerOptions {
  /** Client (PLAINTEXT) port on 127.0.0.1. Default: a free port. */
  port?: number;
  /** KRaft controller port on 127.0.0.1. Default: a free port. */
  controllerPort?: number;
  /**
   * Folder for the broker's configuration, log (`broker.log`) and data (`kraft/`). Default: a fresh
   * temporary folder, deleted by `stop()`; with `persistent`, `<cache>/broker-data`.
   */
  dataDir?: string;
  /**
   * Keep `dataDir` (topics, offsets) across runs; it is formatted only the first time.
   * Default: true when `dataDir` is given, else false.
   */
  persistent?: boolean;
  /** JVM maximum heap, MiB. Default 512; a test broker runs fine with 256. */
  heapMb?: number;
  /** Where the jars are cached. Default `$PME_CACHE` or `~/.cache/pme`. */
  cacheDir?: string;
  /** How long to wait for the admin API to answer before giving up. Default 60 000 ms. */
  readyTimeoutMs?: Milliseconds;
  /** After SIGTERM, how long a stop waits before SIGKILL. Default 20 000 ms. */
  stopGraceMs?: Milliseconds;
  /** Progress lines (jar download, formatting, start). Default: none. */
  onProgress?: (line: string) => void;
  /**
   * Also open a SASL_PLAINTEXT listener (for tests of secured clusters): PLAIN, SCRAM-SHA-256 and
   * SCRAM-SHA-512, each knowing `users` (name → password; SCRAM credentials are written when the
   * data dir is formatted). The PLAINTEXT listener stays, for the broker itself and the probe.
   */
  sasl?: { port?: number; users: Readonly<Record<string, string>> };
  /**
   * Also open an SSL listener (TLS, no client authentication) with this certificate: `chain`, a PEM
   * file of the broker's certificate (and its CA's), `key`, a PEM file of its unencrypted PKCS#8 key.
   */
  tls?: { port?: number; chain: string; key: string };
}

/** A running local broker. */
export interface LocalBroker {
  /** `127.0.0.1:<port>`, ready for `KAFKA_BROKERS` or a kafkajs `brokers` list. */
  readonly bootstrap: string;
  readonly port: number;
  readonly controllerPort: number;
  /** `127.0.0.1:<port>` of the SASL_PLAINTEXT listener, when `sasl` was asked. */
  readonly saslBootstrap?: string;
  /** `127.0.0.1:<port>` of the SSL listener, when `tls` was asked. */
  readonly tlsBootstrap?: string;
  /** Process id of the JVM. */
  readonly pid: number;
  readonly dataDir: string;
  readonly persistent: boolean;
  /** Milliseconds from spawning the JVM to the admin API answering. */
  readonly startMs: Milliseconds;
  /** Settles with the JVM's exit code (or null when killed by a signal) when it exits, for any reason. */
  readonly exited: Promise<number | null>;
  /** SIGTERM (controlled shutdown), SIGKILL after the grace period; deletes a temporary data dir. */
  stop(): Promise<void>;
}

const DEFAULTS = Object.freeze({
  heapMb: 512,
  readyTimeoutMs: 60_000,
  stopGraceMs: 20_000,
});

/** Ports the OS reports free right now (held together so that they differ). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<import('node:net').Server>((ok, fail) => {
          const server = createServer();
          server.once('error', fail);
          server.listen(0, '127.0.0.1', () => ok(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  return ports;
}

function validate(options: BrokerOptions): void {
  const port = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isInteger(v) && v > 0 && v < 65536)) {
      throw new PmeError('PME_ERR_CONFIG_INVALID', `broker ${name} must be a port number, got ${v}`);
    }
  };
  port('port', options.port);
  port('controllerPort', options.controllerPort);
  if (options.port !== undefined && options.port === options.controllerPort) {
    throw new PmeError('PME_ERR_CONFIG_INVALID', 'broker port and controllerPort must differ');
  }
  if (options.heapMb !== undefined && !(Number.isInteger(options.heapMb) && options.heapMb >= 128)) {
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `broker heapMb must be an integer >= 128, got ${options.heapMb}`,
    );
  }
}

const SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'];

/** A JAAS option value, quoted (no user name or password here holds a quote or a backslash). */
function jaasQuoted(value: string): string {
  if (/["\\;\n]/.test(value))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      'broker SASL user names and passwords cannot hold " \\ ; or newlines',
    );
  return `"${value}"`;
}

/** The extra listeners' lines of server.properties (SASL_PLAINTEXT, SSL), and their protocol map entries. */
function extraListeners(
  sasl: { port: number; users: Readonly<Record<string, string>> } | undefined,
  tls: { port: number; chain: string; key: string } | undefined,
): { listeners: string[]; lines: string[] } {
  const listeners: string[] = [];
  const lines: string[] = [];
  if (sasl !== undefined) {
    listeners.push(`SASL_PLAINTEXT://127.0.0.1:${sasl.port}`);
    const plainUsers = Object.entries(sasl.users)
      .map(([name, password]) => `user_${name}=${jaasQuoted(password)}`)
      .join(' ');
    lines.push(
      `listener.name.sasl_plaintext.sasl.enabled.mechanisms=${SASL_MECHANISMS.join(',')}`,
      `listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required ${plainUsers};`,
      'listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
      'listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
    );
  }
  if (tls !== undefined) {
    listeners.push(`SSL://127.0.0.1:${tls.port}`);
    lines.push(
      'listener.name.ssl.ssl.keystore.type=PEM',
      `listener.name.ssl.ssl.keystore.certificate.chain=${pemProperty(tls.chain)}`,
      `listener.name.ssl.ssl.keystore.key=${pemProperty(tls.key)}`,
      'listener.name.ssl.ssl.client.auth=none',
    );
  }
  return { listeners, lines };
}

/** A PEM text as one properties value (line breaks escaped). */
function pemProperty(pem: string): string {
  return pem.trim().split('\n').join('\\n\\\n');
}

function serverProperties(
  port: number,
  controllerPort: number,
  logDirs: string,
  extra: { listeners: string[]; lines: string[] } = { listeners: [], lines: [] },
): string {
  const names = extra.listeners.map((l) => l.slice(0, l.indexOf(':')));
  return `${[
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=${[`PLAINTEXT://127.0.0.1:${port}`, `CONTROLLER://127.0.0.1:${controllerPort}`, ...extra.listeners].join(',')}`,
    `advertised.listeners=${[`PLAINTEXT://127.0.0.1:${port}`, ...extra.listeners].join(',')}`,
    'controller.listener.names=CONTROLLER',
    `listener.security.protocol.map=${['PLAINTEXT:PLAINTEXT', 'CONTROLLER:PLAINTEXT', ...names.map((n) => `${n}:${n}`)].join(',')}`,
    ...extra.lines,
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${logDirs}`,
    // One node: every internal topic has one replica.
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=4',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    // Tests join groups constantly; the default 3 s rebalance delay would dominate their time.
    'group.initial.rebalance.delay.ms=0',
    'num.partitions=1',
    // The default 128 MB dedupe buffer is heap we do not have; Kafka refuses less than 1 MB per thread.
    'log.cleaner.dedupe.buffer.size=2097152',
    'auto.create.topics.enable=true',
  ].join('\n')}\n`;
}

// Quiet by default: the broker's own INFO chatter is megabytes per test run.
const LOG4J2_PROPERTIES = `status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
`;

/**
 * The orphan guard, a tiny shell process. Its stdin is a pipe whose only writer is this Node
 * process, so `cat` returns exactly when this process is gone, however it died (kill -9 too);
 * then it stops the JVM as `stop()` would and deletes a temporary data dir.
 * Arguments: $1 JVM pid, $2 grace in tenths of a second, $3 folder to delete ('' for none).
 */
const WATCHDOG = `cat >/dev/null
kill -TERM "$1" 2>/dev/null
i=0
while kill -0 "$1" 2>/dev/null && [ "$i" -lt "$2" ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$1" 2>/dev/null
[ -n "$3" ] && rm -rf "$3"
exit 0`;

/** Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding, not starting with '-'. */
function kafkaUuid(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/** The last `lines` lines of the broker's log, for error messages. */
export async function logTail(dataDir: string, lines = 40): Promise<string> {
  try {
    const text = await readFile(join(dataDir, 'broker.log'), 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no broker log)';
  }
}

function run(java: string, args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((ok, fail) => {
    const child = spawn(java, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.on('error', fail);
    child.on('close', (code) => ok({ code, output }));
  });
}

/**
 * Starts a broker and resolves once its admin API answers.
 * The JVM runs in its own process group (a terminal's Ctrl-C reaches only this process, which
 * then stops the broker in order) and does not keep this process alive; it is stopped by
 * `stop()`, on this process' exit, or by the orphan guard when this process dies abruptly.
 * @throws PmeError PME_ERR_BROKER_JAVA_MISSING, PME_ERR_BROKER_START, PME_ERR_CONFIG_INVALID
 */
export async function startBroker(options: BrokerOptions = {}): Promise<LocalBroker> {
  validate(options);
  const onProgress = options.onProgress ?? (() => {});
  const heapMb = options.heapMb ?? DEFAULTS.heapMb;
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULTS.readyTimeoutMs;
  const stopGraceMs = options.stopGraceMs ?? DEFAULTS.stopGraceMs;
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const persistent = options.persistent ?? options.dataDir !== undefined;

  const java = findJava();
  const libs = await ensureKafkaJars(cacheDir, { onProgress });
  const classpath = join(libs, '*');

  const dataDir = resolve(
    options.dataDir ??
      (persistent ? join(cacheDir, 'broker-data') : await mkdtemp(join(tmpdir(), 'pme-kafka-'))),
  );
  await mkdir(dataDir, { recursive: true });
  const [freeA, freeB, freeC, freeD] = await freePorts(4);
  const port = options.port ?? (options.controllerPort === freeA ? freeB : freeA);
  const controllerPort = options.controllerPort ?? (port === freeB ? freeA : freeB);
  const sasl = options.sasl && { port: options.sasl.port ?? freeC, users: options.sasl.users };
  const tls = options.tls && {
    port: options.tls.port ?? freeD,
    chain: await readFile(options.tls.chain, 'utf8'),
    key: await readFile(options.tls.key, 'utf8'),
  };
  const kraftDir = join(dataDir, 'kraft');
  const propsFile = join(dataDir, 'server.properties');
  const log4jFile = join(dataDir, 'log4j2.properties');
  await writeFile(propsFile, serverProperties(port, controllerPort, kraftDir, extraListeners(sasl, tls)));
  await writeFile(log4jFile, LOG4J2_PROPERTIES);
  const jvmArgs = [
    `-Xmx${heapMb}m`,
    // Few GC threads and no concurrent collector: the machine is shared with the trainer and tests.
    '-XX:+UseSerialGC',
    '-XX:+ExitOnOutOfMemoryError',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${log4jFile}`,
    '-cp',
    classpath,
  ];

  const cleanup = async () => {
    if (!persistent) await rm(dataDir, { recursive: true, force: true });
  };
  try {
    if (!existsSync(join(kraftDir, 'meta.properties'))) {
      onProgress(`formatting ${kraftDir}`);
      const format = await run(
        java,
        [
          ...jvmArgs,
          'kafka.tools.StorageTool',
          'format',
          '-t',
          kafkaUuid(),
          '-c',
          propsFile,
          '--ignore-formatted',
          // SCRAM credentials live in the cluster metadata: written once, with the format.
          ...Object.entries(sasl?.users ?? {}).flatMap(([name, password]) =>
            ['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap((m) => [
              '--add-scram',
              `${m}=[name=${name},password=${password}]`,
            ]),
          ),
        ],
        dataDir,
      );
      if (format.code !== 0) {
        throw new PmeError('PME_ERR_BROKER_START', `formatting ${kraftDir} failed:\n${format.output.trim()}`);
      }
    }
  } catch (error) {
    await cleanup();
    throw error;
  }

  const logFd = openSync(join(dataDir, 'broker.log'), 'a');
  const spawnedAt = performance.now();
  let jvm: ChildProcess;
  try {
    jvm = spawn(java, [...jvmArgs, 'kafka.Kafka', propsFile], {
      cwd: dataDir,
      detached: true,
      stdio: ['ignore', logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }
  const pid = jvm.pid;
  if (pid === undefined) {
    await cleanup();
    throw new PmeError('PME_ERR_BROKER_START', `could not spawn ${java}`);
  }
  jvm.unref();
  let alive = true;
  const exited = new Promise<number | null>((ok) => {
    jvm.once('exit', (code) => {
      alive = false;
      ok(code);
    });
  });
  const killOnExit = () => {
    if (alive) process.kill(pid, 'SIGTERM');
  };
  process.once('exit', killOnExit);

  const watchdog = spawn(
    'sh',
    [
      '-c',
      WATCHDOG,
      'pme-broker-watchdog',
      String(pid),
      String(Math.ceil(stopGraceMs / 100)),
      persistent ? '' : dataDir,
    ],
    { detached: true, stdio: ['pipe', 'ignore', 'ignore'] },
  );
  watchdog.on('error', () => {}); // without sh there is no guard, but the broker still works
  watchdog.unref();
  // The pipe handle must not keep this process alive either; it closes when the process ends.
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  watchdog.stdin?.on('error', () => {});

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (alive) {
        process.kill(pid, 'SIGTERM');
        // A pending grace timer would keep this process alive after the broker is gone: clear it.
        const grace = setTimeout(() => {
          if (alive) process.kill(pid, 'SIGKILL');
        }, stopGraceMs);
        await exited;
        clearTimeout(grace);
      }
      process.removeListener('exit', killOnExit);
      // Kill the guard before closing its pipe, so that it does not act on a pid now free for reuse.
      if (watchdog.exitCode === null) watchdog.kill('SIGKILL');
      watchdog.stdin?.destroy();
      await cleanup();
    })();
    return stopping;
  };

  onProgress(`starting Kafka on 127.0.0.1:${port} (data ${dataDir})`);
  try {
    await waitReady(`127.0.0.1:${port}`, exited, readyTimeoutMs);
  } catch (error) {
    const tail = await logTail(dataDir);
    await stop();
    const why = error instanceof Error ? error.message : String(error);
    throw new PmeError('PME_ERR_BROKER_START', `${why}; broker log (${dataDir}/broker.log):\n${tail}`);
  }
  const startMs = Math.round(performance.now() - spawnedAt);
  return Object.freeze({
    bootstrap: `127.0.0.1:${port}`,
    ...(sasl !== undefined && { saslBootstrap: `127.0.0.1:${sasl.port}` }),
    ...(tls !== undefined && { tlsBootstrap: `127.0.0.1:${tls.port}` }),
    port,
    controllerPort,
    pid,
    dataDir,
    persistent,
    startMs,
    exited,
    stop,
  });
}

/** Polls the admin API (describeCluster) until it answers, the JVM exits, or the timeout passes. */
async function waitReady(bootstrap: string, exited: Promise<number | null>, timeoutMs: Milliseconds) {
  const deadline = performance.now() + timeoutMs;
  let exitCode: number | null | undefined;
  exited.then((code) => {
    exitCode = code;
  });
  let lastError = 'no answer';
  while (performance.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`the JVM exited with code ${exitCode} before it was ready`);
    const admin = new Kafka({
      clientId: 'pme-broker-probe',
      brokers: [bootstrap],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1000,
      requestTimeout: 2000,
      retry: { retries: 0 },
    }).admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length > 0 && cluster.controller !== null) return;
      lastError = 'no controller yet';
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    } finally {
      await admin.disconnect().catch(() => {});
    }
    await sleep(200);
  }
  throw new Error(`the admin API did not answer within ${timeoutMs} ms (last: ${lastError})`);
}
