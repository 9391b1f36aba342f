import type { Interaction } from './event.js';
import type { DataReport } from './report.js';

/**
 * One file's line parser. It is built from the file's first non-blank line (so it can detect
 * the layout and whether that line is a header) and turns each line into an event, or into
 * null for a header or a malformed line (counted in the report it was built with).
 */
export interface LineParser {
  /** The layout detected from the first line. */
  readonly layout: string;
  /** `lineNo` is 1-based in the file. */
  parse(line: string, lineNo: number): Interaction | null;
  /** The item-side fields of an event, for the catalog built from the data (`{}` when unknown). */
  itemFields(event: Interaction): Record<string, string>;
}

/** Builds the parser of a format for one file; `firstLine` is its first non-blank line. */
export type ParserFactory = (firstLine: string, report: DataReport) => LineParser;

/** `Number(s)` except that an empty or blank string is NaN rather than 0. */
export function toNumber(s: string): number {
  return s.length === 0 || s.trim().length === 0 ? Number.NaN : Number(s);
}

export const NO_FIELDS: Readonly<Record<string, string>> = Object.freeze({});

/** Thrown by a parser factory when the file is not in its format; the reader adds the path. */
export class FormatMismatch extends Error {}

/**
 * Compiles `(values) => ({ [names[k]]: values[indices[k]], ... })` as one object literal, so
 * every record of a file gets the same hidden class from a boilerplate; filling `{}` key by key
 * costs twice as much on Criteo's 37 fields (measured: 7.6 vs 3.7 us/row including the split,
 * see bench/data.ts). Names are embedded through JSON.stringify, so any string is safe.
 */
export function compileRecord(
  names: readonly string[],
  indices: readonly number[],
): (values: readonly string[]) => Record<string, string> {
  const body = names.map((n, k) => `${JSON.stringify(n)}: v[${indices[k] | 0}]`).join(',\n');
  return new Function('v', `return {\n${body}\n};`) as (values: readonly string[]) => Record<string, string>;
}
