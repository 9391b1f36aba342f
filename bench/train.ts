/**
 * Trainer-only throughput at D = 64 with 4 tokens per event (user, item, category, device), one
 * core: the hand-written FM (a) with every token at full size, (b) with a realistic tier mix
 * (sizes by popularity: few large, most small or 0; also with nested projections, `--projection
 * nested`), each measured on pre-resolved token ids
 * (model step only) and through Trainer.learn (string keys resolved in the store; also with FTRL
 * for the linear weights, `--linear-optimizer ftrl`); then (c) the same FM written as batched
 * TensorFlow.js on the backend present and on the slower ones (wasm, cpu), and (d) DeepFM through
 * Trainer.learn. Writes bench/results/train.json.
 *
 *   npm run build && node dist/bench/train.js [--events N]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import type { Interaction } from '../src/data/event.js';
import { initBackend, type Tf } from '../src/engine/backend.js';
import { DeepFm } from '../src/engine/model/deepfm.js';
import { FmModel, type FmOptions } from '../src/engine/model/fm.js';
import { Trainer } from '../src/engine/trainer/index.js';
import { EmbeddingStore } from '../src/store/index.js';
import { createRandom, ZipfSampler } from '../src/util/random.js';

const D = 64;
const LADDER = [0, 2, 4, 8, 16, 32, 64];
const argEvents = process.argv.indexOf('--events');
const EVENTS = argEvents > 0 ? Number(process.argv[argEvents + 1]) : 300_000;
const USERS = 50_000;
const ITEMS = 20_000;
const BATCH = 256;

function makeEvents(n: number): Interaction[] {
  const random = createRandom(42);
  const users = new ZipfSampler(USERS, 1);
  const items = new ZipfSampler(ITEMS, 1);
  const out: Interaction[] = [];
  for (let i = 0; i < n; i++) {
    const u = users.sample(random);
    const it = items.sample(random);
    out.push({
      user: String(u),
      item: String(it),
      label: random.next() < 0.3 ? 1 : 0,
      timestamp: i,
      fields: { category: String(it % 100), device: String(u % 10) },
    });
  }
  return out;
}

/** Realistic mix: size by popularity rank within the field, about MDE-like. */
function sizeForRank(rank: number, cardinality: number): number {
  if (cardinality <= 100) return 64;
  const q = rank / cardinality;
  if (q < 0.002) return 64;
  if (q < 0.01) return 32;
  if (q < 0.03) return 16;
  if (q < 0.1) return 8;
  if (q < 0.3) return 4;
  if (q < 0.6) return 2;
  return 0;
}

function buildStore(mix: boolean, linearOptimizerSlots = 1): EmbeddingStore {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 64, seed: 1, linearOptimizerSlots });
  const fill = (field: string, n: number) => {
    for (let r = 0; r < n; r++) store.getOrCreate(`${field}=${r}`, mix ? sizeForRank(r, n) : 64);
  };
  fill('user', USERS);
  fill('item', ITEMS);
  fill('category', 100);
  fill('device', 10);
  return store;
}

interface Row {
  config: string;
  path: string;
  events: number;
  seconds: number;
  eventsPerSecond: number;
  /** Shares of model.step's time (model rows only). */
  breakdown?: { forwardShare: number; backwardShare: number; flushShare: number };
}

function timeModel(
  config: string,
  store: EmbeddingStore,
  events: Interaction[],
  options: Partial<FmOptions> = {},
): Row {
  const model = new FmModel(store, options);
  const ids = new Int32Array(events.length * 4);
  events.forEach((e, i) => {
    ids[i * 4] = store.id(`user=${e.user}`);
    ids[i * 4 + 1] = store.id(`item=${e.item}`);
    ids[i * 4 + 2] = store.id(`category=${e.fields.category}`);
    ids[i * 4 + 3] = store.id(`device=${e.fields.device}`);
  });
  const labels = Float32Array.from(events, (e) => e.label);
  const views = Array.from({ length: events.length }, (_, i) => ids.subarray(i * 4, i * 4 + 4));
  // Warm-up: let V8 optimise the step before timing.
  for (let i = 0; i < Math.min(20_000, events.length); i++) model.step(views[i], 4, labels[i]);
  const t0 = performance.now();
  for (let i = 0; i < events.length; i++) {
    model.step(views[i], 4, labels[i]);
    if ((i & (BATCH - 1)) === BATCH - 1) model.flush();
  }
  const seconds = (performance.now() - t0) / 1000;
  // Where the time goes: the forward pass alone over the same events (reads only), and the
  // projection flushes alone (the step's remainder is the backward pass and its row updates).
  let sink = 0;
  const t1 = performance.now();
  for (let i = 0; i < events.length; i++) sink += model.forward(views[i], 4);
  const forwardSeconds = (performance.now() - t1) / 1000;
  let flushSeconds = 0;
  for (let j = 0; j < 200; j++) {
    for (let i = j * BATCH; i < (j + 1) * BATCH && i < events.length; i++) model.step(views[i], 4, labels[i]);
    const t2 = performance.now();
    model.flush();
    flushSeconds += (performance.now() - t2) / 1000;
  }
  flushSeconds *= events.length / BATCH / 200;
  if (Number.isNaN(sink)) throw new Error('NaN score');
  return {
    config,
    path: 'model.step (ids resolved)',
    events: events.length,
    seconds,
    eventsPerSecond: events.length / seconds,
    breakdown: {
      forwardShare: forwardSeconds / seconds,
      flushShare: flushSeconds / seconds,
      backwardShare: Math.max(0, 1 - (forwardSeconds + flushSeconds) / seconds),
    },
  };
}

/** Resolving the 4 string keys of each event in the store, alone (Trainer.learn's extra work). */
function timeResolve(config: string, store: EmbeddingStore, events: Interaction[]): Row {
  let sink = 0;
  const t0 = performance.now();
  for (const e of events) {
    sink += store.getOrCreate(`user=${e.user}`);
    sink += store.getOrCreate(`item=${e.item}`);
    sink += store.getOrCreate(`category=${e.fields.category}`);
    sink += store.getOrCreate(`device=${e.fields.device}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  if (sink < 0) throw new Error('negative id');
  return {
    config,
    path: 'store.getOrCreate x4 only',
    events: events.length,
    seconds,
    eventsPerSecond: events.length / seconds,
  };
}

function timeTrainer(
  config: string,
  store: EmbeddingStore,
  events: Interaction[],
  model: Partial<FmOptions> = {},
): Row {
  const trainer = new Trainer(store, { seed: 1, model });
  trainer.learn(events.slice(0, 20_000));
  const t0 = performance.now();
  for (let i = 0; i < events.length; i += BATCH) trainer.learn(events.slice(i, i + BATCH));
  const seconds = (performance.now() - t0) / 1000;
  return {
    config,
    path: model.linearOptimizer === 'ftrl' ? 'Trainer.learn, ftrl linear' : 'Trainer.learn (string keys)',
    events: events.length,
    seconds,
    eventsPerSecond: events.length / seconds,
  };
}

interface TfRow extends Row {
  backend: string;
  /** Milliseconds per batch in each phase. */
  msPerBatch: { gather: number; tf: number; scatter: number };
}

/**
 * The same FM as batched TensorFlow.js on backend `backend`. The embedding table stays a JS
 * Float32Array: each batch's rows are gathered into a dense B × 4 × D tensor, tfjs computes the
 * logits and the gradient w.r.t. that dense tensor (taped with tf.grads, or written out in tfjs
 * ops when `taped` is false), and the gradient is scattered back
 * into the table with Adagrad by hand. Differentiating tf.gather instead needs the
 * UnsortedSegmentSum kernel, which the wasm backend does not have (and on cpu it would densify a
 * gradient over the whole table every batch).
 */
function timeTf(tf: Tf, backend: string, events: Interaction[], batches: number, taped: boolean): TfRow {
  const tokens = USERS + ITEMS + 100 + 10;
  const offsets = [0, USERS, USERS + ITEMS, USERS + ITEMS + 100];
  const random = createRandom(3);
  const E = new Float32Array(tokens * D);
  for (let i = 0; i < E.length; i++) E[i] = random.normal() * 0.01;
  const EA = new Float32Array(tokens * D);
  const W = new Float32Array(tokens);
  const WA = new Float32Array(tokens);
  let bias = 0;
  let biasA = 0;
  const lr = 0.05;
  const B = 1024;
  const n = Math.min(events.length, (batches + 1) * B);
  const idBuf = new Int32Array(n * 4);
  events.slice(0, n).forEach((e, i) => {
    idBuf[i * 4] = offsets[0] + Number(e.user);
    idBuf[i * 4 + 1] = offsets[1] + Number(e.item);
    idBuf[i * 4 + 2] = offsets[2] + Number(e.fields.category);
    idBuf[i * 4 + 3] = offsets[3] + Number(e.fields.device);
  });
  const labels = Float32Array.from(events.slice(0, n), (e) => e.label);
  const V = new Float32Array(B * 4 * D);
  const L = new Float32Array(B * 4);
  const grads = tf.grads((v: Tf, w: Tf, b: Tf, y: Tf) => {
    const s = v.sum(1);
    const pair = s
      .square()
      .sum(1)
      .sub(v.square().sum([1, 2]))
      .mul(0.5);
    const z = pair.add(w.sum(1)).add(b);
    return tf.losses.sigmoidCrossEntropy(y, z, undefined, tf.Reduction.SUM);
  });
  const time = { gather: 0, tf: 0, scatter: 0 };
  const step = (from: number) => {
    let t = performance.now();
    for (let r = 0; r < B; r++)
      for (let k = 0; k < 4; k++) {
        const id = idBuf[(from + r) * 4 + k];
        V.set(E.subarray(id * D, (id + 1) * D), (r * 4 + k) * D);
        L[r * 4 + k] = W[id];
      }
    let t2 = performance.now();
    time.gather += t2 - t;
    t = t2;
    // Read back after the tidy: dataSync inside tf.tidy costs ~100 ms per MB on wasm (measured).
    const out: Tf[] = tf.tidy(() => {
      const v = tf.tensor3d(V, [B, 4, D]);
      const w = tf.tensor2d(L, [B, 4]);
      const y = tf.tensor1d(labels.subarray(from, from + B));
      if (taped) return grads([v, w, tf.scalar(bias), y]);
      // Backward written out: dz = p − y, ∂v_k = dz (S − v_k), ∂w_k = dz, ∂b = Σ dz.
      const s = v.sum(1, true);
      const pair = s
        .square()
        .sum([1, 2])
        .sub(v.square().sum([1, 2]))
        .mul(0.5);
      const dz = tf.sigmoid(pair.add(w.sum(1)).add(bias)).sub(y);
      return [s.sub(v).mul(dz.reshape([B, 1, 1])), dz];
    });
    const dV = out[0].dataSync() as Float32Array;
    let dL: Float32Array;
    let dB: number;
    if (taped) {
      dL = out[1].dataSync() as Float32Array;
      dB = (out[2].dataSync() as Float32Array)[0];
    } else {
      const dz = out[1].dataSync() as Float32Array;
      dB = 0;
      for (let r = 0; r < B; r++) {
        dB += dz[r];
        for (let k = 0; k < 4; k++) L[r * 4 + k] = dz[r];
      }
      dL = L;
    }
    tf.dispose(out);
    t2 = performance.now();
    time.tf += t2 - t;
    t = t2;
    for (let r = 0; r < B; r++)
      for (let k = 0; k < 4; k++) {
        const id = idBuf[(from + r) * 4 + k];
        const g = dL[r * 4 + k];
        WA[id] += g * g;
        W[id] -= (lr * g) / (Math.sqrt(WA[id]) + 1e-7);
        const at = (r * 4 + k) * D;
        const row = id * D;
        for (let d = 0; d < D; d++) {
          const gd = dV[at + d];
          EA[row + d] += gd * gd;
          E[row + d] -= (lr * gd) / (Math.sqrt(EA[row + d]) + 1e-7);
        }
      }
    biasA += dB * dB;
    bias -= (0.01 * dB) / (Math.sqrt(biasA) + 1e-7);
    time.scatter += performance.now() - t;
  };
  step(0);
  time.gather = 0;
  time.tf = 0;
  time.scatter = 0;
  const t0 = performance.now();
  let done = 0;
  for (let from = B; from + B <= n; from += B) {
    step(from);
    done += B;
  }
  const seconds = (performance.now() - t0) / 1000;
  const per = done / B;
  return {
    config: 'all at 64 (dense table)',
    path: `tfjs batched ${B} ${taped ? 'taped' : 'manual'} (${backend})`,
    backend,
    events: done,
    seconds,
    eventsPerSecond: done / seconds,
    msPerBatch: { gather: time.gather / per, tf: time.tf / per, scatter: time.scatter / per },
  };
}

/** DeepFM (FM + MLP [64, 32] over the 4 field vectors, on tfjs) through Trainer.learn. */
async function timeDeepFm(events: Interaction[]): Promise<Row & { backend: string }> {
  const store = buildStore(false);
  const deep = await DeepFm.create(store);
  const trainer = new Trainer(store, { seed: 1 }, deep);
  trainer.learn(events.slice(0, 20 * BATCH));
  const n = Math.min(events.length, 100_000);
  const t0 = performance.now();
  for (let i = 0; i < n; i += BATCH) trainer.learn(events.slice(i, i + BATCH));
  const seconds = (performance.now() - t0) / 1000;
  deep.dispose();
  return {
    config: 'all at 64',
    path: `Trainer.learn, deepfm (${deep.backend.name})`,
    backend: deep.backend.name,
    events: n,
    seconds,
    eventsPerSecond: n / seconds,
  };
}

async function main(): Promise<void> {
  const events = makeEvents(EVENTS);
  const rows: Row[] = [];
  const mixes: Record<string, Record<number, number>> = {};
  for (const [config, mix] of [
    ['all at 64', false],
    ['tier mix', true],
  ] as const) {
    const store = buildStore(mix);
    const acc = store.accounting();
    mixes[config] = Object.fromEntries(acc.tiers.map((t) => [t.size, t.tokens]));
    rows.push(timeModel(config, store, events));
    rows.push(timeTrainer(config, buildStore(mix), events));
    // FTRL for the linear weights (--linear-optimizer ftrl): z and n per token, two roots a step.
    rows.push(timeTrainer(config, buildStore(mix, 2), events, { linearOptimizer: 'ftrl' }));
    rows.push(timeResolve(config, buildStore(mix), events));
  }
  // The tier mix with nested projections (--projection nested): no P_s, a token of size s costs O(s).
  const nested = { projection: 'nested' } as const;
  rows.push(timeModel('tier mix, nested', buildStore(true), events, nested));
  rows.push(timeTrainer('tier mix, nested', buildStore(true), events, nested));
  // The tfjs FM on the backend chosen at start and on every slower one registered (wasm, cpu).
  const choice = await initBackend();
  const tf = choice.tf;
  const chosen = tf.getBackend() as string;
  const tfRows: Array<TfRow | { backend: string; error: string }> = [];
  for (const backend of [...new Set([chosen, 'wasm', 'cpu'])]) {
    if (tf.findBackendFactory(backend) == null) continue;
    try {
      await tf.setBackend(backend);
      await tf.ready();
      // cpu runs ~10x slower: fewer batches keep the run short.
      for (const taped of [true, false]) {
        const row = timeTf(tf, backend, events, backend === 'cpu' ? 30 : 100, taped);
        tfRows.push(row);
        rows.push(row);
      }
    } catch (error) {
      tfRows.push({ backend, error: (error as Error).message });
    }
  }
  await tf.setBackend(chosen);
  await tf.ready();
  let deepRow: (Row & { backend: string }) | { error: string };
  try {
    deepRow = await timeDeepFm(events);
    rows.push(deepRow);
  } catch (error) {
    deepRow = { error: (error as Error).message };
  }
  process.stdout.write(`TensorFlow.js backend chosen: ${choice.name}\n`);
  for (const r of rows) {
    const b = r.breakdown;
    const t = (r as TfRow).msPerBatch;
    const extra =
      b !== undefined
        ? `  forward ${pct(b.forwardShare)}, backward+rows ${pct(b.backwardShare)}, projection flush ${pct(b.flushShare)}`
        : t !== undefined
          ? `  per batch: gather ${t.gather.toFixed(1)} ms, tfjs ${t.tf.toFixed(1)} ms, scatter ${t.scatter.toFixed(1)} ms`
          : '';
    process.stdout.write(
      `${r.config.padEnd(24)} ${r.path.padEnd(36)} ${Math.round(r.eventsPerSecond).toString().padStart(9)} events/s  (${r.events} events, ${r.seconds.toFixed(2)} s)${extra}\n`,
    );
  }
  for (const r of tfRows) if ('error' in r) process.stdout.write(`tfjs on ${r.backend}: ${r.error}\n`);
  await mkdir('bench/results', { recursive: true });
  await writeFile(
    'bench/results/train.json',
    `${JSON.stringify({ dim: D, tokensPerEvent: 4, batch: BATCH, node: process.version, backend: choice.name, skipped: choice.skipped, tierMix: mixes, results: rows, tf: tfRows, deepfm: deepRow }, null, 2)}\n`,
  );
}

function pct(x: number): string {
  return `${(x * 100).toFixed(0)}%`;
}

await main();
