/**
 * The package's entry (`import ... from 'pme-stream'`): the recommender in process
 * (createRecommender), the whole service (startService), and the option table both take.
 */
import { type ConfigValues, configFrom } from './config.js';
import { type Log, type Service, startService as startServiceWith } from './service/index.js';

export type { PruneWindowReport, TierReport, TiersReport } from './api/contract.js';
export {
  type Config,
  type ConfigValues,
  configFrom,
  describeOptions,
  loadConfig,
  OPTIONS,
} from './config.js';
export type { RecommendResult, TrainerStats, WindowReport } from './engine/index.js';
export { isPmeError, PmeError } from './errors.js';
export {
  type CatalogItem,
  createRecommender,
  type Interaction,
  type Recommender,
  type RecommenderOptions,
  type Refusal,
} from './library.js';
export type { Log, Service };

/**
 * The whole service (Kafka consumer, trainer, PME, HTTP API, snapshots), from options by the
 * README table's names; `brokers` is needed. Resolves once it serves; stop() ends it.
 */
export function startService(options: ConfigValues = {}, log?: Log): Promise<Service> {
  return startServiceWith(configFrom(options), log);
}
