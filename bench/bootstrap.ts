/**
 * Whether a difference in progressive AUC between two replays of the same events is more than
 * noise in the events: a paired block bootstrap. The stream is cut into contiguous blocks (events
 * close in time are not independent: the same users, the same drift); each resample draws as many
 * blocks with replacement and scores both systems on the very same draw, so what the two share
 * cancels. Several seeds of each system (pairs) are averaged within each resample, as the point
 * estimate averages them; seeds of a synthetic stream that differ by seed are drawn each on its own.
 *
 * A resample weighs each event by how often its block was drawn, so each system's events are
 * sorted once and every resample's AUC is one pass over that order (weighted Mann-Whitney), its
 * labels and blocks laid out in it so that the pass reads memory in order.
 */
import { createRandom } from '../src/util/random.js';

export interface BootstrapOptions {
  /** Contiguous blocks the events are cut into. Default 50. */
  blocks: number;
  /** Resamples drawn. Default 1000. */
  resamples: number;
  /** Seed of the draws. Default 1. */
  seed: number;
}

export interface PairedAucDelta {
  /** Mean over the pairs of AUC(a) − AUC(b) on the events as they are. */
  delta: number;
  /** 2.5th and 97.5th percentiles of the same mean over the resamples. */
  lo: number;
  hi: number;
}

/** Indices of `scores` in ascending order (sorted once per system). */
function ascending(scores: ArrayLike<number>): Uint32Array {
  const order = new Uint32Array(scores.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  return order.sort((x, y) => scores[x] - scores[y]);
}

/** One system's events in ascending order of score, for weighted AUCs by block weights. */
interface Sorted {
  positive: Uint8Array;
  block: Uint32Array;
  /** 1 where the next event (in this order) has a different score: a tie group ends. */
  groupEnd: Uint8Array;
}

function sortedBy(scores: ArrayLike<number>, labels: ArrayLike<number>, blockOf: Uint32Array): Sorted {
  const order = ascending(scores);
  const n = order.length;
  const positive = new Uint8Array(n);
  const block = new Uint32Array(n);
  const groupEnd = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const e = order[i];
    positive[i] = labels[e] > 0.5 ? 1 : 0;
    block[i] = blockOf[e];
    groupEnd[i] = i === n - 1 || scores[order[i + 1]] !== scores[e] ? 1 : 0;
  }
  return { positive, block, groupEnd };
}

/** weightedAuc over a Sorted, each event weighing its block's draw count (contiguous reads). */
function blockAuc(s: Sorted, drawn: Float64Array): number {
  const { positive, block, groupEnd } = s;
  let negBelow = 0;
  let pairs = 0;
  let pos = 0;
  let groupPos = 0;
  let groupNeg = 0;
  for (let i = 0; i < positive.length; i++) {
    const w = drawn[block[i]];
    if (positive[i] === 1) groupPos += w;
    else groupNeg += w;
    if (groupEnd[i] === 1) {
      pairs += groupPos * (negBelow + groupNeg / 2);
      negBelow += groupNeg;
      pos += groupPos;
      groupPos = 0;
      groupNeg = 0;
    }
  }
  return pos === 0 || negBelow === 0 ? Number.NaN : pairs / (pos * negBelow);
}

/**
 * AUC with event i counted weights[i] times (ties count half); NaN when the weights leave no
 * positive or no negative. Each event is its own block here.
 */
export function weightedAuc(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  weights: ArrayLike<number>,
): number {
  const own = Uint32Array.from({ length: scores.length }, (_, i) => i);
  return blockAuc(sortedBy(scores, labels, own), Float64Array.from(weights));
}

/** One comparison: two systems' probabilities for the same events, and those events' labels. */
export interface AucPair {
  labels: ArrayLike<number>;
  a: ArrayLike<number>;
  b: ArrayLike<number>;
}

/**
 * Paired block bootstrap of mean(AUC(a) − AUC(b)) over `pairs`. Pairs that share one `labels`
 * array (seeds of a replay of the same stream) share each draw of blocks; a pair on other events
 * (another stream) is drawn on its own.
 */
export function pairedAucBootstrap(
  pairs: readonly AucPair[],
  options: Partial<BootstrapOptions> = {},
): PairedAucDelta {
  const { blocks: wanted, resamples, seed } = { blocks: 50, resamples: 1000, seed: 1, ...options };
  if (pairs.length === 0) throw new Error('pairedAucBootstrap: no pairs to compare');
  for (const { labels, a, b } of pairs)
    if (a.length !== labels.length || b.length !== labels.length)
      throw new Error(
        `pairedAucBootstrap: ${labels.length} labels, but scores of ${a.length} and ${b.length} events`,
      );
  if (!(Number.isInteger(wanted) && wanted >= 1)) throw new Error(`pairedAucBootstrap: blocks must be >= 1`);
  if (!(Number.isInteger(resamples) && resamples >= 1))
    throw new Error(`pairedAucBootstrap: resamples must be >= 1`);
  // One stream per distinct labels array: its blocks and its draw.
  const streams = [...new Set(pairs.map((p) => p.labels))].map((labels) => {
    const n = labels.length;
    const blocks = Math.max(1, Math.min(wanted, n));
    const blockOf = new Uint32Array(n);
    for (let i = 0; i < n; i++) blockOf[i] = Math.floor((i * blocks) / n);
    return { labels, blocks, blockOf, drawn: new Float64Array(blocks) };
  });
  const sorted = pairs.map(({ labels, a, b }) => {
    const stream = streams.find((x) => x.labels === labels)!;
    return {
      drawn: stream.drawn,
      a: sortedBy(a, labels, stream.blockOf),
      b: sortedBy(b, labels, stream.blockOf),
    };
  });
  const meanDelta = () => {
    let sum = 0;
    for (const { drawn, a, b } of sorted) sum += blockAuc(a, drawn) - blockAuc(b, drawn);
    return sum / sorted.length;
  };
  for (const x of streams) x.drawn.fill(1);
  const delta = meanDelta();
  const random = createRandom(seed);
  const deltas: number[] = [];
  for (let r = 0; r < resamples; r++) {
    for (const x of streams) {
      x.drawn.fill(0);
      for (let k = 0; k < x.blocks; k++) x.drawn[random.int(x.blocks)]++;
    }
    const d = meanDelta();
    // A draw with no positive or no negative has no AUC: it is left out.
    if (!Number.isNaN(d)) deltas.push(d);
  }
  if (deltas.length === 0) return { delta, lo: Number.NaN, hi: Number.NaN };
  deltas.sort((x, y) => x - y);
  const at = (q: number) => deltas[Math.min(deltas.length - 1, Math.floor(q * deltas.length))];
  return { delta, lo: at(0.025), hi: at(0.975) };
}
