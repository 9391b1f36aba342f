import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The shared datasets the streaming benchmarks replay (paths under `--data-dir`, by default
 * ../shared/datasets), with a PME window every `windowEvents`: four or more per stream.
 */
export interface StreamDataset {
  name: string;
  format: string;
  data: string;
  /** MovieLens: the movies file (genres). */
  items?: string;
  windowEvents: number;
  /** Offline: categorical values seen fewer times fold into one rare token per field. Default 1. */
  minCount?: number;
}

export const STREAM_DATASETS: readonly StreamDataset[] = [
  {
    name: 'ml-latest-small',
    format: 'movielens',
    data: 'ml-latest-small/ratings.csv',
    items: 'ml-latest-small/movies.csv',
    windowEvents: 20_000,
  },
  {
    name: 'criteo-sample',
    format: 'criteo',
    data: 'criteo-sample/train.tsv',
    windowEvents: 2000,
    minCount: 3,
  },
  { name: 'avazu-sample', format: 'avazu', data: 'avazu-sample/train.csv', windowEvents: 2000, minCount: 3 },
];

/** A stream dataset with its files resolved under the data directory. */
export interface FoundDataset extends StreamDataset {
  path: string;
  itemsPath: string | undefined;
}

/**
 * The stream datasets whose file is under `dir`, in order, with their paths; each one not found
 * gets a line (and `onSkip`, to record it) instead. Lazy, so skips interleave with the work.
 */
export function* foundDatasets(
  dir: string,
  onSkip?: (d: StreamDataset, path: string) => void,
): Generator<FoundDataset> {
  for (const d of STREAM_DATASETS) {
    const path = join(dir, d.data);
    if (!existsSync(path)) {
      console.log(`${d.name}: skipped (${path} not found)`);
      onSkip?.(d, path);
      continue;
    }
    yield { ...d, path, itemsPath: d.items === undefined ? undefined : join(dir, d.items) };
  }
}
