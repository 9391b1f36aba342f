/**
 * What a file read produced, and why lines were skipped. Malformed lines are never fatal: they
 * are counted by reason, and the first few are kept as examples for the user to look at.
 */

/** Why a line was skipped. */
export type MalformedReason =
  /** Not the number of columns the layout has. */
  | 'columns'
  /** Empty user or item id. */
  | 'empty_id'
  /** MovieLens rating that is not a finite number. */
  | 'bad_rating'
  /** Label that is not a number in [0, 1] (Criteo, Avazu: not 0 or 1). */
  | 'bad_label'
  /** Timestamp that is neither a number nor an ISO date. */
  | 'bad_timestamp'
  /** Criteo integer column holding something else. */
  | 'bad_integer'
  /** Avazu `hour` that is not YYMMDDHH. */
  | 'bad_hour';

/** How many malformed lines keep their line number and reason in `examples`. */
export const MAX_EXAMPLES = 5;

export interface DataReport {
  /** Format name (`movielens`, ...). */
  format: string;
  /** Layout detected inside the format (`ratings.csv`, `u.data`, `ratings.dat`, `header`, ...). */
  layout: string;
  /** Lines read, headers and blank lines included. */
  lines: number;
  /** Events produced. */
  events: number;
  /** Lines skipped as malformed. */
  malformed: number;
  malformedByReason: Record<string, number>;
  /** The first malformed lines (1-based line numbers), at most MAX_EXAMPLES. */
  examples: { line: number; reason: string }[];
  /** Field values replaced by `rare` (minCount > 1). */
  rareFolded: number;
  /** Report of the items (movies) file, when one was read. */
  items: DataReport | null;
}

export function createDataReport(format = '', layout = ''): DataReport {
  return {
    format,
    layout,
    lines: 0,
    events: 0,
    malformed: 0,
    malformedByReason: {},
    examples: [],
    rareFolded: 0,
    items: null,
  };
}

/** Counts one malformed line. Returns null so parsers can `return malformed(...)`. */
export function malformed(report: DataReport, line: number, reason: MalformedReason): null {
  report.malformed++;
  report.malformedByReason[reason] = (report.malformedByReason[reason] ?? 0) + 1;
  if (report.examples.length < MAX_EXAMPLES) report.examples.push({ line, reason });
  return null;
}
