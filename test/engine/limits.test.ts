/**
 * The trainer's limits on what producers send (src/engine/trainer/limits.ts): a flood of new field
 * names, events wider than a row, key parts too long and impossible labels are refused whole and
 * counted, and the trainer keeps learning the events around them with metrics that stay finite.
 */
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { crossKey, Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { planted } from './planted.js';

const LADDER = [0, 2, 4, 8, 16];

function setup(options: { maxFieldNames?: number; maxKeyLength?: number } = {}) {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 4, seed: 1 });
  const trainer = new Trainer(store, { seed: 1, clock: new ManualClock(0), ...options });
  return { store, trainer };
}

/** An event naming `n` fields never seen before (the poison pill of issue 20). */
function poison(e: number, n: number): Interaction {
  const fields: Record<string, string> = {};
  for (let f = 0; f < n; f++) fields[`f${e}_${f}`] = 'v';
  return { user: `u${e % 10}`, item: `i${e % 7}`, label: 1, timestamp: 0, fields };
}

t.test('a flood of new field names is refused past the limit; good events go on', async (t) => {
  const { store, trainer } = setup();
  // 1,100 events of 62 new names each (68,200 names): the store's table holds 65,536.
  const events = Array.from({ length: 1100 }, (_, e) => poison(e, 62));
  for (let i = 0; i < events.length; i += 100) trainer.learn(events.slice(i, i + 100));
  const good = planted(500, 3).events;
  trainer.learn(good);
  const stats = trainer.stats();
  // 1,024 names leave room for 16 events of 62 names; the 17th would take the 1,054th.
  t.equal(stats.rejected['field-limit'], 1100 - 16, 'every event past the limit refused');
  t.equal(stats.events, 16 + 500, 'the admitted poison and every good event learned');
  t.ok(store.fieldNames().length <= 1024 + 2, `${store.fieldNames().length} fields in the store`);
  t.ok(Number.isFinite(stats.logloss) && stats.auc >= 0 && stats.auc <= 1);

  // Known names stay usable; new ones while there is room, not past it.
  t.equal(trainer.admit({ ...poison(0, 62), user: 'again' }), null, 'known names are admitted');
  t.match(trainer.admit(poison(5000, 33)), { reason: 'field-limit', detail: /992 of 1024 field names/ });
  t.equal(trainer.admit(poison(5001, 32)), null, '992 + 32 names fit');
});

t.test(
  'an event wider than a row is refused whole, never cut; one that fits keeps every field',
  async (t) => {
    const { store, trainer } = setup();
    // A row holds 64 tokens: user + 62 fields + item fits, one more field does not.
    trainer.learn([poison(1, 62)]);
    t.equal(store.size, 64, 'all 64 tokens made');
    trainer.learn([poison(2, 63)]);
    t.equal(trainer.stats().rejected['too-many-fields'], 1);
    t.equal(store.size, 64, 'nothing of the wide event kept');
    // The item's catalog fields take room in the row too.
    const catalogFields: Record<string, string> = {};
    for (let f = 0; f < 40; f++) catalogFields[`c${f}`] = 'x';
    t.equal(trainer.upsertItem({ item: 'wide', fields: catalogFields, active: true }), null);
    const event = { ...poison(3, 30), item: 'wide' };
    t.match(trainer.admit(event), { reason: 'too-many-fields' }, '2 + 40 + 30 > 64');
    t.equal(trainer.admit({ ...poison(3, 22), item: 'wide' }), null, '2 + 40 + 22 = 64');
    // A catalog item wider than a row is refused, and the catalog is as before.
    for (let f = 0; f < 70; f++) catalogFields[`c${f}`] = 'x';
    t.match(trainer.upsertItem({ item: 'wider', fields: catalogFields, active: true }), {
      reason: 'too-many-fields',
    });
    t.equal(trainer.itemCount, 2, 'i1 and wide, not wider');
  },
);

t.test('with the user × item pair, an event keeps a place for it or is refused', async (t) => {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 4, seed: 1 });
  const trainer = new Trainer(store, { seed: 1, clock: new ManualClock(0), crossUserItem: true });
  // user + 62 fields + item fill the row of 64: the pair would not fit, and was dropped unsaid.
  t.match(trainer.admit(poison(1, 62)), {
    reason: 'too-many-fields',
    detail: /64 tokens .* and the user × item pair/,
  });
  trainer.learn([poison(1, 62), poison(2, 61)]);
  t.equal(trainer.stats().rejected['too-many-fields'], 1, 'the full row refused');
  t.equal(store.size, 64, 'user, 61 fields, item and the pair of the one that fits');
  t.ok(store.id(crossKey('u2', 'i2')) >= 0, 'its pair token is there');
});

t.test('key parts longer than the limit are refused', async (t) => {
  const { trainer } = setup({ maxKeyLength: 16 });
  const ok: Interaction = { user: 'u', item: 'i', label: 1, timestamp: 0, fields: { device: 'phone' } };
  t.equal(trainer.admit(ok), null);
  t.match(trainer.admit({ ...ok, user: 'x'.repeat(17) }), { reason: 'oversized-key', detail: /user of 17/ });
  t.match(trainer.admit({ ...ok, item: 'x'.repeat(17) }), { reason: 'oversized-key' });
  t.match(trainer.admit({ ...ok, fields: { ['n'.repeat(17)]: 'v' } }), { reason: 'oversized-key' });
  t.match(trainer.admit({ ...ok, fields: { device: 'v'.repeat(17) } }), { reason: 'oversized-key' });
  t.match(trainer.upsertItem({ item: 'x'.repeat(17), fields: {}, active: true }), {
    reason: 'oversized-key',
  });
});

t.test('a field named user, item or user:item is refused: its tokens are not its own', async (t) => {
  const { store, trainer } = setup();
  const victim: Interaction = { user: 'u2', item: 'i2', label: 1, timestamp: 0, fields: {} };
  const forged = (fields: Record<string, string>): Interaction => ({
    user: 'u1',
    item: 'i1',
    label: 1,
    timestamp: 0,
    fields,
  });
  trainer.learn([victim]);
  const before = store.row(store.id('user=u2')).slice();
  // `user=u2` is u2's own token: learned as u1's field, u1's events would move u2's vector.
  trainer.learn([forged({ user: 'u2' }), forged({ item: 'i2' }), forged({ 'user:item': '2:u2|i2' })]);
  t.equal(trainer.stats().rejected['reserved-field'], 3, 'the three refused');
  t.match(trainer.admit(forged({ user: 'u2' })), { detail: /"user" is reserved.*users' own/ });
  t.same(store.row(store.id('user=u2')), before, "u2's vector is as it was");
  t.equal(store.id('user=u1'), -1, 'nothing of the refused events kept');
  t.match(trainer.upsertItem({ item: 'i3', fields: { item: 'i2' }, active: true }), {
    reason: 'reserved-field',
  });
  t.equal(trainer.admit(forged({ users: 'u2', item_kind: 'x' })), null, 'other names are fields');
});

t.test('impossible labels are refused, and the metrics stay finite', async (t) => {
  const { trainer } = setup();
  const good = planted(2000, 5).events;
  const bad = [3e38, 1e30, -1e6, -5, 4, Number.NaN, Number.POSITIVE_INFINITY].map((label) => ({
    ...good[0],
    label,
  }));
  trainer.learn([...good.slice(0, 1000), ...bad, ...good.slice(1000)]);
  const stats = trainer.stats();
  t.equal(stats.rejected['bad-label'], bad.length);
  t.equal(stats.events, 2000);
  for (const name of ['auc', 'logloss', 'windowAuc', 'windowLogloss'] as const)
    t.ok(Number.isFinite(stats[name]), `${name} ${stats[name]}`);
  t.ok(stats.logloss > 0 && stats.windowLogloss > 0, 'logloss is a loss');
  t.ok(Number.isFinite(trainer.model.bias), 'the shared bias is finite');
  // Soft labels in [0, 1] are labels.
  t.equal(trainer.admit({ ...good[0], label: 0.25 }), null);
});

t.test('a restored store’s field names count towards the limit', async (t) => {
  const { store, trainer } = setup({ maxFieldNames: 10 });
  trainer.learn([poison(1, 8)]);
  const restored = EmbeddingStore.fromState(store.exportState());
  const again = new Trainer(restored, { seed: 1, clock: new ManualClock(0), maxFieldNames: 10 });
  t.equal(again.admit(poison(2, 2)), null, '8 + 2 names');
  t.match(again.admit(poison(3, 1)), { reason: 'field-limit' }, 'the 11th name');
});
