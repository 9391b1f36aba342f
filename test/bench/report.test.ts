import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { type AllRecord, generateReport, SECTIONS } from '../../bench/report.js';
import { barPlot, linePlot, logTicks, niceTicks, stackedAreaPlot } from '../../bench/svg.js';

/** Minimal SVG check: one root <svg> element, closed, and the `<path data-series>` names in order. */
function parseSvg(text: string): { root: boolean; series: string[]; paths: string[] } {
  const open = text.match(/<svg\b[^>]*>/g) ?? [];
  const series = [...text.matchAll(/<path data-series="([^"]*)" d="([^"]*)"/g)];
  return {
    root: open.length === 1 && text.trimStart().startsWith('<svg') && text.trimEnd().endsWith('</svg>'),
    series: series.map((m) => m[1]),
    paths: series.map((m) => m[2]),
  };
}

const live = {
  windows: 4,
  promoted: 30,
  moved: 12,
  relieved: 3,
  truncated: 0,
  evicted: 0,
  transferError: 0.2,
  peakParams: 12000,
  windowSeconds: 0.3,
  searchPasses: 0.5,
};
const offline = (budget: number, methods: Array<[string, number, number]>) => ({
  results: methods.map(([method, auc, embeddingParams]) => ({
    method,
    auc,
    logloss: 0.5,
    embeddingParams,
    seconds: 1.5,
    epochs: 3,
    ...(method === 'pme' ? { live } : {}),
  })),
  pmeSearchSeconds: 0.4,
  searchPasses: 1.2,
  budget,
  dim: 64,
  tokens: 1000,
  events: { train: 800, validation: 100, test: 100 },
});

const tiers = (scale: number) =>
  [0, 2, 4, 8, 16, 32, 64].map((size) => ({ size, tokens: 10 * scale, bytes: (size + 1) * 100 * scale }));
const timeline = (aucStart: number) =>
  [1, 2, 3, 4].map((k) => ({
    events: k * 1000,
    seconds: k * 0.1,
    auc: aucStart + k * 0.01,
    logloss: 0.6,
    windowAuc: aucStart + k * 0.02,
    totalBytes: 1000 * k,
    tiers: tiers(k),
  }));

function writeFakes(dir: string): void {
  const w = (name: string, v: unknown) => writeFileSync(join(dir, name), JSON.stringify(v));
  w(
    'offline-ml-latest-small.json',
    offline(0.2, [
      ['full', 0.781, 64000],
      ['uniform', 0.772, 12000],
      ['mde', 0.774, 12800],
      ['pme', 0.7791, 12800],
      ['pme-paper', 0.7795, 12790],
    ]),
  );
  // A second seed of the main budget: the tables give mean ± std and the paired Δ.
  w(
    'offline-ml-latest-small-s2.json',
    offline(0.2, [
      ['full', 0.783, 64000],
      ['uniform', 0.77, 12000],
      ['mde', 0.776, 12800],
      ['pme', 0.7831, 12800],
      ['pme-paper', 0.7805, 12790],
    ]),
  );
  w(
    'offline-ml-latest-small-b0.1.json',
    offline(0.1, [
      ['uniform', 0.761, 6000],
      ['mde', 0.765, 6400],
      ['pme', 0.7702, 6400],
    ]),
  );
  w(
    'offline-criteo-sample.json',
    offline(0.2, [
      ['full', 0.7, 50000],
      ['pme', 0.69, 10000],
    ]),
  );
  // avazu: no file at all; its run record below says why.
  w('stream-eval-ml-full.json', {
    events: 4000,
    eventsPerSecond: 50000,
    auc: 0.77,
    logloss: 0.57,
    windowAuc: 0.8,
    totalEmbeddingBytes: 6_000_000,
    budgetBytes: null,
    tiers: tiers(1),
    windows: [],
    timeline: timeline(0.7),
  });
  w('stream-eval-ml-pme.json', {
    events: 4000,
    eventsPerSecond: 40000,
    auc: 0.765,
    logloss: 0.58,
    windowAuc: 0.79,
    totalEmbeddingBytes: 1_400_000,
    budgetBytes: 1_500_000,
    tiers: tiers(4),
    windows: [
      {
        id: 1,
        searched: 50,
        promoted: 50,
        demoted: 20,
        evicted: 0,
        longestPauseMs: 12.5,
        aucBefore: 0.75,
        aucAfter: 0.76,
      },
    ],
    timeline: timeline(0.69),
  });
  w('api.json', {
    secondsPerCase: 5,
    trainRateTarget: 10000,
    serverNodeFlags: ['--max-semi-space-size=32'],
    autocannon: { connections: 8 },
    results: [
      {
        case: 'bare fastify route',
        targetRate: 1000,
        requestsPerSecond: 999,
        p50Ms: 0,
        p90Ms: 1,
        p99Ms: 3,
        maxMs: 9,
        goalP99Ms: null,
        met: null,
        non2xx: 0,
        errors: 0,
        trainedEventsPerSecond: 9990,
      },
      {
        case: 'recommend k=10 over 10,000 items',
        targetRate: 1000,
        requestsPerSecond: 998,
        p50Ms: 2,
        p90Ms: 4,
        p99Ms: 8,
        maxMs: 20,
        goalP99Ms: 10,
        met: true,
        non2xx: 0,
        errors: 0,
        trainedEventsPerSecond: 9980,
        longestStallMs: 3.4,
        stallP99Ms: 1.2,
        clientLoopDelayP99Ms: 2.5,
        autocannon: { p50Ms: 3, p99Ms: 12 },
      },
    ],
    inProcessMs: { '10000': { recommendMs: { p50: 0.3, p99: 1.2 }, scoreMs: { p50: 0.2, p99: 0.9 } } },
  });
  w('e2e.json', {
    partitions: 4,
    broker: 'local',
    produce: { eventsPerSecond: 60000 },
    backlog: {
      events: 1000,
      seconds: 2,
      eventsPerSecond: 500,
      maxLag: 900,
      lagOverTime: [
        { t: 0.5, lag: 900, applied: 100 },
        { t: 1, lag: 400, applied: 600 },
        { t: 1.5, lag: 0, applied: 1000 },
      ],
    },
    concurrent: {
      events: 1000,
      seconds: 3,
      endToEndEventsPerSecond: 333,
      maxLag: 50,
      lagOverTime: [
        { t: 0.5, lag: 50, applied: 1100 },
        { t: 1, lag: 0, applied: 2000 },
      ],
    },
  });
  w('replica.json', {
    staleness: { p50Seconds: 0.5, p99Seconds: 1.25 },
    catchUp: { modelTokens: 5000, seconds: 3.5 },
  });
  const ms = (mean: number, std: number) => ({ mean, std });
  w('quality.json', {
    protocol: { chooseShare: 0.2, seeds: 3, pmeShare: 0.25 },
    grids: { 'pme fm full': [0.01, 0.03], 'river-fm': [0.003, 0.01] },
    peers: { versions: { vowpalwabbit: '9.11.9' }, missing: { river: 'pip install river failed' } },
    machine: {
      cores: 2,
      cpu: 'Fake CPU',
      node: 'v20.0.0',
      loadAverageBefore: [3.5, 1, 1],
      loadAverageAfter: [4, 1, 1],
    },
    datasets: [
      {
        name: 'ml-latest-small',
        events: 1000,
        positiveRate: 0.5,
        chooseEvents: 200,
        scoredEvents: 800,
        fullBytes: 4096,
        pmeBudgetBytes: 1024,
        systems: [
          {
            system: 'pme fm full',
            chosenRate: 0.01,
            chosenAtGridEdge: true,
            runs: [{}, {}, {}],
            summary: {
              restAuc: ms(0.78, 0.0012),
              restLogloss: ms(0.56, 0.001),
              allAuc: ms(0.77, 0),
              lastAuc: ms(0.8, 0),
              bytes: 4096,
              eventsPerSecond: 12345,
            },
          },
          { system: 'river-fm', skipped: 'pip install river failed' },
        ],
        bestAgainstPeer: { pme: 'pme fm full', peer: 'vw-linear', delta: 0.0016, ci95: [-0.0004, 0.0035] },
      },
      { name: 'avazu-sample', skipped: 'x/train.csv not found' },
      {
        name: 'planted (synthetic)',
        about: "bench:planted's stream, seed 1",
        events: 2000,
        positiveRate: 0.3,
        chooseEvents: 400,
        scoredEvents: 1600,
        fullBytes: 8192,
        pmeBudgetBytes: 2048,
        systems: [{ system: 'river-fm', skipped: 'pip install river failed' }],
      },
    ],
  });
  w('planted.json', {
    events: 2000,
    users: 400,
    items: 50,
    dim: 64,
    plantedRanks: [2, 32],
    minEvents: 20,
    richUsers: 37,
    seeds: [1, 2],
    summary: [
      { method: 'full', share: null, auc: ms(0.7, 0.001), bytes: 40960, rankCorrelation: null },
      {
        method: 'pme',
        share: 0.1,
        auc: ms(0.68, 0.002),
        bytes: 4000,
        rankCorrelation: 0.412,
        principalRankCorrelation: 0.5,
        deltaBestUniform: { against: 'uniform 16', mean: 0.01, ci95: [0.005, 0.015] },
      },
      { method: 'uniform 8', share: 0.1, auc: ms(0.66, 0.001), bytes: 3900, rankCorrelation: null },
      { method: 'uniform 16', share: 0.1, auc: ms(0.67, 0.001), bytes: 4090, rankCorrelation: null },
    ],
  });
  w('pme-windows.json', {
    dim: 64,
    rows: [
      {
        dataset: 'ml-latest-small',
        share: 0.25,
        fullBytes: 1000,
        seeds: [1, 2],
        auc: [0.78, 0.782],
        bytes: [250, 250],
        probeStep: { mean: -0.001, min: -0.004, windows: 8, ci95: [-0.0021, 0.00005] },
        lookaheadStep: { mean: 0.0005, min: -0.002, windows: 8 },
        otherTarget: {
          target: 1,
          auc: [0.783, 0.784],
          bytes: [250, 250],
          deltaBestUniform: { mean: 0.0015, std: 0.001, ci95: [0.0002, 0.003] },
        },
        prunedByPme: [10, 12],
        memory: [
          { relieved: 3, truncated: 0, evicted: 40 },
          { relieved: 5, truncated: 0, evicted: 60 },
        ],
        fullAuc: [0.79, 0.79],
        uniform: [
          { size: 8, auc: [0.775, 0.777], bytes: [240, 240] },
          { size: 16, auc: [0.783, 0.781], bytes: [250, 250] },
        ],
        bestUniform: { size: 16, auc: ms(0.782, 0.001) },
        deltaBestUniform: { ...ms(-0.001, 0.0028), ci95: [-0.003, 0.0012] },
        popularity: { auc: [0.779, 0.779], bytes: [250, 250] },
        deltaPopularity: ms(0.002, 0.001),
      },
    ],
  });
  // store, train, data: no files and no run records.
  writeFileSync(join(dir, 'train.json'), '{ not json');
}

const ALL: AllRecord = {
  machine: {
    cores: 2,
    cpu: 'Fake CPU',
    memoryBytes: 8 * 2 ** 30,
    node: 'v20.0.0',
    platform: 'linux test',
    tfjsBackend: 'wasm',
    tfjsSkipped: ['tfjs-node: not installed'],
    kafkaVersion: '9.9.9',
    java: null,
    loadAverageBefore: [0.5, 0.4, 0.3],
    loadAverageAfter: [1, 0.9, 0.8],
  },
  runs: [
    {
      name: 'offline-ml-latest-small',
      status: 'ok',
      commands: ['node dist/src/cli/main.js offline --budget 0.2'],
      seconds: 12,
    },
    {
      name: 'offline-avazu-sample',
      status: 'skipped',
      reason: 'data/avazu/train.csv not found',
      commands: ['node x'],
    },
    {
      name: 'pme-windows',
      status: 'ok',
      commands: ['node dist/bench/pme-windows.js'],
      cpu: 'Other CPU',
    },
    {
      name: 'replica',
      status: 'failed',
      reason: 'exited with 1: broker down',
      commands: ['node dist/bench/replica.js'],
    },
  ],
};

t.test('report from fake results: tables, plots, skipped sections with reasons', async (t) => {
  const root = t.testdir({ results: {} });
  const dir = join(root, 'results');
  writeFakes(dir);
  const out = generateReport({ resultsDir: dir, reportFile: join(root, 'REPORT.md'), all: ALL });
  const md = readFileSync(join(root, 'REPORT.md'), 'utf8');
  t.equal(md, out.markdown);

  // One section per known benchmark, with a status each.
  t.same(
    out.sections.map((s) => s.name),
    SECTIONS.map((s) => s.name),
  );
  const status = Object.fromEntries(out.sections.map((s) => [s.name, s]));
  t.equal(status['offline-ml-latest-small'].status, 'ok');
  t.equal(status['offline-avazu-sample'].status, 'skipped');
  t.match(status['offline-avazu-sample'].reason, /avazu\/train\.csv not found/);
  t.equal(status.replica.status, 'failed', 'a failed run is not rendered from its stale file');
  t.match(md, /\*\*failed\*\*: exited with 1: broker down/);
  t.equal(status.store.status, 'skipped');
  t.match(status.store.reason, /store\.json not found/);
  t.match(status.train.reason, /train\.json is not valid JSON/);
  t.equal(status.e2e.status, 'ok');

  // Offline table: one row per method with the AUC and the delta to full, plus the budget sweep.
  t.match(md, /\| pme \| 0\.7811 ± 0\.0028 \| -0\.0009 \| 0\.5000 \| 12,800 \| 20\.0% \| 1\.5 \| 3\.0 \|/);
  t.match(md, /\| full \| 0\.7820 ± 0\.0014 \| – \|/);
  t.match(md, /2 seeds of the split \(mean ± std;/);
  t.match(
    md,
    /\| 20% \| 0\.7820 ± 0\.0014 \| 0\.7710 ± 0\.0014 \| 0\.7750 ± 0\.0014 \| 0\.7811 ± 0\.0028 \| 0\.7800 ± 0\.0007 \|/,
  );
  t.match(md, /\| 10% \| – \| 0\.7610 \| 0\.7650 \| 0\.7702 \| – \|/);
  // PME against uniform and MDE, paired by seed: 2 seeds at 20% (t with 1 degree of freedom), 1 at 10%.
  t.match(
    md,
    /\| 20% \| \+0\.0101 ± 0\.0042 \[-0\.0280, \+0\.0482\] \| \+0\.0061 ± 0\.0014 \[-0\.0066, \+0\.0188\] \|/,
  );
  t.match(md, /\| 10% \| \+0\.0092 \| \+0\.0052 \|/);
  t.match(md, /\| pme-paper \| 0\.7800 ± 0\.0007 \|/, 'the paper protocol has its own row');
  t.match(md, /pme \(the live controller\): 4 windows, 30 tokens searched at D, 12 moved by the threshold/);
  t.match(md, /node dist\/src\/cli\/main\.js offline --budget 0\.2/, 'the command from the run record');
  t.match(md, /npm run bench -- --only stream-eval-full/, 'a default command without a run record');
  // Stream tables, windows, api, e2e, machine.
  t.match(md, /\| 4,000 \| 40,000 \| 0\.7650 \| 0\.5800 \| 0\.7900 \| 1\.3 MiB \| 1\.4 MiB \| 1 \|/);
  t.match(md, /\| 1 \| 50 \| 50 \| 20 \| 0 \| 12\.5 \| 0\.7500 \| 0\.7600 \|/);
  t.match(
    md,
    /\| recommend k=10 over 10,000 items \| 1,000 \| 998 \| 2\.0 \| 4\.0 \| 8\.0 \| 20 \| ≤ 10 ms met \| 9,980 \| 1\.2 \/ 3\.4 \| 2\.5 \| 3 \/ 12 \|/,
  );
  t.match(md, /The server runs with the Node flags --max-semi-space-size=32\./, 'the API server flags');
  t.match(md, /\| backlog \| 1,000 \| 2\.0 \| 500 \|/);
  t.match(md, /\| cores \| 2 × Fake CPU \|/);
  // Quality: one table per dataset, the rate (\* at a grid end), mean ± std, skipped rows and datasets.
  t.equal(status.quality.status, 'ok');
  t.match(
    md,
    /\| pme fm full \| 0\.01\\\* \| 0\.7800 ± 0\.0012 \| 0\.5600 ± 0\.0010 \| 0\.7700 \| 0\.8000 \| 4\.0 KiB \| 12,345 \| 3 \|/,
  );
  t.match(md, /\| river-fm \| – \| skipped: pip install river failed \|/);
  // Planted: PME against the best uniform size at the same bytes, and how sizes track the ranks.
  t.equal(status.planted.status, 'ok');
  t.match(
    md,
    /\| 10% \| pme \| 0\.6800 ± 0\.0020 \| \+0\.0100 \[\+0\.0050, \+0\.0150\] \| 3\.9 KiB \| 0\.412 \| 0\.500 \|/,
  );
  t.match(md, /\| 10% \| uniform 16 \| 0\.6700 ± 0\.0010 \| – \| 4\.0 KiB \| – \| – \|/);
  t.match(
    md,
    /planted rank drawn from 2, 32 \(the dimensions its preferences need\), items all 32\. Progressive AUC over the whole stream, 2 seeds;/,
  );
  t.match(md, /over the 37 users seen at least 20 times\. Principal dims~rank: /);
  t.match(md, /in the vectors the method learned\. Full size \(D = 64, no budget\): 0\.7000/);
  // Streaming PME against every uniform size at the same budget, paired by seed.
  t.equal(status['pme-windows'].status, 'ok');
  t.match(
    md,
    /\| ml-latest-small \| 25% \| 0\.7810 \| 8: 0\.7760, 16: 0\.7820 \| -0\.0010 ± 0\.0028 \[-0\.0030, \+0\.0012\] \| 1: 0\.7835 \(\+0\.0015 ± 0\.0010 \[\+0\.0002, \+0\.0030\]\) \| 0\.7790 \| \+0\.0020 ± 0\.0010 \| 0\.7900 \| -0\.00100 \[-0\.00210, \+0\.00005\] \(-0\.00400\) \| \+0\.00050 \(-0\.00200\) \| 11 \| 4 \| 0 \| 50 \| 250 B \|/,
  );
  t.match(md, /mean over 2 seeds, default learner/);
  t.match(
    md,
    /with the 95% interval of that mean over resamples of the events in brackets: a paired block bootstrap/,
  );
  // A section run on another CPU than the machine record says so.
  t.match(md, /_on Other CPU\._/);
  t.match(md, /### avazu-sample\n\nSkipped: x\/train\.csv not found\./);
  t.match(
    md,
    /### planted \(synthetic\)\n\nbench:planted's stream, seed 1\.\n\n2,000 events \(positive rate 0\.300\)/,
    'a stream that is not a file says what it is',
  );
  t.match(md, /Not run: river \(pip install river failed\)\./);
  t.match(
    md,
    /Best pme system \(pme fm full\) − best peer \(vw-linear\), AUC last 80%: \+0\.0016, 95% interval -0\.0004 to \+0\.0035 over resamples/,
  );
  t.match(
    md,
    /Measured on 2 cores \(Fake CPU\), Node v20\.0\.0, load average 3\.50 at start and 4\.00 at the end/,
  );
  t.match(md, /wasm \(not available: tfjs-node\)/);
  t.match(md, /9\.9\.9 \(no java found\)/);

  // Plots: referenced from the report, written, valid, one path per series.
  const expected: Record<string, string[]> = {
    'auc-vs-params-ml-latest-small.svg': ['full', 'uniform', 'mde', 'pme', 'pme-paper'],
    'auc-vs-params-criteo-sample.svg': ['full', 'pme'],
    'memory-per-tier.svg': [0, 2, 4, 8, 16, 32, 64].map((s) => `size ${s}`),
    'auc-over-time.svg': ['full D=64 cumulative', 'full D=64 window', 'PME cumulative', 'PME window'],
    'api-latency.svg': ['p50', 'p90', 'p99'],
    'e2e-lag.svg': ['backlog lag', 'concurrent lag'],
  };
  t.same(out.svgs.map((p) => p.slice(dir.length + 1)).sort(), Object.keys(expected).sort());
  for (const [file, series] of Object.entries(expected)) {
    t.match(md, `](results/${file})`, `${file} is referenced`);
    const svg = parseSvg(readFileSync(join(dir, file), 'utf8'));
    t.ok(svg.root, `${file} has one root <svg>`);
    t.same(svg.series, series, `${file} has a path per series`);
    for (const d of svg.paths) t.match(d, /^M[\d.]+,[\d.]+/, `${file}: paths start with a move to a point`);
  }
  // The sweep: uniform has two points (two budgets), full one.
  const aucSvg = readFileSync(join(dir, 'auc-vs-params-ml-latest-small.svg'), 'utf8');
  const uniform = parseSvg(aucSvg).paths[1];
  t.equal(uniform.match(/[ML]/g)?.length, 2);

  // Headline: written, with the offline, stream, api, e2e figures and the reproduce command.
  const headline = readFileSync(join(dir, 'headline.md'), 'utf8');
  t.equal(headline, out.headline);
  t.match(
    headline,
    /Offline ml-latest-small.*mean of 2 seeds \| 0\.7811 vs 0\.7820 \(pme-paper 0\.7800, uniform 0\.7710, MDE 0\.7750\) \|/,
  );
  t.match(headline, /PME \(budget 1\.4 MiB, 25% of full's\).*\| 0\.7650, 40,000, 1\.3 MiB \|/);
  t.match(
    headline,
    /recommend k=10 over 10,000 items at a steady 1,000 req\/s.*\| 2\.0 \/ 8\.0 ms \(≤ 10: met\) \|/,
  );
  t.match(headline, /backlog \/ concurrent events\/s.*\| 500 \/ 333, 50 events \|/);
  t.notMatch(headline, /Replica/, 'no headline from a failed run');
  t.match(headline, /npm run bench/);
});

t.test('report without all.json: every section says why it is missing', async (t) => {
  const root = t.testdir({ results: {} });
  const dir = join(root, 'results');
  const out = generateReport({ resultsDir: dir });
  t.equal(out.svgs.length, 0);
  t.ok(out.sections.every((s) => s.status === 'skipped' && /not found/.test(s.reason ?? '')));
  const md = readFileSync(join(root, 'REPORT.md'), 'utf8');
  t.match(md, /Machine not recorded/);
  // all.json in the folder is picked up when no record is passed.
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'all.json'),
    JSON.stringify({ runs: [{ name: 'api', status: 'skipped', reason: 'no autocannon', commands: [] }] }),
  );
  const again = generateReport({ resultsDir: dir });
  t.equal(again.sections.find((s) => s.name === 'api')?.reason, 'no autocannon');
});

t.test('svg writers', async (t) => {
  t.same(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  t.same(logTicks(3, 5), [1000, 2000, 5000, 10000, 20000, 50000, 100000]);
  t.same(logTicks(1, 9), [10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]);
  const line = linePlot({
    title: 'a < b & "c"',
    xLabel: 'x',
    yLabel: 'y',
    xLog: true,
    series: [
      {
        name: 's',
        points: [
          [0, 1],
          [10, 2],
          [100, Number.NaN],
          [1000, 3],
        ],
      },
    ],
  });
  t.match(line, /<title>a &lt; b &amp; &quot;c&quot;<\/title>/, 'text is escaped');
  t.equal(
    parseSvg(line).paths[0].match(/[ML]/g)?.length,
    2,
    'non-positive x on a log axis and NaN are dropped',
  );
  const stacked = parseSvg(
    stackedAreaPlot({
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      x: [0, 1],
      series: [
        { name: 'a', values: [1, 1] },
        { name: 'b', values: [1, 2] },
      ],
    }),
  );
  t.same(stacked.series, ['a', 'b']);
  t.ok(
    stacked.paths.every((d) => d.endsWith('Z')),
    'areas are closed',
  );
  const bars = parseSvg(
    barPlot({
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      categories: ['c1', 'c2'],
      series: [{ name: 'p50', values: [1, 2] }],
    }),
  );
  t.equal(bars.paths[0].match(/M/g)?.length, 2, 'one rectangle per category');
});
