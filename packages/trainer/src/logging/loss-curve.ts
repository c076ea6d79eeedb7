/**
 * The loss-curve PNG: an SVG drawn as a string (axes, "nice" 1-2-5 ticks, the raw per-step loss as a thin line
 * and its moving average as a thick one) and rasterized by sharp (librsvg), so no chart library is needed.
 */

import { atomicWriteFile } from "@lora-studio/prompt-lora";
import sharp from "sharp";

export interface LossPoint {
  step: number;
  loss: number;
}

export interface LossCurveOptions {
  width?: number;
  height?: number;
  title?: string;
  /** Moving-average window in points; default n/20 clamped to [5, 200]. */
  window?: number;
}

/** Trailing moving average (the first points average what is available). */
export function movingAverage(values: readonly number[], window: number): number[] {
  const out: number[] = [];
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    if (i >= window) sum -= values[i - window];
    out.push(sum / Math.min(i + 1, window));
  }
  return out;
}

/** Tick positions at 1, 2 or 5 x 10^k covering [lo, hi] with about `count` ticks. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

export function defaultWindow(n: number): number {
  return Math.max(5, Math.min(200, Math.round(n / 20)));
}

export function lossCurveSvg(points: readonly LossPoint[], opts: LossCurveOptions = {}): string {
  const W = opts.width ?? 800;
  const H = opts.height ?? 450;
  const m = { left: 70, right: 20, top: 40, bottom: 50 };
  const finite = points.filter((p) => Number.isFinite(p.loss));
  const losses = finite.map((p) => p.loss);
  const avg = movingAverage(losses, opts.window ?? defaultWindow(losses.length));
  const x0 = finite.length > 0 ? finite[0].step : 0;
  const x1 = finite.length > 1 ? finite[finite.length - 1].step : x0 + 1;
  // The top of the axis ignores the highest 1% of points, so one spike does not flatten the whole curve.
  const sorted = [...losses].sort((a, b) => a - b);
  const yLo = sorted.length > 0 ? Math.min(0, sorted[0]) : 0;
  const yHiRaw =
    sorted.length > 0 ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] : 1;
  const yHi = yHiRaw > yLo ? yHiRaw * 1.05 : yLo + 1;
  const px = (step: number) => m.left + ((step - x0) / (x1 - x0 || 1)) * (W - m.left - m.right);
  const py = (v: number) => m.top + (1 - (Math.min(v, yHi) - yLo) / (yHi - yLo)) * (H - m.top - m.bottom);
  const path = (vals: readonly number[]) =>
    vals
      .map((v, i) => `${i === 0 ? "M" : "L"}${px(finite[i].step).toFixed(1)},${py(v).toFixed(1)}`)
      .join(" ");
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<g font-family="sans-serif" font-size="12" fill="#333">`,
  ];
  for (const t of niceTicks(yLo, yHi)) {
    const y = py(t).toFixed(1);
    parts.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(
      `<text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`,
    );
  }
  for (const t of niceTicks(x0, x1, 6)) {
    const x = px(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${H - m.bottom}" y2="${H - m.bottom + 5}" stroke="#333"/>`);
    parts.push(`<text x="${x}" y="${H - m.bottom + 18}" text-anchor="middle">${fmt(t)}</text>`);
  }
  parts.push(
    `<line x1="${m.left}" x2="${W - m.right}" y1="${H - m.bottom}" y2="${H - m.bottom}" stroke="#333"/>`,
    `<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${H - m.bottom}" stroke="#333"/>`,
    `<text x="${(W + m.left) / 2}" y="${H - 10}" text-anchor="middle">step</text>`,
    `<text x="16" y="${(H - m.bottom + m.top) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(H - m.bottom + m.top) / 2})">loss</text>`,
    `<text x="${m.left}" y="24" font-size="15">${escapeXml(opts.title ?? "training loss")}</text>`,
    `</g>`,
  );
  if (finite.length > 0) {
    parts.push(
      `<path d="${path(losses)}" fill="none" stroke="#7aa6d8" stroke-width="1" stroke-opacity="0.7"/>`,
    );
    parts.push(`<path d="${path(avg)}" fill="none" stroke="#c0392b" stroke-width="3"/>`);
  }
  parts.push("</svg>");
  return parts.join("\n");
}

export async function writeLossCurvePng(
  path: string,
  points: readonly LossPoint[],
  opts: LossCurveOptions = {},
) {
  const png = await sharp(Buffer.from(lossCurveSvg(points, opts)))
    .png()
    .toBuffer();
  await atomicWriteFile(path, png);
}

function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);
}
