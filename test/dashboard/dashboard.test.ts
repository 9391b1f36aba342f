/**
 * The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
 * against the real service fed through the real broker: the page loads without console errors,
 * every chart holds data points, and the prune button (asking for the admin token after a 401)
 * starts a window that then appears in the table; a subscription gets its row of counters. Writes
 * test-artifacts/dashboard.png.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { chromium } from 'playwright-core';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { startService } from '../../src/service/index.js';
import { EventProducer } from '../../src/stream/index.js';
import { isolatedEnv, testBrokers } from '../helpers/broker.js';
import { until } from '../helpers/wait.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const TOKEN = 'dash-s3cret';
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));

t.test('the dashboard charts the live service and starts a prune window', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: apt-get install -y chromium`);
    return;
  }
  const brokers = await testBrokers();
  const stateDir = await mkdtemp(join(tmpdir(), 'pme-dashboard-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const config = loadConfig([], {
    ...isolatedEnv(brokers, stateDir),
    PME_ADMIN_TOKEN: TOKEN,
    // Only the button starts windows here, so the one it starts is the one the table must show.
    PME_PRUNE_EVERY_EVENTS: '0',
    PME_PRUNE_EVERY_MS: '0',
  });
  const service = await startService(config, () => {});
  t.teardown(() => service.stop());

  const workload = new SyntheticWorkload({ seed: 9, users: 200, items: 500 });
  const producer = new EventProducer({ brokers: config.brokers });
  await producer.connect();
  t.teardown(() => producer.disconnect());
  await producer.sendItems(config.itemsTopic, workload.catalog());
  const batch = (n: number) => Array.from({ length: n }, () => workload.next());
  await producer.sendInteractions(config.interactionsTopic, batch(5_000));
  await until('the first events trained', () => service.trainer.stats().learned >= 5_000);

  // Events keep arriving while the page watches, so rate and lag move.
  let feeding = true;
  const feeder = (async () => {
    while (feeding) {
      await producer.sendInteractions(config.interactionsTopic, batch(1_000));
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();
  t.teardown(async () => {
    feeding = false;
    await feeder;
  });

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const errors: Array<{ text: string; url: string }> = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push({ text: message.text(), url: message.location().url });
  });
  page.on('pageerror', (error) => errors.push({ text: error.message, url: 'pageerror' }));

  const response = await page.goto(service.url);
  t.equal(response?.status(), 200, 'the page is served at /');
  t.equal(await page.title(), 'PME dashboard');

  const charts = await page.$$eval('[data-chart]', (elements) =>
    elements.map((e) => (e as HTMLElement).dataset.chart),
  );
  t.same(charts, ['memory', 'tokens', 'auc', 'logloss', 'rate', 'lag'], 'six charts');
  await page.waitForFunction(
    () =>
      Array.from(document.querySelectorAll<HTMLElement>('[data-chart]')).every(
        (e) => Number(e.dataset.points ?? 0) >= 3,
      ),
    null,
    { timeout: 20_000 },
  );
  const points = await page.$$eval('[data-chart]', (elements) =>
    elements.map((e) => Number((e as HTMLElement).dataset.points)),
  );
  for (const [i, n] of points.entries()) t.ok(n >= 3, `chart ${charts[i]} holds ${n} data points`);
  t.equal(await page.locator('canvas').count(), 6, 'each chart drew its canvas');
  t.match(
    (await page.locator('#chart-memory .u-legend').textContent()) ?? '',
    new RegExp(`size ${config.ladder.at(-1)}[\\s\\S]*size ${config.ladder[0]}`),
    'the memory chart stacks one series per tier, largest size on top',
  );
  const shownEvents = Number(((await page.locator('#kpi-events').textContent()) ?? '').replace(/,/g, ''));
  t.ok(shownEvents >= 5_000, `the header shows the events trained (${shownEvents})`);
  t.ok(shownEvents <= service.trainer.stats().learned, 'and no more than the trainer learned');
  t.same(errors, [], 'no console errors while loading and polling');

  // A subscription to a JSON topic of the user's own: its row shows what it read, trained and
  // sent to its DLQ (one record without a user).
  t.match((await page.locator('#subscriptions').textContent()) ?? '', /No subscription/);
  const subscribed = await fetch(`${service.url}/v1/subscriptions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({
      name: 'clicks',
      topic: `${config.interactionsTopic}-clicks`,
      format: 'json',
      mapping: { user: 'who', item: 'what', label: '1' },
    }),
  });
  t.equal(subscribed.status, 201, 'subscribed');
  const plain = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING }).producer();
  await plain.connect();
  t.teardown(() => plain.disconnect());
  await plain.send({
    topic: `${config.interactionsTopic}-clicks`,
    messages: [
      ...Array.from({ length: 30 }, (_, k) => ({
        value: JSON.stringify({ who: `u${k}`, what: `i${k % 7}` }),
      })),
      { value: JSON.stringify({ what: 'i1' }) },
    ],
  });
  const subscriptionRow = page.locator('#subscriptions tr[data-subscription="clicks"]');
  // Read leads trained (a polled row can show all 31 read with a batch still being learned): wait
  // for both.
  await page.waitForFunction(
    () => {
      const cell = (n: number) =>
        document.querySelector(`#subscriptions tr[data-subscription="clicks"] td:nth-child(${n})`)
          ?.textContent;
      return cell(3) === '31' && cell(4) === '30';
    },
    null,
    { timeout: 30_000 },
  );
  t.same(
    await subscriptionRow.locator('td').allTextContents(),
    ['clicks', `${config.interactionsTopic}-clicks`, '31', '30', '1', '0'],
    'name, topic, read, trained, DLQ, lag',
  );
  t.match(
    (await subscriptionRow.locator('td').nth(4).getAttribute('title')) ?? '',
    /missing-user: 1/,
    'the DLQ reasons on hover',
  );

  // Without a token the API answers 401 and the page asks for it.
  await page.click('#prune');
  await page.waitForSelector('#token-form:not([hidden])');
  t.match((await page.locator('#prune-status').textContent()) ?? '', /admin token/);
  t.same(await page.evaluate(() => sessionStorage.getItem('pme.adminToken')), null);
  await page.fill('#token', TOKEN);
  await page.click('#token-form button[type=submit]');
  await page.waitForFunction(() =>
    /window \d+/.test(document.getElementById('prune-status')?.textContent ?? ''),
  );
  const id = Number(/window (\d+)/.exec((await page.locator('#prune-status').textContent()) ?? '')?.[1]);
  t.ok(id >= 1, `the button started window ${id}`);
  t.equal(await page.evaluate(() => sessionStorage.getItem('pme.adminToken')), TOKEN, 'token kept');

  const row = page.locator(`#windows tr[data-window="${id}"]:not(.running)`);
  await row.waitFor({ timeout: 30_000 });
  const cells = await row.locator('td').allTextContents();
  t.equal(cells[0], String(id));
  t.equal(cells[2], 'dashboard', 'the reason the page sent');
  // Cells: #, started, reason, took, searched, moved, AUC, step, one per tier size, total, change.
  const sizes = await page.locator('#windows th', { hasText: /^size \d+$/ }).allTextContents();
  t.same(
    sizes,
    config.ladder.map((size) => `size ${size}`),
    'a column per size of the ladder',
  );
  t.match(cells[7], /^\d\.\d{4} → \d\.\d{4}$/, "the window's step on its probe");
  const tierCells = cells.slice(8, -2);
  t.equal(tierCells.length, sizes.length);
  const bytes = /^\d+(\.\d)? (B|KiB|MiB|GiB)$/;
  for (const [i, cell] of tierCells.entries())
    t.ok(
      cell.split(' → ').every((part) => bytes.test(part)),
      `${sizes[i]}: bytes (before → after when it changed): ${cell}`,
    );
  t.match(cells.at(-2), /^\S+ \S*B → \S+ \S*B$/, 'total bytes before → after');
  t.match(cells.at(-1), /^[+-]?\d+\.\d%$|^0%$/, 'relative change');
  const listed = (await (await fetch(`${service.url}/v1/prune`)).json()) as {
    windows: Array<{ id: number; reason: string }>;
  };
  t.ok(
    listed.windows.some((w) => w.id === id && w.reason === 'dashboard'),
    'the API lists the window too',
  );
  await page.waitForFunction(() => /done/.test(document.getElementById('prune-status')?.textContent ?? ''));

  // A second click reuses the stored token: no second 401.
  await page.click('#prune');
  await page.waitForFunction(
    (first) =>
      new RegExp(`window (?!${first}\\b)\\d+`).test(
        document.getElementById('prune-status')?.textContent ?? '',
      ),
    id,
  );
  t.ok(await page.locator('#token-form').isHidden(), 'no token asked the second time');
  await page.waitForFunction(() => /done/.test(document.getElementById('prune-status')?.textContent ?? ''));

  // The one expected error is Chromium's own log line for the 401 that asked for the token.
  const unexpected = errors.filter((e) => !(/401/.test(e.text) && e.url.endsWith('/v1/prune')));
  t.same(unexpected, [], 'no console errors but the expected 401');
  t.equal(errors.length - unexpected.length, 1, 'exactly one 401');

  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
});
