/**
 * File formats shared by every command that reads data (`replay`, `offline`, `stream-eval`):
 * `movielens`, `criteo`, `avazu` and `csv`, each turning a file into `Interaction`s. The
 * conventions of each format (labels, fields, user/item mapping) are documented in its module.
 *
 * Two entry points: `readEvents` loads a file into memory (sorted by time by default) with its
 * catalog and a report; `streamEvents` yields events in file order for files too big for memory.
 * Malformed lines are counted by reason in the report, never fatal.
 */
import { PmeError } from '../errors.js';
import { createAvazuParser } from './avazu.js';
import { checkCriteoColumns, createCriteoParser } from './criteo.js';
import type { CatalogItem, Interaction } from './event.js';
import { createCsvParser } from './generic.js';
import { lineBatches } from './lines.js';
import { createMovieLensParser, type Movies, readMovies } from './movielens.js';
import { FormatMismatch, type LineParser } from './parser.js';
import { createDataReport, type DataReport } from './report.js';

export const FORMAT_NAMES = Object.freeze(['movielens', 'criteo', 'avazu', 'csv'] as const);
export type FormatName = (typeof FORMAT_NAMES)[number];

/** One line per format, for `--help`. */
export const FORMAT_DESCRIPTIONS: Readonly<Record<FormatName, string>> = Object.freeze({
  movielens:
    'MovieLens ratings.csv, u.data or ratings.dat (detected); rating >= 4 is positive; genres from --items (movies.csv, movies.dat, u.item)',
  criteo: 'Criteo TSV: label, I1..I13, C1..C26; integers log-bucketed; user = C1, item = C2',
  avazu:
    'Avazu CSV (header optional): click label, hour -> hour_of_day + weekday; user = device id (or ip/model), item = site or app',
  csv: 'CSV with a header naming user, item, optional label (default 1) and timestamp (ms or ISO); other columns are fields',
});

/** Token value that replaces field values seen fewer than `minCount` times. */
export const RARE_VALUE = 'rare';

export interface ReadOptions {
  /** The data file; `.gz` files are decompressed on the fly. */
  path: string;
  /** One of FORMAT_NAMES. */
  format: string;
  /** MovieLens only: the movies file (`movies.csv`, `movies.dat` or `u.item`) giving genres. */
  itemsPath?: string;
  /** readEvents only: sort by timestamp (stable, so ties keep file order). Default true. */
  sortByTime?: boolean;
  /** Stop after this many events (the first ones in the file, before sorting). Default: all. */
  limit?: number;
  /**
   * Field values seen fewer than this many times become `rare` (one token per field), as done
   * on Criteo. Default 1 (off). Applies to fields only, never to user or item ids. Costs a
   * first pass over the data (in memory for readEvents, a second read for streamEvents).
   */
  minCount?: number;
  /** Criteo only: the column standing for the user. Default `C1`. */
  userColumn?: string;
  /** Criteo only: the column standing for the item. Default `C2`. */
  itemColumn?: string;
}

interface Resolved {
  readonly path: string;
  readonly format: FormatName;
  readonly itemsPath: string | null;
  readonly sortByTime: boolean;
  readonly limit: number;
  readonly minCount: number;
  readonly userColumn: string | undefined;
  readonly itemColumn: string | undefined;
}

function invalid(message: string): PmeError {
  return new PmeError('PME_ERR_CONFIG_INVALID', message);
}

function resolve(o: ReadOptions): Resolved {
  if (!(FORMAT_NAMES as readonly string[]).includes(o.format)) {
    throw new PmeError('PME_ERR_DATA_FORMAT', String(o.format), FORMAT_NAMES.join(', '));
  }
  if (typeof o.path !== 'string' || o.path.length === 0) throw invalid('a data path is needed');
  const format = o.format as FormatName;
  // Callers pass optional flags straight through: treat null and '' as "not given".
  const itemsPath = o.itemsPath == null || o.itemsPath === '' ? null : o.itemsPath;
  if (itemsPath !== null && format !== 'movielens') {
    throw invalid(`itemsPath is read by the movielens format only, not ${format}`);
  }
  const limit = o.limit ?? Number.POSITIVE_INFINITY;
  if (!(limit === Number.POSITIVE_INFINITY || (Number.isInteger(limit) && limit > 0))) {
    throw invalid(`limit must be a positive integer, got ${o.limit}`);
  }
  const minCount = o.minCount ?? 1;
  if (!(Number.isInteger(minCount) && minCount >= 1)) {
    throw invalid(`minCount must be an integer >= 1, got ${o.minCount}`);
  }
  if ((o.userColumn !== undefined || o.itemColumn !== undefined) && format !== 'criteo') {
    throw invalid('userColumn and itemColumn apply to the criteo format only');
  }
  const columnsError = format === 'criteo' ? checkCriteoColumns(o) : null;
  if (columnsError !== null) throw invalid(columnsError);
  return Object.freeze({
    path: o.path,
    format,
    itemsPath,
    sortByTime: o.sortByTime ?? true,
    limit,
    minCount,
    userColumn: o.userColumn,
    itemColumn: o.itemColumn,
  });
}

/** One pass over a file: its parser (built on the first non-blank line) and its batches of events. */
class FilePass {
  parser: LineParser | null = null;

  constructor(
    readonly options: Resolved,
    readonly report: DataReport,
    readonly movies: Movies | null,
  ) {}

  async *batches(): AsyncGenerator<Interaction[], void, undefined> {
    const { limit, path } = this.options;
    const report = this.report;
    let lineNo = 0;
    let emitted = 0;
    for await (const lines of lineBatches(path)) {
      const out: Interaction[] = [];
      for (const line of lines) {
        lineNo++;
        report.lines++;
        if (line.length === 0) continue;
        this.parser ??= this.#open(line);
        const event = this.parser.parse(line, lineNo);
        if (event !== null) {
          out.push(event);
          if (++emitted >= limit) break;
        }
      }
      report.events += out.length;
      if (out.length > 0) yield out;
      if (emitted >= limit) return;
    }
  }

  #open(firstLine: string): LineParser {
    const o = this.options;
    try {
      let parser: LineParser | null;
      switch (o.format) {
        case 'movielens':
          parser = createMovieLensParser(firstLine, this.report, this.movies);
          if (parser === null) throw new FormatMismatch(`not a MovieLens ratings file: "${firstLine}"`);
          break;
        case 'criteo':
          parser = createCriteoParser(firstLine, this.report, o);
          break;
        case 'avazu':
          parser = createAvazuParser(firstLine, this.report);
          break;
        case 'csv':
          parser = createCsvParser(firstLine, this.report);
          break;
      }
      this.report.layout = parser.layout;
      return parser;
    } catch (error) {
      if (error instanceof FormatMismatch) throw new PmeError('PME_ERR_DATA_FILE', o.path, error.message);
      throw error;
    }
  }
}

/** Counts field values, then folds those seen fewer than minCount times into RARE_VALUE. */
export class RareFolder {
  readonly #counts = new Map<string, Map<string, number>>();

  constructor(readonly minCount: number) {}

  count(event: Interaction): void {
    const f = event.fields;
    for (const name in f) {
      let m = this.#counts.get(name);
      if (m === undefined) {
        m = new Map();
        this.#counts.set(name, m);
      }
      const v = f[name];
      m.set(v, (m.get(v) ?? 0) + 1);
    }
  }

  /** Rewrites the event's rare field values in place; returns how many it rewrote. */
  fold(event: Interaction): number {
    const f = event.fields;
    let folded = 0;
    for (const name in f) {
      if ((this.#counts.get(name)?.get(f[name]) ?? 0) < this.minCount) {
        f[name] = RARE_VALUE;
        folded++;
      }
    }
    return folded;
  }
}

async function loadMovies(o: Resolved, report: DataReport): Promise<Movies | null> {
  if (o.itemsPath === null) return null;
  const movies = await readMovies(o.itemsPath);
  report.items = movies.report;
  return movies;
}

export interface ReadResult {
  /** In timestamp order when sortByTime (ties in file order), else in file order. */
  events: Interaction[];
  /**
   * The movies file's items when one was given, then every other item of the data in
   * first-seen order, with the item-side fields the format knows (genres, Avazu domain and
   * category; none for Criteo and csv).
   */
  catalog: CatalogItem[];
  report: DataReport;
}

/** Reads a whole file into memory. */
export async function readEvents(options: ReadOptions): Promise<ReadResult> {
  const o = resolve(options);
  const report = createDataReport(o.format);
  const movies = await loadMovies(o, report);
  const pass = new FilePass(o, report, movies);
  let events: Interaction[] = [];
  for await (const batch of pass.batches()) {
    if (events.length === 0) events = batch;
    else for (const e of batch) events.push(e);
  }
  if (o.minCount > 1) {
    const folder = new RareFolder(o.minCount);
    for (const e of events) folder.count(e);
    for (const e of events) report.rareFolded += folder.fold(e);
  }
  const catalog = buildCatalog(events, pass.parser, movies);
  // Array.prototype.sort is stable (ES2019), so events of the same time keep file order.
  if (o.sortByTime) events.sort((a, b) => a.timestamp - b.timestamp);
  return { events, catalog, report };
}

function buildCatalog(
  events: Interaction[],
  parser: LineParser | null,
  movies: Movies | null,
): CatalogItem[] {
  const catalog: CatalogItem[] =
    movies === null ? [] : movies.catalog.map((c) => ({ ...c, fields: { ...c.fields } }));
  const seen = new Set<string>(catalog.map((c) => c.item));
  if (parser === null) return catalog;
  for (const e of events) {
    if (seen.has(e.item)) continue;
    seen.add(e.item);
    catalog.push({ item: e.item, fields: parser.itemFields(e), active: true });
  }
  return catalog;
}

/**
 * Yields the events of a file in file order, holding one read chunk in memory. `report` is
 * filled as lines are read (pass your own to read it during or after the loop) and is also the
 * generator's return value. With minCount > 1 the file is read twice.
 */
export async function* streamEvents(
  options: ReadOptions,
  report: DataReport = createDataReport(),
): AsyncGenerator<Interaction, DataReport, undefined> {
  const o = resolve(options);
  report.format = o.format;
  const movies = await loadMovies(o, report);
  let folder: RareFolder | null = null;
  if (o.minCount > 1) {
    folder = new RareFolder(o.minCount);
    const counting = new FilePass(o, createDataReport(o.format), movies);
    for await (const batch of counting.batches()) for (const e of batch) folder.count(e);
  }
  const pass = new FilePass(o, report, movies);
  for await (const batch of pass.batches()) {
    for (const e of batch) {
      if (folder !== null) report.rareFolded += folder.fold(e);
      yield e;
    }
  }
  return report;
}

/** Reads only the catalog side of a format: the movies file for MovieLens, else nothing. */
export async function readCatalog(
  itemsPath: string,
): Promise<{ catalog: CatalogItem[]; report: DataReport }> {
  const movies = await readMovies(itemsPath);
  return { catalog: movies.catalog, report: movies.report };
}
