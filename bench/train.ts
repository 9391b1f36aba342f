/**
 * Trainer-only throughput at D = 64 with 4 tokens per event (user, item, category, device), one
 * core: the hand-written FM (a) with every token at full size, (b) with a realistic tier mix
 * (sizes by popularity: few large, most small or 0), each measured on pre-resolved token ids
 * (model step only) and through Trainer.learn (string keys resolved in the store); then (c) the
 * same FM written as batched TensorFlow.js on the backend present. Writes bench/results/train.json.
 *
 *   npm run build && node dist/bench/train.js [--events N]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import type { Interaction } from '../src/data/event.js';
import { initBackend } from '../src/engine/backend.js';
import { FmModel } from '../src/engine/fm.js';
import { Trainer } from '../src/engine/trainer.js';
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

function buildStore(mix: boolean): EmbeddingStore {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 64, seed: 1 });
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
}

function timeModel(config: string, store: EmbeddingStore, events: Interaction[]): Row {
  const model = new FmModel(store);
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
  return {
    config,
    path: 'model.step (ids resolved)',
    events: events.length,
    seconds,
    eventsPerSecond: events.length / seconds,
  };
}

function timeTrainer(config: string, store: EmbeddingStore, events: Interaction[]): Row {
  const trainer = new Trainer(store, { seed: 1 });
  trainer.learn(events.slice(0, 20_000));
  const t0 = performance.now();
  for (let i = 0; i < events.length; i += BATCH) trainer.learn(events.slice(i, i + BATCH));
  const seconds = (performance.now() - t0) / 1000;
  return {
    config,
    path: 'Trainer.learn (string keys)',
    events: events.length,
    seconds,
    eventsPerSecond: events.length / seconds,
  };
}

async function timeTf(events: Interaction[]): Promise<Row & { backend: string }> {
  const { tf, name } = await initBackend();
  const tokens = USERS + ITEMS + 100 + 10;
  const offsets = [0, USERS, USERS + ITEMS, USERS + ITEMS + 100];
  const E = tf.variable(tf.randomNormal([tokens, D], 0, 0.01));
  const W = tf.variable(tf.zeros([tokens, 1]));
  const b = tf.variable(tf.scalar(0));
  const opt = tf.train.adagrad(0.05);
  const B = 1024;
  const n = Math.min(events.length, 100 * B);
  const idBuf = new Int32Array(n * 4);
  events.slice(0, n).forEach((e, i) => {
    idBuf[i * 4] = offsets[0] + Number(e.user);
    idBuf[i * 4 + 1] = offsets[1] + Number(e.item);
    idBuf[i * 4 + 2] = offsets[2] + Number(e.fields.category);
    idBuf[i * 4 + 3] = offsets[3] + Number(e.fields.device);
  });
  const labels = Float32Array.from(events.slice(0, n), (e) => e.label);
  const step = (from: number) => {
    const ids = tf.tensor2d(idBuf.subarray(from * 4, (from + B) * 4), [B, 4], 'int32');
    const y = tf.tensor1d(labels.subarray(from, from + B));
    opt.minimize(() => {
      const v = tf.gather(E, ids); // B × 4 × D
      const s = v.sum(1);
      const pair = s
        .square()
        .sum(1)
        .sub(v.square().sum([1, 2]))
        .mul(0.5);
      const lin = tf.gather(W, ids).sum([1, 2]);
      const z = pair.add(lin).add(b);
      return tf.losses.sigmoidCrossEntropy(y, z);
    });
    tf.dispose([ids, y]);
  };
  step(0);
  const t0 = performance.now();
  let done = 0;
  for (let from = 0; from + B <= n; from += B) {
    step(from);
    done += B;
  }
  const seconds = (performance.now() - t0) / 1000;
  tf.dispose([E, W, b]);
  return {
    config: 'all at 64 (dense table)',
    path: `tfjs batched ${B} (${name})`,
    backend: name,
    events: done,
    seconds,
    eventsPerSecond: done / seconds,
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
  }
  let tfRow: (Row & { backend: string }) | { error: string };
  try {
    tfRow = await timeTf(events);
    rows.push(tfRow);
  } catch (error) {
    tfRow = { error: (error as Error).message };
  }
  for (const r of rows)
    process.stdout.write(
      `${r.config.padEnd(24)} ${r.path.padEnd(32)} ${Math.round(r.eventsPerSecond).toString().padStart(9)} events/s  (${r.events} events, ${r.seconds.toFixed(2)} s)\n`,
    );
  await mkdir('bench/results', { recursive: true });
  await writeFile(
    'bench/results/train.json',
    `${JSON.stringify({ dim: D, tokensPerEvent: 4, batch: BATCH, node: process.version, tierMix: mixes, results: rows, tf: tfRow }, null, 2)}\n`,
  );
}

await main();
