/** The link and loss every model shares: the logistic function and logloss. */

export function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** Logloss of probability p against label y in [0, 1], clamped away from log(0). */
export function logloss(p: number, y: number): number {
  const q = Math.min(Math.max(p, 1e-7), 1 - 1e-7);
  return -(y * Math.log(q) + (1 - y) * Math.log(1 - q));
}
