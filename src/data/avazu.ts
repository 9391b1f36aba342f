/**
 * Avazu CTR (Kaggle): CSV `id,click,hour,C1,banner_pos,site_id,...,C21`, 24 columns, with or
 * without the header line (detected). `click` is the label; `hour` (YYMMDDHH, UTC) gives the
 * timestamp and two fields, `hour_of_day` (`0`..`23`) and `weekday` (`mon`..`sun`); every other
 * column but `id` is categorical. User and item:
 * - user = `device_id`, or `device_ip/device_model` when device_id is the placeholder
 *   `a99f214a` (about 80% of rows: devices without an id, identified as in the competition's
 *   winning solutions by ip and model);
 * - item = `site_id`, or `app_id` when site_id is the placeholder `85f751fd` (the row is app
 *   traffic; the app's site columns are then constant, and vice versa).
 * `device_id`, `site_id` and `app_id` are therefore not repeated as fields (their information is
 * in user and item; the other of site/app is a placeholder). All other columns are fields under
 * their own names. The catalog built from the data gives each item its domain and category.
 */
import type { Interaction } from './event.js';
import { compileRecord, type LineParser, toNumber } from './parser.js';
import { type DataReport, malformed } from './report.js';

export const AVAZU_COLUMNS: readonly string[] = Object.freeze([
  'id',
  'click',
  'hour',
  'C1',
  'banner_pos',
  'site_id',
  'site_domain',
  'site_category',
  'app_id',
  'app_domain',
  'app_category',
  'device_id',
  'device_ip',
  'device_model',
  'device_type',
  'device_conn_type',
  'C14',
  'C15',
  'C16',
  'C17',
  'C18',
  'C19',
  'C20',
  'C21',
]);

/** Placeholder device id of rows without one. */
export const AVAZU_NO_DEVICE = 'a99f214a';
/** Placeholder site id of app traffic. */
export const AVAZU_NO_SITE = '85f751fd';

const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const HOURS = Array.from({ length: 24 }, (_, h) => String(h));

const col = (name: string): number => AVAZU_COLUMNS.indexOf(name);
const SITE_ID = col('site_id');
const APP_ID = col('app_id');
const DEVICE_ID = col('device_id');
const DEVICE_IP = col('device_ip');
const DEVICE_MODEL = col('device_model');
/** Columns that become fields as they are, then the two taken from `hour` (pushed at 24, 25). */
const FIELD_COLUMNS = AVAZU_COLUMNS.map((_, i) => i).filter(
  (i) => i > 2 && i !== SITE_ID && i !== APP_ID && i !== DEVICE_ID,
);
const makeFields = compileRecord(
  [...FIELD_COLUMNS.map((c) => AVAZU_COLUMNS[c]), 'hour_of_day', 'weekday'],
  [...FIELD_COLUMNS, 24, 25],
);

/** `YYMMDDHH` -> epoch milliseconds (UTC), or NaN. */
export function parseAvazuHour(s: string): number {
  if (s.length !== 8) return Number.NaN;
  const n = toNumber(s);
  if (!Number.isInteger(n) || n < 0) return Number.NaN;
  const yy = Math.floor(n / 1e6);
  const mm = Math.floor(n / 1e4) % 100;
  const dd = Math.floor(n / 100) % 100;
  const hh = n % 100;
  if (mm < 1 || mm > 12 || dd < 1 || dd > 31 || hh > 23) return Number.NaN;
  const t = Date.UTC(2000 + yy, mm - 1, dd, hh);
  // Date.UTC rolls 31 Feb over into March: reject dates that do not survive the round trip.
  return new Date(t).getUTCDate() === dd ? t : Number.NaN;
}

export function createAvazuParser(firstLine: string, report: DataReport): LineParser {
  const header = firstLine.startsWith('id,');
  let sawHeader = !header;
  // Items that came from app_id, so the catalog gives them the app's domain and category.
  const appItems = new Set<string>();
  return {
    layout: header ? 'header' : 'no-header',
    parse(line: string, lineNo: number): Interaction | null {
      if (!sawHeader) {
        sawHeader = true;
        return null;
      }
      const cols = line.split(',');
      if (cols.length !== 24) return malformed(report, lineNo, 'columns');
      const click = cols[1];
      if (click !== '0' && click !== '1') return malformed(report, lineNo, 'bad_label');
      const timestamp = parseAvazuHour(cols[2]);
      if (Number.isNaN(timestamp)) return malformed(report, lineNo, 'bad_hour');
      const deviceId = cols[DEVICE_ID];
      const user = deviceId === AVAZU_NO_DEVICE ? `${cols[DEVICE_IP]}/${cols[DEVICE_MODEL]}` : deviceId;
      const app = cols[SITE_ID] === AVAZU_NO_SITE;
      const item = app ? cols[APP_ID] : cols[SITE_ID];
      if (user.length === 0 || user === '/' || item.length === 0)
        return malformed(report, lineNo, 'empty_id');
      if (app) appItems.add(item);
      // Epoch day 0 (1970-01-01) was a Thursday; years >= 2000 keep the arithmetic positive.
      cols.push(
        HOURS[Math.floor(timestamp / 3_600_000) % 24],
        WEEKDAYS[(Math.floor(timestamp / 86_400_000) + 4) % 7],
      );
      return { user, item, label: click === '1' ? 1 : 0, timestamp, fields: makeFields(cols) };
    },
    itemFields(event: Interaction): Record<string, string> {
      const f = event.fields;
      return appItems.has(event.item)
        ? { app_domain: f.app_domain, app_category: f.app_category }
        : { site_domain: f.site_domain, site_category: f.site_category };
    },
  };
}
