import type { Interaction } from '../../src/data/event.js';
import { createRandom, ZipfSampler } from '../../src/util/random.js';

export interface ZipfStreamShape {
  seed: number;
  users: number;
  items: number;
  /** Each event gets a field `genre` of the item's `g<item % genres>`; none when absent. */
  genres?: number;
  /** The hidden affinity: whether user `u` likes item `it`. Default (7u + 3it) mod 5 < 2. */
  likes?: (u: number, it: number) => boolean;
  /** Share of labels flipped against the affinity. Default 0.15. */
  noise?: number;
}

/**
 * `n` events whose users and items are drawn by Zipf popularity (exponent 1), so a few tokens are
 * hot and most are cold, as PME needs; the label follows a hidden user-item affinity with noise,
 * so the hot tokens carry signal. Timestamps count up from 0. The same shape gives the same events.
 */
export function zipfStream(n: number, shape: ZipfStreamShape): Interaction[] {
  const random = createRandom(shape.seed);
  const users = new ZipfSampler(shape.users, 1);
  const items = new ZipfSampler(shape.items, 1);
  const likes = shape.likes ?? ((u: number, it: number) => (u * 7 + it * 3) % 5 < 2);
  const noise = shape.noise ?? 0.15;
  const { genres } = shape;
  return Array.from({ length: n }, (_, i) => {
    const u = users.sample(random);
    const it = items.sample(random);
    const label = likes(u, it) !== random.next() < noise ? 1 : 0;
    const fields: Record<string, string> = genres === undefined ? {} : { genre: `g${it % genres}` };
    return { user: `u${u}`, item: `i${it}`, label, timestamp: i, fields };
  });
}
