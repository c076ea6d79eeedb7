/**
 * A fixed-size SVG line chart (no layout jump while events stream in): raw values as a thin line and their
 * exponential moving average as a thick one, the way loss curves are read.
 */
import { css, html, LitElement, svg } from "lit";
import { shared } from "./styles.ts";

export function movingAverage(values: number[], beta = 0.9): number[] {
  const out: number[] = [];
  let avg = 0;
  values.forEach((v, i) => {
    avg = beta * avg + (1 - beta) * v;
    out.push(avg / (1 - beta ** (i + 1)));
  });
  return out;
}

/**
 * The y range drawn: the data's, or for a flat series (a constant learning rate) a band around it, so the line
 * sits mid-chart with distinct labels instead of on the bottom edge under two equal ones.
 */
export function valueRange(ys: number[]): [number, number] {
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  if (hi - lo > 1e-9 * Math.max(Math.abs(lo), Math.abs(hi))) return [lo, hi];
  const pad = lo === 0 ? 1 : Math.abs(lo) * 0.5;
  return [lo - pad, hi + pad];
}

/** Axis numbers: 3 significant digits, exponent form for small or large magnitudes (learning rates). */
export function axisNumber(v: number): string {
  const a = Math.abs(v);
  return a !== 0 && (a < 0.01 || a >= 1e5) ? v.toExponential(2) : String(Number(v.toPrecision(3)));
}

export class LineChart extends LitElement {
  static override properties = {
    points: { attribute: false },
    label: {},
    smooth: { type: Boolean },
    viewWidth: { type: Number, attribute: "view-width" },
  };
  /** Width of the drawing in px of text size (narrow charts keep their labels readable). */
  declare viewWidth: number;
  declare points: Array<[number, number]>;
  declare label: string;
  /** Draw the moving average (for noisy series such as loss). */
  declare smooth: boolean;

  constructor() {
    super();
    this.points = [];
    this.label = "";
    this.smooth = false;
    this.viewWidth = 600;
  }

  static override styles = [
    shared,
    css`
      svg { width: 100%; height: auto; display: block; background: var(--ls-panel); border: 1px solid var(--ls-border); border-radius: 8px; }
      .raw { stroke: var(--ls-muted); stroke-width: 1; fill: none; }
      .avg { stroke: var(--ls-accent); stroke-width: 2.5; fill: none; }
      .grid { stroke: var(--ls-border); stroke-width: 1; stroke-dasharray: 2 4; }
      text { fill: var(--ls-muted); font-size: 11px; }
    `,
  ];

  override render() {
    const W = this.viewWidth;
    const H = 220;
    const pts = this.points;
    if (pts.length === 0) {
      return html`<svg viewBox="0 0 ${W} ${H}" style="aspect-ratio: ${W} / ${H}" role="img" aria-label="empty chart">${svg`<text x="12" y="24">${this.label}: no data yet</text>`}</svg>`;
    }
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
    const [y0, y1] = valueRange(ys);
    const sx = (x: number) => 40 + ((x - x0) / (x1 - x0)) * (W - 50);
    const sy = (y: number) => H - 20 - ((y - y0) / (y1 - y0)) * (H - 40);
    const line = (vals: number[]) =>
      vals.map((y, i) => `${sx(xs[i]).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    const grid = [0.25, 0.5, 0.75].map((f) => sy(y0 + f * (y1 - y0)).toFixed(1));
    return html`<svg viewBox="0 0 ${W} ${H}" style="aspect-ratio: ${W} / ${H}" role="img" aria-label=${`${this.label} chart`}>
      ${svg`${grid.map((y) => svg`<line class="grid" x1="40" x2=${W - 10} y1=${y} y2=${y} />`)}
      <polyline class="raw" points=${line(ys)} />
      ${this.smooth ? svg`<polyline class="avg" points=${line(movingAverage(ys))} />` : null}
      <text x="4" y="14">${axisNumber(y1)}</text><text x="4" y=${H - 24}>${axisNumber(y0)}</text>
      <text x="40" y=${H - 5}>step ${x0}</text><text x=${W - 10} y=${H - 5} text-anchor="end">step ${x1}</text>
      <text x=${W - 10} y="14" text-anchor="end">${this.label} (${pts.length})</text>`}
    </svg>`;
  }
}
customElements.define("ls-line-chart", LineChart);
