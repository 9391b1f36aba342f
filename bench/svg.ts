/**
 * A tiny SVG plot writer for the benchmark report: line plots, stacked areas and grouped bars.
 * Plain strings, no dependency; each series is one `<path>` (with a `data-series` attribute) so the
 * files stay small, diff well and are easy to check in tests.
 */

/** One named series of (x, y) points, for line plots. */
export interface LineSeries {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  /** Draw a marker at each point (useful when there are few points). Default false. */
  markers?: boolean;
}

export interface AxisOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Logarithmic x axis (base 10); non-positive x are dropped. Default false. */
  xLog?: boolean;
  /** Force the y range (e.g. start at 0). Default: the data's range, padded. */
  yMin?: number;
  yMax?: number;
  /** Pixels. Defaults 640 × 360. */
  width?: number;
  height?: number;
}

/** Categorical palette (Okabe-Ito, readable for colour-blind readers). */
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];
const MARGIN = { left: 70, right: 150, top: 36, bottom: 48 };

export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** About `count` round tick values covering [min, max] (1, 2, 5 × 10^k steps). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(Number.isFinite(min) && Number.isFinite(max))) return [];
  if (min === max) return [min];
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step)
    ticks.push(+v.toPrecision(12));
  return ticks;
}

/** Ticks of a log10 axis over exponents [e0, e1]: 1-2-5 steps per decade, or whole decades when wide. */
export function logTicks(e0: number, e1: number): number[] {
  if (!(Number.isFinite(e0) && Number.isFinite(e1))) return [];
  const make = (steps: number[]): number[] => {
    const ticks: number[] = [];
    for (let k = Math.floor(e0); k <= Math.ceil(e1); k++)
      for (const m of steps) {
        const v = m * 10 ** k;
        if (Math.log10(v) >= e0 && Math.log10(v) <= e1) ticks.push(v);
      }
    return ticks;
  };
  const ticks = make([1, 2, 5]);
  if (ticks.length > 8) return make([1]);
  if (ticks.length < 2) return make([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  return ticks;
}

/** Short tick label: 1.2k, 3.4M, 0.785. */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a === 0) return '0';
  return `${+v.toPrecision(3)}`;
}

const f = (x: number): string => (Math.round(x * 10) / 10).toString();

interface Frame {
  width: number;
  height: number;
  x: (v: number) => number;
  y: (v: number) => number;
  parts: string[];
}

function range(values: number[], lo?: number, hi?: number): [number, number] {
  let min = lo ?? Math.min(...values);
  let max = hi ?? Math.max(...values);
  if (!(Number.isFinite(min) && Number.isFinite(max))) return [0, 1];
  if (min === max) {
    min -= Math.abs(min) * 0.05 || 1;
    max += Math.abs(max) * 0.05 || 1;
  } else {
    const pad = (max - min) * 0.05;
    if (lo === undefined) min -= pad;
    if (hi === undefined) max += pad;
  }
  return [min, max];
}

/** Axes, grid, labels and title; returns scales for the plot area. */
function frame(o: AxisOptions, xs: number[], ys: number[], xTicks?: { at: number; label: string }[]): Frame {
  const width = o.width ?? 640;
  const height = o.height ?? 360;
  const pw = width - MARGIN.left - MARGIN.right;
  const ph = height - MARGIN.top - MARGIN.bottom;
  const tx = o.xLog ? (v: number) => Math.log10(v) : (v: number) => v;
  const [x0, x1] = range(xs.map(tx));
  const [y0, y1] = range(ys, o.yMin, o.yMax);
  const x = (v: number) => MARGIN.left + ((tx(v) - x0) / (x1 - x0)) * pw;
  const y = (v: number) => MARGIN.top + ph - ((v - y0) / (y1 - y0)) * ph;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(o.title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(o.title)}</text>`,
  ];
  for (const v of niceTicks(y0, y1)) {
    parts.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + pw}" y1="${f(y(v))}" y2="${f(y(v))}" stroke="#e0e0e0"/>`,
      `<text x="${MARGIN.left - 6}" y="${f(y(v) + 4)}" text-anchor="end">${formatTick(v)}</text>`,
    );
  }
  const ticks =
    xTicks ??
    (o.xLog
      ? logTicks(x0, x1).map((v) => ({ at: v, label: formatTick(v) }))
      : niceTicks(x0, x1).map((v) => ({ at: v, label: formatTick(v) })));
  for (const t of ticks) {
    parts.push(
      `<line x1="${f(x(t.at))}" x2="${f(x(t.at))}" y1="${MARGIN.top + ph}" y2="${MARGIN.top + ph + 4}" stroke="#333"/>`,
      `<text x="${f(x(t.at))}" y="${MARGIN.top + ph + 16}" text-anchor="middle">${escapeXml(t.label)}</text>`,
    );
  }
  parts.push(
    `<path d="M${MARGIN.left},${MARGIN.top}V${MARGIN.top + ph}H${MARGIN.left + pw}" fill="none" stroke="#333"/>`,
    `<text x="${MARGIN.left + pw / 2}" y="${height - 10}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`,
    `<text transform="translate(16 ${MARGIN.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(o.yLabel)}</text>`,
  );
  return { width, height, x, y, parts };
}

function legend(fr: Frame, names: string[], filled: boolean): void {
  const lx = fr.width - MARGIN.right + 14;
  names.forEach((name, i) => {
    const ly = MARGIN.top + 8 + i * 18;
    const color = PALETTE[i % PALETTE.length];
    fr.parts.push(
      filled
        ? `<rect x="${lx}" y="${ly - 6}" width="14" height="10" fill="${color}"/>`
        : `<line x1="${lx}" x2="${lx + 14}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${lx + 20}" y="${ly + 4}">${escapeXml(name)}</text>`,
    );
  });
}

function finish(fr: Frame): string {
  fr.parts.push('</svg>');
  return `${fr.parts.join('\n')}\n`;
}

/** Lines (one `<path>` per series), with optional point markers. */
export function linePlot(o: AxisOptions & { series: readonly LineSeries[] }): string {
  const keep = (p: readonly [number, number]) =>
    Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!o.xLog || p[0] > 0);
  const series = o.series.map((s) => ({ ...s, points: s.points.filter(keep) }));
  const all = series.flatMap((s) => s.points);
  const fr = frame(
    o,
    all.map((p) => p[0]),
    all.map((p) => p[1]),
  );
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const d = s.points.map((p, k) => `${k === 0 ? 'M' : 'L'}${f(fr.x(p[0]))},${f(fr.y(p[1]))}`).join('');
    fr.parts.push(
      `<path data-series="${escapeXml(s.name)}" d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`,
    );
    if (s.markers)
      for (const p of s.points)
        fr.parts.push(`<circle cx="${f(fr.x(p[0]))}" cy="${f(fr.y(p[1]))}" r="3.5" fill="${color}"/>`);
  });
  legend(
    fr,
    series.map((s) => s.name),
    false,
  );
  return finish(fr);
}

/** Stacked areas over a shared x: series[0] at the bottom. One closed `<path>` per series. */
export function stackedAreaPlot(
  o: AxisOptions & {
    x: readonly number[];
    series: ReadonlyArray<{ name: string; values: readonly number[] }>;
  },
): string {
  const n = o.x.length;
  const tops: number[][] = [];
  const acc = new Array<number>(n).fill(0);
  for (const s of o.series) {
    for (let i = 0; i < n; i++) acc[i] += Number.isFinite(s.values[i]) ? s.values[i] : 0;
    tops.push(acc.slice());
  }
  const fr = frame({ ...o, yMin: o.yMin ?? 0 }, [...o.x], [0, ...acc]);
  o.series.forEach((s, k) => {
    const top = tops[k];
    const bottom = k === 0 ? new Array<number>(n).fill(0) : tops[k - 1];
    let d = '';
    for (let i = 0; i < n; i++) d += `${i === 0 ? 'M' : 'L'}${f(fr.x(o.x[i]))},${f(fr.y(top[i]))}`;
    for (let i = n - 1; i >= 0; i--) d += `L${f(fr.x(o.x[i]))},${f(fr.y(bottom[i]))}`;
    fr.parts.push(
      `<path data-series="${escapeXml(s.name)}" d="${d}Z" fill="${PALETTE[k % PALETTE.length]}" fill-opacity="0.85" stroke="none"/>`,
    );
  });
  legend(
    fr,
    o.series.map((s) => s.name),
    true,
  );
  return finish(fr);
}

/** Grouped bars: one group per category, one bar per series; each series is one `<path>` of rectangles. */
export function barPlot(
  o: Omit<AxisOptions, 'xLog'> & {
    categories: readonly string[];
    series: ReadonlyArray<{ name: string; values: readonly number[] }>;
  },
): string {
  const nc = o.categories.length;
  const ns = Math.max(1, o.series.length);
  const values = o.series.flatMap((s) => s.values.filter(Number.isFinite));
  // Categories sit at x = 0 .. nc-1; the padded range gives each group a unit of width.
  const fr = frame(
    { ...o, yMin: o.yMin ?? 0 },
    [-0.5, nc - 0.5],
    [0, ...values],
    o.categories.map((c, i) => ({ at: i, label: c })),
  );
  const unit = fr.x(1) - fr.x(0);
  const bar = (unit * 0.8) / ns;
  o.series.forEach((s, k) => {
    let d = '';
    for (let i = 0; i < nc; i++) {
      const v = s.values[i];
      if (!Number.isFinite(v)) continue;
      const left = fr.x(i) - unit * 0.4 + k * bar;
      const top = fr.y(v);
      d += `M${f(left)},${f(fr.y(0))}V${f(top)}H${f(left + bar - 1)}V${f(fr.y(0))}Z`;
    }
    fr.parts.push(
      `<path data-series="${escapeXml(s.name)}" d="${d}" fill="${PALETTE[k % PALETTE.length]}" stroke="none"/>`,
    );
  });
  legend(
    fr,
    o.series.map((s) => s.name),
    true,
  );
  return finish(fr);
}
