/**
 * A small planted stream for the learning tests: user u likes item group u % groups, items are
 * drawn by Zipf popularity, and the label says whether the item is in the user's group (with
 * noise). Item popularity carries no signal about the label, so a popularity model stays near 0.5.
 */
import type { CatalogItem, Interaction } from '../../src/data/event.js';
import { createRandom, ZipfSampler } from '../../src/util/random.js';

/** P(label 1) when the item is in the user's group, and when not. */
const MATCH = 0.85;
const OTHER = 0.1;

export interface Planted {
  events: Interaction[];
  /** The true P(label 1) of each event: the oracle a model can at best match. */
  truths: number[];
  catalog: CatalogItem[];
  groupOf: (item: string) => number;
  favourite: (user: string) => number;
}

export function planted(n: number, seed = 1, users = 200, items = 100, groups = 5): Planted {
  const random = createRandom(seed);
  const zipf = new ZipfSampler(items, 0.8);
  const events: Interaction[] = [];
  const truths: number[] = [];
  for (let i = 0; i < n; i++) {
    const u = random.int(users);
    const it = zipf.sample(random);
    const match = it % groups === u % groups;
    const truth = match ? MATCH : OTHER;
    const label = random.next() < truth ? 1 : 0;
    events.push({ user: `u${u}`, item: `i${it}`, label, timestamp: i * 1000, fields: {} });
    truths.push(truth);
  }
  const catalog = Array.from({ length: items }, (_, it) => ({
    item: `i${it}`,
    fields: { shelf: `s${it % 20}` },
    active: true,
  }));
  return {
    events,
    truths,
    catalog,
    groupOf: (item) => Number(item.slice(1)) % groups,
    favourite: (user) => Number(user.slice(1)) % groups,
  };
}
