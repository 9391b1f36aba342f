/**
 * The dashboard: one page at `/` (charts of memory and tokens per tier, progressive AUC and
 * logloss, events/s and consumer lag, a table of prune windows, a button that starts one) and
 * `GET /v1/stats`, the JSON summary it polls. The page is plain TypeScript in `page/`, compiled
 * by the project's build; uPlot is served from its package, resolved by the page's import map.
 * Every file is read once at registration and served from memory.
 */
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { PmeError } from '../../errors.js';
import { type Clock, systemClock } from '../../util/clock.js';
import type { ServiceApi } from '../contract.js';
import { pageHtml } from './html.js';
import { dashboardStats, statsSchema } from './stats.js';

export type { DashboardStats, TierStats } from './stats.js';

export interface DashboardOptions {
  /** The service the page shows. */
  service: ServiceApi;
  /** Time stamp of each `/v1/stats` sample. Default: the system clock. */
  clock?: Clock;
  /**
   * How often the page polls `/v1/stats`, in ms. Default 1000. Each poll reads the service's stats
   * once (tier accounting included), so many open pages at a short interval cost the trainer time.
   */
  pollMs?: number;
  /** Points each chart keeps (oldest dropped first). Default 900: 15 minutes at 1 s. */
  historyPoints?: number;
}

interface Resolved {
  service: ServiceApi;
  clock: Clock;
  pollMs: number;
  historyPoints: number;
}

function resolve(options: DashboardOptions): Readonly<Resolved> {
  const invalid = (why: string) => new PmeError('PME_ERR_CONFIG_INVALID', `dashboard: ${why}`);
  if (options?.service === undefined) throw invalid('the service is required');
  const pollMs = options.pollMs ?? 1000;
  if (!Number.isInteger(pollMs) || pollMs < 250 || pollMs > 60_000)
    throw invalid(`pollMs must be an integer in [250, 60000], got ${pollMs}`);
  const historyPoints = options.historyPoints ?? 900;
  if (!Number.isInteger(historyPoints) || historyPoints < 10 || historyPoints > 100_000)
    throw invalid(`historyPoints must be an integer in [10, 100000], got ${historyPoints}`);
  return Object.freeze({
    service: options.service,
    clock: options.clock ?? systemClock,
    pollMs,
    historyPoints,
  });
}

interface Asset {
  body: Buffer | string;
  type: string;
  /** Cache-Control: the page and its code must follow a redeploy; uPlot changes only with its version. */
  cache: string;
}

const JS = 'text/javascript; charset=utf-8';
const REVALIDATE = 'no-cache';

/**
 * The page's compiled modules. Built, they sit next to this module (dist/src/api/dashboard/page);
 * run from source (tap runs .ts directly), they are transpiled here from page/*.ts, so a test
 * never serves a stale build. TypeScript is a dev dependency, only ever loaded in that case.
 */
async function pageModules(): Promise<Map<string, Asset>> {
  const dir = new URL('./page/', import.meta.url);
  const files = await readdir(dir);
  const assets = new Map<string, Asset>();
  if (import.meta.url.endsWith('.ts')) {
    const ts = (await import('typescript')).default;
    for (const file of files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))) {
      const source = await readFile(new URL(file, dir), 'utf8');
      const out = ts.transpileModule(source, {
        compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022 },
        fileName: file,
      });
      assets.set(file.replace(/\.ts$/, '.js'), { body: out.outputText, type: JS, cache: REVALIDATE });
    }
  } else {
    for (const file of files.filter((f) => f.endsWith('.js') || f.endsWith('.js.map'))) {
      const type = file.endsWith('.map') ? 'application/json' : JS;
      assets.set(file, { body: await readFile(new URL(file, dir)), type, cache: REVALIDATE });
    }
  }
  if (!assets.has('app.js'))
    throw new PmeError('PME_ERR_CONFIG_INVALID', `dashboard: no page code in ${fileURLToPath(dir)}`);
  return assets;
}

async function uplotAssets(): Promise<Map<string, Asset>> {
  const require = createRequire(import.meta.url);
  const cache = 'public, max-age=86400';
  return new Map<string, Asset>([
    ['uPlot.esm.js', { body: await readFile(require.resolve('uplot/dist/uPlot.esm.js')), type: JS, cache }],
    [
      'uPlot.min.css',
      { body: await readFile(require.resolve('uplot/dist/uPlot.min.css')), type: 'text/css', cache },
    ],
  ]);
}

/** Fastify plugin: `app.register(dashboard, { service })`. */
export async function dashboard(app: FastifyInstance, options: DashboardOptions): Promise<void> {
  const o = resolve(options);
  const assets = new Map([...(await pageModules()), ...(await uplotAssets())]);
  const html = pageHtml({ pollMs: o.pollMs, historyPoints: o.historyPoints });

  app.get('/', { schema: { hide: true } }, async (_request, reply) =>
    reply.header('cache-control', REVALIDATE).type('text/html; charset=utf-8').send(html),
  );
  app.get<{ Params: { file: string } }>(
    '/dashboard/:file',
    { schema: { hide: true } },
    async (request, reply) => {
      const asset = assets.get(request.params.file);
      if (asset === undefined)
        throw new PmeError('PME_ERR_NOT_FOUND', `dashboard file ${request.params.file}`);
      return reply.header('cache-control', asset.cache).type(asset.type).send(asset.body);
    },
  );
  app.get('/v1/stats', { schema: statsSchema }, async () => {
    const windows = await o.service.pruneWindows();
    // Mapped as soon as it arrives: the reading may hold the consumer's live counters.
    return dashboardStats(await o.service.stats(), windows, o.clock.now());
  });
}
