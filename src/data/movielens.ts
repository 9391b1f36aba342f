/**
 * MovieLens, in its three official layouts, detected from the first line:
 * - `ratings.csv` (ml-latest, ml-20m, ml-25m): header `userId,movieId,rating,timestamp`;
 * - `u.data` (ml-100k): tab-separated `user item rating timestamp`;
 * - `ratings.dat` (ml-1m, ml-10m): `user::item::rating::timestamp`.
 * Rating >= 4 is a positive (label 1), below 4 a negative (the field's convention); unix seconds
 * become milliseconds. The rating itself is not a field: it is the label.
 *
 * Genres come from a movies file (`movies.csv`, `movies.dat` or `u.item`) when one is given.
 * An event carries one value per field, so a movie's genres become two fields:
 * - `genres`: the full set, sorted and joined by `|` (`Adventure|Animation|Children`): the
 *   combination is specific (about a thousand distinct sets on ml-latest-small) and separates
 *   "Animation|Children" from "Animation|Horror";
 * - `genre`: the movie's rarest genre in the catalog (ties by name), its most specific single
 *   genre (Toy Story: `Animation`, not the alphabetical first `Adventure` that most movies share):
 *   a coarse, well-populated token that generalises to movies with an unseen combination.
 * A movie with no genre (`(no genres listed)`, u.item's `unknown`) gets neither field.
 */
import type { CatalogItem, Interaction } from './event.js';
import { lineBatches, splitCsv } from './lines.js';
import { type LineParser, NO_FIELDS, toNumber } from './parser.js';
import { createDataReport, type DataReport, malformed } from './report.js';

/** Genre lists meaning "no genre". */
const NO_GENRE = new Set(['(no genres listed)', 'unknown', '']);

/** u.item's 19 genre flags, in file order (ml-100k `u.genre`). */
const U_ITEM_GENRES = [
  'unknown',
  'Action',
  'Adventure',
  'Animation',
  "Children's",
  'Comedy',
  'Crime',
  'Documentary',
  'Drama',
  'Fantasy',
  'Film-Noir',
  'Horror',
  'Musical',
  'Mystery',
  'Romance',
  'Sci-Fi',
  'Thriller',
  'War',
  'Western',
];

export type MovieLensLayout = 'ratings.csv' | 'u.data' | 'ratings.dat';

/**
 * The layout of a MovieLens ratings file from its first line (a header, or a rating with four
 * columns and a numeric rating), or null if it is none of them.
 */
export function detectMovieLensLayout(firstLine: string): MovieLensLayout | null {
  if (firstLine.startsWith('userId,movieId,rating')) return 'ratings.csv';
  for (const [separator, layout] of LAYOUTS) {
    const cols = firstLine.split(separator);
    if (cols.length === 4 && Number.isFinite(toNumber(cols[2]))) return layout;
  }
  return null;
}

const LAYOUTS: readonly [string, MovieLensLayout][] = [
  ['::', 'ratings.dat'],
  ['\t', 'u.data'],
  [',', 'ratings.csv'],
];

/** Movies file, read: the catalog and each movie's genre fields. */
export interface Movies {
  catalog: CatalogItem[];
  fields: Map<string, Readonly<Record<string, string>>>;
  report: DataReport;
}

/** Reads `movies.csv`, `movies.dat` or `u.item` (layout detected from the first line). */
export async function readMovies(path: string): Promise<Movies> {
  const report = createDataReport('movielens-items');
  const raw: { id: string; genres: string[] }[] = [];
  let lineNo = 0;
  for await (const batch of lineBatches(path)) {
    for (const line of batch) {
      lineNo++;
      report.lines++;
      if (line.length === 0) continue;
      if (report.layout === '') {
        // u.item has 24+ `|` columns; movies.csv holds `|` only between a few genres.
        report.layout = line.includes('::')
          ? 'movies.dat'
          : line.split('|').length >= 24
            ? 'u.item'
            : 'movies.csv';
        if (report.layout === 'movies.csv' && line.startsWith('movieId,')) continue;
      }
      const movie = parseMovie(line, report.layout);
      if (movie === null) {
        malformed(report, lineNo, 'columns');
        continue;
      }
      if (movie.id.length === 0) {
        malformed(report, lineNo, 'empty_id');
        continue;
      }
      raw.push(movie);
      report.events++;
    }
  }
  // The primary genre is the rarest one, so count genres over the whole catalog first.
  const genreCount = new Map<string, number>();
  for (const m of raw) for (const g of m.genres) genreCount.set(g, (genreCount.get(g) ?? 0) + 1);
  const catalog: CatalogItem[] = [];
  const fields = new Map<string, Readonly<Record<string, string>>>();
  for (const m of raw) {
    let f: Readonly<Record<string, string>> = NO_FIELDS;
    if (m.genres.length > 0) {
      const sorted = [...new Set(m.genres)].sort();
      let primary = sorted[0];
      for (const g of sorted)
        if ((genreCount.get(g) as number) < (genreCount.get(primary) as number)) primary = g;
      f = Object.freeze({ genre: primary, genres: sorted.join('|') });
    }
    if (!fields.has(m.id)) catalog.push({ item: m.id, fields: { ...f }, active: true });
    fields.set(m.id, f);
  }
  return { catalog, fields, report };
}

function parseMovie(line: string, layout: string): { id: string; genres: string[] } | null {
  if (layout === 'movies.dat') {
    // Titles never hold `::`, but take id and genres from the ends to be safe.
    const a = line.indexOf('::');
    const b = line.lastIndexOf('::');
    if (a < 0 || a === b) return null;
    return { id: line.slice(0, a), genres: splitGenres(line.slice(b + 2)) };
  }
  if (layout === 'u.item') {
    const cols = line.split('|');
    // A title may hold `|`; the 19 flags are always the last columns.
    if (cols.length < 24) return null;
    const genres: string[] = [];
    const base = cols.length - 19;
    for (let g = 1; g < 19; g++) if (cols[base + g] === '1') genres.push(U_ITEM_GENRES[g]);
    return { id: cols[0], genres };
  }
  const cols = splitCsv(line);
  if (cols.length !== 3) return null;
  return { id: cols[0], genres: splitGenres(cols[2]) };
}

function splitGenres(s: string): string[] {
  if (NO_GENRE.has(s)) return [];
  return s.split('|').filter((g) => !NO_GENRE.has(g));
}

/** Parser of a MovieLens ratings file; `movies` joins genres when given. */
export function createMovieLensParser(
  firstLine: string,
  report: DataReport,
  movies: Movies | null,
): LineParser | null {
  const layout = detectMovieLensLayout(firstLine);
  if (layout === null) return null;
  const separator = layout === 'ratings.dat' ? '::' : layout === 'u.data' ? '\t' : ',';
  const header = layout === 'ratings.csv' && firstLine.startsWith('userId,');
  const genres = movies?.fields ?? null;
  let sawHeader = !header;
  return {
    layout,
    parse(line: string, lineNo: number): Interaction | null {
      if (!sawHeader) {
        sawHeader = true;
        return null;
      }
      const cols = line.split(separator);
      if (cols.length !== 4) return malformed(report, lineNo, 'columns');
      const user = cols[0];
      const item = cols[1];
      if (user.length === 0 || item.length === 0) return malformed(report, lineNo, 'empty_id');
      const rating = toNumber(cols[2]);
      if (!Number.isFinite(rating)) return malformed(report, lineNo, 'bad_rating');
      const seconds = toNumber(cols[3]);
      if (!Number.isFinite(seconds)) return malformed(report, lineNo, 'bad_timestamp');
      const f = genres?.get(item);
      return {
        user,
        item,
        label: rating >= 4 ? 1 : 0,
        timestamp: seconds * 1000,
        fields: f === undefined || f === NO_FIELDS ? {} : { genre: f.genre, genres: f.genres },
      };
    },
    itemFields(event: Interaction): Record<string, string> {
      return { ...event.fields };
    },
  };
}
