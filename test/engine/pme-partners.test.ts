/**
 * The transfer that keeps a pruned token's scores with its probe partners (pme/partners.ts):
 * against truncation it moves the partners' scores less; a large ridge gives truncation back; and
 * two tokens that move together make up for their lost pair term once, not twice.
 */
import t from 'tap';
import type { Model } from '../../src/engine/model/model.js';
import { Rows } from '../../src/engine/model/model.js';
import { PartnerMoments, solveKeepingScores } from '../../src/engine/pme/partners.js';
import { createRandom } from '../../src/util/random.js';

const D = 8;
const s = 2;

/** A model of fixed D-space vectors whose scores are plain FM pair sums (no linear terms). */
function vectorModel(vectors: Float64Array[]): Pick<Model, 'dim' | 'predictRows' | 'vectorOf'> {
  return {
    dim: D,
    vectorOf: (id, out, at = 0) => {
      for (let d = 0; d < D; d++) out[at + d] = vectors[id][d];
    },
    predictRows: (rows, from, to, out) => {
      for (let r = from; r < to; r++) {
        let z = 0;
        const at = r * rows.stride;
        for (let a = 0; a < rows.counts[r]; a++)
          for (let b = a + 1; b < rows.counts[r]; b++)
            for (let d = 0; d < D; d++) z += vectors[rows.ids[at + a]][d] * vectors[rows.ids[at + b]][d];
        out[r] = 1 / (1 + Math.exp(-z));
      }
    },
  };
}

function rowsOf(events: number[][]): Rows {
  const rows = new Rows(4, ['user', 'item'], events.length);
  events.forEach((ids, r) => {
    ids.forEach((id, k) => {
      rows.ids[r * rows.stride + k] = id;
    });
    rows.counts[r] = ids.length;
  });
  rows.length = events.length;
  return rows;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let z = 0;
  for (let d = 0; d < D; d++) z += a[d] * b[d];
  return z;
};

t.test("a pruned token keeps its partners' scores better than truncation does", (t) => {
  const random = createRandom(7);
  // Token 0 is pruned from D to s. Its partners' last dims follow their first ones, so the pair
  // terms its last dims made can be carried by its first dims; truncation drops them.
  const partners = Array.from({ length: 40 }, () => {
    const v = new Float64Array(D);
    for (let d = 0; d < s; d++) v[d] = random.normal();
    for (let d = s; d < D; d++) v[d] = 0.8 * v[d % s] + 0.2 * random.normal();
    return v;
  });
  const token = Float64Array.from({ length: D }, () => random.normal());
  const vectors = [token, ...partners];
  const events = partners.map((_, k) => [0, k + 1]);
  const moments = new PartnerMoments(vectorModel(vectors), rowsOf(events), new Set([0]));
  const Q = new Float64Array(D * D);
  const trace = moments.moment(0, token, Q);
  t.ok(trace > 0, 'the token has probe partners');
  const kept = new Float32Array(s);
  solveKeepingScores(token, Q, trace, 1, null, s, D, kept);
  const keptD = Float64Array.from({ length: D }, (_, d) => (d < s ? kept[d] : 0));
  const truncated = Float64Array.from({ length: D }, (_, d) => (d < s ? token[d] : 0));
  let errKept = 0;
  let errTruncated = 0;
  for (const p of partners) {
    errKept += (dot(keptD, p) - dot(token, p)) ** 2;
    errTruncated += (dot(truncated, p) - dot(token, p)) ** 2;
  }
  t.ok(
    errKept < 0.5 * errTruncated,
    `score error ${errKept.toFixed(3)} vs truncation ${errTruncated.toFixed(3)}`,
  );

  // A ridge that dwarfs the partners gives plain least squares on the vector back: truncation.
  const plain = new Float32Array(s);
  solveKeepingScores(token, Q, trace, 1e9, null, s, D, plain);
  for (let d = 0; d < s; d++) t.ok(Math.abs(plain[d] - token[d]) < 1e-4, `dim ${d} as it was`);

  // Through a projection P (s × D) the same objective holds: the first s rows of the identity
  // give the nested answer.
  const P = new Float32Array(s * D);
  for (let i = 0; i < s; i++) P[i * D + i] = 1;
  const viaP = new Float32Array(s);
  solveKeepingScores(token, Q, trace, 1, P, s, D, viaP);
  for (let d = 0; d < s; d++) t.ok(Math.abs(viaP[d] - kept[d]) < 1e-4, `dim ${d} the same through P`);
  t.end();
});

t.test('two tokens pruned together make up for their lost pair term once', (t) => {
  const random = createRandom(3);
  const a = Float64Array.from({ length: D }, () => random.normal());
  const b = Float64Array.from({ length: D }, () => random.normal());
  const vectors = [a, b];
  // Both always together (and alone): their one pair term is every score.
  const events = Array.from({ length: 20 }, () => [0, 1]);
  const pairAfter = (followMoves: boolean) => {
    const moments = new PartnerMoments(vectorModel(vectors), rowsOf(events), new Set([0, 1]));
    const Q = new Float64Array(D * D);
    const moved: Float64Array[] = [];
    for (const [id, v] of [a, b].entries()) {
      const trace = moments.moment(id, v, Q);
      const e = new Float32Array(s);
      solveKeepingScores(v, Q, trace, 0.01, null, s, D, e);
      const after = Float64Array.from({ length: D }, (_, d) => (d < s ? e[d] : 0));
      if (followMoves) moments.moved(id, v, after);
      moved.push(after);
    }
    return dot(moved[0], moved[1]);
  };
  const original = dot(a, b);
  const once = pairAfter(true);
  const twice = pairAfter(false);
  t.ok(
    Math.abs(once - original) < 0.05 * Math.abs(original) + 1e-6,
    `followed: pair term ${once.toFixed(4)} against ${original.toFixed(4)}`,
  );
  t.ok(
    Math.abs(twice - original) > 10 * Math.abs(once - original),
    `stale sums: ${twice.toFixed(4)} (the lost term made up twice)`,
  );
  t.end();
});
