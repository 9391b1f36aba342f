/**
 * Generic CSV: a header line names the columns. `user` and `item` are required; `label`
 * (a number in [0, 1]) is optional, 1 when absent (a positive-only stream, for which the
 * trainer draws negatives); `timestamp` is optional, either epoch milliseconds or an ISO 8601
 * date, and the row index (0-based) when absent. Every other column is a field under its
 * header name; an empty value means "no value" and gives no token. Values may be quoted.
 */
import type { Interaction } from './event.js';
import { splitCsv } from './lines.js';
import { FormatMismatch, type LineParser, NO_FIELDS, toNumber } from './parser.js';
import { type DataReport, malformed } from './report.js';

const NUMERIC = /^\s*-?\d+(\.\d*)?\s*$/;

/** Epoch milliseconds from a number of ms or an ISO date, or NaN. */
export function parseTimestamp(s: string): number {
  if (NUMERIC.test(s)) return Number(s);
  return s.length === 0 ? Number.NaN : Date.parse(s);
}

export function createCsvParser(firstLine: string, report: DataReport): LineParser {
  const names = splitCsv(firstLine).map((n) => n.trim());
  const userCol = names.indexOf('user');
  const itemCol = names.indexOf('item');
  if (userCol < 0 || itemCol < 0) {
    throw new FormatMismatch(`the csv format needs a header naming "user" and "item", got "${firstLine}"`);
  }
  const labelCol = names.indexOf('label');
  const timeCol = names.indexOf('timestamp');
  const fieldCols = names
    .map((_, i) => i)
    .filter((i) => i !== userCol && i !== itemCol && i !== labelCol && i !== timeCol);
  const width = names.length;
  let sawHeader = false;
  let row = 0;
  return {
    layout: 'header',
    parse(line: string, lineNo: number): Interaction | null {
      if (!sawHeader) {
        sawHeader = true;
        return null;
      }
      const cols = splitCsv(line);
      if (cols.length !== width) return malformed(report, lineNo, 'columns');
      const user = cols[userCol];
      const item = cols[itemCol];
      if (user.length === 0 || item.length === 0) return malformed(report, lineNo, 'empty_id');
      let label = 1;
      if (labelCol >= 0) {
        label = toNumber(cols[labelCol]);
        if (!(label >= 0 && label <= 1)) return malformed(report, lineNo, 'bad_label');
      }
      let timestamp = row;
      if (timeCol >= 0) {
        timestamp = parseTimestamp(cols[timeCol]);
        if (!Number.isFinite(timestamp)) return malformed(report, lineNo, 'bad_timestamp');
      }
      row++;
      const fields: Record<string, string> = {};
      for (const c of fieldCols) if (cols[c].length > 0) fields[names[c]] = cols[c];
      return { user, item, label, timestamp, fields };
    },
    itemFields(): Record<string, string> {
      return { ...NO_FIELDS };
    },
  };
}
