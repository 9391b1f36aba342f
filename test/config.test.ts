import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { streamEvalCommand } from '../src/cli/commands/stream-eval.js';
import {
  configFrom,
  describeOptions,
  flagName,
  LEARNER_FLAGS,
  learnerFlags,
  loadConfig,
  modelOptionsOf,
  OPTIONS,
} from '../src/config.js';
import { MODEL_KINDS } from '../src/engine/model/index.js';
import { PME_DEFAULTS } from '../src/engine/pme/options.js';
import { type StreamEvalOptions, streamEval } from '../src/engine/stream-eval.js';
import { isPmeError } from '../src/errors.js';
import { pmeOptions, storeOptions } from '../src/service/state.js';
import { EmbeddingStore } from '../src/store/index.js';

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

t.test('the start size follows the ladder and the prune target unless set', async (t) => {
  t.equal(loadConfig([], {}).startSize, 16, 'a quarter of D = 64');
  t.equal(loadConfig(['--prune-target', '0.1'], {}).startSize, 8, 'the ladder size at or above 0.1 × 64');
  t.equal(loadConfig([], { PME_PRUNE_TARGET: '0.5' }).startSize, 16, 'never above 16');
  t.equal(loadConfig(['--ladder', '0,4,8,32'], {}).startSize, 8, 'a ladder without 16');
  t.equal(loadConfig(['--ladder', '0,2,4,8'], {}).startSize, 2, 'D = 8');
  t.equal(loadConfig(['--start-size', 'auto'], { PME_START_SIZE: '4' }).startSize, 16, 'auto as a flag');
  t.equal(loadConfig(['--prune-target', '0.1'], { PME_START_SIZE: '4' }).startSize, 4, 'a size given wins');
  t.equal(configFrom({ pruneTarget: 0.1 }).startSize, 8);
  t.equal(configFrom({ ladder: [0, 4, 8, 32] }).startSize, 8);
  t.throws(
    () => loadConfig(['--start-size', 'big'], {}),
    /--start-size \/ PME_START_SIZE must be a non-negative int/,
  );
  t.throws(
    () => loadConfig(['--seed', 'auto'], {}),
    /--seed \/ PME_SEED must be a non-negative int/,
    'auto only where the default is',
  );
  // The service's store creates its tokens there.
  const store = new EmbeddingStore(storeOptions(loadConfig(['--prune-target', '0.1'], {})));
  t.equal(store.sizeOf(store.getOrCreate('user=1')), 8);
});

t.test("--hot-threshold reaches the service's PME and is checked", async (t) => {
  t.equal(pmeOptions(loadConfig([], {})).hotThreshold, PME_DEFAULTS.hotThreshold, 'the controller default');
  t.equal(pmeOptions(loadConfig(['--hot-threshold', '12'], {})).hotThreshold, 12);
  t.equal(pmeOptions(loadConfig([], { PME_HOT_THRESHOLD: '2.5' })).hotThreshold, 2.5);
  t.throws(
    () => loadConfig(['--hot-threshold', '1'], {}),
    /--hot-threshold must be above 1 \(the count under which a token has cooled\), got 1/,
  );
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
    [['--learning-rate', '0'], {}, /--learning-rate must be above 0, got 0/],
    [
      [],
      { PME_PROJECTION_LEARNING_RATE: '-1' },
      /--projection-learning-rate \/ PME_PROJECTION_LEARNING_RATE must be a non-negative number/,
    ],
    [['--l2', 'lots'], {}, /--l2 \/ PME_L2 must be a non-negative number/],
    [['--init-std', '-0.1'], {}, /--init-std \/ PME_INIT_STD must be a non-negative number, got "-0.1"/],
    [[], { PME_INIT_STD: 'Infinity' }, /--init-std \/ PME_INIT_STD must be a non-negative number/],
    [['--linear-optimizer', 'adam'], {}, /--linear-optimizer must be adagrad or ftrl, got "adam"/],
    [['--ftrl-beta', '-1'], {}, /--ftrl-beta \/ PME_FTRL_BETA must be a non-negative number/],
    [[], { PME_FTRL_L1: 'some' }, /--ftrl-l1 \/ PME_FTRL_L1 must be a non-negative number/],
    [
      ['--model', 'deepfm'],
      {},
      /--model must be fm here, got "deepfm" \(deepfm and lr run in `pme stream-eval`\)/,
    ],
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

/** A short synthetic replay at D = 8, no PME, seed 3: `options` say what differs. */
const smallReplay = (options: Partial<StreamEvalOptions>) =>
  streamEval({
    dim: 8,
    seed: 3,
    pme: false,
    windowEvents: 100_000,
    negatives: 0,
    batch: 64,
    ...options,
  });

t.test('the learner options have one name everywhere: service, stream-eval, offline', async (t) => {
  const service = loadConfig(['--learning-rate', '0.2', '--l2=0.001'], {
    PME_RATE_TOKENS: '3',
    PME_PROJECTION_LEARNING_RATE: '0.03',
    PME_LINEAR_LEARNING_RATE: '0.4',
    PME_ADAGRAD_EPSILON: '0.1',
    PME_PREFIX_LOSS_WEIGHT: '0.5',
  });
  t.strictSame(modelOptionsOf(service), {
    learningRate: 0.2,
    rateTokens: 3,
    linearLearningRate: 0.4,
    projectionLearningRate: 0.03,
    projection: 'nested',
    prefixLossWeight: 0.5,
    l2: 0.001,
    epsilon: 0.1,
    linearOptimizer: 'adagrad',
    ftrlBeta: 0.1,
    ftrlL1: 0,
  });
  t.strictSame(LEARNER_FLAGS, [
    'model',
    'learning-rate',
    'rate-tokens',
    'linear-learning-rate',
    'projection-learning-rate',
    'projection',
    'prefix-loss-weight',
    'l2',
    'adagrad-epsilon',
    'linear-optimizer',
    'ftrl-beta',
    'ftrl-l1',
    'init-std',
  ]);
  const command = learnerFlags({ model: 'lr', 'learning-rate': '0.2', l2: '0.001' }, MODEL_KINDS);
  t.strictSame(command, {
    model: 'lr',
    learningRate: 0.2,
    rateTokens: 5,
    linearLearningRate: 0.2,
    projectionLearningRate: 0.01,
    projection: 'nested',
    prefixLossWeight: 0.2,
    l2: 0.001,
    adagradEpsilon: 1e-7,
    linearOptimizer: 'adagrad',
    ftrlBeta: 0.1,
    ftrlL1: 0,
    initStd: 0.01,
  });
  const ftrl = learnerFlags(
    { 'linear-optimizer': 'ftrl', 'ftrl-beta': '0.5', 'ftrl-l1': '2', 'init-std': '0' },
    MODEL_KINDS,
  );
  t.match(modelOptionsOf(ftrl), { linearOptimizer: 'ftrl', ftrlBeta: 0.5, ftrlL1: 2 });
  t.equal(ftrl.initStd, 0);
  t.throws(() => learnerFlags({ 'prefix-loss-weight': '-1' }, MODEL_KINDS), /prefix-loss-weight/);
  t.throws(
    () => learnerFlags({ 'linear-optimizer': 'sgd' }, MODEL_KINDS),
    /--linear-optimizer must be adagrad or ftrl/,
  );
  t.throws(
    () => learnerFlags({ 'init-std': '-1' }, MODEL_KINDS),
    /--init-std \/ PME_INIT_STD must be a non-negative/,
  );
  t.throws(() => configFrom({ initStd: -1 }), /initStd must be a number >= 0/);
  t.throws(() => configFrom({ linearOptimizer: 'adam' }), /--linear-optimizer must be adagrad or ftrl/);
  t.match(modelOptionsOf(learnerFlags({ projection: 'nested' }, MODEL_KINDS)), { projection: 'nested' });
  t.match(modelOptionsOf(loadConfig([], { PME_PROJECTION: 'nested' })), { projection: 'nested' });
  t.throws(() => configFrom({ projection: 'prefix' }), /--projection must be learned or nested/);
  t.throws(() => learnerFlags({ 'adagrad-epsilon': '0' }, MODEL_KINDS), /--adagrad-epsilon must be above 0/);
  t.throws(
    () => learnerFlags({ 'rate-tokens': '-1' }, MODEL_KINDS),
    /--rate-tokens \/ PME_RATE_TOKENS must be a non-negative number/,
  );
  t.throws(() => learnerFlags({ model: 'gbdt' }, MODEL_KINDS), /--model must be one of fm, deepfm, lr here/);
  t.throws(() => learnerFlags({ 'learning-rate': '0' }, MODEL_KINDS), /--learning-rate must be above 0/);

  // They reach the model: another step size learns another model from the same stream.
  const run = (learner?: {
    learningRate?: number;
    rateTokens?: number;
    linearLearningRate?: number;
    epsilon?: number;
  }) => smallReplay({ synthetic: 3000, ...(learner === undefined ? {} : { learner }) });
  const byDefault = await run();
  const again = await run({ learningRate: 0.05, linearLearningRate: 0.2 });
  t.equal(again.logloss, byDefault.logloss, 'the default step sizes are 0.05 (rows) and 0.2 (linear)');
  t.not(
    (await run({ learningRate: 0.3 })).logloss,
    byDefault.logloss,
    'a larger row step learns differently',
  );
  t.not(
    (await run({ linearLearningRate: 0.05 })).logloss,
    byDefault.logloss,
    'and so does another linear step',
  );
  t.not((await run({ epsilon: 0.1 })).logloss, byDefault.logloss, 'and another Adagrad epsilon');
  t.not(
    (await run({ rateTokens: 0 })).logloss,
    byDefault.logloss,
    'and rows stepping whatever the token count',
  );
});

t.test('the service builds its store from --init-std and --linear-optimizer', async (t) => {
  const rowsOf = (argv: string[]) => {
    const store = new EmbeddingStore(storeOptions(loadConfig(argv, {})));
    return Array.from(store.row(store.getOrCreate('user=1')));
  };
  t.ok(
    rowsOf([]).every((x) => x !== 0),
    'by default a new row is drawn at std 0.01',
  );
  t.ok(
    rowsOf(['--init-std', '0']).every((x) => x === 0),
    '--init-std 0: zero rows',
  );
  const big = rowsOf(['--init-std', '1']);
  t.ok(Math.max(...big.map(Math.abs)) > 0.1, 'std 1: larger draws');
  t.equal(storeOptions(loadConfig([], {})).linearOptimizerSlots, 1);
  t.equal(storeOptions(loadConfig([], { PME_LINEAR_OPTIMIZER: 'ftrl' })).linearOptimizerSlots, 2);
});

t.test('stream-eval: --init-std reaches the store, --linear-optimizer the model', async (t) => {
  const run = (kind: string, learner: Record<string, unknown> = {}, initStd?: number) => {
    const p: number[] = [];
    return smallReplay({
      synthetic: 2000,
      model: kind,
      learner,
      initStd,
      onPrediction: (q) => p.push(q),
    }).then(() => p);
  };
  // Rows at 0 stay at 0 (their gradient is g (S − v) = 0): the FM is then logistic regression.
  const lr = await run('lr');
  t.same(await run('fm', {}, 0), lr, 'fm at --init-std 0 scores exactly as lr');
  t.notSame(await run('fm'), lr, 'at the default it does not');
  const ftrl = await run('lr', { linearOptimizer: 'ftrl' });
  t.notSame(ftrl, lr, 'ftrl learns otherwise than adagrad');
  t.same(await run('fm', { linearOptimizer: 'ftrl' }, 0), ftrl, 'and the fm at 0 as lr does under ftrl');
});

t.test('stream-eval --hot-threshold: a lower count searches more tokens; 1 or less is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pme-hot-'));
  const promoted = async (hot: string) => {
    const json = join(dir, `${hot}.json`);
    const args = ['--synthetic', '6000', '--pme', '--window-events', '2000', '--hot-threshold', hot];
    t.equal(await streamEvalCommand([...args, '--json', json]), 0);
    const r = JSON.parse(readFileSync(json, 'utf8')) as { windows: Array<{ promoted: number }> };
    return r.windows.reduce((n, w) => n + w.promoted, 0);
  };
  const low = await promoted('3');
  const high = await promoted('40');
  t.ok(low > high, `promoted at 3: ${low}, at 40: ${high}`);
  t.equal(await streamEvalCommand(['--synthetic', '100', '--pme', '--hot-threshold', '1']), 1);
});
