/**
 * Every benchmark in one command: `npm run bench` (= `npm run -s build && node dist/bench/all.js`).
 *
 *   node dist/bench/all.js [--data-dir ../shared/datasets] [--only a,b] [--budgets 0.1,0.2,0.4] [--offline-seeds 1,2,3,4,5]
 *                          [--timeout-scale X] [--list]
 *
 * Each benchmark runs as a child process (its own heap, its own crash), from the repository root,
 * with a timeout; one that cannot run (no data at the path, no java for the broker, not built) is
 * recorded as skipped with the reason, one that exits non-zero or times out as failed with the tail
 * of its stderr, and the others still run. Run records are merged into bench/results/all.json (so
 * `--only` refreshes some sections and keeps the others), then bench/report.ts writes
 * bench/REPORT.md, the SVG plots and bench/results/headline.md.
 *
 * Defaults are sized to finish well within 20 minutes on a 2-core machine (the replica bench's
 * catch-up is measured on a 500k-token model instead of 1M); each step has a timeout.
 * `--only` takes names or prefixes (`--only offline` runs the three offline datasets). A benchmark
 * too long for the default run (planted-5m) runs only when `--only` names it; `--list` marks it.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findJava, KAFKA_VERSION } from '../src/broker/index.js';
import { stringArg as arg } from './args.js';
import { type AllRecord, generateReport, type MachineRecord, type RunRecord } from './report.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RESULTS = join(ROOT, 'bench/results');

/** One child process of a benchmark. `args` follow `node`; paths are relative to the root. */
interface Step {
  args: string[];
  /** File (under bench/results) the step must (re)write to count as done. */
  output: string;
}

interface Benchmark {
  name: string;
  /** Why it cannot run here, or null. Checked just before it runs. */
  unavailable: () => string | null;
  /** Built just before running (the PME replay's budget comes from the full-size replay). */
  steps: () => Step[];
  /** Per step. */
  timeoutSeconds: number;
  env?: NodeJS.ProcessEnv;
  /** Runs only when `--only` names it exactly: too long for the default run. */
  onRequest?: boolean;
}

const dataDirArg = arg('data-dir') ?? '../shared/datasets';
const DATA = isAbsolute(dataDirArg) ? dataDirArg : resolve(process.cwd(), dataDirArg);
/** The data folder as written in the reproduce commands (relative to the root when it can be). */
const dataRel = (() => {
  const r = relative(ROOT, DATA);
  return r.startsWith('../..') ? DATA : r;
})();
const BUDGETS = (arg('budgets') ?? '0.1,0.2,0.4').split(',').map(Number);
const MAIN_BUDGET = 0.2;
/** Seeds of the offline split (and initialisation): the report gives mean ± std over them. */
const OFFLINE_SEEDS = (arg('offline-seeds') ?? '1,2,3,4,5').split(',').map(Number);
const TIMEOUT_SCALE = Number(arg('timeout-scale') ?? 1);
const CLI = 'dist/src/cli/main.js';

const noFile = (path: string): string | null =>
  existsSync(join(ROOT, path)) || existsSync(path) ? null : `${path} not found`;
const notBuilt = (name: string): string | null =>
  existsSync(join(ROOT, `dist/bench/${name}.js`))
    ? null
    : `dist/bench/${name}.js not found (bench/${name}.ts missing or not built)`;
function noKafka(): string | null {
  if (process.env.KAFKA_BROKERS?.trim()) return null;
  try {
    findJava();
    return null;
  } catch {
    return 'no Kafka: KAFKA_BROKERS is unset and no java to start a local broker (set JAVA_HOME or install a JRE)';
  }
}

interface Dataset {
  name: string;
  format: string;
  data: string;
  items?: string;
  /** Categorical values seen fewer times fold into one rare token per field (the datasets' convention, lower on a sample). */
  minCount?: number;
}
const DATASETS: Dataset[] = [
  {
    name: 'ml-latest-small',
    format: 'movielens',
    data: join(dataRel, 'ml-latest-small/ratings.csv'),
    items: join(dataRel, 'ml-latest-small/movies.csv'),
  },
  { name: 'criteo-sample', format: 'criteo', data: join(dataRel, 'criteo-sample/train.tsv'), minCount: 3 },
  { name: 'avazu-sample', format: 'avazu', data: join(dataRel, 'avazu-sample/train.csv'), minCount: 3 },
];
const ML = DATASETS[0];
const dataArgs = (d: Dataset): string[] => [
  '--data',
  d.data,
  '--format',
  d.format,
  ...(d.items ? ['--items', d.items] : []),
  ...(d.minCount ? ['--min-count', String(d.minCount)] : []),
];
/** Share of the uniform D = 64 store bytes given to the PME replay. */
const PME_SHARE = 0.25;
const STREAM_TIMELINE_EVENTS = 2000;
const STREAM_WINDOW_EVENTS = 20_000;

const BENCHMARKS: Benchmark[] = [
  {
    name: 'data',
    unavailable: () => null, // data.ts skips the files it cannot find and still times the generator
    steps: () => [{ args: ['dist/bench/data.js', dataRel], output: 'data.json' }],
    timeoutSeconds: 300,
  },
  {
    name: 'store',
    unavailable: () => null,
    steps: () => [{ args: ['dist/bench/store.js'], output: 'store.json' }],
    timeoutSeconds: 300,
  },
  {
    name: 'train',
    unavailable: () => null,
    steps: () => [{ args: ['dist/bench/train.js'], output: 'train.json' }],
    timeoutSeconds: 300,
  },
  ...DATASETS.map(
    (d): Benchmark => ({
      name: `offline-${d.name}`,
      unavailable: () => noFile(d.data),
      steps: () =>
        BUDGETS.flatMap((b) =>
          OFFLINE_SEEDS.map((seed) => {
            // Seed 1 keeps the plain names; the others get -s<seed>.
            const output = `offline-${d.name}${b === MAIN_BUDGET ? '' : `-b${b}`}${seed === 1 ? '' : `-s${seed}`}.json`;
            return {
              args: [
                CLI,
                'offline',
                ...dataArgs(d),
                '--budget',
                String(b),
                '--seed',
                String(seed),
                // full does not depend on the budget: run it once per seed, with the main budget.
                ...(b === MAIN_BUDGET ? [] : ['--methods', 'uniform,mde,pme,pme-paper']),
                '--json',
                `bench/results/${output}`,
              ],
              output,
            };
          }),
        ),
      timeoutSeconds: 240,
    }),
  ),
  {
    name: 'stream-eval-full',
    unavailable: () => noFile(ML.data),
    steps: () => [
      {
        args: [
          CLI,
          'stream-eval',
          ...dataArgs(ML),
          '--timeline-events',
          String(STREAM_TIMELINE_EVENTS),
          '--json',
          'bench/results/stream-eval-ml-full.json',
        ],
        output: 'stream-eval-ml-full.json',
      },
    ],
    timeoutSeconds: 180,
  },
  {
    name: 'stream-eval-pme',
    unavailable: () =>
      noFile(ML.data) ?? (fullBytes() === null ? 'needs stream-eval-full results first' : null),
    steps: () => [
      {
        args: [
          CLI,
          'stream-eval',
          ...dataArgs(ML),
          '--pme',
          '--budget-bytes',
          String(Math.round(PME_SHARE * fullBytes()!)),
          '--window-events',
          String(STREAM_WINDOW_EVENTS),
          '--timeline-events',
          String(STREAM_TIMELINE_EVENTS),
          '--json',
          'bench/results/stream-eval-ml-pme.json',
        ],
        output: 'stream-eval-ml-pme.json',
      },
    ],
    timeoutSeconds: 180,
  },
  {
    // Quality against Vowpal Wabbit and River, rates chosen on the first 20% of each stream. It
    // skips missing datasets and uninstallable peers itself (its own virtualenv, outside the repo).
    name: 'quality',
    unavailable: () => notBuilt('quality'),
    steps: () => [{ args: ['dist/bench/quality.js', '--data-dir', dataRel], output: 'quality.json' }],
    timeoutSeconds: 1200,
  },
  {
    // PME against uniform sizes at equal bytes on the shared datasets (skips a missing one itself).
    name: 'pme-windows',
    unavailable: () => notBuilt('pme-windows'),
    steps: () => [{ args: ['dist/bench/pme-windows.js', '--data-dir', dataRel], output: 'pme-windows.json' }],
    timeoutSeconds: 900,
  },
  {
    // CPU per offline training epoch, full / uniform / MDE, learned and nested projections.
    name: 'epoch-cost',
    unavailable: () => notBuilt('epoch-cost'),
    steps: () => [{ args: ['dist/bench/epoch-cost.js', '--data-dir', dataRel], output: 'epoch-cost.json' }],
    timeoutSeconds: 900,
  },
  {
    // Synthetic: needs no dataset. The events are held in memory (2M events: ~1 GB of heap).
    name: 'planted',
    unavailable: () => notBuilt('planted'),
    steps: () => [{ args: ['--max-old-space-size=8192', 'dist/bench/planted.js'], output: 'planted.json' }],
    timeoutSeconds: 1800,
  },
  {
    // The planted stream at 5M events over ~0.9M tokens (3M users drawn by Zipf 1, 873,537 of
    // them seen): about half an hour, so only on request (`--only planted-5m`).
    name: 'planted-5m',
    onRequest: true,
    unavailable: () => notBuilt('planted'),
    steps: () => [
      {
        args: [
          '--max-old-space-size=16384',
          'dist/bench/planted.js',
          '--events',
          '5000000',
          '--users',
          '3000000',
          '--out',
          'bench/results/planted-5m.json',
        ],
        output: 'planted-5m.json',
      },
    ],
    timeoutSeconds: 5400,
  },
  {
    name: 'e2e',
    unavailable: () => notBuilt('e2e') ?? noKafka(),
    steps: () => [{ args: ['dist/bench/e2e.js'], output: 'e2e.json' }],
    timeoutSeconds: 360,
  },
  {
    name: 'api',
    unavailable: () => null,
    steps: () => [{ args: ['dist/bench/api.js'], output: 'api.json' }],
    timeoutSeconds: 360,
  },
  {
    name: 'replica',
    unavailable: () => noKafka(),
    steps: () => [
      { args: ['dist/bench/replica.js', '--seconds', '30', '--tokens', '1000000'], output: 'replica.json' },
    ],
    timeoutSeconds: 720,
  },
];

/** Uniform D = 64 bytes of the ml-latest-small replay (all tokens at full size, no budget). */
function fullBytes(): number | null {
  try {
    const r = JSON.parse(readFileSync(join(RESULTS, 'stream-eval-ml-full.json'), 'utf8'));
    return typeof r.totalEmbeddingBytes === 'number' && r.totalEmbeddingBytes > 0
      ? r.totalEmbeddingBytes
      : null;
  } catch {
    return null;
  }
}

function quote(a: string): string {
  return /^[\w./=,:@+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

let current: ChildProcess | null = null;

/** Runs one step; resolves with null on success or the reason it failed. */
function runStep(
  name: string,
  step: Step,
  timeoutSeconds: number,
  env?: NodeJS.ProcessEnv,
): Promise<string | null> {
  const outPath = join(RESULTS, step.output);
  const before = existsSync(outPath) ? statSync(outPath).mtimeMs : 0;
  return new Promise((done) => {
    // Its own process group, so a timeout also stops what it started (serve children, a broker JVM).
    const child = spawn(process.execPath, step.args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    current = child;
    let tail = '';
    const relay = (chunk: Buffer, stream: NodeJS.WriteStream) => {
      const text = chunk.toString();
      tail = (tail + text).slice(-3000);
      stream.write(
        text
          .split(/\r?\n|\r/)
          .filter((l) => l.trim() !== '')
          .map((l) => `  [${name}] ${l}\n`)
          .join(''),
      );
    };
    child.stdout!.on('data', (c: Buffer) => relay(c, process.stdout));
    child.stderr!.on('data', (c: Buffer) => relay(c, process.stderr));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      kill(child, 'SIGTERM');
      setTimeout(() => kill(child, 'SIGKILL'), 10_000).unref();
    }, timeoutSeconds * 1000);
    const finish = (reason: string | null) => {
      clearTimeout(timer);
      current = null;
      done(reason);
    };
    child.once('error', (error) => finish(`could not start: ${error.message}`));
    child.once('exit', (code, signal) => {
      // Grandchildren left in the group (a broker the bench failed to stop) go with it.
      kill(child, 'SIGKILL');
      const lastLines = tail
        .trim()
        .split(/\r?\n|\r/)
        .slice(-6)
        .join(' / ')
        .slice(-600);
      if (timedOut) finish(`timed out after ${timeoutSeconds} s; last output: ${lastLines}`);
      else if (code !== 0) finish(`exited with ${code ?? signal}: ${lastLines}`);
      else if (!existsSync(outPath) || statSync(outPath).mtimeMs <= before)
        finish(`exited 0 but did not write bench/results/${step.output}`);
      else finish(null);
    });
  });
}

function kill(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is already gone
  }
}

async function machine(): Promise<MachineRecord> {
  // The backend is probed in a child: loading TensorFlow.js here would hold its memory all run long.
  let tfjsBackend: string | null = null;
  let tfjsSkipped: string[] = [];
  try {
    const probe = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "const m = await import('./dist/src/engine/backend.js'); const b = await m.initBackend(); console.log(JSON.stringify({ name: b.name, skipped: b.skipped.map((s) => s.name + ': ' + s.reason.slice(0, 80)) }));",
      ],
      { cwd: ROOT, timeout: 120_000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const parsed = JSON.parse(probe.trim().split('\n').at(-1)!);
    tfjsBackend = parsed.name;
    tfjsSkipped = parsed.skipped;
  } catch (error) {
    tfjsSkipped = [`probe failed: ${(error as Error).message.split('\n')[0]}`];
  }
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryBytes: totalmem(),
    node: process.version,
    platform: `${platform()} ${release()}`,
    tfjsBackend,
    tfjsSkipped,
    kafkaVersion: KAFKA_VERSION,
    java: javaVersion(),
    loadAverageBefore: loadavg(),
  };
}

/** First line of `java -version` (printed on stderr), or null without java. */
function javaVersion(): string | null {
  try {
    const r = spawnSync(findJava(), ['-version'], { encoding: 'utf8', timeout: 30_000 });
    return `${r.stderr ?? ''}${r.stdout ?? ''}`.split('\n')[0].trim() || null;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  if (process.argv.includes('--list')) {
    for (const b of BENCHMARKS) process.stdout.write(`${b.name}${b.onRequest ? ' (on request)' : ''}\n`);
    return;
  }
  const only = arg('only')
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const selected = BENCHMARKS.filter((b) =>
    only === undefined
      ? !b.onRequest
      : only.some((o) => b.name === o || (!b.onRequest && b.name.startsWith(`${o}-`))),
  );
  if (only !== undefined) {
    const unknown = only.filter((o) => !BENCHMARKS.some((b) => b.name === o || b.name.startsWith(`${o}-`)));
    if (unknown.length > 0) {
      process.stderr.write(
        `bench: unknown benchmark ${unknown.join(', ')}; known: ${BENCHMARKS.map((b) => b.name).join(', ')}\n`,
      );
      process.exitCode = 2;
      return;
    }
  }
  mkdirSync(RESULTS, { recursive: true });
  const onSignal = (signal: NodeJS.Signals) => {
    if (current) kill(current, 'SIGKILL');
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const started = Date.now();
  const m = await machine();
  process.stderr.write(
    `bench: ${selected.map((b) => b.name).join(', ')}\nmachine: ${m.cores} cores, ${m.node}, tfjs ${m.tfjsBackend}, Kafka ${m.kafkaVersion}, load ${m.loadAverageBefore!.map((x) => x.toFixed(2)).join(' ')}\n`,
  );
  const records: RunRecord[] = [];
  for (const b of selected) {
    const t0 = Date.now();
    const record: RunRecord = {
      name: b.name,
      status: 'ok',
      commands: [],
      startedAt: new Date(t0).toISOString(),
      loadAverage: loadavg(),
      cpu: m.cpu,
    };
    const reason = b.unavailable();
    if (reason !== null) {
      record.status = 'skipped';
      record.reason = reason;
      // Still say how it would run, when that is known without running.
      try {
        record.commands = b.steps().map((s) => `node ${s.args.map(quote).join(' ')}`);
      } catch {
        record.commands = [`npm run bench -- --only ${b.name}`];
      }
      process.stderr.write(`── ${b.name}: skipped: ${reason}\n`);
    } else {
      const steps = b.steps();
      record.commands = steps.map((s) => `node ${s.args.map(quote).join(' ')}`);
      const failures: string[] = [];
      for (const step of steps) {
        process.stderr.write(`── ${b.name}: node ${step.args.map(quote).join(' ')}\n`);
        const failed = await runStep(b.name, step, b.timeoutSeconds * TIMEOUT_SCALE, b.env);
        if (failed !== null) failures.push(steps.length > 1 ? `${step.output}: ${failed}` : failed);
      }
      if (failures.length > 0) {
        record.status = 'failed';
        record.reason = failures.join('; ');
      }
      record.seconds = (Date.now() - t0) / 1000;
      process.stderr.write(
        `── ${b.name}: ${record.status} in ${record.seconds.toFixed(0)} s${record.reason ? `: ${record.reason}` : ''}\n`,
      );
    }
    records.push(record);
  }
  m.loadAverageAfter = loadavg();

  // Merge with the previous run so that `--only` keeps the other sections' records.
  let previous: AllRecord = { runs: [] };
  try {
    previous = JSON.parse(readFileSync(join(RESULTS, 'all.json'), 'utf8')) as AllRecord;
  } catch {
    // first run
  }
  const names = new Set(records.map((r) => r.name));
  // A partial run keeps the machine the other sections were measured on; its own sections say
  // their CPU where it differs (RunRecord.cpu).
  const all: AllRecord = {
    machine: only !== undefined && previous.machine !== undefined ? previous.machine : m,
    startedAt: new Date(started).toISOString(),
    totalSeconds: (Date.now() - started) / 1000,
    runs: [...(previous.runs ?? []).filter((r) => !names.has(r.name)), ...records],
  };
  writeFileSync(join(RESULTS, 'all.json'), `${JSON.stringify(all, null, 2)}\n`);
  const report = generateReport({ resultsDir: RESULTS, reportFile: join(ROOT, 'bench/REPORT.md'), all });
  process.stdout.write(`\n${report.headline}\n`);
  for (const s of report.sections)
    process.stdout.write(`${s.status.padEnd(8)} ${s.name}${s.reason ? `: ${s.reason}` : ''}\n`);
  process.stdout.write(
    `\nwrote bench/REPORT.md, bench/results/headline.md, ${report.svgs.length} plots; ${((Date.now() - started) / 60_000).toFixed(1)} min\n`,
  );
}

await main();
