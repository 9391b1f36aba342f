/**
 * The trainer's state beyond the store, as named byte arrays for the store's snapshot `extra`
 * section: the dense model (bias, projections and their Adagrad state) and the item list with
 * popularity counts (negatives and the cold-start ranking), the learned-event counters and the
 * progressive metrics (so a restarted service's AUC and event counts go on where they stopped).
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { PmeError } from '../errors.js';
import { ByteWriter } from '../util/bytes.js';
import type { Trainer } from './trainer/index.js';

const PREFIX = 'engine/';

const bytesOf = (a: Int32Array | Float64Array): Uint8Array =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * An append-only list as JSON lines (one JSON value and a newline per entry), encoded as the list
 * grows: only new entries cost. Bytes once written are never rewritten (growing copies them to a
 * new buffer), so a view of the first n lines stays valid while later ones are added.
 */
class JsonLines {
  readonly #bytes = new ByteWriter();
  count = 0;

  /** Encodes entries count..upTo-1 (none when upTo <= count). */
  add(entry: (i: number) => unknown, upTo: number): void {
    for (; this.count < upTo; this.count++) this.#bytes.write(`${JSON.stringify(entry(this.count))}\n`);
  }

  /** The lines so far: a view that later additions leave as it is. */
  view(): Uint8Array {
    return this.#bytes.view();
  }
}

/** JSON lines back to their values (JSON text holds no raw newline, so each one ends a value). */
function parseJsonLines(bytes: Uint8Array): unknown[] {
  const text = new TextDecoder().decode(bytes);
  return text === '' ? [] : JSON.parse(`[${text.slice(0, -1).replaceAll('\n', ',')}]`);
}

/**
 * A trainer's catalog names and signatures, encoded as they come: both only ever grow, all names
 * of a 100,000-item catalog at once took ~8 ms (a pause for every request served on this thread),
 * and a live catalog gains items between snapshots.
 */
interface CatalogLines {
  names: JsonLines;
  signatures: JsonLines;
}

const catalogLines = new WeakMap<Trainer, CatalogLines>();

function catalogLinesOf(trainer: Trainer): CatalogLines {
  let lines = catalogLines.get(trainer);
  if (lines === undefined) {
    lines = { names: new JsonLines(), signatures: new JsonLines() };
    catalogLines.set(trainer, lines);
  }
  return lines;
}

/** Names or signatures encoded per step of encodeCatalogAhead(). */
const LINES_PER_STEP = 2048;

/**
 * Encodes the catalog's new names and signatures ahead of a snapshot, in steps with a macrotask
 * turn between them, so that exportTrainerState (synchronous, under the state lock) has little
 * left to do. Needs no lock: both only ever grow.
 */
export async function encodeCatalogAhead(trainer: Trainer): Promise<void> {
  while (!encodeNew(trainer, LINES_PER_STEP)) await nextTurn();
}

/** Encodes up to `step` new names and up to `step` new signatures; true once none is left. */
function encodeNew(trainer: Trainer, step: number): boolean {
  const { names, signatures } = catalogLinesOf(trainer);
  names.add((i) => trainer.itemName(i), Math.min(trainer.itemCount, names.count + step));
  signatures.add((g) => trainer.signatureKeys(g), Math.min(trainer.signatureCount, signatures.count + step));
  return names.count === trainer.itemCount && signatures.count === trainer.signatureCount;
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
    const size = trainer.store.tiers[ti].size;
    out[`${PREFIX}P${size}.f32`] = Float32Array.from(P);
    out[`${PREFIX}A${size}.f32`] = Float32Array.from(model.projectionAccumulators[ti]!);
  });
  // The catalog compactly (names once, field keys once per signature, the rest typed arrays):
  // the snapshot's synchronous copy is a pause for every request served on this thread. Names and
  // signatures are views of lines encoded as they came (see JsonLines).
  encodeNew(trainer, Number.POSITIVE_INFINITY);
  const lines = catalogLinesOf(trainer);
  out[`${PREFIX}catalogNames.jsonl`] = lines.names.view();
  out[`${PREFIX}catalogSignatures.jsonl`] = lines.signatures.view();
  const catalog = trainer.exportCatalogColumns();
  out[`${PREFIX}catalogSignature.i32`] = bytesOf(catalog.signature);
  out[`${PREFIX}catalogActive.u8`] = catalog.active;
  out[`${PREFIX}catalogCount.f64`] = bytesOf(catalog.count);
  const { learned, negativesDrawn } = trainer.stats();
  out[`${PREFIX}counters.json`] = new TextEncoder().encode(JSON.stringify({ learned, negativesDrawn }));
  const m = trainer.metrics.exportState();
  const { pos, neg, wPos, wNeg, ringBin, ringLabel, ringLoss, ...scalars } = m;
  out[`${PREFIX}metrics.json`] = new TextEncoder().encode(JSON.stringify(scalars));
  for (const [name, a] of Object.entries({ pos, neg, wPos, wNeg, ringLoss }))
    out[`${PREFIX}metrics-${name}.f64`] = bytesOf(a);
  out[`${PREFIX}metrics-ringBin.i32`] = bytesOf(ringBin);
  out[`${PREFIX}metrics-ringLabel.f32`] = ringLabel;
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
  const nested = model.stats().projection === 'nested';
  model.projections.forEach((P, ti) => {
    const size = trainer.store.tiers[ti].size;
    if (P === null) {
      // A nested model's rows are their vectors' first dims: rows learned through a P_s would
      // score differently here (the other way, the missing P_s is refused below).
      if (nested && f32(`P${size}.f32`) !== null)
        throw new PmeError(
          'PME_ERR_CONFIG_INVALID',
          `snapshot has a learned projection for size ${size}, the model's projections are nested`,
        );
      return;
    }
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
  // What is keyed on the projections' version (least-squares solvers, the publisher) starts over.
  model.denseVersion++;
  const names = extra[`${PREFIX}catalogNames.jsonl`];
  const signatures = extra[`${PREFIX}catalogSignatures.jsonl`];
  const catalog = extra[`${PREFIX}catalog.json`];
  const items = extra[`${PREFIX}items.json`];
  if (names instanceof Uint8Array || catalog instanceof Uint8Array) {
    // catalog.json: snapshots written before the names were kept as JSON lines.
    const keys =
      names instanceof Uint8Array
        ? {
            names: parseJsonLines(names) as string[],
            signatures: parseJsonLines(
              signatures instanceof Uint8Array ? signatures : new Uint8Array(0),
            ) as string[][],
          }
        : (JSON.parse(new TextDecoder().decode(catalog)) as { names: string[]; signatures: string[][] });
    const column = (name: string): ArrayBuffer => {
      const v = extra[`${PREFIX}${name}`];
      if (v === undefined) throw new PmeError('PME_ERR_CONFIG_INVALID', `snapshot catalog lacks ${name}`);
      return v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) as ArrayBuffer;
    };
    trainer.importCatalog({
      ...keys,
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
  importMetrics(trainer, extra);
}

/** The progressive metrics, when the snapshot has them (older ones do not: they start afresh). */
function importMetrics(trainer: Trainer, extra: Record<string, Uint8Array | Float32Array>): void {
  const scalars = extra[`${PREFIX}metrics.json`];
  if (!(scalars instanceof Uint8Array)) return;
  const bytes = (name: string): ArrayBuffer => {
    const v = extra[`${PREFIX}metrics-${name}`];
    if (v === undefined) throw new PmeError('PME_ERR_CONFIG_INVALID', `snapshot metrics lack ${name}`);
    return v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) as ArrayBuffer;
  };
  const f64 = (name: string) => new Float64Array(bytes(`${name}.f64`));
  trainer.metrics.importState({
    ...JSON.parse(new TextDecoder().decode(scalars)),
    pos: f64('pos'),
    neg: f64('neg'),
    wPos: f64('wPos'),
    wNeg: f64('wNeg'),
    ringLoss: f64('ringLoss'),
    ringBin: new Int32Array(bytes('ringBin.i32')),
    ringLabel: new Float32Array(bytes('ringLabel.f32')),
  });
}
