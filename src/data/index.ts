/**
 * Data inputs: the interaction and catalog records, the file formats every command reads
 * (movielens, criteo, avazu, csv), a deterministic split, and the synthetic workload.
 */
export { AVAZU_COLUMNS, AVAZU_NO_DEVICE, AVAZU_NO_SITE, parseAvazuHour } from './avazu.js';
export { bucketCriteoInteger, CRITEO_COLUMNS, EMPTY_VALUE } from './criteo.js';
export { type CatalogItem, type Interaction, interactionTokens } from './event.js';
export {
  FORMAT_DESCRIPTIONS,
  FORMAT_NAMES,
  type FormatName,
  RARE_VALUE,
  RareFolder,
  type ReadOptions,
  type ReadResult,
  readCatalog,
  readEvents,
  streamEvents,
} from './formats.js';
export { parseTimestamp } from './generic.js';
export { detectMovieLensLayout, type MovieLensLayout } from './movielens.js';
export { createDataReport, type DataReport, MAX_EXAMPLES, type MalformedReason } from './report.js';
export { splitEvents } from './split.js';
export {
  type ResolvedSyntheticOptions,
  resolveSyntheticOptions,
  SYNTHETIC_DEFAULTS,
  type SyntheticField,
  type SyntheticOptions,
  SyntheticWorkload,
} from './synthetic.js';
