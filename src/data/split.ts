import { shuffledOrder } from '../util/random.js';

/**
 * Splits events at random into parts of the given fractions (e.g. `[0.8, 0.1, 0.1]`), the same
 * for the same seed. Part sizes are rounded from the cumulative fractions so they add up to the
 * input length; inside each part the input order (time order) is kept.
 */
export function splitEvents<T>(events: readonly T[], fractions: readonly number[], seed: number): T[][] {
  if (fractions.length === 0 || fractions.some((f) => !(f >= 0))) {
    throw new RangeError(`split fractions must be non-negative numbers, got [${fractions.join(', ')}]`);
  }
  const total = fractions.reduce((a, b) => a + b, 0);
  if (Math.abs(total - 1) > 1e-6) throw new RangeError(`split fractions must add up to 1, got ${total}`);
  const n = events.length;
  const order = shuffledOrder(n, seed);
  const parts: T[][] = [];
  let cumulative = 0;
  let start = 0;
  for (let k = 0; k < fractions.length; k++) {
    cumulative += fractions[k];
    const end = k === fractions.length - 1 ? n : Math.min(n, Math.round(cumulative * n));
    const picked = order.slice(start, end).sort();
    parts.push(Array.from(picked, (i) => events[i]));
    start = end;
  }
  return parts;
}
