/**
 * The pure parts of the quality benchmark (bench/quality.ts), kept apart so that tests run them
 * without Python or data: the export of a stream to the plain file every system reads, the one
 * AUC / logloss used for every system's predictions, and the choice of a learning rate on the
 * first part of the stream with the score taken on the rest.
 */
import type { CatalogItem, Interaction } from '../src/data/event.js';
import { exactAuc } from '../src/engine/metrics.js';
import { logloss } from '../src/engine/model/math.js';

/**
 * One token of the export: no whitespace (the file's separators), no `|` or `:` (Vowpal Wabbit's
 * namespace and value marks). Replaced by `_`.
 */
export function cleanToken(token: string): string {
  return token.replace(/[\s|:]/g, '_');
}

/**
 * The tokens the trainer builds from an event (src/engine/trainer/tokens.ts), by side: the user,
 * the item, and the other fields — the event's own fields except those the item's catalog entry
 * names, then the catalog entry's fields (they belong to the item, and win over the event's).
 */
export function eventTokens(
  event: Interaction,
  catalogFields: ReadonlyMap<string, Readonly<Record<string, string>>>,
): { user: string; item: string; fields: string[] } {
  const itemFields = catalogFields.get(event.item);
  const fields: string[] = [];
  for (const name in event.fields)
    if (itemFields === undefined || !(name in itemFields)) fields.push(`${name}=${event.fields[name]}`);
  if (itemFields !== undefined) for (const name in itemFields) fields.push(`${name}=${itemFields[name]}`);
  return { user: `user=${event.user}`, item: `item=${event.item}`, fields };
}

/** The catalog as the trainer keeps it: the last entry of an item wins. */
export function catalogFieldMap(
  catalog: readonly CatalogItem[],
): Map<string, Readonly<Record<string, string>>> {
  const m = new Map<string, Readonly<Record<string, string>>>();
  for (const c of catalog) m.set(c.item, c.fields);
  return m;
}

/**
 * The export: one line per event, in the order learned, TAB separated:
 * `label<TAB>user token<TAB>item token<TAB>field tokens separated by spaces`, tokens `name=value`
 * cleaned by cleanToken(). The label is as the reader gives it (MovieLens: rating >= 4 is 1).
 */
export function exportLine(
  event: Interaction,
  catalogFields: ReadonlyMap<string, Readonly<Record<string, string>>>,
): string {
  const t = eventTokens(event, catalogFields);
  return `${event.label}\t${cleanToken(t.user)}\t${cleanToken(t.item)}\t${t.fields.map(cleanToken).join(' ')}`;
}

/** Parses one export line back (tests; the peers parse it in bench/peers.py the same way). */
export function parseExportLine(line: string): {
  label: number;
  user: string;
  item: string;
  fields: string[];
} {
  const [label, user, item, fields = ''] = line.split('\t');
  return { label: Number(label), user, item, fields: fields === '' ? [] : fields.split(' ') };
}

/** AUC (exact, ties one half) and mean logloss (clipped as the trainer's) of a slice. */
export interface SliceScore {
  events: number;
  auc: number;
  logloss: number;
}

export function scoreSlice(p: ArrayLike<number>, y: ArrayLike<number>, from: number, to: number): SliceScore {
  const n = Math.max(0, to - from);
  const scores = new Float64Array(n);
  const labels = new Float32Array(n);
  let loss = 0;
  for (let i = 0; i < n; i++) {
    // A diverged run (NaN or infinite output) has no score rather than an arbitrary one.
    if (!Number.isFinite(p[from + i])) return { events: n, auc: Number.NaN, logloss: Number.NaN };
    scores[i] = p[from + i];
    labels[i] = y[from + i];
    loss += logloss(p[from + i], y[from + i]);
  }
  return { events: n, auc: exactAuc(scores, labels), logloss: n === 0 ? Number.NaN : loss / n };
}

/** Where the choosing part ends: the first `share` of the stream, floored. */
export function chooseEnd(events: number, share: number): number {
  return Math.floor(events * share);
}

/** A run's scores on the parts of the stream: the choosing part, the rest (the figure reported),
 *  the whole stream and its last `share`. */
export interface RunScores {
  choose: SliceScore;
  rest: SliceScore;
  all: SliceScore;
  last: SliceScore;
}

export function scoreRun(p: ArrayLike<number>, y: ArrayLike<number>, share: number): RunScores {
  if (p.length !== y.length) throw new Error(`${p.length} predictions for ${y.length} labels`);
  const n = y.length;
  const k = chooseEnd(n, share);
  return {
    choose: scoreSlice(p, y, 0, k),
    rest: scoreSlice(p, y, k, n),
    all: scoreSlice(p, y, 0, n),
    last: scoreSlice(p, y, n - k, n),
  };
}

/**
 * The learning rate a system gets: the grid index whose run has the best AUC on the first `share`
 * of the stream only (ties: the earlier in the grid; a run without an AUC there, e.g. diverged or
 * one label only, never wins). -1 when no run has one. Nothing after the choosing part is read.
 */
export function chooseRate(
  runs: ReadonlyArray<ArrayLike<number>>,
  y: ArrayLike<number>,
  share: number,
): number {
  const k = chooseEnd(y.length, share);
  let best = -1;
  let bestAuc = Number.NEGATIVE_INFINITY;
  runs.forEach((p, i) => {
    const auc = scoreSlice(p, y, 0, k).auc;
    if (Number.isFinite(auc) && auc > bestAuc) {
      best = i;
      bestAuc = auc;
    }
  });
  return best;
}

/** Mean and sample standard deviation (0 for one value). */
export function meanStd(xs: readonly number[]): { mean: number; std: number } {
  if (xs.length === 0) return { mean: Number.NaN, std: Number.NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length === 1) return { mean, std: 0 };
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1);
  return { mean, std: Math.sqrt(v) };
}

/** 97.5% quantiles of Student's t with 1 to 30 degrees of freedom (beyond: 1.96). */
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/** The 95% t-interval of the mean of xs, taken as independent draws (NaN with fewer than 2). */
export function meanInterval(xs: readonly number[]): [number, number] {
  const { mean, std } = meanStd(xs);
  if (xs.length < 2) return [Number.NaN, Number.NaN];
  const half = ((T975[xs.length - 2] ?? 1.96) * std) / Math.sqrt(xs.length);
  return [mean - half, mean + half];
}

/** Reads a peer's probability file: one probability per line. */
export function parseProbabilities(text: string): Float64Array {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const out = new Float64Array(lines.length);
  for (let i = 0; i < lines.length; i++) out[i] = Number(lines[i]);
  return out;
}
