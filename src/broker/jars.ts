/**
 * Assembles a runnable Apache Kafka from Maven Central jars into a cache directory.
 * Maven does the resolving (transitive dependencies, checksums, its own ~/.m2 cache); we only ask
 * it to copy the runtime closure of `kafka_2.13` plus a log4j2 binding into one `libs/` folder.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { PmeError } from '../errors.js';

/** Kafka release the local broker runs (KRaft only since 4.0; needs Java 17+). */
export const KAFKA_VERSION = '4.1.1';
const SCALA_VERSION = '2.13';
const LOG4J_VERSION = '2.24.3';
const DEPENDENCY_PLUGIN_VERSION = '3.8.1';
/** Written last into a finished `libs/` folder; its absence means "not assembled". */
const COMPLETE_MARKER = '.pme-complete';

export interface EnsureJarsOptions {
  /** Kafka version to assemble. Default {@link KAFKA_VERSION}. */
  version?: string;
  /** `broker` (default): the broker's jars. `tools`: Kafka's command-line tools (`kafka-tools`:
   *  the console producer and consumer), in a folder of their own, for tests that feed topics
   *  with a client that is not the project's. */
  kind?: 'broker' | 'tools';
  /** Called with one human-readable line per step or downloaded artifact (for a progress display). */
  onProgress?: (line: string) => void;
}

/** `$PME_CACHE`, else `~/.cache/pme`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.PME_CACHE || join(homedir(), '.cache', 'pme');
}

/** Absolute path of `command` found on `PATH` (or `undefined`), like `which`. */
export function findOnPath(command: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/**
 * The `java` executable: `$JAVA_HOME/bin/java` when that exists, else the one on `PATH`.
 * @throws PmeError PME_ERR_BROKER_JAVA_MISSING
 */
export function findJava(env: NodeJS.ProcessEnv = process.env): string {
  if (env.JAVA_HOME) {
    const candidate = join(env.JAVA_HOME, 'bin', 'java');
    if (existsSync(candidate)) return candidate;
  }
  const java = findOnPath('java', env);
  if (java === undefined) throw new PmeError('PME_ERR_BROKER_JAVA_MISSING', 'java');
  return java;
}

/** The artifact each kind is assembled around, and the folder it goes to. */
const KINDS = {
  broker: { artifact: `kafka_${SCALA_VERSION}`, folder: 'kafka' },
  tools: { artifact: 'kafka-tools', folder: 'kafka-tools' },
} as const;

function pomXml(version: string, artifact: string): string {
  const dep = (group: string, artifact: string, v: string) =>
    `<dependency><groupId>${group}</groupId><artifactId>${artifact}</artifactId><version>${v}</version></dependency>`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>pme</groupId>
  <artifactId>pme-kafka-broker</artifactId>
  <version>${version}</version>
  <packaging>pom</packaging>
  <dependencies>
    ${dep('org.apache.kafka', artifact, version)}
    ${dep('org.apache.logging.log4j', 'log4j-slf4j-impl', LOG4J_VERSION)}
    ${dep('org.apache.logging.log4j', 'log4j-core', LOG4J_VERSION)}
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId>
    <artifactId>maven-dependency-plugin</artifactId>
    <version>${DEPENDENCY_PLUGIN_VERSION}</version>
  </plugin></plugins></build>
</project>
`;
}

/**
 * Makes sure `<cacheDir>/kafka-<version>/libs` holds the broker's jars and returns that folder.
 * Idempotent (a finished folder is reused as is) and safe when several processes run it at once:
 * each assembles into its own temporary folder and publishes it with one atomic `rename`; a loser
 * of that race deletes its copy and uses the winner's.
 * @throws PmeError PME_ERR_BROKER_JAVA_MISSING when Maven is needed and missing
 */
export async function ensureKafkaJars(
  cacheDir: string = defaultCacheDir(),
  options: EnsureJarsOptions = {},
): Promise<string> {
  const version = options.version ?? KAFKA_VERSION;
  const onProgress = options.onProgress ?? (() => {});
  const { artifact, folder } = KINDS[options.kind ?? 'broker'];
  const finalDir = join(cacheDir, `${folder}-${version}`);
  const libs = join(finalDir, 'libs');
  if (existsSync(join(libs, COMPLETE_MARKER))) return libs;

  const mvn = findOnPath('mvn');
  if (mvn === undefined) throw new PmeError('PME_ERR_BROKER_JAVA_MISSING', 'mvn');

  await mkdir(cacheDir, { recursive: true });
  const tmp = join(cacheDir, `.${folder}-${version}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp, { recursive: true });
  try {
    onProgress(`assembling Apache Kafka ${version} (${artifact}) from Maven Central into ${finalDir}`);
    await writeFile(join(tmp, 'pom.xml'), pomXml(version, artifact));
    await runMaven(mvn, tmp, onProgress);
    const jars = (await readdir(join(tmp, 'libs'))).filter((f) => f.endsWith('.jar'));
    if (!jars.some((f) => f.startsWith(`${artifact}-`))) {
      throw new PmeError('PME_ERR_BROKER_START', `Maven did not produce the ${artifact} jar`);
    }
    await writeFile(join(tmp, 'libs', COMPLETE_MARKER), `${jars.length} jars\n`);
    await publish(tmp, finalDir, join(libs, COMPLETE_MARKER));
    onProgress(`Kafka ${version}: ${jars.length} jars ready`);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return libs;
}

/** Renames `tmp` to `finalDir` unless a complete copy is already there (another process won). */
async function publish(tmp: string, finalDir: string, marker: string): Promise<void> {
  try {
    await rename(tmp, finalDir);
  } catch (error) {
    if (existsSync(marker)) return;
    // An unfinished folder without the marker (interrupted older layout): replace it once.
    if (!existsSync(finalDir)) throw error;
    await rm(finalDir, { recursive: true, force: true });
    await rename(tmp, finalDir).catch((e) => {
      if (!existsSync(marker)) throw e;
    });
  }
}

function runMaven(mvn: string, dir: string, onProgress: (line: string) => void): Promise<void> {
  const args = [
    '-B',
    '-f',
    join(dir, 'pom.xml'),
    'dependency:copy-dependencies',
    `-DoutputDirectory=${join(dir, 'libs')}`,
    '-DincludeScope=runtime',
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(mvn, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    let downloaded = 0;
    let pending = '';
    const onData = (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const line = pending.slice(0, newline).trimEnd();
        pending = pending.slice(newline + 1);
        newline = pending.indexOf('\n');
        tail.push(line);
        if (tail.length > 30) tail.shift();
        // "Downloaded from central: https://.../kafka_2.13-4.1.1.jar (6.5 MB at 12 MB/s)"
        const match = /Downloaded from [^:]+: \S*\/([^/\s]+\.jar) \(([^)]*)\)/.exec(line);
        if (match) onProgress(`downloaded ${++downloaded}: ${match[1]} (${match[2].split(' at ')[0]})`);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (error) => reject(new PmeError('PME_ERR_BROKER_START', `mvn: ${error.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else
        reject(
          new PmeError(
            'PME_ERR_BROKER_START',
            `mvn exited with ${code} while fetching jars:\n${tail.join('\n')}`,
          ),
        );
    });
  });
}
