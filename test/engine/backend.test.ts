import t from 'tap';
import { backendName, initBackend } from '../../src/engine/backend.js';

t.test('a backend is chosen, the faster absent ones are reported as skipped', async (t) => {
  t.equal(backendName(), null);
  const choice = await initBackend();
  t.ok(['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'].includes(choice.name), choice.name);
  t.equal(backendName(), choice.name);
  t.equal(await initBackend(), choice, 'chosen once');
  // Whatever was picked, the candidates before it are listed with a reason.
  const order = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];
  t.same(
    choice.skipped.map((s) => s.name),
    order.slice(0, order.indexOf(choice.name)),
  );
  const y = choice.tf.tidy(() => choice.tf.tensor1d([1, 2, 3]).mul(2).dataSync());
  t.same(Array.from(y), [2, 4, 6]);
});
