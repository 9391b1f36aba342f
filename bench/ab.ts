/**
 * A/B of the training hot paths between this build and another checkout's, in one process: the
 * two builds' FmModel.step and Trainer.learn run in alternating blocks over the same events, so
 * both see the same machine at the same moments. Run to run, a 2-core VM moves separate runs of
 * bench:train by 5-10%; alternating blocks cancel most of that. The other checkout must be built
 * (`npm run build` there). Writes bench/results/ab.json.
 *
 *   npm run build && node dist/bench/ab.js --other /path/to/checkout [--events 300000] [--rounds 2]
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Interaction } from '../src/data/event.js';
import { createRandom, ZipfSampler } from '../src/util/random.js';
import { numberArg, stringArg } from './args.js';

const EVENTS = numberArg('events', 300_000);
const ROUNDS = numberArg('rounds', 2);
const BLOCK = 10_000;
const BATCH = 256;
const LADDER = [0, 2, 4, 8, 16, 32, 64];
const here = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A build's modules by their path now, or where they were before (src/engine/fm.js, trainer.js). */
// biome-ignore lint/suspicious/noExplicitAny: two builds of possibly different versions.
async function load(root: string): Promise<{ FmModel: any; Trainer: any; EmbeddingStore: any }> {
  const first = (...paths: string[]) => join(root, paths.find((p) => existsSync(join(root, p))) ?? paths[0]);
  const fm = await import(first('dist/src/engine/model/fm.js', 'dist/src/engine/fm.js'));
  const trainer = await import(first('dist/src/engine/trainer/index.js', 'dist/src/engine/trainer.js'));
  const store = await import(join(root, 'dist/src/store/index.js'));
  return { FmModel: fm.FmModel, Trainer: trainer.Trainer, EmbeddingStore: store.EmbeddingStore };
}

function makeEvents(n: number): Interaction[] {
  const random = createRandom(42);
  const users = new ZipfSampler(50_000, 1);
  const items = new ZipfSampler(20_000, 1);
  const out: Interaction[] = [];
  for (let i = 0; i < n; i++) {
    const u = users.sample(random);
    const it = items.sample(random);
    const label = random.next() < 0.3 ? 1 : 0;
    out.push({
      user: String(u),
      item: String(it),
      label,
      timestamp: i,
      fields: { category: String(it % 100), device: String(u % 10) },
    });
  }
  return out;
}

/** bench/train.ts's tier mix: few large tokens, most small or 0 (all 64 when `mix` is false). */
function sizeForRank(mix: boolean, rank: number, cardinality: number): number {
  if (!mix || cardinality <= 100) return 64;
  const q = rank / cardinality;
  if (q < 0.002) return 64;
  if (q < 0.01) return 32;
  if (q < 0.03) return 16;
  if (q < 0.1) return 8;
  if (q < 0.3) return 4;
  if (q < 0.6) return 2;
  return 0;
}

// biome-ignore lint/suspicious/noExplicitAny: a store of either build.
function buildStore(EmbeddingStore: any, mix: boolean): any {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 64, seed: 1 });
  for (const [field, n] of [
    ['user', 50_000],
    ['item', 20_000],
    ['category', 100],
    ['device', 10],
  ] as const)
    for (let r = 0; r < n; r++) store.getOrCreate(`${field}=${r}`, sizeForRank(mix, r, n));
  return store;
}

/** Seconds each side spent on the same work, in alternating blocks (which goes first alternates too). */
function alternate(
  runA: (from: number, to: number) => void,
  runB: (from: number, to: number) => void,
  n: number,
): [number, number] {
  let a = 0;
  let b = 0;
  for (let round = 0, k = 0; round < ROUNDS; round++)
    for (let from = 0; from + BLOCK <= n; from += BLOCK, k++)
      for (const side of k % 2 === 0 ? [0, 1] : [1, 0]) {
        const t0 = performance.now();
        (side === 0 ? runA : runB)(from, from + BLOCK);
        if (side === 0) a += performance.now() - t0;
        else b += performance.now() - t0;
      }
  return [a / 1000, b / 1000];
}

async function main(): Promise<void> {
  const other = stringArg('other');
  if (other === undefined) throw new Error('--other /path/to/a/built/checkout is needed');
  const [self, them] = [await load(here), await load(resolve(other))];
  const events = makeEvents(EVENTS);
  const rows: Array<{
    path: string;
    config: string;
    thisEventsPerSecond: number;
    otherEventsPerSecond: number;
    timeRatio: number;
  }> = [];
  for (const mix of [false, true]) {
    const config = mix ? 'tier mix' : 'all at 64';
    // model.step on pre-resolved ids.
    const steps = [self, them].map((build) => {
      const store = buildStore(build.EmbeddingStore, mix);
      const model = new build.FmModel(store);
      const keys = (e: Interaction) => [
        `user=${e.user}`,
        `item=${e.item}`,
        `category=${e.fields.category}`,
        `device=${e.fields.device}`,
      ];
      const views = events.map((e) => Int32Array.from(keys(e), (key) => store.id(key)));
      return (from: number, to: number) => {
        for (let i = from; i < to; i++) {
          model.step(views[i], 4, events[i].label);
          if ((i & (BATCH - 1)) === BATCH - 1) model.flush();
        }
      };
    });
    steps[0](0, 2 * BLOCK);
    steps[1](0, 2 * BLOCK);
    const [s0, s1] = alternate(steps[0], steps[1], events.length);
    // Trainer.learn on string keys, in mini-batches.
    const learns = [self, them].map((build) => {
      const trainer = new build.Trainer(buildStore(build.EmbeddingStore, mix), { seed: 1 });
      return (from: number, to: number) => {
        for (let i = from; i < to; i += BATCH) trainer.learn(events.slice(i, Math.min(i + BATCH, to)));
      };
    });
    learns[0](0, 2 * BLOCK);
    learns[1](0, 2 * BLOCK);
    const [l0, l1] = alternate(learns[0], learns[1], events.length);
    const n = ROUNDS * Math.floor(events.length / BLOCK) * BLOCK;
    for (const [path, a, b] of [
      ['model.step (ids resolved)', s0, s1],
      ['Trainer.learn (string keys)', l0, l1],
    ] as const)
      rows.push({ path, config, thisEventsPerSecond: n / a, otherEventsPerSecond: n / b, timeRatio: a / b });
  }
  process.stdout.write(`this build against ${other} (time ratio < 1: this one is faster)\n`);
  for (const r of rows)
    process.stdout.write(
      `${r.config.padEnd(10)} ${r.path.padEnd(28)} this ${Math.round(r.thisEventsPerSecond).toString().padStart(7)} events/s  other ${Math.round(r.otherEventsPerSecond).toString().padStart(7)} events/s  time ratio ${r.timeRatio.toFixed(3)}\n`,
    );
  await mkdir('bench/results', { recursive: true });
  await writeFile(
    'bench/results/ab.json',
    `${JSON.stringify({ other, events: EVENTS, rounds: ROUNDS, node: process.version, results: rows }, null, 2)}\n`,
  );
}

await main();
