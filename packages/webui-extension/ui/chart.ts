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
    const [y0, y1] = [Math.min(...ys), Math.max(...ys, Math.min(...ys) + 1e-9)];
    const sx = (x: number) => 40 + ((x - x0) / (x1 - x0)) * (W - 50);
    const sy = (y: number) => H - 20 - ((y - y0) / (y1 - y0)) * (H - 40);
    const line = (vals: number[]) =>
      vals.map((y, i) => `${sx(xs[i]).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    return html`<svg viewBox="0 0 ${W} ${H}" style="aspect-ratio: ${W} / ${H}" role="img" aria-label=${`${this.label} chart`}>
      ${svg`<polyline class="raw" points=${line(ys)} />
      ${this.smooth ? svg`<polyline class="avg" points=${line(movingAverage(ys))} />` : null}
      <text x="4" y="14">${y1.toPrecision(4)}</text><text x="4" y=${H - 6}>${y0.toPrecision(4)}</text>
      <text x=${W - 110} y="14">${this.label} (${pts.length})</text>`}
    </svg>`;
  }
}
customElements.define("ls-line-chart", LineChart);
