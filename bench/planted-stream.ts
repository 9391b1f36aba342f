import type { CatalogItem, Interaction } from '../src/data/event.js';
import { SyntheticWorkload } from '../src/data/index.js';

/** The planted ranks users are drawn from: the dimensions a user's preferences need. */
export const PLANTED_RANKS = [2, 4, 8, 16, 32];

/**
 * The planted stream: a heavy tail of users (Zipf 1 over `users`), each with a planted rank from
 * PLANTED_RANKS, items (Zipf 0.8) of rank 32 with a category of 50 in the catalog, 30% positives.
 * bench:planted sizes PME on it; bench:quality sets pme against the peers on it. `workload` gives
 * each user's planted rank (rankOf).
 */
export function plantedStream(
  seed: number,
  events: number,
  users: number,
  items = 20_000,
): { events: Interaction[]; catalog: CatalogItem[]; workload: SyntheticWorkload } {
  const workload = new SyntheticWorkload({
    seed,
    users,
    items,
    latentDim: 32,
    userRanks: PLANTED_RANKS,
    userZipf: 1,
    itemZipf: 0.8,
    fields: [{ name: 'category', cardinality: 50 }],
    positiveRate: 0.3,
  });
  return { events: workload.take(events), catalog: workload.catalog(), workload };
}
