/**
 * The update rules of the linear weights (one weight per token, in store.linear), with the state
 * each keeps per token in store.linearOptimizer: a model picks its rule once at construction.
 *
 * - Adagrad: one accumulator n per weight; w -= rate (g + l2 w) / (√n + ε).
 *   (rate: the event's, linearEventRate: scaled down by the tokens of a many-token event.)
 * - FTRL-Proximal (McMahan et al. 2013, "Ad Click Prediction: a View from the Trenches",
 *   per-coordinate): z and n per weight; w is a closed form of them,
 *     w = 0 if |z| <= l1, else −(z − sign(z) l1) / ((β + √n) / rate + l2),
 *   so an L1 above 0 holds rare tokens' weights at exactly 0. w is written back to store.linear
 *   after every step: every reader (scores, replicas, snapshots) reads the weight as it is.
 * - SGD: no state; w -= rate (g + l2 w).
 */
import { PmeError } from '../../errors.js';

/** What `--linear-optimizer` names. */
export type LinearOptimizer = 'adagrad' | 'ftrl';
export const LINEAR_OPTIMIZERS: readonly LinearOptimizer[] = Object.freeze(['adagrad', 'ftrl']);

/** The constants of a linear step, resolved once from the model's options. */
export interface LinearStepParams {
  /** Adagrad's step size, FTRL's alpha, in an event of at most rateTokens tokens (linearEventRate). */
  readonly rate: number;
  /** FmOptions.rateTokens. */
  readonly rateTokens: number;
  readonly l2: number;
  /** Adagrad's ε. */
  readonly epsilon: number;
  /** FTRL's β: the per-coordinate rate is rate / (β + √n), and β / rate pulls the weight towards 0
   *  until its own squared gradients outgrow it. */
  readonly beta: number;
  /** FTRL's L1. */
  readonly l1: number;
}

/** A model's linear step constants from its options (FmOptions' names). */
export function linearStepParams(o: {
  readonly linearLearningRate: number;
  readonly rateTokens: number;
  readonly l2: number;
  readonly epsilon: number;
  readonly ftrlBeta: number;
  readonly ftrlL1: number;
}): LinearStepParams {
  return Object.freeze({
    rate: o.linearLearningRate,
    rateTokens: o.rateTokens,
    l2: o.l2,
    epsilon: o.epsilon,
    beta: o.ftrlBeta,
    l1: o.ftrlL1,
  });
}

/**
 * The step size of an event of n tokens: rate × rateTokens / n (rateTokens 0: rate whatever n).
 * Adagrad moves every coordinate by about its rate whatever the gradient, and all n tokens of an
 * event step on it, so one event moves its own score by about n × rate: without the scaling the
 * rate that suits an event of 5 tokens overshoots one of 39 (FmOptions.rateTokens).
 */
export function eventRate(rate: number, rateTokens: number, n: number): number {
  return rateTokens > 0 ? (rate * rateTokens) / n : rate;
}

/**
 * The linear weights' step in an event of n tokens: eventRate, but never above `rate`. An event of
 * fewer than rateTokens tokens steps them at the rate itself: on the planted stream (3 tokens an
 * event) raising it cost every method about 0.007 of progressive AUC (`node --max-old-space-size=8192
 * dist/bench/planted.js --events 1000000 --users 200000 --seeds 1 --shares 0.25`: full 0.6573 →
 * 0.6510, PME at 25% 0.6634 → 0.6557); ml-latest-small (4 tokens) gained under 0.0015 from it.
 */
export function linearEventRate(rate: number, rateTokens: number, n: number): number {
  return Math.min(rate, eventRate(rate, rateTokens, n));
}

/** One step of weight w[id] on the loss gradient g at step size `rate` (Adagrad's and SGD's step,
 *  FTRL's alpha: p.rate scaled for the event, linearEventRate), its state at state[id · slots ..). */
export type LinearStep = (
  w: Float32Array,
  state: Float32Array,
  id: number,
  g: number,
  p: LinearStepParams,
  rate: number,
) => void;

export const adagradLinear: LinearStep = (w, acc, id, g, p, rate) => {
  const gw = g + p.l2 * w[id];
  const a = acc[id] + gw * gw;
  acc[id] = a;
  w[id] -= (rate * gw) / (Math.sqrt(a) + p.epsilon);
};

export const sgdLinear: LinearStep = (w, _state, id, g, p, rate) => {
  w[id] -= rate * (g + p.l2 * w[id]);
};

/** FTRL-Proximal: z at state[2 id], n at state[2 id + 1]. L2 is in the closed form, not in g. */
export const ftrlLinear: LinearStep = (w, zn, id, g, p, rate) => {
  const at = 2 * id;
  const n = zn[at + 1];
  const next = n + g * g;
  const root = Math.sqrt(next);
  const sigma = (root - Math.sqrt(n)) / rate;
  const z = zn[at] + g - sigma * w[id];
  zn[at] = z;
  zn[at + 1] = next;
  w[id] = Math.abs(z) <= p.l1 ? 0 : -(z - Math.sign(z) * p.l1) / ((p.beta + root) / rate + p.l2);
};

/** The rule of a model's linear weights: plain SGD when the model's optimizer is (no state is
 *  read), else the linear optimizer named. */
export function linearStepOf(optimizer: 'adagrad' | 'sgd', linear: LinearOptimizer): LinearStep {
  if (optimizer === 'sgd') return sgdLinear;
  return linear === 'ftrl' ? ftrlLinear : adagradLinear;
}

/** Floats of state per token that rule keeps (the store's `linearOptimizerSlots`). */
export function linearOptimizerSlots(optimizer: 'adagrad' | 'sgd', linear: LinearOptimizer): number {
  if (optimizer === 'sgd') return 0;
  return linear === 'ftrl' ? 2 : 1;
}

/** Throws unless a store keeping `have` floats per linear weight fits the rule (SGD reads none):
 *  a store restored from a snapshot taken under another rule has another width. */
export function checkLinearSlots(have: number, optimizer: 'adagrad' | 'sgd', linear: LinearOptimizer): void {
  const want = linearOptimizerSlots(optimizer, linear);
  if (want > 0 && have !== want)
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--linear-optimizer ${linear} keeps ${want} float${want === 1 ? '' : 's'} per linear weight, the store keeps ${have} (linearOptimizerSlots; a snapshot taken under another --linear-optimizer does not continue under this one)`,
    );
}
