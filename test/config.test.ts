import { readFileSync } from 'node:fs';
import t from 'tap';
import { describeOptions, flagName, loadConfig, OPTIONS } from '../src/config.js';
import { isPmeError } from '../src/errors.js';

t.test('defaults, then environment, then flags', async (t) => {
  const defaults = loadConfig([], {});
  t.equal(defaults.port, 8080);
  t.same(defaults.ladder, ['0', '2', '4', '8', '16', '32', '64']);
  const fromEnv = loadConfig([], { PME_PORT: '9000', KAFKA_BROKERS: 'a:1, b:2' });
  t.equal(fromEnv.port, 9000);
  t.same(fromEnv.brokers, ['a:1', 'b:2']);
  const fromFlags = loadConfig(['--port', '9100', '--group=g2'], { PME_PORT: '9000' });
  t.equal(fromFlags.port, 9100);
  t.equal(fromFlags.group, 'g2');
  t.ok(Object.isFrozen(fromFlags));
});

t.test('bad values and unknown flags are clear errors', async (t) => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--port', 'abc'], {}, /--port \/ PME_PORT must be a non-negative int/],
    [['--port', '70000'], {}, /not a port/],
    [['--prot', '1'], {}, /unknown flag --prot/],
    [['--port'], {}, /--port needs a value/],
    [[], { PME_LADDER: '0,8,4' }, /ascending/],
    [[], { PME_LADDER: '2,4' }, /starting at 0/],
    [[], { PME_START_SIZE: '5' }, /not on the ladder/],
  ];
  for (const [argv, env, message] of cases) {
    const what = `${argv.join(' ')} ${JSON.stringify(env)}`;
    try {
      loadConfig(argv, env);
      t.fail(`${what} was accepted`);
    } catch (error) {
      t.ok(isPmeError(error, 'PME_ERR_CONFIG_INVALID'), `${what}: coded error`);
      t.match((error as Error).message, message, what);
    }
  }
});

t.test('the README configuration table is the one generated from OPTIONS', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  t.ok(
    readme.includes(describeOptions(true)),
    'run `npm run pme -- serve --help-markdown` and paste the table',
  );
  for (const name of Object.keys(OPTIONS)) t.match(readme, flagName(name));
});
