/**
 * Progressive-validation metrics: every event is scored before it is learned from, and the score
 * lands here. AUC is streamed through a fixed histogram of scores per label (O(1) per event,
 * O(bins) to read); the last `window` events are kept in a ring so windowed AUC and logloss
 * are exact over that window.
 */
import { logloss } from './model/math.js';

/** Scores are binned on the logit scale: a probability histogram would crowd realistic CTRs
 *  (0.01-0.3) into a few bins, while logit bins are equally fine everywhere. AUC depends only on
 *  the order of scores, so any monotone binning is valid; ties inside a bin count one half. */
const LOGIT_RANGE = 10;

export interface MetricsSnapshot {
  /** Events scored so far. */
  events: number;
  /** Cumulative progressive AUC (NaN until both labels were seen). */
  auc: number;
  /** Cumulative mean logloss. */
  logloss: number;
  /** Over the last `window` events. */
  windowAuc: number;
  windowLogloss: number;
  /** How many events the window holds now (≤ window). */
  windowEvents: number;
  /** Mean label (the positive rate). */
  positiveRate: number;
}

/** ProgressiveMetrics' state (exportState / importState). */
export interface ProgressiveMetricsState {
  bins: number;
  window: number;
  ringAt: number;
  ringCount: number;
  windowLoss: number;
  events: number;
  loss: number;
  labels: number;
  pos: Float64Array;
  neg: Float64Array;
  wPos: Float64Array;
  wNeg: Float64Array;
  ringBin: Int32Array;
  ringLabel: Float32Array;
  ringLoss: Float64Array;
}

export class ProgressiveMetrics {
  readonly bins: number;
  readonly window: number;
  readonly #pos: Float64Array;
  readonly #neg: Float64Array;
  readonly #wPos: Float64Array;
  readonly #wNeg: Float64Array;
  readonly #ringBin: Int32Array;
  readonly #ringLabel: Float32Array;
  readonly #ringLoss: Float64Array;
  #ringAt = 0;
  #ringCount = 0;
  #windowLoss = 0;
  #events = 0;
  #loss = 0;
  #labels = 0;

  /** @param bins histogram bins (default 2048); @param window events in the sliding window (default 10 000). */
  constructor(bins = 2048, window = 10_000) {
    this.bins = bins;
    this.window = window;
    this.#pos = new Float64Array(bins);
    this.#neg = new Float64Array(bins);
    this.#wPos = new Float64Array(bins);
    this.#wNeg = new Float64Array(bins);
    this.#ringBin = new Int32Array(window);
    this.#ringLabel = new Float32Array(window);
    this.#ringLoss = new Float64Array(window);
  }

  #bin(p: number): number {
    const q = Math.min(Math.max(p, 1e-12), 1 - 1e-12);
    const z = Math.log(q / (1 - q));
    const x = ((z + LOGIT_RANGE) / (2 * LOGIT_RANGE)) * this.bins;
    return x <= 0 ? 0 : x >= this.bins ? this.bins - 1 : Math.floor(x);
  }

  /** Records one prediction `p` for an event with label `y` in [0, 1] (fractional labels weigh both sides). */
  add(p: number, y: number): void {
    const b = this.#bin(p);
    const l = logloss(p, y);
    this.#pos[b] += y;
    this.#neg[b] += 1 - y;
    this.#events++;
    this.#loss += l;
    this.#labels += y;
    if (this.window === 0) return;
    const at = this.#ringAt;
    if (this.#ringCount === this.window) {
      const ob = this.#ringBin[at];
      const oy = this.#ringLabel[at];
      this.#wPos[ob] -= oy;
      this.#wNeg[ob] -= 1 - oy;
      this.#windowLoss -= this.#ringLoss[at];
    } else this.#ringCount++;
    this.#ringBin[at] = b;
    this.#ringLabel[at] = y;
    this.#ringLoss[at] = l;
    this.#wPos[b] += y;
    this.#wNeg[b] += 1 - y;
    this.#windowLoss += l;
    this.#ringAt = at + 1 === this.window ? 0 : at + 1;
  }

  get events(): number {
    return this.#events;
  }

  snapshot(): MetricsSnapshot {
    return {
      events: this.#events,
      auc: histogramAuc(this.#pos, this.#neg),
      logloss: this.#events === 0 ? Number.NaN : this.#loss / this.#events,
      windowAuc: histogramAuc(this.#wPos, this.#wNeg),
      windowLogloss: this.#ringCount === 0 ? Number.NaN : this.#windowLoss / this.#ringCount,
      windowEvents: this.#ringCount,
      positiveRate: this.#events === 0 ? Number.NaN : this.#labels / this.#events,
    };
  }

  /** The whole state (histograms, window ring, sums), for snapshots: a restarted service goes on
   *  counting where it stopped instead of reading 0 events and no AUC. */
  exportState(): ProgressiveMetricsState {
    return {
      bins: this.bins,
      window: this.window,
      ringAt: this.#ringAt,
      ringCount: this.#ringCount,
      windowLoss: this.#windowLoss,
      events: this.#events,
      loss: this.#loss,
      labels: this.#labels,
      pos: this.#pos.slice(),
      neg: this.#neg.slice(),
      wPos: this.#wPos.slice(),
      wNeg: this.#wNeg.slice(),
      ringBin: this.#ringBin.slice(),
      ringLabel: this.#ringLabel.slice(),
      ringLoss: this.#ringLoss.slice(),
    };
  }

  /** Restores exportState(); false (and nothing changed) when the saved bins or window differ
   *  from this instance's (they are configuration: the metrics then start afresh). */
  importState(s: ProgressiveMetricsState): boolean {
    if (
      s.bins !== this.bins ||
      s.window !== this.window ||
      s.pos.length !== this.bins ||
      s.ringBin.length !== this.window
    )
      return false;
    this.#pos.set(s.pos);
    this.#neg.set(s.neg);
    this.#wPos.set(s.wPos);
    this.#wNeg.set(s.wNeg);
    this.#ringBin.set(s.ringBin);
    this.#ringLabel.set(s.ringLabel);
    this.#ringLoss.set(s.ringLoss);
    this.#ringAt = s.ringAt;
    this.#ringCount = s.ringCount;
    this.#windowLoss = s.windowLoss;
    this.#events = s.events;
    this.#loss = s.loss;
    this.#labels = s.labels;
    return true;
  }

  reset(): void {
    this.#pos.fill(0);
    this.#neg.fill(0);
    this.#wPos.fill(0);
    this.#wNeg.fill(0);
    this.#ringAt = 0;
    this.#ringCount = 0;
    this.#windowLoss = 0;
    this.#events = 0;
    this.#loss = 0;
    this.#labels = 0;
  }
}

/** AUC from per-bin positive and negative weights: P(score+ > score−), ties one half. */
export function histogramAuc(pos: Float64Array, neg: Float64Array): number {
  let negBelow = 0;
  let pairs = 0;
  let totalPos = 0;
  for (let b = 0; b < pos.length; b++) {
    pairs += pos[b] * (negBelow + 0.5 * neg[b]);
    negBelow += neg[b];
    totalPos += pos[b];
  }
  // Rounding in the windowed (subtracted) histograms can leave tiny residues.
  if (totalPos < 1e-9 || negBelow < 1e-9) return Number.NaN;
  return pairs / (totalPos * negBelow);
}

/** Exact AUC and mean logloss of `scores` (probabilities) against `labels`: an evaluation split's
 *  figures (NaN logloss for no events). */
export function evaluationMetrics(
  scores: Float64Array,
  labels: Float32Array,
): { auc: number; logloss: number } {
  let loss = 0;
  for (let i = 0; i < scores.length; i++) loss += logloss(scores[i], labels[i]);
  return { auc: exactAuc(scores, labels), logloss: scores.length > 0 ? loss / scores.length : Number.NaN };
}

/** Exact AUC with ties counted one half (mid-ranks). NaN without both labels. */
export function exactAuc(scores: Float64Array, labels: Float32Array): number {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let pos = 0;
  let rankSum = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]] === scores[order[i]]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      const y = labels[order[k]];
      pos += y;
      rankSum += y * rank;
    }
    i = j + 1;
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) return Number.NaN;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}
