/**
 * The deployment files stay consistent with the build the tests run. There is no Docker
 * engine here, so the compose file is validated with `docker-compose config` and the
 * Dockerfile is checked against package.json and the built entry point.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import { SERVICE_NODE_FLAGS } from '../src/cli/node-flags.js';

const root = new URL('../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');

t.test(
  'docker/compose.yml is a valid compose file with Kafka, a trainer, two replicas and the demo',
  async (t) => {
    const out = execFileSync('docker-compose', ['-f', 'docker/compose.yml', 'config'], {
      cwd: new URL('.', root),
      encoding: 'utf8',
    });
    for (const service of ['kafka:', 'trainer:', 'replica-1:', 'replica-2:', 'demo:']) t.match(out, service);
    t.match(out, /image: apache\/kafka/);
    t.equal((out.match(/- --role\n\s+- replica/g) ?? []).length, 2, 'two replicas follow the trainer');
  },
);

t.test('the Dockerfile builds and runs what the tests build and run', async (t) => {
  const dockerfile = read('docker/Dockerfile');
  const pkg = JSON.parse(read('package.json'));
  const major = /node:(\d+)/.exec(dockerfile)?.[1];
  t.ok(major && pkg.engines.node.includes(major), `Node ${major} matches engines ${pkg.engines.node}`);
  t.match(dockerfile, /npm ci/);
  t.match(dockerfile, /npm run build/);
  t.ok(pkg.scripts.build, 'package.json has the build script the Dockerfile runs');
  const [node, ...args] = JSON.parse(/ENTRYPOINT (\[.*\])/.exec(dockerfile)?.[1] ?? '[]') as string[];
  const entry = args.pop();
  t.equal(node, 'node');
  t.equal(entry, pkg.bin.pme, 'the entry point is the pme binary');
  t.ok(existsSync(new URL(entry!, root)), `${entry} is built`);
  // The garbage-collector flags (docs/serving.md, "Garbage collection and the Node flags") are the
  // ones npm run up uses.
  t.same(args, SERVICE_NODE_FLAGS, 'with the service flags of src/cli/node-flags.ts');
  t.ok(pkg.scripts.up.includes(`node ${args.join(' ')} ${entry} up`), 'npm run up starts node alike');
  t.ok(pkg.scripts.pme.includes(`node ${args.join(' ')} ${entry}`), 'and npm run pme');
  t.ok(pkg.scripts['bench:gc'].includes(`node ${args.join(' ')} `), 'and the GC benchmark');
  t.match(dockerfile, /USER pme/, 'runs as a non-root user');
  t.match(dockerfile, /HEALTHCHECK .*\/healthz/s);
});
