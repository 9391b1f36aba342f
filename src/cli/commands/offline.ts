/**
 * `pme offline`: PME on a file, as the service runs it (`pme`: the live controller) and as the
 * paper's protocol (`pme-paper`), against the baselines (full, uniform, mde), printed as one table. This file owns the command's flags, usage, epoch progress lines,
 * table, `--json` file and exit codes; the protocol is `runOffline()` in src/engine/offline.ts.
 */
import { writeFile } from 'node:fs/promises';
import { LEARNER_FLAGS, learnerFlags, learnerUsage, modelOptionsOf } from '../../config.js';
import { FORMAT_NAMES, readEvents } from '../../data/index.js';
import { type EpochProgress, OFFLINE_METHODS, type OfflineMethod, runOffline } from '../../engine/offline.js';
import { isPmeError, PmeError } from '../../errors.js';
import { commandFlags } from '../args.js';

const USAGE = `usage: pme offline --data FILE --format F [--items FILE] [flags]

  --data FILE        events file
  --format F         ${FORMAT_NAMES.join(' | ')}
  --items FILE       MovieLens movies file (genres)
  --dim D            full embedding size D (ladder 0, 2, 4, .., D). Default 64
  --budget F         embedding parameters of uniform / mde / pme / pme-paper as a fraction of
                     full's (pme: its store's hard byte budget, matched). Default 0.2
  --seed S           seed of the split, initialisation and shuffles. Default 1
  --epochs N         most epochs per method (early stopping on validation AUC). Default 10
  --patience N       epochs without a better validation AUC before stopping. Default 1
  --methods LIST     comma-separated subset of ${OFFLINE_METHODS.join(',')}. Default all
                     (pme: the live controller the service runs; pme-paper: the paper's protocol)
  --window-events N  pme: a window every N learned events. Default a quarter of the training split
  --start-size S     pme: size of a token when first seen (on the ladder), where tokens that
                     never turn hot stay. Default one ladder size below the largest under budget × D
  --pme-target F     pme: share of the budget's embedding room every window prunes to. Default 0.7
  --search-epochs N  pme-paper: epochs of its search phase. Default 1
  --min-count N      field values seen fewer than N times in the training split become one "rare"
                     token per field (in every split). Default 1
${learnerUsage(21)}
  --model fm         the learner (offline runs the FM only). Default fm
  --limit N          read only the first N events
  --json OUT         also write the result as JSON
`;

function parseNumber(name: string, value: string | undefined, fallback: number, integer = true): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `--${name} must be ${integer ? 'an integer' : 'a number'}, got ${value}`,
    );
  return n;
}

function bar(p: EpochProgress): string {
  const width = 20;
  const f = Math.min(1, p.epoch / p.epochs);
  const b = '#'.repeat(Math.round(f * width)).padEnd(width, '.');
  const auc = Number.isNaN(p.valAuc) ? '' : `  val AUC ${p.valAuc.toFixed(4)}`;
  return `${p.method.padEnd(9)} [${b}] epoch ${p.epoch}/${p.epochs}  ${p.seconds.toFixed(1)} s${auc}`;
}

/** `pme offline`: returns the exit code. */
export async function offlineCommand(argv: string[]): Promise<number> {
  const v = commandFlags('offline', USAGE, argv, [
    'data',
    'format',
    'items',
    'dim',
    'budget',
    'seed',
    'epochs',
    'patience',
    'search-epochs',
    'methods',
    'window-events',
    'start-size',
    'pme-target',
    'min-count',
    ...LEARNER_FLAGS,
    'limit',
    'json',
  ]);
  if (typeof v === 'number') return v;
  if (v.data === undefined || v.format === undefined) {
    process.stderr.write(`pme offline: --data and --format are needed\n\n${USAGE}`);
    return 2;
  }
  const tty = process.stderr.isTTY === true;
  try {
    const learner = learnerFlags(v, ['fm']);
    const read = await readEvents({
      path: v.data,
      format: v.format,
      itemsPath: v.items,
      sortByTime: false,
      limit: v.limit === undefined ? undefined : parseNumber('limit', v.limit, 0),
    });
    const methods = v.methods === undefined ? OFFLINE_METHODS : (v.methods.split(',') as OfflineMethod[]);
    const result = await runOffline(read.events, read.catalog, {
      dim: parseNumber('dim', v.dim, 64),
      budget: parseNumber('budget', v.budget, 0.2, false),
      seed: parseNumber('seed', v.seed, 1),
      epochs: parseNumber('epochs', v.epochs, 10),
      patience: parseNumber('patience', v.patience, 1),
      searchEpochs: parseNumber('search-epochs', v['search-epochs'], 1),
      windowEvents: parseNumber('window-events', v['window-events'], 0),
      startSize: parseNumber('start-size', v['start-size'], -1),
      pmeTarget: parseNumber('pme-target', v['pme-target'], 0.7, false),
      methods,
      minCount: parseNumber('min-count', v['min-count'], 1),
      model: modelOptionsOf(learner),
      initStd: learner.initStd,
      onEpoch: (p) => process.stderr.write(tty ? `\r\x1b[K${bar(p)}` : `${bar(p)}\n`),
    });
    if (tty) process.stderr.write('\r\x1b[K');
    const full = result.results.find((r) => r.method === 'full');
    const rows = result.results.map(
      (r) =>
        `${r.method.padEnd(9)} ${r.auc.toFixed(4)}  ${r.logloss.toFixed(4)}  ${String(r.embeddingParams).padStart(10)}  ${(
          (100 * r.embeddingParams) /
          result.fullParams
        )
          .toFixed(1)
          .padStart(
            5,
          )}%  ${full === undefined ? '      ' : (r.auc - full.auc).toFixed(4).padStart(7)}  ${r.seconds.toFixed(1).padStart(6)} s  ${r.bestEpoch}/${r.epochs}`,
    );
    const lines = [
      `data      ${v.data} (${v.format}): ${result.events.train}/${result.events.validation}/${result.events.test} events, ${result.tokens} tokens, D=${result.dim}, budget ${result.budget} = ${result.budgetParams} params`,
      'method    AUC     logloss  emb params  share   ΔAUC    train    best/epochs',
      ...rows,
    ];
    const live = result.results.find((r) => r.method === 'pme')?.live;
    if (live !== undefined)
      lines.push(
        `pme       ${live.windows} windows: ${live.promoted} searched at D, ${live.moved} moved by the threshold, ${live.demoted} cooled, ${live.relieved} relieved; last resort ${live.truncated} truncated, ${live.evicted} evicted; transfer error ${live.transferError.toFixed(3)}; peak ${live.peakParams} params; windows ${live.windowSeconds.toFixed(1)} s = ${live.searchPasses.toFixed(2)} full-size epochs`,
      );
    if (methods.includes('pme-paper'))
      lines.push(
        `pme-paper search ${result.pmeSearchSeconds.toFixed(1)} s = ${result.searchPasses.toFixed(2)} full-size epochs`,
      );
    process.stdout.write(`${lines.join('\n')}\n`);
    if (v.json !== undefined)
      await writeFile(
        v.json,
        `${JSON.stringify({ ...result, data: { path: v.data, format: v.format, report: read.report } }, null, 2)}\n`,
      );
    return 0;
  } catch (error) {
    if (isPmeError(error)) {
      process.stderr.write(`pme offline: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
