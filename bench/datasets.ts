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
