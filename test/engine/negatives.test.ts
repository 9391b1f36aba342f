/**
 * The popularity sampler draws negatives ∝ (count + 1)^0.75 among active items: an item taken out
 * of the draw stays out when events keep naming it, and comes back with its counts.
 */
import t from 'tap';
import { PopularitySampler } from '../../src/engine/index.js';
import { createRandom } from '../../src/util/random.js';

function draws(sampler: PopularitySampler, n: number, seed: number): number[] {
  const random = createRandom(seed);
  const seen = new Array<number>(sampler.size).fill(0);
  for (let i = 0; i < n; i++) seen[sampler.sample(random)]++;
  return seen;
}

t.test('an inactive item is never drawn, even while events name it', async (t) => {
  const sampler = new PopularitySampler(0.75, 2); // capacity 2: the third add grows the arrays
  for (let i = 0; i < 3; i++) sampler.add();
  sampler.setActive(1, false);
  for (let i = 0; i < 50; i++) sampler.increment(1);
  sampler.add(); // a fourth item: the arrays grow with item 1 inactive
  t.equal(draws(sampler, 5_000, 1)[1], 0, 'item 1 is not drawn');
  t.equal(sampler.count(1), 50, 'but its occurrences are counted');

  sampler.setActive(1, true);
  const back = draws(sampler, 5_000, 2);
  // Weights 1, 51^0.75 ≈ 19.0, 1, 1: item 1 gets about 19 / 22 of the draws.
  t.ok(back[1] > 5_000 * 0.8, `reactivated, it is drawn by its count: ${back[1]} of 5,000`);
});
