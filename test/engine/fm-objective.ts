import type { FmModel, FmOptions } from '../../src/engine/model/fm.js';
import type { ModelStore } from '../../src/engine/model/model.js';

/** Σ over `ids` of the squared linear weight and row entries: what L2 adds for the rows a step touches. */
export function touchedSquares(store: ModelStore, ids: Int32Array): number {
  let reg = 0;
  for (const id of ids) {
    reg += store.linear[id] ** 2;
    const tier = store.tiers[store.tierOf[id]];
    const off = store.slotOf[id] * tier.size;
    for (let i = 0; i < tier.size; i++) reg += tier.params[off + i] ** 2;
  }
  return reg;
}

/** The FM's logit pair by pair: bias + Σ linear + Σ_{a<b} <v_a, v_b>, given each token's D-space vector. */
export function pairwiseLogit(model: FmModel, ids: Int32Array, vectors: Float64Array[]): number {
  let z = model.bias;
  for (const id of ids) z += model.store.linear[id];
  for (let a = 0; a < vectors.length; a++)
    for (let b = a + 1; b < vectors.length; b++)
      for (let d = 0; d < vectors[a].length; d++) z += vectors[a][d] * vectors[b][d];
  return z;
}

/** Plain SGD at rate 1 with L2 `l2` everywhere: one step is then exactly −∇ of the objective
 *  (rows step at the rate, not rate × rateTokens / n). */
export function exactSgd(l2: number): Partial<FmOptions> {
  return {
    optimizer: 'sgd',
    learningRate: 1,
    rateTokens: 0,
    linearLearningRate: 1,
    projectionLearningRate: 1,
    l2,
    l2Projection: l2,
  };
}
