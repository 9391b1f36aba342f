import type { Interaction } from '../../src/data/event.js';
import { createRandom } from '../../src/util/random.js';

/**
 * Users and 40 items with labels from a planted 4-dim dot product: half the events go to the
 * first 20 users (the hot ones), half to any of `users`. Keys are `${prefix}u${n}` and `i${n}`.
 */
export function dotStream(n: number, seed: number, users: number, prefix = ''): Interaction[] {
  const random = createRandom(seed);
  const vec = () => Array.from({ length: 4 }, () => random.normal());
  const userVecs = Array.from({ length: users }, vec);
  const items = Array.from({ length: 40 }, vec);
  const events: Interaction[] = [];
  for (let i = 0; i < n; i++) {
    const u = random.next() < 0.5 ? random.int(20) : random.int(users);
    const it = random.int(40);
    let dot = 0;
    for (let d = 0; d < 4; d++) dot += userVecs[u][d] * items[it][d];
    events.push({ user: `${prefix}u${u}`, item: `i${it}`, label: dot > 0 ? 1 : 0, timestamp: i, fields: {} });
  }
  return events;
}
