/**
 * The training-health note, computed from the loss series, with the numbers behind each verdict so a user can
 * judge it. The verdicts follow the LoRA tutorials' advice:
 *  - diverging (loss ends well above where it was, or non-finite): lower the learning rate, train in fp32;
 *  - oscillating (the smoothed loss keeps swinging up and down by a large fraction in the second half): lower
 *    the learning rate;
 *  - plateau early (the smoothed loss reaches its final level in the first quarter and stays there): the rest
 *    of the run taught little; add data (more / more varied images) or change epochs;
 *  - falling: fine.
 * Diffusion losses are noisy per step (the timestep is random), so every test runs on a moving average.
 */
import { defaultWindow, movingAverage } from "./loss-curve.ts";

export type HealthKind =
  | "too-short"
  | "non-finite"
  | "diverging"
  | "oscillating"
  | "plateau-early"
  | "falling"
  | "flat";

export interface HealthNote {
  kind: HealthKind;
  message: string;
  numbers: Record<string, number>;
}

export interface HealthOptions {
  /** Relative rise of the end over the start that counts as diverging (default 0.25). */
  divergeRise?: number;
  /** Relative swing of the smoothed second half that counts as oscillating (default 0.3). */
  oscillationSwing?: number;
  /** Tolerance around the final level for the plateau test (default 0.1). */
  plateauTolerance?: number;
  /** Plateau reached before this fraction of the run counts as early (default 0.25). */
  earlyFraction?: number;
}

const MIN_POINTS = 20;

export function trainingHealth(losses: readonly number[], opts: HealthOptions = {}): HealthNote[] {
  const n = losses.length;
  const badIndex = losses.findIndex((l) => !Number.isFinite(l));
  if (badIndex >= 0) {
    return [
      {
        kind: "non-finite",
        message: `loss became ${losses[badIndex]} at point ${badIndex}: lower the learning rate or train in fp32 (mixed_precision: no)`,
        numbers: { index: badIndex },
      },
    ];
  }
  if (n < MIN_POINTS) {
    return [
      {
        kind: "too-short",
        message: `only ${n} loss values; need ${MIN_POINTS} to judge the curve`,
        numbers: { points: n },
      },
    ];
  }
  const w = defaultWindow(n);
  const ma = movingAverage(losses, w);
  const edge = Math.max(w, Math.floor(n / 10));
  const start = mean(losses.slice(0, edge));
  const end = mean(losses.slice(n - edge));
  const change = (end - start) / start;
  const notes: HealthNote[] = [];

  if (change > (opts.divergeRise ?? 0.25)) {
    notes.push({
      kind: "diverging",
      message: `loss rose ${(change * 100).toFixed(0)}% (from ${start.toPrecision(3)} to ${end.toPrecision(3)}): lower the learning rate, or train in fp32 (mixed_precision: no)`,
      numbers: { start, end, change },
    });
  }

  // Oscillation is judged on the smoothed second half minus its straight-line trend, and must exceed what the
  // per-step noise left in the moving average explains (about +-4 standard errors).
  const from = Math.floor(n / 2) + w;
  const half = ma.slice(from);
  if (half.length >= 4) {
    const level = mean(half);
    const residual = detrend(half);
    const noiseSd = Math.sqrt(mean(losses.slice(from).map((l, i) => (l - half[i]) ** 2))) / Math.sqrt(w);
    const swing = (Math.max(...residual) - Math.min(...residual)) / level;
    const noiseSwing = (8 * noiseSd) / level;
    const reversals = countReversals(residual, Math.max(0.05 * level, 2 * noiseSd));
    if (swing > Math.max(opts.oscillationSwing ?? 0.3, noiseSwing) && reversals >= 3) {
      notes.push({
        kind: "oscillating",
        message: `the smoothed loss swings ${(swing * 100).toFixed(0)}% around ${level.toPrecision(3)} with ${reversals} reversals in the second half (noise explains ${(noiseSwing * 100).toFixed(0)}%): lower the learning rate (e.g. halve it)`,
        numbers: { swing, noiseSwing, reversals, level, window: w },
      });
    }
  }

  if (notes.length === 0) {
    const early = opts.earlyFraction ?? 0.25;
    const { settledAt, tolerance } = settlePoint(losses, end, opts.plateauTolerance ?? 0.1);
    const settledFraction = settledAt / n;
    // A fall smaller than 3 standard errors of the start/end difference (or 5%) is not a fall.
    const edgeErr =
      Math.hypot(stdDev(losses.slice(0, edge)), stdDev(losses.slice(n - edge))) / Math.sqrt(edge);
    const minFall = Math.max(0.05, (3 * edgeErr) / start);
    if (change > -minFall) {
      notes.push({
        kind: "flat",
        message: `loss barely moved (${(change * 100).toFixed(1)}%): check that the captions and images are what you expect, then try a higher learning rate or more data`,
        numbers: { start, end, change },
      });
    } else if (settledFraction < early) {
      notes.push({
        kind: "plateau-early",
        message: `the loss reached its final level (${end.toPrecision(3)} +-${(tolerance * 100).toFixed(0)}%) by step ${settledAt} of ${n} (${(settledFraction * 100).toFixed(0)}%) and stayed there: more (or more varied) images or more epochs give the rest of the run something to learn`,
        numbers: { settledAt, settledFraction, tolerance, start, end, change },
      });
    } else {
      notes.push({
        kind: "falling",
        message: `loss fell ${(-change * 100).toFixed(0)}% (from ${start.toPrecision(3)} to ${end.toPrecision(3)}); no sign of trouble`,
        numbers: { start, end, change, settledFraction },
      });
    }
  }
  return notes;
}

/**
 * Where the loss reached its final level: the series is cut into 20 chunks, and the answer is the start of the
 * first chunk after which every chunk mean stays within the tolerance of `end`. The tolerance is widened to 3
 * standard errors of a chunk mean when the per-step noise is larger than it.
 */
function settlePoint(
  losses: readonly number[],
  end: number,
  tol: number,
): { settledAt: number; tolerance: number } {
  const n = losses.length;
  const size = Math.max(1, Math.floor(n / 20));
  const chunks: number[] = [];
  const spreads: number[] = [];
  for (let i = 0; i + size <= n; i += size) {
    const c = losses.slice(i, i + size);
    const m = mean(c);
    chunks.push(m);
    spreads.push(Math.sqrt(mean(c.map((x) => (x - m) ** 2))));
  }
  const stdErr = mean(spreads) / Math.sqrt(size);
  const tolerance = Math.max(tol, (3 * stdErr) / end);
  let k = chunks.length;
  while (k > 0 && Math.abs(chunks[k - 1] - end) <= tolerance * end) k--;
  return { settledAt: k * size, tolerance };
}

/** The values minus their least-squares straight line. */
function detrend(v: readonly number[]): number[] {
  const n = v.length;
  const xm = (n - 1) / 2;
  const ym = mean(v);
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (i - xm) * (v[i] - ym);
    sxx += (i - xm) ** 2;
  }
  const slope = sxy / sxx;
  return v.map((y, i) => y - (ym + slope * (i - xm)));
}

function stdDev(v: readonly number[]): number {
  const m = mean(v);
  return Math.sqrt(mean(v.map((x) => (x - m) ** 2)));
}

function mean(v: readonly number[]): number {
  return v.reduce((a, b) => a + b, 0) / v.length;
}

/** Direction changes of a curve, ignoring moves smaller than `hysteresis`. */
function countReversals(v: readonly number[], hysteresis: number): number {
  let reversals = 0;
  let dir = 0;
  let anchor = v[0];
  for (const x of v) {
    if (dir >= 0 && x < anchor - hysteresis) {
      if (dir > 0) reversals++;
      dir = -1;
      anchor = x;
    } else if (dir <= 0 && x > anchor + hysteresis) {
      if (dir < 0) reversals++;
      dir = 1;
      anchor = x;
    } else if ((dir > 0 && x > anchor) || (dir < 0 && x < anchor)) anchor = x;
  }
  return reversals;
}
