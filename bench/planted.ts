/**
 * A stream where sizes matter: a synthetic workload with a heavy tail of users, each with a
 * planted rank (the dimensions its preferences need: 2 to 32), replayed in order through PME and
 * through every single uniform size held to the same bytes and popularity-scaled sizes (MDE's rule
 * on running counts, src/engine/pme/popularity.ts), beside full size. Reports progressive
 * AUC per budget and how well PME's chosen sizes track the planted ranks (Spearman's rank
 * correlation over the users seen at least --min-events times, and the mean size per planted
 * rank). Beside them, how well the rank shows in the learned vectors themselves: the dimensions a
 * user's vector needs for 90% of its energy in the principal basis of the users' vectors (what a
 * size could follow), against its planted rank; and the AUC of sizes that follow the planted rank
 * exactly (each user at its rank, no budget: what tracking the rank would buy). PME against the
 * best uniform size and popularity comes with the 95% interval over resamples of each seed's
 * stream (bootstrap.ts). Writes bench/results/planted.json (or --out).
 * `--learner` sets model options (FmOptions' names, e.g. '{"projection":"nested"}') for every
 * replay.
 *
 *   npm run bench:planted -- [--events 2000000] [--users 400000] [--items 20000]
 *     [--shares 0.1,0.25,0.5] [--seeds 1,2,3] [--min-events 200] [--pme-options JSON] [--start-size S]
 *     [--evicted-buckets N] [--learner JSON] [--out FILE]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type StreamEvalOptions, type StreamEvalResult, streamEval } from '../src/engine/stream-eval.js';
import { numberArg, stringArg } from './args.js';
import { pairedAucBootstrap } from './bootstrap.js';
import { PLANTED_RANKS, plantedStream } from './planted-stream.js';
import { meanStd } from './quality-core.js';

const EVENTS = numberArg('events', 2_000_000);
const USERS = numberArg('users', 400_000);
const ITEMS = numberArg('items', 20_000);
const SHARES = (stringArg('shares') ?? '0.1,0.25,0.5').split(',').map(Number);
const SEEDS = (stringArg('seeds') ?? '1,2,3').split(',').map(Number);
/** PME controller options for an experiment (e.g. '{"hotThreshold":20}'). Default none. */
const PME_OPTIONS = JSON.parse(stringArg('pme-options') ?? '{}');
/** Model options for every replay (e.g. '{"projection":"nested"}'). Default none. */
const LEARNER = JSON.parse(stringArg('learner') ?? '{}') as NonNullable<StreamEvalOptions['learner']>;
/** PME's start size (an experiment; default pmeStartSize's: 8 at 10%, 16 at 25% and 50%). */
const START_SIZE = stringArg('start-size');
/** Buckets of the store's evicted-weights table for every replay (0: off; default the store's). */
const EVICTED_BUCKETS = stringArg('evicted-buckets');
const OUT = stringArg('out') ?? 'bench/results/planted.json';
const MIN_EVENTS = numberArg('min-events', 200);
const DIM = 64;
const UNIFORM_SIZES = [4, 8, 16, 32];

/** Ranks 1..n of `values`, ties given their mean rank. */
function ranks(values: readonly number[]): Float64Array {
  const order = Array.from(values.keys()).sort((a, b) => values[a] - values[b]);
  const r = new Float64Array(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && values[order[j + 1]] === values[order[i]]) j++;
    for (let k = i; k <= j; k++) r[order[k]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

/** Spearman's rank correlation of two equally long lists (NaN when either is constant). */
function spearman(a: readonly number[], b: readonly number[]): number {
  const ra = ranks(a);
  const rb = ranks(b);
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += ra[i] / n;
    mb += rb[i] / n;
  }
  let cov = 0;
  let va = 0;
  let vb = 0;
  for (let i = 0; i < n; i++) {
    cov += (ra[i] - ma) * (rb[i] - mb);
    va += (ra[i] - ma) ** 2;
    vb += (rb[i] - mb) ** 2;
  }
  return cov / Math.sqrt(va * vb);
}

const mean = (a: number[]) => meanStd(a).mean;

/** Eigenvectors of the symmetric n×n matrix `a` (row-major), by cyclic Jacobi rotations, as the
 *  rows of the result, largest eigenvalue first. Small n only (O(n³) a sweep). */
function eigenvectors(a: Float64Array, n: number): Float64Array[] {
  const m = Float64Array.from(a);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 50; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += m[i * n + i] ** 2;
      for (let j = i + 1; j < n; j++) off += m[i * n + j] ** 2;
    }
    if (off <= 1e-24 * diag) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q];
        if (apq === 0) continue;
        const theta = (m[q * n + q] - m[p * n + p]) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const kp = m[k * n + p];
          const kq = m[k * n + q];
          m[k * n + p] = c * kp - s * kq;
          m[k * n + q] = s * kp + c * kq;
        }
        for (let k = 0; k < n; k++) {
          const pk = m[p * n + k];
          const qk = m[q * n + k];
          m[p * n + k] = c * pk - s * qk;
          m[q * n + k] = s * pk + c * qk;
        }
        for (let k = 0; k < n; k++) {
          const kp = v[k * n + p];
          const kq = v[k * n + q];
          v[k * n + p] = c * kp - s * kq;
          v[k * n + q] = s * kp + c * kq;
        }
      }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => m[y * n + y] - m[x * n + x]);
  return order.map((i) => {
    const e = new Float64Array(n);
    for (let k = 0; k < n; k++) e[k] = v[k * n + i];
    return e;
  });
}

/**
 * Per vector, the principal directions (of all of `vectors`' second moments) it needs for 90% of
 * its energy: the size it would need in a basis ordered by what the users share.
 */
function principalDims(vectors: readonly Float64Array[]): number[] {
  const n = vectors[0].length;
  const moments = new Float64Array(n * n);
  for (const x of vectors)
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) moments[i * n + j] += x[i] * x[j];
  const basis = eigenvectors(moments, n);
  return vectors.map((x) => {
    const energy = basis.map((e) => {
      let dot = 0;
      for (let k = 0; k < n; k++) dot += e[k] * x[k];
      return dot * dot;
    });
    const total = energy.reduce((a, b) => a + b, 0);
    let k = 0;
    for (let sum = 0; k < n && sum < 0.9 * total; k++) sum += energy[k];
    return k;
  });
}

interface Run {
  method: string;
  share: number | null;
  seed: number;
  auc: number;
  logloss: number;
  bytes: number;
  seconds: number;
  evicted: number;
  /** Share of the budget's last evictions whose token was warm (PME's warmEvictions; 0 else). */
  warmEvictions: number;
  /** Sized runs (PME, popularity): Spearman(size, planted rank) over the users seen >= MIN_EVENTS
   *  times. */
  rankCorrelation: number | null;
  /** Sized runs: mean final size of those users per planted rank. */
  sizeByRank: Record<number, number> | null;
  /** Sized runs (PME, popularity): Spearman(principal dimensions a user's learned vector needs
   *  for 90% of its energy, planted rank), same users. */
  principalRankCorrelation: number | null;
  /** Sized runs: per planted rank, the mean share of a vector's energy in its first LEADING dims,
   *  over those users at size D (what a cut to LEADING dims would keep; LEADING / D when no dim
   *  is worth more than another). */
  leadingEnergyByRank: Record<number, number> | null;
}

/** The leading dims leadingEnergyByRank measures. */
const LEADING = 8;

async function main(): Promise<void> {
  const runs: Run[] = [];
  /** Per `method|share`, each seed's per-event probabilities (for the paired intervals), and each
   *  seed's labels (one array per stream: the seeds' streams differ). */
  const predictions = new Map<string, Float32Array[]>();
  const labelsOf: Float32Array[] = [];
  let counted = 0;
  for (const seed of SEEDS) {
    const t0 = performance.now();
    const { workload: w, ...input } = plantedStream(seed, EVENTS, USERS, ITEMS);
    const seen = new Map<string, number>();
    for (const e of input.events) seen.set(e.user, (seen.get(e.user) ?? 0) + 1);
    const rich = [...seen].filter(([, n]) => n >= MIN_EVENTS).map(([u]) => u);
    const richKeys = new Set(rich.map((u) => `user=${u}`));
    counted = rich.length;
    console.log(
      `seed ${seed}: ${EVENTS.toLocaleString('en-US')} events, ${seen.size.toLocaleString('en-US')} users seen, ${rich.length} seen >= ${MIN_EVENTS} times (${((performance.now() - t0) / 1000).toFixed(1)} s to generate)`,
    );
    const base: StreamEvalOptions = {
      input,
      dim: DIM,
      pme: false,
      windowEvents: Math.round(EVENTS / 10),
      negatives: 0,
      batch: 256,
      seed,
      learner: LEARNER,
      ...(EVICTED_BUCKETS === undefined ? {} : { evictedBuckets: Number(EVICTED_BUCKETS) }),
    };
    const labels = Float32Array.from(input.events, (e) => e.label);
    labelsOf.push(labels);
    /** A replay of this seed's stream, its probabilities kept in learning order. */
    const replay = async (o: StreamEvalOptions) => {
      const p = new Float32Array(labels.length);
      let at = 0;
      const r = await streamEval({
        ...o,
        onPrediction: (q, label) => {
          // The paired intervals need the stream's own order (no negatives are drawn here).
          if (label !== labels[at]) throw new Error(`planted seed ${seed}: event ${at} learned out of order`);
          p[at++] = q;
        },
      });
      return { r, p };
    };
    const record = (
      method: string,
      share: number | null,
      { r, p }: { r: StreamEvalResult; p: Float32Array },
      sizes?: Map<string, number>,
      vectors?: Map<string, Float64Array>,
    ) => {
      const key = `${method}|${share}`;
      predictions.set(key, [...(predictions.get(key) ?? []), p]);
      let rankCorrelation: number | null = null;
      let sizeByRank: Record<number, number> | null = null;
      let principalRankCorrelation: number | null = null;
      let leadingEnergyByRank: Record<number, number> | null = null;
      if (sizes !== undefined && vectors !== undefined) {
        const byRank = new Map<number, number[]>();
        for (const [key, v] of vectors) {
          if (sizes.get(key) !== DIM) continue;
          let head = 0;
          let all = 0;
          for (let d = 0; d < DIM; d++) {
            all += v[d] * v[d];
            if (d < LEADING) head += v[d] * v[d];
          }
          const rank = w.rankOf(key.slice('user='.length));
          if (all > 0) byRank.set(rank, [...(byRank.get(rank) ?? []), head / all]);
        }
        leadingEnergyByRank = Object.fromEntries(
          PLANTED_RANKS.map((k) => [k, mean(byRank.get(k) ?? [Number.NaN])]),
        );
      }
      if (sizes !== undefined) {
        const s: number[] = [];
        const p: number[] = [];
        const byRank = new Map<number, number[]>();
        for (const u of rich) {
          const size = sizes.get(`user=${u}`);
          if (size === undefined) continue;
          const rank = w.rankOf(u);
          s.push(size);
          p.push(rank);
          byRank.set(rank, [...(byRank.get(rank) ?? []), size]);
        }
        rankCorrelation = spearman(s, p);
        sizeByRank = Object.fromEntries(PLANTED_RANKS.map((k) => [k, mean(byRank.get(k) ?? [Number.NaN])]));
      }
      if (vectors !== undefined && vectors.size > 1) {
        const users = rich.filter((u) => vectors.has(`user=${u}`));
        const dims = principalDims(users.map((u) => vectors.get(`user=${u}`)!));
        principalRankCorrelation = spearman(
          dims,
          users.map((u) => w.rankOf(u)),
        );
      }
      const run: Run = {
        method,
        share,
        seed,
        auc: r.auc,
        logloss: r.logloss,
        bytes: r.totalEmbeddingBytes,
        seconds: r.seconds,
        evicted: r.memory.evicted,
        warmEvictions: r.memory.warmEvictions,
        rankCorrelation,
        sizeByRank,
        principalRankCorrelation,
        leadingEnergyByRank,
      };
      runs.push(run);
      console.log(
        `  ${method.padEnd(10)} ${share === null ? '   -' : `${share * 100}%`.padStart(4)}  AUC ${r.auc.toFixed(4)}  logloss ${r.logloss.toFixed(4)}  bytes ${r.totalEmbeddingBytes.toLocaleString('en-US')}  evicted ${r.memory.evicted}${method === 'pme' ? ` (warm ${r.memory.warmEvictions.toFixed(2)})` : ''}  ${r.seconds.toFixed(1)} s` +
          (rankCorrelation === null
            ? ''
            : `  size~rank ${rankCorrelation.toFixed(3)}  mean size by rank ${JSON.stringify(sizeByRank, (_k, v) => (typeof v === 'number' ? Number(v.toFixed(1)) : v))}`) +
          (principalRankCorrelation === null
            ? ''
            : `  principal dims~rank ${principalRankCorrelation.toFixed(3)}`) +
          (leadingEnergyByRank === null
            ? ''
            : `  first ${LEADING} dims' energy by rank (users at ${DIM}) ${JSON.stringify(leadingEnergyByRank, (_k, v) => (typeof v === 'number' ? Number(v.toFixed(3)) : v))}`),
      );
    };
    const full = await replay({ ...base, startSize: DIM });
    record('full', null, full);
    // Sizes that follow the planted rank exactly (a size~rank of 1), no budget: each user at its
    // rank, items and categories at D. What tracking the rank would buy this learner.
    const ranked = new Map([...seen.keys()].map((u) => [`user=${u}`, w.rankOf(u)]));
    record('planted rank', null, await replay({ ...base, startSize: DIM, presetSizes: ranked }));
    for (const share of SHARES) {
      const budgetBytes = Math.floor(full.r.totalEmbeddingBytes * share);
      // A sized run, recording each user's final size (for size~rank).
      const sized = async (method: string, o: Partial<StreamEvalOptions>) => {
        const sizes = new Map<string, number>();
        const vectors = new Map<string, Float64Array>();
        const r = await replay({
          ...base,
          ...o,
          pme: true,
          budgetBytes,
          target: share,
          onToken: (key, size, vector) => {
            if (!key.startsWith('user=')) return;
            sizes.set(key, size);
            if (richKeys.has(key)) vectors.set(key, vector());
          },
        });
        record(method, share, r, sizes, vectors);
      };
      await sized('pme', {
        pmeOptions: PME_OPTIONS,
        ...(START_SIZE === undefined ? {} : { startSize: Number(START_SIZE) }),
      });
      // Popularity-scaled sizes (MDE's rule on running counts) under PME's own windows and limit.
      await sized('popularity', { sizing: 'popularity' });
      for (const size of UNIFORM_SIZES)
        record(`uniform ${size}`, share, await replay({ ...base, startSize: size, budgetBytes }));
    }
  }

  // Per method and share: mean ± std over seeds.
  const groups = new Map<string, Run[]>();
  for (const r of runs) {
    const k = `${r.method}|${r.share}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  /** PME − another sizing at one share: paired by seed, with its interval (below). */
  type Versus = { against: string; mean: number; ci95: number[] };
  const summary: Array<{
    method: string;
    share: number | null;
    auc: { mean: number; std: number };
    bytes: number;
    rankCorrelation: number | null;
    principalRankCorrelation: number | null;
    deltaBestUniform?: Versus;
    deltaPopularity?: Versus;
  }> = [...groups.values()].map((g) => ({
    method: g[0].method,
    share: g[0].share,
    auc: meanStd(g.map((r) => r.auc)),
    bytes: mean(g.map((r) => r.bytes)),
    rankCorrelation: g[0].rankCorrelation === null ? null : mean(g.map((r) => r.rankCorrelation!)),
    principalRankCorrelation:
      g[0].principalRankCorrelation === null ? null : mean(g.map((r) => r.principalRankCorrelation!)),
  }));
  // PME against the best uniform size and popularity at each share: paired by seed, with the 95%
  // interval over resamples of each seed's stream (bootstrap.ts; fewer draws than bench:pme: 2M
  // events a stream).
  const versus = (share: number, other: string): Versus => {
    const mine = predictions.get(`pme|${share}`) ?? [];
    const theirs = predictions.get(`${other}|${share}`) ?? [];
    const pairs = mine.map((a, i) => ({ labels: labelsOf[i], a, b: theirs[i] }));
    const { delta, lo, hi } = pairedAucBootstrap(pairs, { resamples: 200 });
    return { against: other, mean: delta, ci95: [lo, hi] };
  };
  for (const share of SHARES) {
    const pme = summary.find((x) => x.method === 'pme' && x.share === share);
    const best = summary
      .filter((x) => x.method.startsWith('uniform') && x.share === share)
      .reduce((a, b) => (b.auc.mean > a.auc.mean ? b : a));
    if (pme === undefined) continue;
    pme.deltaBestUniform = versus(share, best.method);
    pme.deltaPopularity = versus(share, 'popularity');
    const show = (x: Versus) => `${x.mean.toFixed(4)} [${x.ci95.map((v) => v.toFixed(4)).join(', ')}]`;
    console.log(
      `  pme ${share * 100}%: − ${best.method} ${show(pme.deltaBestUniform)}, − popularity ${show(pme.deltaPopularity)}`,
    );
  }
  console.log('\nmean over seeds:');
  for (const s of summary)
    console.log(
      `  ${s.method.padEnd(10)} ${s.share === null ? '   -' : `${s.share * 100}%`.padStart(4)}  AUC ${s.auc.mean.toFixed(4)} ± ${s.auc.std.toFixed(4)}  bytes ${Math.round(s.bytes).toLocaleString('en-US')}` +
        (s.rankCorrelation === null ? '' : `  size~rank ${s.rankCorrelation.toFixed(3)}`) +
        (s.principalRankCorrelation === null
          ? ''
          : `  principal dims~rank ${s.principalRankCorrelation.toFixed(3)}`),
    );
  await mkdir(dirname(OUT), { recursive: true });
  const out = {
    events: EVENTS,
    users: USERS,
    items: ITEMS,
    dim: DIM,
    learner: LEARNER,
    plantedRanks: PLANTED_RANKS,
    minEvents: MIN_EVENTS,
    richUsers: counted,
    seeds: SEEDS,
    runs,
    summary,
  };
  await writeFile(OUT, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${OUT}`);
}

await main();
