/**
 * The page's pure parts (no DOM): number formats, the chart history and the stacking, so they
 * are tested in Node (test/dashboard/format.test.ts) and the browser module only draws.
 */
import type { PruneWindowReport } from '../../contract.js';
import type { DashboardStats } from '../stats.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> "1.5 KiB", 200000 -> "195 KiB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  return `${Math.abs(value) >= 100 ? Math.round(value) : value.toFixed(1)} ${UNITS[unit]}`;
}

/** 1234 -> "1.2k", 2500000 -> "2.5M": for axes and tight cells. */
export function formatCount(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${trim(n / 1e9)}G`;
  if (abs >= 1e6) return `${trim(n / 1e6)}M`;
  if (abs >= 1e3) return `${trim(n / 1e3)}k`;
  return trim(n);
}

function trim(n: number): string {
  const abs = Math.abs(n);
  return abs >= 100 || Number.isInteger(n) ? String(Math.round(n)) : abs >= 10 ? n.toFixed(1) : n.toFixed(2);
}

/** A probability-like metric to 4 places, or a dash when there is none yet. */
export function formatMetric(value: number | null | undefined): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(4);
}

/** Axis steps for bytes: powers of two, so ticks fall on whole KiB and MiB. */
export const BYTE_STEPS: number[] = Array.from({ length: 50 }, (_, k) => 2 ** k);

/** Axis steps for counts: 1, 2, 5, 10, 20, 50, …; never a fraction of a message. */
export const COUNT_STEPS: number[] = Array.from({ length: 15 }, (_, k) =>
  [1, 2, 5].map((m) => m * 10 ** k),
).flat();

/** Signed relative change, "-12.5%", for before → after cells. */
export function formatChange(before: number, after: number): string {
  if (before === 0) return after === 0 ? '0%' : '+∞';
  const pct = ((after - before) / before) * 100;
  return `${pct > 0 ? '+' : ''}${pct.toFixed(1)}%`;
}

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

/**
 * Running sums bottom-up: row k of the result is rows[0] + … + rows[k]. A stacked area chart
 * draws these, top first, each filled down to zero over the ones below it.
 */
export function stack(rows: ReadonlyArray<ReadonlyArray<number | null>>): number[][] {
  const out: number[][] = [];
  let below: number[] | null = null;
  for (const row of rows) {
    const sums = row.map((v, i) => (v ?? 0) + (below === null ? 0 : below[i]));
    out.push(sums);
    below = sums;
  }
  return out;
}

/**
 * The header's memory figures. `text`: what the budget counts (the store's total, as `/v1/tiers`
 * says) against the budget, "1.9 MiB / 1.9 MiB (98.7%)", and `parts` its parts, "tiers 683 KiB ·
 * token columns 488 KiB · key index 725 KiB". `outside`: what PME and the trainer keep beside the
 * budget (the sketch, caches, catalog), "+2.1 MiB", with its parts in `outsideParts`. JSON carries
 * an unbudgeted store's Infinity as null.
 */
export function memoryFigure(
  stats: Pick<
    DashboardStats,
    'totalBytes' | 'budgetBytes' | 'memoryParts' | 'unbudgeted' | 'unbudgetedBytes'
  >,
): {
  text: string;
  parts: string;
  outside: string;
  outsideParts: string;
} {
  const budget = stats.budgetBytes as number | null;
  const text =
    budget === null || !(budget > 0)
      ? `${formatBytes(stats.totalBytes)} (no budget)`
      : `${formatBytes(stats.totalBytes)} / ${formatBytes(budget)} (${((100 * stats.totalBytes) / budget).toFixed(1)}%)`;
  const { tiers, tokenColumns, keyIndex } = stats.memoryParts;
  const parts = `tiers ${formatBytes(tiers)} · token columns ${formatBytes(tokenColumns)} · key index ${formatBytes(keyIndex)}`;
  const u = stats.unbudgeted;
  const outsideParts = `PME sketch ${formatBytes(u.pmeSketch)} · PME per token ${formatBytes(u.pmeTokens)} · key caches ${formatBytes(u.keyCaches)} · catalog ${formatBytes(u.catalog)} · item caches ${formatBytes(u.itemCaches)}`;
  return { text, parts, outside: `+${formatBytes(stats.unbudgetedBytes)}`, outsideParts };
}

/** Events per second between two samples; null when there is no earlier sample or no time passed. */
export function eventRate(previous: DashboardStats | null, current: DashboardStats): number | null {
  if (previous === null) return null;
  const seconds = (current.at - previous.at) / 1000;
  if (seconds <= 0) return null;
  return Math.max(0, (current.eventsTrained - previous.eventsTrained) / seconds);
}

/**
 * What the charts show over time: one column per poll, the oldest dropped past `capacity`.
 * Tier columns follow the tier sizes of the samples; a sample with other sizes (a new ladder
 * after a restart) starts the tier history over.
 */
export class History {
  readonly capacity: number;
  /** Sample times in seconds (uPlot's time unit). */
  readonly times: number[] = [];
  sizes: number[] = [];
  /** Per tier (ascending size): bytes, tokens. */
  bytes: Array<Array<number | null>> = [];
  tokens: Array<Array<number | null>> = [];
  /** The budget's parts besides the tiers: with them the memory chart stacks up to `totalBytes`. */
  readonly tokenColumns: Array<number | null> = [];
  readonly keyIndex: Array<number | null> = [];
  readonly auc: Array<number | null> = [];
  readonly windowAuc: Array<number | null> = [];
  readonly logloss: Array<number | null> = [];
  readonly windowLogloss: Array<number | null> = [];
  readonly rate: Array<number | null> = [];
  readonly lag: Array<number | null> = [];
  #last: DashboardStats | null = null;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Adds a sample; returns true when the tier sizes changed (the tier charts must be rebuilt). */
  push(stats: DashboardStats): boolean {
    const sizes = stats.tiers.map((t) => t.size);
    const changed = sizes.length !== this.sizes.length || sizes.some((s, i) => s !== this.sizes[i]);
    if (changed) {
      this.sizes = sizes;
      this.bytes = sizes.map(() => this.times.map(() => null));
      this.tokens = sizes.map(() => this.times.map(() => null));
    }
    this.times.push(stats.at / 1000);
    stats.tiers.forEach((tier, i) => {
      this.bytes[i].push(tier.bytes);
      this.tokens[i].push(tier.tokens);
    });
    this.tokenColumns.push(stats.memoryParts.tokenColumns);
    this.keyIndex.push(stats.memoryParts.keyIndex);
    this.auc.push(stats.auc);
    this.windowAuc.push(stats.windowAuc);
    this.logloss.push(stats.logloss);
    this.windowLogloss.push(stats.windowLogloss);
    this.rate.push(eventRate(this.#last, stats));
    this.lag.push(stats.lagTotal);
    this.#last = stats;
    if (this.times.length > this.capacity) {
      for (const column of this.#columns()) column.shift();
    }
    return changed;
  }

  /** The memory chart's rows, bottom-up: each tier (ascending size), the token columns, the key
   *  index. Stacked, the top row is what the budget counts, the figure the header shows. */
  memoryRows(): Array<Array<number | null>> {
    return [...this.bytes, this.tokenColumns, this.keyIndex];
  }

  /** The newest sample, if any. */
  get last(): DashboardStats | null {
    return this.#last;
  }

  #columns(): Array<unknown[]> {
    return [
      this.times,
      ...this.bytes,
      ...this.tokens,
      this.tokenColumns,
      this.keyIndex,
      this.auc,
      this.windowAuc,
      this.logloss,
      this.windowLogloss,
      this.rate,
      this.lag,
    ];
  }
}

/** One row of the prune table, formatted. */
export interface WindowRow {
  id: number;
  started: string;
  reason: string;
  duration: string;
  searched: string;
  moved: string;
  auc: string;
  /** The window's own step: AUC of the last events learned, just before → just after its moves. */
  step: string;
  /** Per size of `sizes`: "before → after", or one figure when the tier did not change. */
  tiers: Array<{ text: string; changed: boolean }>;
  total: string;
  change: string;
  /** Whether memory went down (-1), stayed (0) or went up (1). */
  direction: -1 | 0 | 1;
}

/** Table model of the windows, newest first, with one column per tier size seen in any window. */
export function windowRows(
  windows: readonly PruneWindowReport[],
  time: (ms: number) => string,
): { sizes: number[]; rows: WindowRow[] } {
  const sizes = [...new Set(windows.flatMap((w) => [...w.before, ...w.after].map((t) => t.size)))].sort(
    (a, b) => a - b,
  );
  const bytesAt = (tiers: PruneWindowReport['before'], size: number) =>
    tiers.find((t) => t.size === size)?.totalBytes ?? 0;
  const rows = [...windows].reverse().map((w): WindowRow => {
    const before = w.before.reduce((sum, t) => sum + t.totalBytes, 0);
    const after = w.after.reduce((sum, t) => sum + t.totalBytes, 0);
    return {
      id: w.id,
      started: time(w.startedAt),
      reason: w.reason,
      duration: `${w.durationMs < 10 ? w.durationMs.toFixed(1) : Math.round(w.durationMs)} ms`,
      searched: formatCount(w.searched),
      moved: `${formatCount(w.moved)} / ${formatCount(w.demoted)} / ${formatCount(w.evicted)}`,
      auc: `${formatMetric(w.aucBefore)} → ${formatMetric(w.aucAfter)}`,
      step: w.probe === null ? '–' : `${formatMetric(w.probe.aucBefore)} → ${formatMetric(w.probe.aucAfter)}`,
      tiers: sizes.map((size) => {
        const [b, a] = [bytesAt(w.before, size), bytesAt(w.after, size)];
        return { text: b === a ? formatBytes(b) : `${formatBytes(b)} → ${formatBytes(a)}`, changed: b !== a };
      }),
      total: `${formatBytes(before)} → ${formatBytes(after)}`,
      change: formatChange(before, after),
      direction: after < before ? -1 : after > before ? 1 : 0,
    };
  });
  return { sizes, rows };
}
