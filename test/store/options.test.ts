import t from 'tap';
import { resolveStoreOptions } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';

t.test('defaults are filled and the result is frozen', async (t) => {
  const o = resolveStoreOptions();
  t.same(o.ladder, [0, 2, 4, 8, 16, 32, 64]);
  t.equal(o.startSize, 8);
  t.equal(o.budgetBytes, Number.POSITIVE_INFINITY);
  t.equal(o.optimizerSlots, 1);
  t.equal(o.linearOptimizerSlots, 1);
  t.ok(Object.isFrozen(o));
  t.ok(Object.isFrozen(o.ladder));
  const clock = new ManualClock(5);
  const p = resolveStoreOptions({ ladder: [0, 4, 16], startSize: 4, clock, chunkRows: 8 });
  t.equal(p.clock, clock);
  t.same(p.ladder, [0, 4, 16]);
});

t.test('invalid options get PME_ERR_CONFIG_INVALID saying what is wrong', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['ladder not starting at 0', { ladder: [2, 4] }, /start at 0/],
    ['ladder not ascending', { ladder: [0, 8, 4], startSize: 8 }, /ascending/],
    ['ladder too short', { ladder: [0] }, /at least 2/],
    ['startSize off the ladder', { startSize: 5 }, /startSize 5/],
    ['budget not positive', { budgetBytes: 0 }, /budgetBytes/],
    ['ttl not positive', { ttlMs: -1 }, /ttlMs/],
    ['initStd negative', { initStd: -0.1 }, /initStd/],
    ['seed not an integer', { seed: 1.5 }, /seed/],
    ['optimizerSlots too many', { optimizerSlots: 9 }, /optimizerSlots/],
    [
      'linearOptimizerSlots negative',
      { linearOptimizerSlots: -1 },
      /linearOptimizerSlots must be an integer/,
    ],
    ['chunkRows zero', { chunkRows: 0 }, /chunkRows/],
    ['importance not boolean', { importance: 'yes' }, /importance/],
    ['clock without now', { clock: {} }, /clock/],
    ['unknown key', { budget: 10 }, /unknown option "budget"/],
  ];
  for (const [name, partial, message] of cases) {
    t.throws(() => resolveStoreOptions(partial as never), { code: 'PME_ERR_CONFIG_INVALID', message }, name);
  }
});
