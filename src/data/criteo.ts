/**
 * Criteo display advertising (Kaggle / Terabyte): tab-separated `label, I1..I13, C1..C26`,
 * 40 columns on every row, any value but the label may be empty. Following the field's
 * convention (Juan et al., the AutoInt/PNN preprocessing):
 * - an integer `v > 2` becomes the log bucket `L<floor(ln(v)^2)>` (`1382` -> `L52`); `v <= 2`
 *   (including negatives) is kept as written. The `L` keeps bucket 2 apart from the value 2.
 * - an empty value is its own token, `empty`;
 * - rare categorical values fold into `rare` with `minCount` (see formats.ts).
 *
 * The data has no user, item or time. Two columns stand for user and item (`userColumn`,
 * `itemColumn`, default C1 and C2: the first two categorical columns, never empty on the real
 * data) and every other column is a field named by its column (`I1`, `C3`, ...). The timestamp
 * is the row index (0-based, as milliseconds), so order is the file's order.
 */
import type { Interaction } from './event.js';
import { compileRecord, type LineParser, NO_FIELDS } from './parser.js';
import { type DataReport, malformed } from './report.js';

export const CRITEO_COLUMNS: readonly string[] = Object.freeze([
  'label',
  ...Array.from({ length: 13 }, (_, i) => `I${i + 1}`),
  ...Array.from({ length: 26 }, (_, i) => `C${i + 1}`),
]);

/** Token value of an empty column (never a real value: those are integers or 8-hex hashes). */
export const EMPTY_VALUE = 'empty';

/** Bucket names up to ln(2^53)^2 ~ 1349, built once rather than per value. */
const BUCKETS = Array.from({ length: 1400 }, (_, b) => `L${b}`);

/** The Criteo integer transform: `L<floor(ln(v)^2)>` for v > 2, else v as written. */
export function bucketCriteoInteger(v: number): string {
  if (v > 2) {
    const l = Math.log(v);
    const b = Math.floor(l * l);
    return b < BUCKETS.length ? BUCKETS[b] : `L${b}`;
  }
  return String(v);
}

export interface CriteoColumns {
  /** Column standing for the user. Default `C1`. */
  userColumn?: string;
  /** Column standing for the item. Default `C2`. */
  itemColumn?: string;
}

/** Validates the user/item columns; returns an error message or null. */
export function checkCriteoColumns(c: CriteoColumns): string | null {
  const user = c.userColumn ?? 'C1';
  const item = c.itemColumn ?? 'C2';
  for (const col of [user, item]) {
    if (!CRITEO_COLUMNS.includes(col) || col === 'label') {
      return `criteo user/item column "${col}" is not one of I1..I13, C1..C26`;
    }
  }
  if (user === item) return `criteo userColumn and itemColumn are both "${user}"`;
  return null;
}

export function createCriteoParser(
  _firstLine: string,
  report: DataReport,
  columns: CriteoColumns = {},
): LineParser {
  const userCol = CRITEO_COLUMNS.indexOf(columns.userColumn ?? 'C1');
  const itemCol = CRITEO_COLUMNS.indexOf(columns.itemColumn ?? 'C2');
  const fieldColumns = CRITEO_COLUMNS.map((_, c) => c).filter((c) => c > 0 && c !== userCol && c !== itemCol);
  const makeFields = compileRecord(
    fieldColumns.map((c) => CRITEO_COLUMNS[c]),
    fieldColumns,
  );
  // Integer columns fail the whole line on a non-integer, so parse them before allocating.
  const values = new Array<string>(40).fill('');
  let row = 0;
  return {
    layout: 'tsv',
    parse(line: string, lineNo: number): Interaction | null {
      const cols = line.split('\t');
      if (cols.length !== 40) return malformed(report, lineNo, 'columns');
      const l = cols[0];
      if (l !== '0' && l !== '1') return malformed(report, lineNo, 'bad_label');
      for (let c = 1; c <= 13; c++) {
        const s = cols[c];
        if (s.length === 0) {
          values[c] = EMPTY_VALUE;
          continue;
        }
        const v = Number(s);
        if (!Number.isInteger(v)) return malformed(report, lineNo, 'bad_integer');
        values[c] = bucketCriteoInteger(v);
      }
      for (let c = 14; c < 40; c++) values[c] = cols[c].length === 0 ? EMPTY_VALUE : cols[c];
      const fields = makeFields(values);
      return {
        user: values[userCol],
        item: values[itemCol],
        label: l === '1' ? 1 : 0,
        timestamp: row++,
        fields,
      };
    },
    itemFields(): Record<string, string> {
      return { ...NO_FIELDS };
    },
  };
}
