/**
 * The recommender in process, without Kafka or HTTP: what `import { createRecommender } from
 * 'pme-stream'` gives. The same parts as the service (store, trainer, PME controller, snapshot
 * format) built from the same option table, so a model trained here restores in the service and
 * back.
 */
import type { TiersReport } from './api/contract.js';
import { type ConfigValues, configFrom } from './config.js';
import type { CatalogItem, Interaction } from './data/event.js';
import { type RecommendResult, Trainer, type TrainerStats, type WindowReport } from './engine/index.js';
import { PmeController } from './engine/pme/controller.js';
import { PmeError } from './errors.js';
import { tiersReport } from './service/adapter.js';
import { StateLock } from './service/lock.js';
import { applyRestored, pmeOptions, storeOptions, takeSnapshot, trainerOptions } from './service/state.js';
import { EmbeddingStore, readSnapshot } from './store/index.js';

export type { CatalogItem, Interaction };

/** The service's options by the README table's names (camelCase), plus where to restore from. */
export type RecommenderOptions = ConfigValues & {
  /** A directory holding snapshots (the service's state directory, or `snapshot(dir)`'s): the
   *  newest valid one is restored. Without it the recommender starts empty. */
  restoreFrom?: string;
};

/** Why an event given to learn() was not learned. */
export interface Refusal {
  /** Its position in what learn() was given. */
  index: number;
  /** The DLQ reasons of the service: `missing-user`, `missing-item`, `bad-label`, `malformed`,
   *  `too-many-fields`, `field-limit`, `oversized-key`, `reserved-field`. */
  reason: string;
  detail: string;
}

export interface Recommender {
  /**
   * Learns events in the order given (each is scored before it is learned: stats() is
   * progressive validation), in mini-batches, running PME's windows as they fall due and waiting
   * for them. An event that cannot be learned is skipped and reported, the others are learned.
   */
  learn(events: Iterable<Interaction>): Promise<{ learned: number; refused: Refusal[] }>;
  /** Adds or updates catalog items (an inactive one leaves recommendations); returns the refused. */
  upsertItems(items: Iterable<CatalogItem>): Refusal[];
  /** Click probabilities of `items` for `user` (unknown users and items score from what is known). */
  score(user: string, items: readonly string[], fields?: Readonly<Record<string, string>>): number[];
  /** The k catalog items of highest score for `user`. */
  recommend(user: string, k: number, options?: { exclude?: Iterable<string> }): RecommendResult;
  /** Runs a PME window now (search results applied, pruned to the target) and reports it. */
  prune(reason?: string): Promise<WindowReport>;
  /** Tokens and bytes per size tier and per field, and the budget's parts (`GET /v1/tiers`). */
  tiers(): TiersReport;
  /** Progressive AUC / logloss, events learned, refusals. */
  stats(): TrainerStats;
  /** Writes a snapshot into `dir` (the service's format: `restoreFrom` or a service's state
   *  directory reads it); resolves with its path. */
  snapshot(dir: string): Promise<string>;
  /** Waits for work under way; later calls throw PME_ERR_NOT_READY. */
  close(): Promise<void>;
}

/** Events per mini-batch of learn(), as the service's consumer batches them. */
const BATCH = 1024;

/** A recommender in this process; options are validated once, as the service's are. */
export async function createRecommender(options: RecommenderOptions = {}): Promise<Recommender> {
  const { restoreFrom, ...values } = options;
  const config = configFrom(values);
  const restored = restoreFrom === undefined ? null : await readSnapshot(restoreFrom);
  const store = restored?.store ?? new EmbeddingStore(storeOptions(config));
  const pme = new PmeController(store, pmeOptions(config));
  // Reads are exact, as a caller who scores right after learn() expects (the service lets the
  // item-only term lag up to ITEM_REFRESH_MS to keep reads cheap beside training).
  const trainer = new Trainer(store, { ...trainerOptions(config), observer: pme, itemRefreshMs: 0 });
  pme.attach(trainer);
  if (restored !== null) {
    applyRestored(trainer, restored.extra);
    if (restored.extra !== null) pme.importState(restored.extra);
  }
  // learn, prune and snapshot take turns: a snapshot never holds half a batch or half a window.
  const lock = new StateLock();
  let closed = false;
  const open = (): void => {
    if (closed) throw new PmeError('PME_ERR_NOT_READY', 'the recommender is closed');
  };

  return {
    async learn(events) {
      open();
      const admitted: Interaction[] = [];
      const refused: Refusal[] = [];
      let index = 0;
      for (const event of events) {
        const why = malformed(event) ?? trainer.admit(event);
        if (why === null) admitted.push(event);
        else refused.push({ index, reason: why.reason, detail: why.detail });
        index++;
      }
      await lock.run(async () => {
        for (let at = 0; at < admitted.length; at += BATCH) {
          trainer.learn(admitted.slice(at, at + BATCH));
          await pme.running;
        }
        pme.tick();
        await pme.running;
      });
      return { learned: admitted.length, refused };
    },
    upsertItems(items) {
      open();
      const refused: Refusal[] = [];
      let index = 0;
      for (const item of items) {
        const why =
          item.item === '' ? { reason: 'missing-item', detail: 'item is empty' } : trainer.upsertItem(item);
        if (why !== null) refused.push({ index, reason: why.reason, detail: why.detail });
        index++;
      }
      return refused;
    },
    score(user, items, fields) {
      open();
      return trainer.score(user, items, fields);
    },
    recommend(user, k, options = {}) {
      open();
      return trainer.recommend(user, k, options);
    },
    prune(reason = 'library') {
      open();
      return lock.run(async () => {
        pme.startWindow(reason);
        return (await pme.running) as WindowReport;
      });
    },
    tiers() {
      open();
      return tiersReport(store, trainer, pme);
    },
    stats() {
      open();
      return trainer.stats();
    },
    async snapshot(dir) {
      open();
      return (await takeSnapshot(dir, store, trainer, pme, lock, () => ({}))).path;
    },
    async close() {
      if (closed) return;
      closed = true;
      await lock.run(async () => undefined);
      trainer.model.dispose?.();
    },
  };
}

/** What the Avro schema would have refused (a library caller's events are not decoded). */
function malformed(event: Interaction): { reason: string; detail: string } | null {
  if (typeof event !== 'object' || event === null) return { reason: 'malformed', detail: 'not an object' };
  if (typeof event.user !== 'string' || event.user === '')
    return { reason: 'missing-user', detail: 'user is empty' };
  if (typeof event.item !== 'string' || event.item === '')
    return { reason: 'missing-item', detail: 'item is empty' };
  if (typeof event.label !== 'number' || !Number.isFinite(event.label))
    return { reason: 'bad-label', detail: `label is ${String(event.label)}` };
  if (typeof event.timestamp !== 'number' || !Number.isFinite(event.timestamp))
    return { reason: 'malformed', detail: `timestamp is ${String(event.timestamp)}` };
  const fields = event.fields;
  if (typeof fields !== 'object' || fields === null)
    return { reason: 'malformed', detail: 'fields is not an object' };
  for (const [name, value] of Object.entries(fields))
    if (typeof value !== 'string') return { reason: 'malformed', detail: `field ${name} is not a string` };
  return null;
}
