/**
 * The package as a user gets it (issue 19, point 2): `npm pack`, installed into a project of its
 * own, imported by name from a TypeScript program that is type-checked there against the shipped
 * declarations (strict, lib check on), then run: the recommender in process, and the service
 * against the test broker.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { testBrokers } from '../helpers/broker.js';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../..', import.meta.url));

const PROGRAM = `import { createRecommender, type Interaction, isPmeError, startService } from 'pme-stream';

const events: Interaction[] = [];
for (let i = 0; i < 4000; i++)
  events.push({ user: \`u\${i % 50}\`, item: \`i\${(i * 7) % 40}\`, label: i % 3 === 0 ? 1 : 0, timestamp: i, fields: {} });
const rec = await createRecommender({ ladder: [0, 2, 4, 8], startSize: 2 });
const { learned, refused } = await rec.learn([...events, { user: '', item: 'x', label: 1, timestamp: 0, fields: {} }]);
const report = {
  learned,
  refused: refused.map((r) => r.reason),
  score: rec.score('u1', ['i1'])[0],
  tiers: rec.tiers().tiers.map((tier) => tier.size),
};
await rec.close();
let badOptions = '';
try {
  await createRecommender({ learningRate: -1 });
} catch (error) {
  badOptions = isPmeError(error, 'PME_ERR_CONFIG_INVALID') ? error.message : String(error);
}
const service = await startService({ brokers: [process.argv[2]], port: 0, stateDir: process.argv[3] }, () => {});
const readyz = (await fetch(\`\${service.url}/healthz\`)).status;
await service.stop();
console.log(JSON.stringify({ ...report, badOptions, readyz }));
`;

t.test('npm pack, installed elsewhere, imported by name, type-checked and run', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pme-package-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The test command has built dist/ already; packing does not build it again.
  await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: repo });
  const tarball = (await readdir(dir)).find((name) => name.endsWith('.tgz'));
  t.ok(tarball, 'npm pack wrote a tarball');
  const app = join(dir, 'app');
  await run('mkdir', ['-p', app]);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  await run(
    'npm',
    [
      'install',
      join(dir, tarball as string),
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      '--ignore-scripts',
    ],
    { cwd: app, timeout: 300_000 },
  );
  await writeFile(join(app, 'main.ts'), PROGRAM);
  await writeFile(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'es2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        skipLibCheck: false,
        outDir: 'out',
        types: ['node'],
        typeRoots: [join(repo, 'node_modules/@types')],
      },
      files: ['main.ts'],
    }),
  );
  const tsc = await run(join(repo, 'node_modules/.bin/tsc'), ['-p', '.'], { cwd: app }).then(
    () => '',
    (error: { stdout?: string }) => error.stdout ?? String(error),
  );
  t.equal(tsc, '', 'the program type-checks against the shipped declarations');

  const { stdout } = await run('node', ['out/main.js', await testBrokers(), join(dir, 'state')], {
    cwd: app,
    timeout: 120_000,
  });
  const out = JSON.parse(stdout.trim().split('\n').at(-1) as string);
  t.equal(out.learned, 4000, 'the recommender learned the events');
  t.same(out.refused, ['missing-user'], 'and refused the one without a user');
  t.ok(out.score > 0 && out.score < 1, `scores a probability (${out.score})`);
  t.same(out.tiers, [0, 2, 4, 8], 'tiers of the ladder it was given');
  t.match(out.badOptions, /learningRate must be a number >= 0, got -1/, 'bad options are refused, named');
  t.equal(out.readyz, 200, 'startService serves');
});
