/**
 * The trainer's state beyond the store, as named byte arrays for the store's snapshot `extra`
 * section: the dense model (bias, projections and their Adagrad state) and the item list with
 * popularity counts (negatives and the cold-start ranking), and the learned-event counters.
 * Progressive metrics start afresh.
 */
import { PmeError } from '../errors.js';
import type { Trainer } from './trainer.js';

const PREFIX = 'engine/';

const bytesOf = (a: Int32Array | Float64Array): Uint8Array =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Each trainer's catalog names and signatures, encoded at a keys version: they only grow, and
 *  encoding them is most of a snapshot's synchronous copy (~1.5 ms at 10,000 items, ~4.4 ms at
 *  100,000), a pause for every request served on this thread. */
const encodedKeys = new WeakMap<Trainer, { version: number; bytes: Uint8Array }>();

function catalogKeysJson(trainer: Trainer): Uint8Array {
  const cached = encodedKeys.get(trainer);
  if (cached !== undefined && cached.version === trainer.catalogKeysVersion) return cached.bytes;
  const bytes = new TextEncoder().encode(JSON.stringify(trainer.exportCatalogKeys()));
  encodedKeys.set(trainer, { version: trainer.catalogKeysVersion, bytes });
  return bytes;
}

/** The trainer's snapshot sections. Read-only: the catalog's names are shared with later calls. */
export function exportTrainerState(trainer: Trainer): Record<string, Uint8Array | Float32Array> {
  const model = trainer.model;
  const out: Record<string, Uint8Array | Float32Array> = {};
  // Float64: the model keeps the bias in doubles, and a rounded bias would make a restored
  // state drift from the one that was saved.
  out[`${PREFIX}bias.f64`] = new Uint8Array(Float64Array.of(model.bias, model.biasAccumulator).buffer);
  model.projections.forEach((P, ti) => {
    if (P === null) return;
    const size = model.store.tiers[ti].size;
    out[`${PREFIX}P${size}.f32`] = Float32Array.from(P);
    out[`${PREFIX}A${size}.f32`] = Float32Array.from(model.projectionAccumulators[ti]!);
  });
  // The catalog compactly (names once, field keys once per signature, the rest typed arrays):
  // the snapshot's synchronous copy is a pause for every request served on this thread.
  out[`${PREFIX}catalog.json`] = catalogKeysJson(trainer);
  const catalog = trainer.exportCatalogColumns();
  out[`${PREFIX}catalogSignature.i32`] = bytesOf(catalog.signature);
  out[`${PREFIX}catalogActive.u8`] = catalog.active;
  out[`${PREFIX}catalogCount.f64`] = bytesOf(catalog.count);
  const { learned, negativesDrawn } = trainer.stats();
  out[`${PREFIX}counters.json`] = new TextEncoder().encode(JSON.stringify({ learned, negativesDrawn }));
  return out;
}

export function importTrainerState(trainer: Trainer, extra: Record<string, Uint8Array | Float32Array>): void {
  const model = trainer.model;
  const f32 = (name: string): Float32Array | null => {
    const v = extra[`${PREFIX}${name}`];
    if (v === undefined) return null;
    return v instanceof Float32Array
      ? v
      : new Float32Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  };
  const f64 = extra[`${PREFIX}bias.f64`];
  const bias =
    f64 === undefined
      ? f32('bias.f32')
      : new Float64Array(f64.buffer.slice(f64.byteOffset, f64.byteOffset + f64.byteLength));
  if (bias === null) return; // a snapshot without engine state: start the dense model fresh
  model.bias = bias[0];
  model.biasAccumulator = bias[1];
  model.projections.forEach((P, ti) => {
    if (P === null) return;
    const size = model.store.tiers[ti].size;
    const saved = f32(`P${size}.f32`);
    const acc = f32(`A${size}.f32`);
    if (saved === null || acc === null || saved.length !== P.length || acc.length !== P.length)
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        `snapshot projection for size ${size} does not match the model`,
      );
    P.set(saved);
    model.projectionAccumulators[ti]!.set(acc);
  });
  const catalog = extra[`${PREFIX}catalog.json`];
  const items = extra[`${PREFIX}items.json`];
  if (catalog instanceof Uint8Array) {
    const { names, signatures } = JSON.parse(new TextDecoder().decode(catalog)) as {
      names: string[];
      signatures: string[][];
    };
    const column = (name: string): ArrayBuffer => {
      const v = extra[`${PREFIX}${name}`];
      if (v === undefined) throw new PmeError('PME_ERR_CONFIG_INVALID', `snapshot catalog lacks ${name}`);
      return v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) as ArrayBuffer;
    };
    trainer.importCatalog({
      names,
      signatures,
      signature: new Int32Array(column('catalogSignature.i32')),
      active: new Uint8Array(column('catalogActive.u8')),
      count: new Float64Array(column('catalogCount.f64')),
    });
  } else if (items instanceof Uint8Array) {
    // Snapshots written before the compact catalog.
    trainer.importItems(JSON.parse(new TextDecoder().decode(items)));
  }
  const counters = extra[`${PREFIX}counters.json`];
  if (counters instanceof Uint8Array) trainer.restoreCounters(JSON.parse(new TextDecoder().decode(counters)));
}
