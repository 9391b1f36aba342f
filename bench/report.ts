/**
 * Turns the benchmark results (bench/results/*.json) into bench/REPORT.md, SVG plots next to the
 * JSON, and a short headline block (bench/results/headline.md) for the README.
 *
 * Inputs are read as plain JSON, tolerantly: each benchmark writes its own shape and owns it, so a
 * field that is absent shows as "–" rather than failing the whole report. A benchmark whose file is
 * missing, or whose last run (in all.json, written by bench/all.ts) was skipped or failed, gets a
 * section that says so and why.
 *
 *   npm run build && node dist/bench/report.js [--results bench/results] [--out bench/REPORT.md]
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatBytes } from '../src/util/bytes.js';
import { stringArg as arg } from './args.js';
import { meanInterval, meanStd } from './quality-core.js';
import { barPlot, type LineSeries, linePlot, stackedAreaPlot } from './svg.js';

/** The outcome of one benchmark in the last `bench/all.ts` run that included it. */
export interface RunRecord {
  name: string;
  status: 'ok' | 'skipped' | 'failed';
  /** Why it was skipped or failed (missing data, no java, exit code and stderr tail, timeout). */
  reason?: string;
  /** Commands that reproduce it, run from the repository root. */
  commands: string[];
  seconds?: number;
  startedAt?: string;
  /** os.loadavg() when it started: the machine is shared, so a busy run is visible. */
  loadAverage?: number[];
  /** The CPU it ran on (a partial run may not be on the machine the others were). */
  cpu?: string;
}

/** The machine the benchmarks ran on. */
export interface MachineRecord {
  cores: number;
  cpu: string;
  memoryBytes: number;
  node: string;
  platform: string;
  tfjsBackend: string | null;
  tfjsSkipped?: string[];
  kafkaVersion: string;
  java?: string | null;
  loadAverageBefore?: number[];
  loadAverageAfter?: number[];
}

/** Shape of bench/results/all.json. */
export interface AllRecord {
  machine?: MachineRecord;
  startedAt?: string;
  totalSeconds?: number;
  runs: RunRecord[];
}

export interface ReportOptions {
  /** Folder of the result JSON files; SVGs and headline.md are written here too. */
  resultsDir: string;
  /** Report file. Default `<resultsDir>/../REPORT.md`. */
  reportFile?: string;
  /** Run records; default: read from `<resultsDir>/all.json` when present. */
  all?: AllRecord;
}

export interface SectionOutcome {
  name: string;
  title: string;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
}

export interface ReportOutput {
  markdown: string;
  headline: string;
  sections: SectionOutcome[];
  /** Paths of the SVG files written. */
  svgs: string[];
}

/** Datasets of the offline quality runs, in report order. */
export const OFFLINE_DATASETS = ['ml-latest-small', 'criteo-sample', 'avazu-sample'] as const;

/** The report's sections in order: the benchmark name (as in all.ts / all.json), title and main file. */
export const SECTIONS: ReadonlyArray<{ name: string; title: string; file: string }> = Object.freeze([
  ...OFFLINE_DATASETS.map((d) => ({
    name: `offline-${d}`,
    title: `Offline PME protocol: ${d}`,
    file: `offline-${d}.json`,
  })),
  { name: 'stream-eval-full', title: 'Stream replay, full size (D = 64)', file: 'stream-eval-ml-full.json' },
  {
    name: 'stream-eval-pme',
    title: 'Stream replay with PME under a budget',
    file: 'stream-eval-ml-pme.json',
  },
  {
    name: 'quality',
    title: 'Quality against peers (Vowpal Wabbit, River): rate chosen on the first 20%, scored on the rest',
    file: 'quality.json',
  },
  {
    name: 'pme-windows',
    title: 'PME in streaming on the shared datasets, against uniform sizes at equal bytes',
    file: 'pme-windows.json',
  },
  {
    name: 'epoch-cost',
    title: 'Cost of a training epoch: multi-size models against full size',
    file: 'epoch-cost.json',
  },
  {
    name: 'planted',
    title: 'A stream where sizes matter: planted ranks, PME against uniform sizes at equal bytes',
    file: 'planted.json',
  },
  {
    name: 'planted-5m',
    title: 'The planted stream at scale: 5M events over 0.9M tokens',
    file: 'planted-5m.json',
  },
  { name: 'e2e', title: 'End to end through Kafka', file: 'e2e.json' },
  { name: 'api', title: 'HTTP API latency under training', file: 'api.json' },
  { name: 'replica', title: 'Serving replicas: staleness and catch-up', file: 'replica.json' },
  { name: 'train', title: 'Trainer throughput', file: 'train.json' },
  { name: 'store', title: 'Embedding store', file: 'store.json' },
  { name: 'data', title: 'File parsing and synthetic workload', file: 'data.json' },
]);

// ───────────────────────────── helpers ─────────────────────────────

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Value at a dotted path, or undefined. */
function at(v: unknown, path: string): unknown {
  let cur = v;
  for (const key of path.split('.')) {
    if (!isObject(cur) && !Array.isArray(cur)) return undefined;
    cur = (cur as Json)[key];
  }
  return cur;
}

function num(v: unknown, path: string): number {
  const x = at(v, path);
  return typeof x === 'number' ? x : Number.NaN;
}

function arr(v: unknown, path: string): Json[] {
  const x = at(v, path);
  return Array.isArray(x) ? x.filter(isObject) : [];
}

/** The sentence naming the API bench server's Node flags ('' for results that did not record them). */
function serverFlags(r: unknown): string {
  const flags = at(r, 'serverNodeFlags');
  if (!Array.isArray(flags)) return '';
  return `The server runs with ${flags.length > 0 ? `the Node flags ${flags.join(' ')}` : "V8's default flags"}. `;
}

const DASH = '–';
/** Fixed decimals, or a dash for a missing value. */
function fx(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : DASH;
}
/** Integer with thousands separators. */
function int(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : DASH;
}
function signed(x: number, digits: number): string {
  return Number.isFinite(x) ? `${x > 0 ? '+' : ''}${x.toFixed(digits)}` : DASH;
}
function bytes(x: number): string {
  return Number.isFinite(x) ? formatBytes(x) : DASH;
}
function pct(x: number, digits = 0): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : DASH;
}

function escapeCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** A markdown table; numbers in cells should already be formatted. */
export function mdTable(headers: string[], rows: string[][]): string {
  const right = headers.map(
    (_, i) => rows.length > 0 && rows.every((r) => /^[-+]?[\d.,]+|^–$/.test(r[i] ?? '')),
  );
  const line = (cells: string[]) => `| ${cells.map(escapeCell).join(' | ')} |`;
  return [line(headers), `|${right.map((r) => (r ? ' ---: ' : ' --- ')).join('|')}|`, ...rows.map(line)].join(
    '\n',
  );
}

/** Reads a JSON file; `shown` is how the file is named in an error (the report's relative path). */
function readJson(file: string, shown = file): { value?: unknown; error?: string } {
  if (!existsSync(file)) return { error: `${shown} not found` };
  try {
    return { value: JSON.parse(readFileSync(file, 'utf8')) };
  } catch (error) {
    return { error: `${shown} is not valid JSON: ${(error as Error).message}` };
  }
}

/** Flattens nested scalars into dotted keys (arrays are left out): a generic table for any result. */
function flatten(
  v: unknown,
  prefix = '',
  out: Array<[string, string]> = [],
  depth = 0,
): Array<[string, string]> {
  if (!isObject(v) || depth > 3) return out;
  for (const [k, x] of Object.entries(v)) {
    const key = prefix === '' ? k : `${prefix}.${k}`;
    if (typeof x === 'number')
      out.push([key, Number.isInteger(x) ? int(x) : x.toPrecision(4).replace(/\.?0+$/, '')]);
    else if (typeof x === 'string' || typeof x === 'boolean') out.push([key, String(x)]);
    else if (isObject(x)) flatten(x, key, out, depth + 1);
  }
  return out;
}

// ───────────────────────────── sections ─────────────────────────────

interface Ctx {
  dir: string;
  /** Relative link from the report to a file of the results folder. */
  link: (file: string) => string;
  svgs: string[];
  headline: string[];
}

function writeSvg(ctx: Ctx, file: string, svg: string): string {
  const path = join(ctx.dir, file);
  writeFileSync(path, svg);
  ctx.svgs.push(path);
  return `![${file}](${ctx.link(file)})`;
}

/** `pme` is the live controller (what the service runs), `pme-paper` the paper's protocol. */
const METHODS = ['full', 'uniform', 'mde', 'pme', 'pme-paper'];

/** The offline files of one dataset: offline-<d>.json, offline-<d>-b<budget>.json, each of seed 1,
 *  and the same with -s<seed> for the other seeds (budget and seed are read from the content). */
function offlineRuns(ctx: Ctx, dataset: string): Json[] {
  const re = new RegExp(
    `^offline-${dataset.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(-b[\\d.]+)?(-s\\d+)?\\.json$`,
  );
  const runs: Json[] = [];
  for (const f of readdirSync(ctx.dir).filter((name) => re.test(name))) {
    const { value } = readJson(join(ctx.dir, f));
    if (isObject(value)) runs.push(value);
  }
  return runs.sort((a, b) => num(a, 'budget') - num(b, 'budget'));
}

/** A method's results over the runs (seeds) that have it. */
function ofMethod(runs: Json[], method: string): Json[] {
  return runs.flatMap((run) => arr(run, 'results').filter((r) => r.method === method));
}

/** Mean ± std of a method's field over runs, or a dash when no run has the method. */
function seedCell(runs: Json[], method: string, field: string, digits: number): string {
  const xs = ofMethod(runs, method).map((r) => num(r, field));
  if (xs.length === 0) return DASH;
  const { mean, std } = meanStd(xs);
  return xs.length < 2 ? fx(mean, digits) : `${fx(mean, digits)} ± ${fx(std, digits)}`;
}

/** The mean of a field of a method over runs (NaN when none has it). */
function seedMean(runs: Json[], method: string, field: string): number {
  return meanStd(ofMethod(runs, method).map((r) => num(r, field))).mean;
}

/** Per seed, method − other's test AUC, over the runs (seeds) that have both. */
function pairedDiffs(runs: Json[], method: string, other: string): number[] {
  const ds: number[] = [];
  for (const run of runs) {
    const results = arr(run, 'results');
    const m = results.find((r) => r.method === method);
    const o = results.find((r) => r.method === other);
    if (m && o) ds.push(num(m, 'auc') - num(o, 'auc'));
  }
  return ds;
}

/** Mean over seeds of (method − full)'s test AUC, over the runs that have both. */
function pairedDelta(runs: Json[], method: string): number {
  return meanStd(pairedDiffs(runs, method, 'full')).mean;
}

/** Paired differences over seeds: mean ± std and the 95% t-interval of the mean (one seed: the
 *  difference alone; none: a dash). */
function pairedCell(ds: number[]): string {
  if (ds.length === 0) return DASH;
  const { mean, std } = meanStd(ds);
  if (ds.length < 2) return signed(mean, 4);
  return `${signed(mean, 4)} ± ${fx(std, 4)}${interval(meanInterval(ds))}`;
}

/** What the live controller (method `pme`) did over its run, when the file has it. */
function liveLines(pme: Json | undefined): string[] {
  const live = pme?.live;
  if (!isObject(live)) return [];
  return [
    '',
    `pme (the live controller): ${int(num(live, 'windows'))} windows, ${int(num(live, 'promoted'))} tokens searched at D, ${int(num(live, 'moved'))} moved by the threshold, ${int(num(live, 'relieved'))} relieved, ${int(num(live, 'truncated') + num(live, 'evicted'))} by the store's last resort; transfer error ${fx(num(live, 'transferError'), 3)}; peak ${int(num(live, 'peakParams'))} parameters; windows ${fx(num(live, 'windowSeconds'))} s (${fx(num(live, 'searchPasses'), 1)} passes).`,
  ];
}

function renderOffline(ctx: Ctx, dataset: string, main: unknown): string {
  const out: string[] = [];
  const results = arr(main, 'results');
  const full = results.find((r) => r.method === 'full');
  const runs = offlineRuns(ctx, dataset);
  const budgets = [...new Set(runs.map((r) => num(r, 'budget')))].sort((a, b) => a - b);
  const atBudget = (b: number) => runs.filter((r) => num(r, 'budget') === b);
  const mainRuns = atBudget(num(main, 'budget'));
  const seeds = mainRuns.length;
  const fullParams = seedMean(mainRuns, 'full', 'embeddingParams');
  out.push(
    `${int(num(main, 'events.train'))} train / ${int(num(main, 'events.validation'))} validation / ${int(num(main, 'events.test'))} test events, ${int(num(main, 'tokens'))} tokens, D = ${num(main, 'dim')}, budget ${pct(num(main, 'budget'))} of full's embedding parameters; ${seeds} seed${seeds === 1 ? '' : 's'} of the split (mean ± std; the line below and the search figures are seed 1's); pme-paper search ${fx(num(main, 'pmeSearchSeconds'))} s (${fx(num(main, 'searchPasses'), 1)} passes).`,
    ...liveLines(results.find((r) => r.method === 'pme')),
    '',
    mdTable(
      ['method', 'test AUC', 'Δ AUC vs full', 'logloss', 'embedding params', 'of full', 'seconds', 'epochs'],
      METHODS.filter((m) => ofMethod(mainRuns, m).length > 0).map((m) => [
        m,
        seedCell(mainRuns, m, 'auc', 4),
        m === 'full' ? DASH : signed(pairedDelta(mainRuns, m), 4),
        fx(seedMean(mainRuns, m, 'logloss'), 4),
        int(seedMean(mainRuns, m, 'embeddingParams')),
        pct(seedMean(mainRuns, m, 'embeddingParams') / fullParams, 1),
        fx(seedMean(mainRuns, m, 'seconds'), 1),
        fx(seedMean(mainRuns, m, 'epochs'), 1),
      ]),
    ),
  );
  // One point per method and budget: mean parameters, mean test AUC over the seeds (full is the
  // same model at every budget: one point).
  const series: LineSeries[] = METHODS.map((m) => ({
    name: m,
    markers: true,
    points: budgets
      .map((b) => atBudget(b))
      .filter((rs) => ofMethod(rs, m).length > 0)
      .map((rs) => [seedMean(rs, m, 'embeddingParams'), seedMean(rs, m, 'auc')] as [number, number])
      .filter((p, i, all) => all.findIndex((q) => q[0] === p[0]) === i)
      .sort((a, b) => a[0] - b[0]),
  })).filter((x) => x.points.length > 0);
  if (budgets.length > 1) {
    out.push(
      '',
      `Budget sweep (test AUC, mean ± std over seeds):`,
      '',
      mdTable(
        ['budget', ...METHODS],
        budgets.map((b) => [pct(b), ...METHODS.map((m) => seedCell(atBudget(b), m, 'auc', 4))]),
      ),
      '',
      `PME against uniform and MDE on the same splits (test AUC of pme − the other, per seed: mean ± std, and the 95% t-interval of the mean over the seeds; an interval that holds 0 is a tie):`,
      '',
      mdTable(
        ['budget', 'pme − uniform', 'pme − mde'],
        budgets.map((b) => [
          pct(b),
          pairedCell(pairedDiffs(atBudget(b), 'pme', 'uniform')),
          pairedCell(pairedDiffs(atBudget(b), 'pme', 'mde')),
        ]),
      ),
    );
  }
  if (series.length > 0)
    out.push(
      '',
      writeSvg(
        ctx,
        `auc-vs-params-${dataset}.svg`,
        linePlot({
          title: `Test AUC against embedding parameters: ${dataset}`,
          xLabel: 'embedding parameters (log scale)',
          yLabel: 'test AUC',
          xLog: true,
          series,
        }),
      ),
    );
  if (full && ofMethod(mainRuns, 'pme').length > 0) {
    const mean = (m: string) => fx(seedMean(mainRuns, m, 'auc'), 4);
    const has = (m: string) => ofMethod(mainRuns, m).length > 0;
    ctx.headline.push(
      `| Offline ${dataset}: test AUC at a budget of ${pct(num(main, 'budget'))} of the parameters (PME, the live controller, used ${pct(seedMean(mainRuns, 'pme', 'embeddingParams') / fullParams)}) vs full, mean of ${seeds} seed${seeds === 1 ? '' : 's'} | ${mean('pme')} vs ${mean('full')} (${has('pme-paper') ? `pme-paper ${mean('pme-paper')}, ` : ''}uniform ${mean('uniform')}, MDE ${mean('mde')}) |`,
    );
  }
  return out.join('\n');
}

function tierRows(tiers: Json[]): string[][] {
  return tiers.map((t) => [String(t.size), int(num(t, 'tokens')), bytes(num(t, 'bytes'))]);
}

function renderStreamEval(ctx: Ctx, name: string, r: unknown): string {
  const out: string[] = [];
  out.push(
    mdTable(
      [
        'events',
        'events/s',
        'progressive AUC',
        'logloss',
        'last-window AUC',
        'embedding bytes',
        'budget',
        'windows',
      ],
      [
        [
          int(num(r, 'events')),
          int(num(r, 'eventsPerSecond')),
          fx(num(r, 'auc'), 4),
          fx(num(r, 'logloss'), 4),
          fx(num(r, 'windowAuc'), 4),
          bytes(num(r, 'totalEmbeddingBytes')),
          at(r, 'budgetBytes') === null ? 'none' : bytes(num(r, 'budgetBytes')),
          String(arr(r, 'windows').length),
        ],
      ],
    ),
    '',
    'Memory per tier at the end:',
    '',
    mdTable(['size', 'tokens', 'bytes'], tierRows(arr(r, 'tiers'))),
  );
  const windows = arr(r, 'windows');
  if (windows.length > 0)
    out.push(
      '',
      'PME windows:',
      '',
      mdTable(
        ['window', 'searched', 'promoted', 'demoted', 'evicted', 'pause ms', 'AUC before', 'AUC after'],
        windows.map((w) => [
          String(w.id),
          int(num(w, 'searched')),
          int(num(w, 'promoted')),
          int(num(w, 'demoted')),
          int(num(w, 'evicted')),
          fx(num(w, 'longestPauseMs'), 1),
          fx(num(w, 'aucBefore'), 4),
          fx(num(w, 'aucAfter'), 4),
        ]),
      ),
    );
  const timeline = arr(r, 'timeline');
  if (name === 'stream-eval-pme' && timeline.length > 1) {
    const sizes = arr(timeline[0], 'tiers').map((t) => num(t, 'size'));
    out.push(
      '',
      writeSvg(
        ctx,
        'memory-per-tier.svg',
        stackedAreaPlot({
          title: 'Memory per tier over the stream (PME)',
          xLabel: 'events',
          yLabel: 'bytes',
          x: timeline.map((s) => num(s, 'events')),
          series: sizes.map((size) => ({
            name: `size ${size}`,
            values: timeline.map((s) =>
              num(
                arr(s, 'tiers').find((t) => num(t, 'size') === size),
                'bytes',
              ),
            ),
          })),
        }),
      ),
    );
  }
  return out.join('\n');
}

/** Progressive AUC over the stream, full size and PME on one plot (from both timelines). */
function renderAucOverTime(ctx: Ctx, full: unknown, pme: unknown): string | null {
  const series: LineSeries[] = [];
  for (const [label, r] of [
    ['full D=64', full],
    ['PME', pme],
  ] as const) {
    const timeline = arr(r, 'timeline');
    if (timeline.length < 2) continue;
    series.push(
      { name: `${label} cumulative`, points: timeline.map((s) => [num(s, 'events'), num(s, 'auc')]) },
      { name: `${label} window`, points: timeline.map((s) => [num(s, 'events'), num(s, 'windowAuc')]) },
    );
  }
  if (series.length === 0) return null;
  return writeSvg(
    ctx,
    'auc-over-time.svg',
    linePlot({ title: 'Progressive AUC over the stream', xLabel: 'events', yLabel: 'AUC', series }),
  );
}

/** Short names for the api cases, for the plot's x axis (the table keeps the full names). */
function shortCase(name: string): string {
  const verb = name.split(' ')[0];
  if (verb === 'bare') return 'bare route';
  // The catalog size is the last number in the case name ("10,000 items", "(100k catalog)").
  const sizes = [...name.matchAll(/(\d[\d,]*)(k?)\b/g)].map(
    (m) => Number(m[1].replace(/,/g, '')) * (m[2] === 'k' ? 1000 : 1),
  );
  const n = sizes.at(-1);
  return n === undefined ? name.slice(0, 16) : `${verb} ${n >= 1000 ? `${n / 1000}k` : n}`;
}

function renderApi(ctx: Ctx, r: unknown): string {
  const results = arr(r, 'results');
  const out = [
    `${num(r, 'secondsPerCase')} s per case at a steady request rate (open loop, bench/paced.ts: each request written on schedule on a keep-alive socket, latency from its write; the goals are judged on these) while the trainer learns ${int(num(r, 'trainRateTarget'))} events/s in mini-batches of ${int(num(r, 'trainBatch'))}${num(r, 'publishMs') > 0 ? `, scans its changes for the parameter publish every ${int(num(r, 'publishMs'))} ms and snapshots every ${int(num(r, 'snapshotMs'))} ms (the service's defaults)` : ''}. ${num(r, 'serveSyncMs') > 0 ? `As the service serves by default, the API (and the bare route) answer from their own threads, over a copy synced every ${num(r, 'serveSyncMs')} ms; the loop delay is the serving thread's.` : "The API and the bare route answer on the training thread (--serve-sync-ms 0); the loop delay is that thread's."} ${serverFlags(r)}The loop delay is an event loop's delay (a 1 ms timer's lateness) during the case: what a request may wait for before it is read; the client's own is beside it (the load generator shares the 2 cores). Beside them, autocannon at the same overallRate (${num(r, 'autocannon.connections')} connections): it sends each second's quota back to back, then idles, so its figures are those of bursts.`,
    '',
    mdTable(
      [
        'case',
        'target req/s',
        'req/s',
        'p50 ms',
        'p90 ms',
        'p99 ms',
        'max ms',
        'goal p99',
        'trained ev/s',
        'loop delay p99 / max ms',
        'client loop p99 ms',
        'autocannon p50 / p99 ms',
        'errors',
      ],
      results.map((c) => [
        String(c.case),
        int(num(c, 'targetRate')),
        fx(num(c, 'requestsPerSecond'), 0),
        fx(num(c, 'p50Ms'), 1),
        fx(num(c, 'p90Ms'), 1),
        fx(num(c, 'p99Ms'), 1),
        fx(num(c, 'maxMs'), 0),
        c.goalP99Ms === null || c.goalP99Ms === undefined
          ? DASH
          : `≤ ${c.goalP99Ms} ms ${c.met === true ? 'met' : 'missed'}`,
        int(num(c, 'trainedEventsPerSecond')),
        `${fx(num(c, 'stallP99Ms'), 1)} / ${fx(num(c, 'longestStallMs'), 1)}`,
        fx(num(c, 'clientLoopDelayP99Ms'), 1),
        `${fx(num(c, 'autocannon.p50Ms'), 0)} / ${fx(num(c, 'autocannon.p99Ms'), 0)}`,
        int(num(c, 'non2xx') + num(c, 'errors')),
      ]),
    ),
  ];
  const inProcess = at(r, 'inProcessMs');
  if (isObject(inProcess))
    out.push(
      '',
      'Read paths in process (no HTTP, training paused):',
      '',
      mdTable(
        ['catalog items', 'recommend p50 ms', 'recommend p99 ms', 'score p50 ms', 'score p99 ms'],
        Object.entries(inProcess).map(([items, v]) => [
          int(Number(items)),
          fx(num(v, 'recommendMs.p50')),
          fx(num(v, 'recommendMs.p99')),
          fx(num(v, 'scoreMs.p50')),
          fx(num(v, 'scoreMs.p99')),
        ]),
      ),
    );
  if (results.length > 0) {
    out.push(
      '',
      writeSvg(
        ctx,
        'api-latency.svg',
        barPlot({
          title: 'HTTP latency percentiles per route (training running)',
          xLabel: 'route',
          yLabel: 'ms',
          width: 720,
          categories: results.map((c) => shortCase(String(c.case))),
          series: ['p50', 'p90', 'p99'].map((p) => ({
            name: p,
            values: results.map((c) => num(c, `${p}Ms`)),
          })),
        }),
      ),
    );
    for (const c of results.filter((c) => c.goalP99Ms !== null && c.goalP99Ms !== undefined))
      ctx.headline.push(
        `| API ${c.case} at a steady ${int(num(c, 'targetRate'))} req/s, training on: p50 / p99 (goal) | ${fx(num(c, 'p50Ms'), 1)} / ${fx(num(c, 'p99Ms'), 1)} ms (≤ ${c.goalP99Ms}: ${c.met === true ? 'met' : 'missed'}) |`,
      );
  }
  return out.join('\n');
}

function renderTrain(ctx: Ctx, r: unknown): string {
  const results = arr(r, 'results');
  const step = results.find((x) => x.config === 'tier mix' && String(x.path).startsWith('Trainer.learn'));
  if (step)
    ctx.headline.push(
      `| Trainer.learn, FM with a PME tier mix, D = ${num(r, 'dim')} (one core) | ${int(num(step, 'eventsPerSecond'))} events/s |`,
    );
  return [
    `D = ${num(r, 'dim')}, ${num(r, 'tokensPerEvent')} tokens per event, batch ${num(r, 'batch')}, TensorFlow.js backend ${String(at(r, 'backend') ?? DASH)}.`,
    '',
    mdTable(
      ['config', 'path', 'events', 'events/s'],
      results.map((x) => [
        String(x.config),
        String(x.path),
        int(num(x, 'events')),
        int(num(x, 'eventsPerSecond')),
      ]),
    ),
  ].join('\n');
}

function renderStore(ctx: Ctx, r: unknown): string {
  const ratio = num(r, 'bytes.pmeOverUniform');
  if (Number.isFinite(ratio))
    ctx.headline.push(
      `| Store bytes per token, PME tier mix vs uniform D = 64 (params + optimizer + index) | ${fx(num(r, 'bytes.pmeBytesPerToken'), 0)} vs ${fx(num(r, 'bytes.uniformD64BytesPerToken'), 0)} B (${pct(ratio)}) |`,
    );
  return [
    `${int(num(r, 'tokens'))} tokens.`,
    '',
    mdTable(
      ['figure', 'value'],
      [
        ['look-ups/s (Zipf)', int(num(r, 'speed.lookupsPerSecond'))],
        ['warm look-ups/s', int(num(r, 'speed.warmLookupsPerSecond'))],
        ['row updates/s', int(num(r, 'speed.rowUpdatesPerSecond'))],
        [
          'key index bytes per entry: key table vs JS Map',
          `${fx(num(r, 'index.keyTableBytesPerEntry'), 1)} vs ${fx(num(r, 'index.mapBytesPerEntry'), 1)}`,
        ],
        [
          'key index random gets/s: key table vs JS Map',
          `${int(num(r, 'index.keyTableGetsPerSecond'))} vs ${int(num(r, 'index.mapGetsPerSecond'))}`,
        ],
        ['accounted bytes', bytes(num(r, 'memory.accountedBytes'))],
        ['accounted / RSS growth', fx(num(r, 'memory.accountedOverRss'), 3)],
        ['accounted / heap+arrayBuffers growth', fx(num(r, 'memory.accountedOverHeap'), 3)],
        ['PME mix bytes per token', fx(num(r, 'bytes.pmeBytesPerToken'), 1)],
        ['uniform D=64 bytes per token', fx(num(r, 'bytes.uniformD64BytesPerToken'), 1)],
        ['snapshot write MB/s', fx(num(r, 'snapshot.writeMBps'), 1)],
        ['snapshot read MB/s', fx(num(r, 'snapshot.readMBps'), 1)],
      ],
    ),
    '',
    mdTable(
      ['tier size', 'tokens', 'bytes per token'],
      arr(r, 'bytes.perTier').map((t) => [
        String(t.size),
        int(num(t, 'tokens')),
        fx(num(t, 'bytesPerToken'), 1),
      ]),
    ),
  ].join('\n');
}

function renderData(_ctx: Ctx, r: unknown): string {
  const rows: string[][] = [];
  for (const [name, v] of Object.entries(isObject(r) ? r : {})) {
    if (!isObject(v)) continue;
    rows.push([
      name,
      int(num(v, 'events')),
      int(num(v, 'readEventsPerSecond')),
      int(num(v, 'streamEventsPerSecond')),
      int(num(v, 'eventsPerSecond')),
    ]);
  }
  return mdTable(['input', 'events', 'readEvents ev/s', 'streamEvents ev/s', 'generated ev/s'], rows);
}

const E2E_PHASES = ['backlog', 'concurrent'] as const;
/** Rows of the table: the JSON case (a subscribed topic of JSON records, from a backlog) too. */
const E2E_ROWS = [...E2E_PHASES, 'json'] as const;

function renderE2e(ctx: Ctx, r: unknown): string {
  const out = [
    `${num(r, 'partitions')} partitions, broker ${String(at(r, 'broker') ?? DASH)}; producer ${int(num(r, 'produce.eventsPerSecond'))} events/s. Backlog: events produced first, then consumed; concurrent: produced while consumed (events/s from first send to last applied); json: the same events as JSON records on a topic subscribed at runtime, from a backlog${isObject(at(r, 'json')) ? ` (${fx(100 * num(r, 'json.avroShare'), 0)}% of the Avro backlog's events/s)` : ''}.`,
    '',
    mdTable(
      [
        'phase',
        'events',
        'seconds',
        'events/s',
        'sustained events/s',
        'max lag',
        'peak RSS MB',
        'decode s',
        'train s',
        'other s',
      ],
      E2E_ROWS.filter((p) => isObject(at(r, p))).map((p) => [
        p,
        int(num(r, `${p}.events`)),
        fx(num(r, `${p}.seconds`), 1),
        int(p === 'concurrent' ? num(r, `${p}.endToEndEventsPerSecond`) : num(r, `${p}.eventsPerSecond`)),
        int(num(r, `${p}.sustainedEventsPerSecond`)),
        int(num(r, `${p}.maxLag`)),
        int(num(r, `${p}.peakRssMb`)),
        fx(num(r, `${p}.timeSplit.decodeSeconds`), 1),
        fx(num(r, `${p}.timeSplit.trainSeconds`), 1),
        fx(num(r, `${p}.timeSplit.otherSeconds`), 1),
      ]),
    ),
  ];
  const series: LineSeries[] = E2E_PHASES.map((p) => ({
    name: `${p} lag`,
    points: arr(r, `${p}.lagOverTime`).map((x) => [num(x, 't'), num(x, 'lag')] as [number, number]),
  })).filter((x) => x.points.length > 1);
  if (series.length > 0)
    out.push(
      '',
      writeSvg(
        ctx,
        'e2e-lag.svg',
        linePlot({
          title: 'Consumer lag over time (end to end)',
          xLabel: 'seconds since the phase started',
          yLabel: 'lag (events)',
          yMin: 0,
          series,
        }),
      ),
    );
  if (isObject(at(r, 'backlog')))
    ctx.headline.push(
      `| End to end (Kafka → trained state, ${num(r, 'partitions')} partitions): backlog / concurrent events/s, max lag while concurrent | ${int(num(r, 'backlog.eventsPerSecond'))} / ${int(num(r, 'concurrent.endToEndEventsPerSecond'))}, ${int(num(r, 'concurrent.maxLag'))} events |`,
    );
  return out.join('\n');
}

/** Any other result (replica, future ones): its scalar figures, and a plot of a time series if it has one. */
function renderGeneric(ctx: Ctx, name: string, r: unknown): string {
  const out = [
    mdTable(
      ['figure', 'value'],
      flatten(r).filter(([k]) => !/^(machine|node|cpu)/.test(k)),
    ),
  ];
  // A time series: the first array of objects with a time key and numeric fields.
  const timeKey = /^(t|time|seconds|elapsedSeconds|atSeconds|timeSeconds|second)$/;
  const visit = (v: unknown, depth: number): Json[] | null => {
    if (depth > 2 || !isObject(v)) return null;
    for (const x of Object.values(v)) {
      if (
        Array.isArray(x) &&
        x.length > 1 &&
        isObject(x[0]) &&
        Object.keys(x[0]).some((k) => timeKey.test(k))
      )
        return x.filter(isObject);
      const inner = visit(x, depth + 1);
      if (inner) return inner;
    }
    return null;
  };
  const samples = visit(r, 0);
  if (samples) {
    const tk = Object.keys(samples[0]).find((k) => timeKey.test(k))!;
    const keys = Object.keys(samples[0]).filter((k) => k !== tk && typeof samples[0][k] === 'number');
    // One plot per unit family keeps lag (events) and rate (events/s) off a shared y axis.
    const groups = [keys.filter((k) => /lag/i.test(k)), keys.filter((k) => !/lag/i.test(k))];
    groups.forEach((group, i) => {
      if (group.length === 0) return;
      out.push(
        '',
        writeSvg(
          ctx,
          `${name}-over-time${i === 0 ? '-lag' : ''}.svg`,
          linePlot({
            title: `${name}: ${group.join(', ')} over time`,
            xLabel: tk,
            yLabel: i === 0 ? 'lag' : 'value',
            series: group.map((k) => ({ name: k, points: samples.map((s) => [num(s, tk), num(s, k)]) })),
          }),
        ),
      );
    });
  }
  const flat = new Map(flatten(r));
  if (name === 'replica' && flat.has('staleness.p99Seconds'))
    ctx.headline.push(
      `| Replica staleness p99 / catch-up of ${flat.get('catchUp.modelTokens') ?? DASH} tokens | ${flat.get('staleness.p99Seconds')} s / ${flat.get('catchUp.seconds') ?? DASH} s |`,
    );
  return out.join('\n');
}

/** bench/quality.ts: one table per dataset, every system at the rate it chose on the first 20%. */
function renderQuality(r: unknown): string {
  const ms = (x: unknown, path: string) =>
    `${fx(num(x, `${path}.mean`), 4)} ± ${fx(num(x, `${path}.std`), 4)}`;
  const out: string[] = [
    `Every system sees the same exported stream (events, order, features). Each learning rate of a system's grid (${Object.entries(
      (at(r, 'grids') as Json | undefined) ?? {},
    )
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : DASH}`)
      .join(
        '; ',
      )}) is replayed over the first ${pct(num(r, 'protocol.chooseShare'))} of the stream only; the best progressive AUC there is chosen, and that rate's replay of the whole stream is scored on the rest (the figure), by one AUC and logloss function for every system over its per-event pre-learning probabilities. Systems with a random init run ${num(r, 'protocol.seeds')} seeds (mean ± sample std). \\* marks a rate at an end of its grid.`,
  ];
  const cpu = at(r, 'machine.cpu');
  if (typeof cpu === 'string')
    out.push(
      '',
      `Measured on ${num(r, 'machine.cores')} cores (${cpu}), Node ${String(at(r, 'machine.node'))}, load average ${fx(num(r, 'machine.loadAverageBefore.0'))} at start and ${fx(num(r, 'machine.loadAverageAfter.0'))} at the end: events/s move with the load, AUC and logloss do not (every run is seeded).`,
    );
  const versions = at(r, 'peers.versions');
  const missing = at(r, 'peers.missing');
  if (isObject(versions) && Object.keys(versions).length > 0)
    out.push(
      '',
      `Peers: ${Object.entries(versions)
        .map(([k, v]) => `${k} ${String(v)}`)
        .join(', ')}.`,
    );
  if (isObject(missing) && Object.keys(missing).length > 0)
    out.push(
      '',
      `Not run: ${Object.entries(missing)
        .map(([k, v]) => `${k} (${String(v)})`)
        .join('; ')}.`,
    );
  for (const d of arr(r, 'datasets')) {
    out.push('', `### ${String(d.name)}`, '');
    if (typeof d.skipped === 'string') {
      out.push(`Skipped: ${d.skipped}.`);
      continue;
    }
    if (typeof d.about === 'string') out.push(`${d.about}.`, '');
    out.push(
      `${int(num(d, 'events'))} events (positive rate ${fx(num(d, 'positiveRate'), 3)}): rate chosen on the first ${int(num(d, 'chooseEvents'))}, scored on the last ${int(num(d, 'scoredEvents'))}. PME budget ${bytes(num(d, 'pmeBudgetBytes'))} (${pct(num(r, 'protocol.pmeShare'))} of full's ${bytes(num(d, 'fullBytes'))}).`,
      '',
      mdTable(
        [
          'system',
          'lr',
          'AUC last 80%',
          'logloss last 80%',
          'AUC all',
          'AUC last 20%',
          'bytes',
          'events/s',
          'runs',
        ],
        arr(d, 'systems').map((s) =>
          typeof s.skipped === 'string'
            ? [String(s.system), DASH, `skipped: ${s.skipped}`, '', '', '', '', '', '']
            : [
                String(s.system),
                `${String(s.chosenRate)}${s.chosenAtGridEdge === true ? '\\*' : ''}`,
                ms(s, 'summary.restAuc'),
                ms(s, 'summary.restLogloss'),
                fx(num(s, 'summary.allAuc.mean'), 4),
                fx(num(s, 'summary.lastAuc.mean'), 4),
                at(s, 'summary.bytes') === null ? 'n/a' : bytes(num(s, 'summary.bytes')),
                int(num(s, 'summary.eventsPerSecond')),
                String(arr(s, 'runs').length),
              ],
        ),
      ),
    );
    const versus = at(d, 'bestAgainstPeer');
    if (isObject(versus))
      out.push(
        '',
        `Best pme system (${String(versus.pme)}) − best peer (${String(versus.peer)}), AUC last ${pct(1 - num(r, 'protocol.chooseShare'))}: ${signed(num(versus, 'delta'), 4)}, 95% interval ${signed(num(versus, 'ci95.0'), 4)} to ${signed(num(versus, 'ci95.1'), 4)} over resamples of the scored events (a paired block bootstrap, bench/bootstrap.ts; an interval that holds 0 is a tie).`,
      );
  }
  return out.join('\n');
}

// ───────────────────────────── the report ─────────────────────────────

function renderEpochCost(r: unknown): string {
  const rows = arr(r, 'rows').map((x) => [
    String(x.dataset),
    String(x.method),
    x.method === 'full' ? DASH : String(x.projection),
    fx(num(x, 'cpuSecondsPerEpoch'), 3),
    `${fx(num(x, 'ofFull'), 2)}×`,
  ]);
  return [
    `CPU seconds per training epoch of the offline protocol (budget ${num(r, 'budget')}, seed ${num(r, 'seed')}): the median of ${num(r, 'runs')} runs of ${num(r, 'epochs')} epochs, the first dropped, evaluation excluded. Learned: P_s (s × D) per tier, O(s · D) per token; nested (the default): the row is its vector's first s dims, O(s) per token (FmOptions.projection).`,
    '',
    mdTable(['dataset', 'method', 'projection', 'CPU s / epoch', 'of full'], rows),
  ].join('\n');
}

function renderPmeWindows(r: unknown): string {
  const mean = (xs: unknown): number =>
    Array.isArray(xs) && xs.length > 0
      ? xs.reduce((a: number, b) => a + Number(b), 0) / xs.length
      : Number.NaN;
  const rows = arr(r, 'rows').map((x) => {
    const uniform = Array.isArray(x.uniform) ? (x.uniform as Record<string, unknown>[]) : [];
    const memory = Array.isArray(x.memory) ? (x.memory as Record<string, unknown>[]) : [];
    const memoryMean = (k: string) => fx(mean(memory.map((m) => m[k])), 0);
    // A paired difference: mean ± std over seeds, and its 95% interval over the events when given.
    const paired = (path: string) => {
      return `${signed(num(x, `${path}.mean`), 4)} ± ${fx(num(x, `${path}.std`), 4)}${interval(at(x, `${path}.ci95`))}`;
    };
    // A window's AUC step: the mean, its interval over the windows when given, and the worst
    // window, to 5 decimals (the steps are of that order).
    const step = (path: string) =>
      `${signed(num(x, `${path}.mean`), 5)}${interval(at(x, `${path}.ci95`), 5)} (${signed(num(x, `${path}.min`), 5)})`;
    return [
      String(x.dataset),
      pct(num(x, 'share')),
      fx(mean(x.auc), 4),
      uniform.map((u) => `${u.size}: ${fx(mean(u.auc), 4)}`).join(', '),
      x.deltaBestUniform === undefined ? DASH : paired('deltaBestUniform'),
      x.otherTarget === undefined
        ? DASH
        : `${num(x, 'otherTarget.target')}: ${fx(mean(at(x, 'otherTarget.auc')), 4)} (${paired('otherTarget.deltaBestUniform')})`,
      x.deltaPopularity === undefined ? DASH : fx(mean(at(x, 'popularity.auc')), 4),
      x.deltaPopularity === undefined ? DASH : paired('deltaPopularity'),
      fx(mean(x.fullAuc), 4),
      step('probeStep'),
      x.lookaheadStep === undefined ? DASH : step('lookaheadStep'),
      fx(mean(x.prunedByPme), 0),
      memoryMean('relieved'),
      memoryMean('truncated'),
      memoryMean('evicted'),
      bytes(mean(x.bytes)),
    ];
  });
  const seeds = (arr(r, 'rows')[0]?.seeds as unknown[] | undefined)?.length ?? 0;
  return [
    `Progressive AUC over the whole stream in time order, mean over ${seeds} seed${seeds === 1 ? '' : 's'}, default learner. Budgets are shares of full size's bytes (every token at D = ${num(r, 'dim')} with its Adagrad state, and no importance slab: only PME's search reads one); PME's windows prune to the same share (its target: PME frees memory before the budget needs it); each uniform size is held to the same budget by the store's eviction. PME at the other target: target 1, where a window prunes only what the budget needs, so that the budget limits PME as it limits the uniform sizes (its AUC, and its − best uniform paired by seed). Popularity: MDE's rule on running counts (sizes ∝ rank^-alpha per field) at the same windows, target, budget, moves and relief as PME (src/engine/pme/popularity.ts). PME − best uniform and PME − popularity are paired by seed (mean ± std), with the 95% interval of that mean over resamples of the events in brackets: a paired block bootstrap, the stream cut into 50 blocks in time order, 1,000 draws of both runs on the same blocks (bench/bootstrap.ts). An interval that holds 0 is a difference the stream cannot tell from noise. Window step: the AUC of the last events learned, scored just after a window's moves minus just before (mean, the 95% t-interval of that mean over the windows of all seeds in brackets, and the worst window); on the next events: the same for the events the replay learns next, which the model has not seen yet. Pruned by PME, relieved (PME's answer to budget pressure), truncated (the store's last resort) and evicted: tokens per run.`,
    '',
    mdTable(
      [
        'dataset',
        'budget',
        'PME',
        'uniform sizes',
        'PME − best uniform',
        'PME at the other target (− best uniform)',
        'popularity',
        'PME − popularity',
        'full',
        'window step (worst)',
        'on the next events (worst)',
        'pruned by PME',
        'relieved',
        'truncated',
        'evicted',
        'PME bytes',
      ],
      rows,
    ),
  ].join('\n');
}

/** A 95% interval as printed after its difference, when the result has one. */
function interval(ci: unknown, digits = 4): string {
  return Array.isArray(ci) ? ` [${ci.map((v) => signed(Number(v), digits)).join(', ')}]` : '';
}

function renderPlanted(r: unknown): string {
  const summary = arr(r, 'summary');
  const shares = [...new Set(summary.map((x) => x.share).filter((x): x is number => typeof x === 'number'))];
  const full = summary.find((x) => x.method === 'full');
  const ranked = summary.find((x) => x.method === 'planted rank');
  const rows: string[][] = [];
  for (const share of shares) {
    const here = summary.filter((x) => x.share === share);
    const uniform = here.filter((x) => String(x.method).startsWith('uniform'));
    const best = Math.max(...uniform.map((x) => num(x, 'auc.mean')));
    for (const x of here) {
      const auc = num(x, 'auc.mean');
      rows.push([
        pct(share),
        String(x.method),
        `${fx(auc, 4)} ± ${fx(num(x, 'auc.std'), 4)}`,
        String(x.method) === 'pme'
          ? `${signed(auc - best, 4)}${interval(at(x, 'deltaBestUniform.ci95'))}`
          : DASH,
        bytes(num(x, 'bytes')),
        x.rankCorrelation === null || x.rankCorrelation === undefined
          ? DASH
          : fx(num(x, 'rankCorrelation'), 3),
        x.principalRankCorrelation === null || x.principalRankCorrelation === undefined
          ? DASH
          : fx(num(x, 'principalRankCorrelation'), 3),
      ]);
    }
  }
  const seeds = (at(r, 'seeds') as unknown[] | undefined)?.length ?? 0;
  const ranks = at(r, 'plantedRanks');
  return [
    `${int(num(r, 'events'))} events over ${int(num(r, 'users'))} users (Zipf 1) and ${int(num(r, 'items'))} items; each user has a planted rank drawn from ${Array.isArray(ranks) ? ranks.join(', ') : DASH} (the dimensions its preferences need), items all 32. Progressive AUC over the whole stream, ${seeds} seed${seeds === 1 ? '' : 's'}; each uniform size is held to the same bytes by the store's eviction; popularity: MDE's rule on running counts under PME's windows and limit. PME − best uniform: the difference of the means, with its 95% interval in brackets when the run has one (a paired block bootstrap of each seed's stream, 200 draws: bench/bootstrap.ts). Size~rank: Spearman's correlation between a method's final size and the planted rank over the ${int(num(r, 'richUsers'))} users seen at least ${int(num(r, 'minEvents'))} times. Principal dims~rank: the same users' correlation between the principal directions their learned vector needs for 90% of its energy (in the basis of the users' vectors' second moments) and the planted rank: how much of the rank a size could follow in the vectors the method learned.${full ? ` Full size (D = ${num(r, 'dim')}, no budget): ${fx(num(full, 'auc.mean'), 4)}, ${bytes(num(full, 'bytes'))}.` : ''}${ranked ? ` Sizes that follow the planted rank exactly (each user at its rank, items at D, no budget): ${fx(num(ranked, 'auc.mean'), 4)} ± ${fx(num(ranked, 'auc.std'), 4)}, ${bytes(num(ranked, 'bytes'))}.` : ''}`,
    '',
    mdTable(
      ['budget', 'method', 'AUC', 'PME − best uniform', 'bytes', 'size~rank', 'principal dims~rank'],
      rows,
    ),
  ].join('\n');
}

function machineBlock(m: MachineRecord | undefined): string {
  if (!m) return '_Machine not recorded (run `npm run bench` to record it)._';
  return mdTable(
    ['machine', ''],
    [
      ['cores', `${m.cores} × ${m.cpu}`],
      ['memory', bytes(m.memoryBytes)],
      ['Node.js', `${m.node} (${m.platform})`],
      [
        'TensorFlow.js backend',
        `${m.tfjsBackend ?? 'unknown'}${m.tfjsSkipped && m.tfjsSkipped.length > 0 ? ` (not available: ${m.tfjsSkipped.map((x) => x.split(':')[0]).join(', ')})` : ''}`,
      ],
      [
        'Kafka',
        `${m.kafkaVersion}${m.java ? ` (java: ${m.java})` : m.java === null ? ' (no java found)' : ''}`,
      ],
      [
        'load average (1, 5, 15 min)',
        `before ${m.loadAverageBefore?.map((x) => x.toFixed(2)).join(', ') ?? DASH}; after ${m.loadAverageAfter?.map((x) => x.toFixed(2)).join(', ') ?? DASH}`,
      ],
    ],
  );
}

/** Reads the results, writes REPORT.md, the SVGs and headline.md; returns what it wrote. */
export function generateReport(options: ReportOptions): ReportOutput {
  const dir = resolve(options.resultsDir);
  const reportFile = resolve(options.reportFile ?? join(dir, '..', 'REPORT.md'));
  mkdirSync(dir, { recursive: true });
  let all = options.all;
  if (all === undefined) {
    const read = readJson(join(dir, 'all.json'));
    all =
      isObject(read.value) && Array.isArray(read.value.runs)
        ? (read.value as unknown as AllRecord)
        : { runs: [] };
  }
  const ctx: Ctx = {
    dir,
    link: (file) => relative(dirname(reportFile), join(dir, file)).split('\\').join('/'),
    svgs: [],
    headline: [],
  };
  const runs = new Map(all.runs.map((r) => [r.name, r]));
  const sections: SectionOutcome[] = [];
  const body: string[] = [];
  const loaded = new Map<string, unknown>();

  for (const s of SECTIONS) {
    const run = runs.get(s.name);
    const commands = run?.commands ?? [`npm run bench -- --only ${s.name}`];
    const read = readJson(join(dir, s.file), ctx.link(s.file));
    let status: SectionOutcome['status'];
    let reason: string | undefined;
    if (run && run.status !== 'ok') {
      status = run.status;
      reason = run.reason ?? 'no reason recorded';
    } else if (read.error !== undefined) {
      status = 'skipped';
      reason = run ? `it ran but ${read.error}` : `no results: ${read.error}`;
    } else status = 'ok';
    sections.push({ name: s.name, title: s.title, status, reason });
    body.push(`## ${s.title}`, '');
    if (status !== 'ok') {
      body.push(`**${status}**: ${reason}`, '');
    } else {
      loaded.set(s.name, read.value);
      const v = read.value;
      let text: string;
      if (s.name.startsWith('offline-')) text = renderOffline(ctx, s.name.slice('offline-'.length), v);
      else if (s.name.startsWith('stream-eval-')) text = renderStreamEval(ctx, s.name, v);
      else if (s.name === 'api') text = renderApi(ctx, v);
      else if (s.name === 'train') text = renderTrain(ctx, v);
      else if (s.name === 'store') text = renderStore(ctx, v);
      else if (s.name === 'data') text = renderData(ctx, v);
      else if (s.name === 'e2e') text = renderE2e(ctx, v);
      else if (s.name === 'quality') text = renderQuality(v);
      else if (s.name === 'planted' || s.name === 'planted-5m') text = renderPlanted(v);
      else if (s.name === 'pme-windows') text = renderPmeWindows(v);
      else if (s.name === 'epoch-cost') text = renderEpochCost(v);
      else text = renderGeneric(ctx, s.name, v);
      body.push(text, '');
      if (s.name === 'stream-eval-pme') {
        const plot = renderAucOverTime(ctx, loaded.get('stream-eval-full'), v);
        if (plot) body.push(plot, '');
      }
      const meta: string[] = [];
      if (run?.seconds !== undefined) meta.push(`took ${run.seconds.toFixed(0)} s`);
      if (run?.startedAt) meta.push(`started ${run.startedAt}`);
      if (run?.cpu !== undefined && run.cpu !== all?.machine?.cpu) meta.push(`on ${run.cpu}`);
      if (run?.loadAverage) meta.push(`load average ${run.loadAverage.map((x) => x.toFixed(2)).join(', ')}`);
      if (!run) meta.push(`from ${s.file}, not run by bench/all`);
      if (meta.length > 0) body.push(`_${meta.join('; ')}._`, '');
    }
    body.push('Reproduce:', '', '```sh', ...commands, '```', '');
  }

  // Streaming headline needs both replays.
  const full = loaded.get('stream-eval-full');
  const pme = loaded.get('stream-eval-pme');
  const stream: string[] = [];
  if (full)
    stream.push(
      `| Stream replay ml-latest-small, full D = 64: progressive AUC, events/s, memory | ${fx(num(full, 'auc'), 4)}, ${int(num(full, 'eventsPerSecond'))}, ${bytes(num(full, 'totalEmbeddingBytes'))} |`,
    );
  if (pme)
    stream.push(
      `| Stream replay ml-latest-small, PME (budget ${bytes(num(pme, 'budgetBytes'))}${full ? `, ${pct(num(pme, 'budgetBytes') / num(full, 'totalEmbeddingBytes'))} of full's` : ''}): progressive AUC, events/s, memory | ${fx(num(pme, 'auc'), 4)}, ${int(num(pme, 'eventsPerSecond'))}, ${bytes(num(pme, 'totalEmbeddingBytes'))} |`,
    );
  const m = all.machine;
  const headline = [
    '| Figure | Value |',
    '| --- | --- |',
    ...ctx.headline.filter((h) => h.includes('Offline')),
    ...stream,
    ...ctx.headline.filter((h) => !h.includes('Offline')),
    '',
    m
      ? `Measured on ${m.cores} cores (${m.cpu}), Node ${m.node}, TensorFlow.js ${m.tfjsBackend ?? 'unknown'}, Kafka ${m.kafkaVersion}${m.loadAverageBefore ? `, load average ${m.loadAverageBefore[0].toFixed(2)} at start` : ''}. Reproduce with \`npm run bench\` (full report: bench/REPORT.md).`
      : 'Reproduce with `npm run bench` (full report: bench/REPORT.md).',
    '',
  ].join('\n');

  const summary = mdTable(
    ['benchmark', 'status', 'note'],
    sections.map((s) => [s.name, s.status, s.reason ?? '']),
  );
  const markdown = [
    '# Benchmark report',
    '',
    `Generated by \`bench/report.ts\`${all.startedAt ? ` from the run started ${all.startedAt}` : ''}${all.totalSeconds !== undefined ? ` (${(all.totalSeconds / 60).toFixed(1)} min)` : ''}. Reproduce everything with \`npm run bench\` (\`-- --data-dir DIR\`, \`-- --only a,b\`); every section gives its own command.`,
    '',
    machineBlock(m),
    '',
    '## Headline',
    '',
    headline,
    summary,
    '',
    ...body,
  ].join('\n');
  writeFileSync(reportFile, markdown);
  writeFileSync(join(dir, 'headline.md'), headline);
  return { markdown, headline, sections, svgs: ctx.svgs };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const out = generateReport({
    resultsDir: arg('results') ?? join(root, 'bench/results'),
    reportFile: arg('out') ?? join(root, 'bench/REPORT.md'),
  });
  process.stdout.write(`${out.headline}\n`);
  for (const s of out.sections.filter((x) => x.status !== 'ok'))
    process.stdout.write(`${s.name}: ${s.status}: ${s.reason}\n`);
}
