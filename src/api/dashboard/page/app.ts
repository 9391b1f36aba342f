/// <reference lib="dom" />
/**
 * The dashboard page (runs in the browser). Polls `GET /v1/stats` every `data-poll-ms`,
 * keeps the history in memory and redraws six uPlot charts; reloads `GET /v1/prune` when a
 * window finished; the button posts `POST /v1/prune`, asking for the admin token on a 401 and
 * keeping it in sessionStorage for the tab's life.
 */
import uPlot from 'uplot';
import type { PruneWindowReport } from '../../contract.js';
import type { DashboardStats } from '../stats.js';
import {
  BYTE_STEPS,
  COUNT_STEPS,
  escapeHtml,
  formatBytes,
  formatCount,
  formatMetric,
  History,
  memoryFigure,
  stack,
  windowRows,
} from './format.js';

const TOKEN_KEY = 'pme.adminToken';
const CHART_HEIGHT = 170;
/** Categorical colours, one per tier (ascending size); the smallest tier is grey: it holds no vectors. */
const PALETTE = ['#9aa0a6', '#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1'];
/** The memory chart's parts above the tiers (History.memoryRows order), colours outside PALETTE. */
const OTHER_PARTS = [
  { label: 'token columns', colour: '#bab0ac' },
  { label: 'key index', colour: '#9c755f' },
];

const body = document.body;
const pollMs = Number(body.dataset.pollMs ?? 1000);
const history = new History(Number(body.dataset.history ?? 900));

function $(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`dashboard: #${id} missing from the page`);
  return element;
}

function colour(i: number): string {
  return PALETTE[i % PALETTE.length];
}

/** The colour blended towards white: opaque fills, so stacked areas paint over one another cleanly. */
function tint(hex: string, amount = 0.45): string {
  const n = Number.parseInt(hex.slice(1), 16);
  const mix = (c: number) => Math.round(c + (255 - c) * amount);
  return `rgb(${mix(n >> 16)}, ${mix((n >> 8) & 255)}, ${mix(n & 255)})`;
}

const time = (ms: number) => new Date(ms).toLocaleTimeString([], { hour12: false });

interface Chart {
  plot: uPlot;
  element: HTMLElement;
  data: () => uPlot.AlignedData;
}

const charts = new Map<string, Chart>();

function makeChart(
  id: string,
  series: uPlot.Series[],
  format: (value: number) => string,
  data: () => uPlot.AlignedData,
  scale: uPlot.Scale = {},
  steps?: number[],
): void {
  charts.get(id)?.plot.destroy();
  const element = $(`chart-${id}`);
  element.replaceChildren();
  const plot = new uPlot(
    {
      width: Math.max(200, element.clientWidth),
      height: CHART_HEIGHT,
      series: [{ label: 'time', value: (_u, v) => (v === null ? '–' : time(v * 1000)) }, ...series],
      scales: { x: { time: true }, y: scale },
      axes: [
        // Clock time only: the whole history is minutes long, a date line would waste height.
        {
          stroke: '#5b6475',
          grid: { stroke: '#eef0f3' },
          space: 70,
          values: (_u, splits) => splits.map((v) => time(v * 1000)),
        },
        {
          stroke: '#5b6475',
          grid: { stroke: '#eef0f3' },
          size: 62,
          incrs: steps,
          values: (_u, splits) => splits.map((v) => format(v)),
        },
      ],
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    },
    data(),
    element,
  );
  charts.set(id, { plot, element, data });
}

function line(label: string, stroke: string, format: (v: number) => string, dash?: number[]): uPlot.Series {
  return {
    label,
    stroke,
    width: 1.6,
    dash,
    spanGaps: true,
    points: { show: false },
    value: (_u, v) => (v === null ? '–' : format(v)),
  };
}

/** Tier charts depend on the ladder, so they are (re)built when the first sample shows it. */
function buildTierCharts(): void {
  const sizes = history.sizes;
  // Rows bottom-up: the tiers, then the budget's other parts, so the top is what the budget counts.
  const labels = [...sizes.map((size, i) => ({ label: `size ${size}`, colour: colour(i) })), ...OTHER_PARTS];
  // Top of the stack first: each area is filled to zero and the ones below paint over it.
  const order = labels.map((_, i) => i).reverse();
  makeChart(
    'memory',
    order.map((i) => ({
      label: labels[i].label,
      stroke: labels[i].colour,
      fill: tint(labels[i].colour),
      width: 1,
      points: { show: false },
      value: (_u: uPlot, _v: number | null, _s: number, idx: number | null) => {
        const raw = idx === null ? null : history.memoryRows()[i][idx];
        return raw === null || raw === undefined ? '–' : formatBytes(raw);
      },
    })),
    formatBytes,
    () => {
      const stacked = stack(history.memoryRows());
      return [history.times, ...order.map((i) => stacked[i])];
    },
    { range: (_u, _min, max) => [0, max > 0 ? max * 1.05 : 1] },
    BYTE_STEPS,
  );
  makeChart(
    'tokens',
    sizes.map((size, i) => line(`size ${size}`, colour(i), formatCount)),
    formatCount,
    () => [history.times, ...history.tokens],
    { range: (_u, _min, max) => [0, max > 0 ? max * 1.05 : 1] },
    COUNT_STEPS,
  );
}

function buildFixedCharts(): void {
  const metric = (v: number) => v.toFixed(3);
  makeChart(
    'auc',
    [line('recent', '#2f6fdf', metric), line('all events', '#1d2433', metric, [6, 4])],
    metric,
    () => [history.times, history.windowAuc, history.auc],
  );
  makeChart(
    'logloss',
    [line('recent', '#c0392b', metric), line('all events', '#1d2433', metric, [6, 4])],
    metric,
    () => [history.times, history.windowLogloss, history.logloss],
  );
  const zeroBased: uPlot.Scale = { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] };
  makeChart(
    'rate',
    [{ ...line('events/s', '#1e8e3e', formatCount), fill: 'rgba(30, 142, 62, 0.12)' }],
    formatCount,
    () => [history.times, history.rate],
    zeroBased,
    COUNT_STEPS,
  );
  makeChart(
    'lag',
    [{ ...line('messages behind', '#8e44ad', formatCount), fill: 'rgba(142, 68, 173, 0.12)' }],
    formatCount,
    () => [history.times, history.lag],
    zeroBased,
    COUNT_STEPS,
  );
}

function redraw(): void {
  for (const chart of charts.values()) {
    const data = chart.data();
    chart.plot.setData(data);
    // Without a hovering cursor the legend shows the newest values.
    if (chart.plot.cursor.left === undefined || chart.plot.cursor.left < 0)
      chart.plot.setLegend({ idx: data[0].length - 1 });
    let points = 0;
    for (let i = 0; i < data[0].length; i++) if (data.slice(1).some((s) => s[i] != null)) points++;
    chart.element.dataset.points = String(points);
  }
}

function showKpis(stats: DashboardStats): void {
  const rate = history.rate[history.rate.length - 1];
  $('kpi-events').textContent = stats.eventsTrained.toLocaleString('en-US');
  $('kpi-rate').textContent = rate === null || rate === undefined ? '–' : formatCount(rate);
  $('kpi-auc').textContent = formatMetric(stats.windowAuc);
  $('kpi-logloss').textContent = formatMetric(stats.windowLogloss);
  $('kpi-lag').textContent = formatCount(stats.lagTotal);
  const memory = memoryFigure(stats);
  $('kpi-memory').textContent = memory.text;
  // The parts are on the memory chart's legend too; the header keeps one figure.
  $('kpi-memory').title = memory.parts;
  // Beside the budget: the sketch, caches and catalog it does not count (not on the chart).
  $('kpi-outside').textContent = memory.outside;
  $('kpi-outside').title = memory.outsideParts;
  $('kpi-windows').textContent = String(stats.pruneWindows);
}

/** The subscriptions' counters, a row each (redrawn at every poll: they are few). */
function renderSubscriptions(stats: DashboardStats): void {
  const entries = Object.entries(stats.subscriptions ?? {});
  if (entries.length === 0) {
    $('subscriptions').innerHTML = '<p class="empty">No subscription.</p>';
    return;
  }
  const rows = entries.map(([name, s]) => {
    const reasons = Object.entries(s.dlqByReason)
      .map(([reason, n]) => `${reason}: ${n}`)
      .join(', ');
    const lag = Object.values(s.lag).reduce((sum, n) => sum + n, 0);
    return (
      `<tr data-subscription="${escapeHtml(name)}"><td class="left">${escapeHtml(name)}</td><td class="left">${escapeHtml(s.topic)}</td>` +
      `<td>${formatCount(s.consumed)}</td><td>${formatCount(s.trained)}</td>` +
      `<td title="${escapeHtml(reasons)}">${formatCount(s.dlq)}</td><td>${formatCount(lag)}</td></tr>`
    );
  });
  $('subscriptions').innerHTML =
    '<table><thead><tr><th class="left">name</th><th class="left">topic</th><th>read</th><th>trained</th><th>DLQ</th><th>lag</th></tr></thead>' +
    `<tbody>${rows.join('')}</tbody></table>`;
}

// Prune windows: the table, and the one started from this page until it shows up.
let shownWindow = -1;
let pendingWindow: number | null = null;
let windows: PruneWindowReport[] = [];

function renderWindows(): void {
  const { sizes, rows } = windowRows(windows, time);
  const running = pendingWindow !== null && !windows.some((w) => w.id === pendingWindow);
  if (rows.length === 0 && !running) {
    $('windows').innerHTML = '<p class="empty">No window yet.</p>';
    return;
  }
  const head = [
    '<th>#</th><th class="left">started</th><th class="left">reason</th><th>took</th><th>searched</th>',
    '<th class="wrap" title="moved / demoted / evicted tokens">moved / demoted / evicted</th><th class="wrap">AUC before → after</th>',
    '<th title="AUC of the last events learned, scored just before and just after the window\'s moves">step</th>',
    ...sizes.map((s) => `<th>size ${s}</th>`),
    '<th>total</th><th>change</th>',
  ].join('');
  const cells = 9 + sizes.length;
  const runningRow = running
    ? `<tr class="running" data-window="${pendingWindow}"><td>${pendingWindow}</td><td class="left" colspan="${cells}">running…</td></tr>`
    : '';
  const lines = rows.map(
    (r) =>
      `<tr data-window="${r.id}"><td>${r.id}</td><td class="left">${r.started}</td><td class="left wrap">${escapeHtml(r.reason)}</td>` +
      `<td>${r.duration}</td><td>${r.searched}</td><td>${r.moved}</td><td>${r.auc}</td><td>${r.step}</td>` +
      r.tiers.map((cell) => `<td${cell.changed ? '' : ' class="same"'}>${cell.text}</td>`).join('') +
      `<td>${r.total}</td><td><span class="${r.direction < 0 ? 'down' : r.direction > 0 ? 'up' : ''}">${r.change}</span></td></tr>`,
  );
  $('windows').innerHTML =
    `<table><thead><tr>${head}</tr></thead><tbody>${runningRow}${lines.join('')}</tbody></table>`;
}

async function loadWindows(): Promise<void> {
  const res = await fetch('/v1/prune', { cache: 'no-store' });
  if (!res.ok) throw new Error(`GET /v1/prune answered ${res.status}`);
  windows = ((await res.json()) as { windows: PruneWindowReport[] }).windows;
  if (pendingWindow !== null) {
    const done = windows.find((w) => w.id === pendingWindow);
    if (done !== undefined) {
      const before = done.before.reduce((sum, t) => sum + t.totalBytes, 0);
      const after = done.after.reduce((sum, t) => sum + t.totalBytes, 0);
      status(`window ${done.id} done: ${formatBytes(before)} → ${formatBytes(after)}`);
      pendingWindow = null;
    }
  }
  renderWindows();
}

function status(text: string, error = false): void {
  const element = $('prune-status');
  element.textContent = text;
  element.classList.toggle('error', error);
}

async function startPrune(): Promise<void> {
  const button = $('prune') as HTMLButtonElement;
  const form = $('token-form') as HTMLFormElement;
  const token = sessionStorage.getItem(TOKEN_KEY);
  button.disabled = true;
  status('starting…');
  try {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const res = await fetch('/v1/prune', {
      method: 'POST',
      headers,
      body: JSON.stringify({ reason: 'dashboard' }),
    });
    if (res.status === 202) {
      const { window } = (await res.json()) as { window: number };
      pendingWindow = window;
      form.hidden = true;
      status(`window ${window} running…`);
      renderWindows();
      return;
    }
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      form.hidden = false;
      ($('token') as HTMLInputElement).focus();
      status(token === null ? 'this service needs its admin token' : 'token refused; enter it again', true);
      return;
    }
    const answer = (await res.json().catch(() => ({}))) as { message?: string };
    status(
      res.status === 409 ? 'a window is already running' : `failed: ${answer.message ?? res.status}`,
      true,
    );
  } catch (error) {
    status(`failed: ${error instanceof Error ? error.message : String(error)}`, true);
  } finally {
    button.disabled = false;
  }
}

function wire(): void {
  $('prune').addEventListener('click', () => void startPrune());
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('token') as HTMLInputElement;
    if (input.value === '') return;
    sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = '';
    void startPrune();
  });
  const resize = new ResizeObserver(() => {
    for (const chart of charts.values())
      chart.plot.setSize({ width: Math.max(200, chart.element.clientWidth), height: CHART_HEIGHT });
  });
  document.querySelectorAll<HTMLElement>('[data-chart]').forEach((element) => {
    resize.observe(element);
  });
}

async function poll(): Promise<void> {
  const footer = $('footer');
  try {
    const res = await fetch('/v1/stats', { cache: 'no-store' });
    if (!res.ok) throw new Error(`GET /v1/stats answered ${res.status}`);
    const stats = (await res.json()) as DashboardStats;
    if (history.push(stats)) buildTierCharts();
    redraw();
    showKpis(stats);
    renderSubscriptions(stats);
    // The newest window's AUC after is filled in once enough events followed it.
    const awaitingAuc = windows.length > 0 && windows[windows.length - 1].aucAfter === null;
    if (stats.lastWindowId !== shownWindow || pendingWindow !== null || awaitingAuc) {
      await loadWindows();
      shownWindow = stats.lastWindowId;
    }
    footer.textContent = `Updated ${time(stats.at)} · every ${pollMs / 1000} s · ${history.times.length} points · dense backend ${stats.backend || '?'}`;
    footer.classList.remove('stale');
  } catch (error) {
    footer.textContent = `No answer from the service (${error instanceof Error ? error.message : error}); retrying every ${pollMs / 1000} s. Last update: ${history.last === null ? 'never' : time(history.last.at)}`;
    footer.classList.add('stale');
  } finally {
    setTimeout(() => void poll(), pollMs);
  }
}

wire();
buildFixedCharts();
void poll();
