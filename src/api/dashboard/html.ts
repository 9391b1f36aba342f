/** The dashboard's one HTML document. The page code (page/app.ts) fills it in. */

export interface PageSettings {
  pollMs: number;
  historyPoints: number;
}

/** Each chart: element id, title, and the one line that says what it means. */
export const CHARTS = [
  [
    'memory',
    'Memory of the budget',
    'What the budget counts, stacked: each tier (vectors, optimizer state, index), the per-token columns, the key index.',
  ],
  ['tokens', 'Tokens per tier', 'How many tokens live at each size: rare ones stay small, hot ones reach D.'],
  [
    'auc',
    'Progressive AUC',
    'Every event is scored before it is learned from; higher is better (0.5 = chance).',
  ],
  ['logloss', 'Progressive logloss', 'Same scores as AUC, measured as log loss; lower is better.'],
  ['rate', 'Events per second', 'Events the trainer learned from per second, between two polls.'],
  [
    'lag',
    'Consumer lag',
    'Messages behind the end of the interactions topic, all partitions; 0 = caught up.',
  ],
] as const;

const STYLE = `
:root { color-scheme: light; --fg: #1d2433; --muted: #5b6475; --line: #e3e6ec; --bg: #f5f6f8; --card: #fff;
  --accent: #2f6fdf; --bad: #c0392b; --good: #1e8e3e; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 24px; padding: 10px 20px;
  background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 17px; margin: 0; white-space: nowrap; }
header h1 small { font-weight: normal; color: var(--muted); }
.kpis { display: flex; flex-wrap: wrap; gap: 4px 18px; flex: 1; }
.kpi { display: flex; flex-direction: column; }
.kpi b { font-size: 16px; font-variant-numeric: tabular-nums; }
.kpi span { font-size: 12px; color: var(--muted); }
.prune { display: flex; flex-direction: column; align-items: flex-end; gap: 4px; max-width: 340px; }
.prune .row { display: flex; gap: 8px; flex-wrap: wrap; justify-content: flex-end; }
button { font: inherit; padding: 6px 12px; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; }
button:disabled { opacity: .55; cursor: default; }
form { display: flex; gap: 6px; margin: 0; }
form[hidden] { display: none; }
input { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px; width: 160px; }
#prune-status { color: var(--muted); font-size: 12.5px; min-height: 1.2em; }
#prune-status.error { color: var(--bad); }
main { padding: 14px 20px 24px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 14px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; min-width: 0; }
.card h2 { font-size: 14px; margin: 0; }
.card p.what { margin: 2px 0 6px; color: var(--muted); font-size: 12.5px; }
.chart { min-height: 200px; }
.uplot .u-legend { font-size: 12px; line-height: 1.3; }
.uplot .u-legend .u-series > * { padding: 1px 2px; }
.uplot .u-legend .u-marker { width: 10px; height: 10px; }
.windows { margin-top: 14px; }
/* The table scrolls sideways in a wrapper of its own, inside the card's padding: a long ladder or
   big numbers never run past the card's edge (nor make the card or the page scroll). */
.table-scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 12.5px; }
th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; }
th:first-child, td:first-child, td.left, th.left { text-align: left; }
/* Long headers break onto more lines when the table would not fit (at 1,400 px, the default
   ladder's table does then); a reason (up to 200 characters, from POST /v1/prune) wraps too. */
th.wrap, td.wrap { white-space: normal; }
td.wrap { max-width: 18em; overflow-wrap: break-word; }
td .down { color: var(--good); } td .up { color: var(--bad); } td.same { color: var(--muted); }
tr.running td { color: var(--muted); font-style: italic; }
.empty { color: var(--muted); padding: 8px 0; }
footer { color: var(--muted); font-size: 12px; padding: 0 20px 16px; }
footer.stale { color: var(--bad); }
`;

/** The document, with the settings the page reads from `<body data-*>`. */
export function pageHtml(settings: PageSettings): string {
  const cards = CHARTS.map(
    ([id, title, what]) =>
      `<section class="card"><h2>${title}</h2><p class="what">${what}</p><div class="chart" id="chart-${id}" data-chart="${id}"></div></section>`,
  ).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>PME dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/uPlot.min.css">
<style>${STYLE}</style>
<script type="importmap">{"imports":{"uplot":"/dashboard/uPlot.esm.js"}}</script>
<script type="module" src="/dashboard/app.js"></script>
</head>
<body data-poll-ms="${settings.pollMs}" data-history="${settings.historyPoints}">
<header>
  <h1>PME <small>streaming recommender</small></h1>
  <div class="kpis" id="kpis">
    <div class="kpi"><b id="kpi-events">–</b><span>events trained</span></div>
    <div class="kpi"><b id="kpi-rate">–</b><span>events/s</span></div>
    <div class="kpi"><b id="kpi-auc">–</b><span>AUC (recent)</span></div>
    <div class="kpi"><b id="kpi-logloss">–</b><span>logloss (recent)</span></div>
    <div class="kpi"><b id="kpi-lag">–</b><span>consumer lag</span></div>
    <div class="kpi"><b id="kpi-memory">–</b><span>memory of budget</span></div>
    <div class="kpi"><b id="kpi-outside">–</b><span>outside the budget (sketch, caches)</span></div>
    <div class="kpi"><b id="kpi-windows">–</b><span>prune windows</span></div>
  </div>
  <div class="prune">
    <div class="row">
      <form id="token-form" hidden>
        <input id="token" type="password" placeholder="admin token" autocomplete="off" aria-label="admin token">
        <button type="submit">Use token</button>
      </form>
      <button id="prune" type="button" title="POST /v1/prune: re-prune every token now">Start prune window</button>
    </div>
    <span id="prune-status" role="status"></span>
  </div>
</header>
<main>
<div class="grid">
${cards}
</div>
<section class="card windows">
  <h2>Prune windows</h2>
  <p class="what">Each re-pruning window, newest first: memory per tier (size) before → after, the recent AUC before → after (other events: it moves with the stream), and the step: the AUC of the last events learned, scored just before and just after the window's moves.</p>
  <div id="windows" class="table-scroll"><p class="empty">No window yet.</p></div>
</section>
<section class="card windows">
  <h2>Subscriptions</h2>
  <p class="what">Your own topics (<code>/v1/subscriptions</code>): messages read, events trained, messages sent to the topic's DLQ (hover for the reasons), and the lag summed over partitions.</p>
  <div id="subscriptions" class="table-scroll"><p class="empty">No subscription.</p></div>
</section>
</main>
<footer id="footer">Connecting…</footer>
</body>
</html>
`;
}
