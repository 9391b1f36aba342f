import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ensureKafkaJars, findOnPath, KAFKA_VERSION } from '../../src/broker/index.js';

t.test('two assemblies at once into an empty cache agree, and a finished cache is reused', async (t) => {
  const cache = mkdtempSync(join(tmpdir(), 'pme-cache-test-'));
  t.teardown(() => rmSync(cache, { recursive: true, force: true }));
  const progress: string[] = [];
  const [a, b] = await Promise.all([
    ensureKafkaJars(cache, { onProgress: (line) => progress.push(line) }),
    ensureKafkaJars(cache),
  ]);
  t.equal(a, join(cache, `kafka-${KAFKA_VERSION}`, 'libs'));
  t.equal(b, a, 'both callers get the same folder');
  const jars = readdirSync(a);
  t.ok(jars.includes(`kafka_2.13-${KAFKA_VERSION}.jar`), 'the broker jar is there');
  t.ok(jars.includes('.pme-complete'), 'marked complete');
  t.same(
    readdirSync(cache).filter((f) => f.includes('.tmp-')),
    [],
    'no temporary folder is left behind',
  );
  t.match(progress.join('\n'), /jars ready/);

  // Reuse must not need Maven at all: hide it.
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  t.teardown(() => {
    process.env.PATH = path;
  });
  const started = performance.now();
  t.equal(await ensureKafkaJars(cache), a);
  t.ok(performance.now() - started < 100, 'a finished cache is reused at once');
  process.env.PATH = path;
});

t.test('an empty cache without Maven: the coded error names mvn', async (t) => {
  const cache = mkdtempSync(join(tmpdir(), 'pme-cache-test-'));
  t.teardown(() => rmSync(cache, { recursive: true, force: true }));
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    t.equal(findOnPath('mvn'), undefined);
    await t.rejects(ensureKafkaJars(cache), {
      code: 'PME_ERR_BROKER_JAVA_MISSING',
      message: /^mvn was not found/,
    });
    t.notOk(existsSync(join(cache, `kafka-${KAFKA_VERSION}`)), 'nothing half-made is left');
  } finally {
    process.env.PATH = path;
  }
});
