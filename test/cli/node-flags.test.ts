/**
 * The hint a service logs when Node was started without the launchers' garbage-collector flags.
 */
import t from 'tap';
import { nodeFlagsHint, SERVICE_NODE_FLAGS } from '../../src/cli/node-flags.js';

t.test('no hint with the flags, or with other values for them; a hint naming what is missing', async (t) => {
  t.equal(nodeFlagsHint([...SERVICE_NODE_FLAGS]), null, 'the launchers flags');
  t.equal(
    nodeFlagsHint(['--max-semi-space-size=64', '--initial-old-space-size=512']),
    null,
    'chosen otherwise',
  );
  const none = nodeFlagsHint([]);
  t.match(none, /without --max-semi-space-size=32 --initial-old-space-size=128/, 'none: both named');
  t.match(
    none,
    /node --max-semi-space-size=32 --initial-old-space-size=128 dist\/src\/cli\/main\.js/,
    'and how to start',
  );
  const one = nodeFlagsHint(['--max-semi-space-size=32', '--inspect']);
  t.match(one, /without --initial-old-space-size=128:/, 'one missing: only that one');
  t.notMatch(one, /without --max-semi-space-size/);
});

t.test('pme serve logs it when Node runs without them', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const main = new URL('../../dist/src/cli/main.js', import.meta.url);
  // No brokers: serve stops at its configuration check, after the hint.
  let stderr = '';
  try {
    execFileSync(process.execPath, [main.pathname, 'serve'], {
      env: { ...process.env, KAFKA_BROKERS: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (error) {
    stderr = String((error as { stderr?: Buffer }).stderr ?? '');
  }
  t.match(stderr, /Node runs without --max-semi-space-size=32 --initial-old-space-size=128/);
  let quiet = '';
  try {
    execFileSync(process.execPath, [...SERVICE_NODE_FLAGS, main.pathname, 'serve'], {
      env: { ...process.env, KAFKA_BROKERS: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (error) {
    quiet = String((error as { stderr?: Buffer }).stderr ?? '');
  }
  t.notMatch(quiet, /Node runs without/, 'with the flags: no hint');
  t.match(quiet, /no Kafka brokers/, 'the run got as far');
});
