/**
 * The prune-window table in headless Chromium against a fake service (no broker): at 1,400 px a
 * table like the one of a default ladder fits its card, and a wider one (every tier moved, a
 * long ladder) scrolls sideways inside the card, in a wrapper of its own: nothing is cut off and
 * the page itself does not scroll sideways. Measured with the page's own CSS and code.
 */
import { existsSync } from 'node:fs';
import { chromium, type Page } from 'playwright-core';
import t, { type Test } from 'tap';
import type { PruneWindowReport, ServiceApi, ServiceStats, TierReport } from '../../src/api/contract.js';
import { buildApi } from '../../src/api/server.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
];
const LADDER = [0, 2, 4, 8, 16, 32, 64];

const tier = (size: number, totalBytes: number): TierReport => ({
  size,
  tokens: Math.round(totalBytes / 100),
  paramBytes: totalBytes,
  optimizerBytes: 0,
  indexBytes: 0,
  totalBytes,
});

/** A window; `after` gives each tier's bytes after it (the same as before when omitted). */
function report(id: number, ladder: number[], before: number[], after = before): PruneWindowReport {
  return {
    id,
    reason: 'dashboard',
    startedAt: Date.UTC(2026, 0, 1, 22, 50, 40 + id),
    durationMs: 57,
    searched: 54,
    moved: 0,
    demoted: 0,
    raised: 0,
    baseSize: 8,
    evicted: 0,
    probe: { events: 2048, aucBefore: 0.8092, aucAfter: 0.8092, loglossBefore: 0.5, loglossAfter: 0.5 },
    aucBefore: 0.7644,
    aucAfter: null,
    before: ladder.map((size, i) => tier(size, before[i])),
    after: ladder.map((size, i) => tier(size, after[i])),
  };
}

const STATS: ServiceStats = {
  trainer: { events: 26_459, auc: 0.739, windowAuc: 0.771, logloss: 0.515, windowLogloss: 0.494 },
  consumer: { consumed: 26_459, dlq: {}, lag: { '0': 0 } },
  tiers: LADDER.map((size) => ({ ...tier(size, 1000), totalBytes: 1000 })),
  totalBytes: LADDER.length * 1000 + 3000,
  memoryParts: { tiers: LADDER.length * 1000, tokenColumns: 2000, keyIndex: 1000 },
  budgetBytes: 256 * 2 ** 20,
  unbudgeted: {
    pmeSketch: 2 * 2 ** 20 + 16,
    pmeTokens: 40_000,
    keyCaches: 3000,
    catalog: 9000,
    itemCaches: 5000,
  },
  unbudgetedBytes: 2 * 2 ** 20 + 16 + 57_000,
  pruneWindows: 2,
  backend: 'wasm',
};

async function serve(t: Test, windows: PruneWindowReport[]): Promise<string> {
  const unused = (): never => {
    throw new Error('not used by the dashboard');
  };
  const service: ServiceApi = {
    score: unused,
    recommend: unused,
    startPrune: unused,
    pruneWindows: () => windows,
    tiers: unused,
    token: unused,
    readiness: () => ({ ready: true }) as never,
    stats: () => STATS,
    metrics: unused,
    metricsContentType: 'text/plain',
    observeRequest: () => {},
  };
  const app = await buildApi(service, { adminToken: '' });
  t.teardown(() => app.close());
  return app.listen({ host: '127.0.0.1', port: 0 });
}

/** Where the table ends against its card's content box, and who scrolls (px, rounded). */
async function measure(page: Page) {
  await page.locator('#windows table').waitFor();
  return page.evaluate(() => {
    const table = document.querySelector('#windows table') as HTMLElement;
    const card = document.querySelector('section.windows') as HTMLElement;
    const wrapper = table.parentElement as HTMLElement;
    const cardBox = card.getBoundingClientRect();
    const padRight = Number.parseFloat(getComputedStyle(card).paddingRight);
    const borderRight = Number.parseFloat(getComputedStyle(card).borderRightWidth);
    const contentRight = cardBox.right - padRight - borderRight;
    const lastCell = table.querySelector('tbody tr:last-child td:last-child') as HTMLElement;
    // Scrolled to its end, is the last column inside what the wrapper shows?
    wrapper.scrollLeft = wrapper.scrollWidth;
    const shownRight = wrapper.getBoundingClientRect().right;
    const lastRight = lastCell.getBoundingClientRect().right;
    return {
      tableWidth: Math.round(table.getBoundingClientRect().width),
      overflow: Math.round(table.getBoundingClientRect().right - contentRight + wrapper.scrollLeft),
      cardRight: Math.round(cardBox.right),
      viewport: window.innerWidth,
      pageScrollWidth: document.documentElement.scrollWidth,
      cardScrolls: card.scrollWidth > card.clientWidth,
      wrapperScrolls: wrapper.scrollWidth > wrapper.clientWidth,
      wrapperOverflowX: getComputedStyle(wrapper).overflowX,
      lastColumnReachable: lastRight <= shownRight + 0.5,
    };
  });
}

t.test('the prune-window table fits its card at 1,400 px, and scrolls inside it when wider', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: apt-get install -y chromium`);
    return;
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  t.teardown(() => browser.close());

  // As the dashboard test's screenshot had it: two windows, the default ladder, nothing moved.
  const kib = (k: number) => Math.round(k * 1024);
  const quiet = [0, 0, 0, kib(44.2), 0, 0, kib(40.7)];
  const usual = await serve(t, [report(1, LADDER, quiet), report(2, LADDER, quiet)]);
  for (const width of [1400, 1440]) {
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    await page.goto(usual);
    const m = await measure(page);
    t.ok(
      m.overflow <= 0,
      `${width} px: the table (${m.tableWidth} px) fits its card (over by ${m.overflow} px)`,
    );
    t.ok(m.pageScrollWidth <= width, `${width} px: the page does not scroll sideways (${m.pageScrollWidth})`);
    await page.close();
  }

  // Wider than any screen here: every tier of a long ladder moved, large numbers.
  const long = [0, 1, 2, 4, 8, 16, 32, 64, 128];
  const big = long.map((_, i) => (i + 1) * 3_300_000);
  const moved = long.map((_, i) => (i + 1) * 1_100_000);
  const heavy = await serve(t, [report(11, long, big, moved), report(12, long, moved, big)]);
  for (const width of [1400, 1000]) {
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    await page.goto(heavy);
    const m = await measure(page);
    t.ok(m.overflow > 0, `${width} px: this table (${m.tableWidth} px) is wider than the card`);
    t.equal(m.wrapperOverflowX, 'auto', `${width} px: so its wrapper scrolls sideways`);
    t.ok(m.wrapperScrolls, `${width} px: and does`);
    t.notOk(m.cardScrolls, `${width} px: the card itself does not (its heading and text stay put)`);
    t.ok(m.lastColumnReachable, `${width} px: scrolled to the end, the last column is shown whole`);
    t.ok(m.cardRight <= width, `${width} px: the card ends inside the window (${m.cardRight})`);
    t.ok(m.pageScrollWidth <= width, `${width} px: the page does not scroll sideways (${m.pageScrollWidth})`);
    await page.close();
  }
});
