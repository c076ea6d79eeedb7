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

export type HealthKind = "too-short" | "non-finite" | "diverging" | "oscillating" | "plateau-early" | "falling" | "flat";

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
    return [{ kind: "too-short", message: `only ${n} loss values; need ${MIN_POINTS} to judge the curve`, numbers: { points: n } }];
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

  const half = ma.slice(Math.floor(n / 2) + w);
  if (half.length >= 4) {
    const level = mean(half);
    const swing = (Math.max(...half) - Math.min(...half)) / level;
    const reversals = countReversals(half, 0.05 * level);
    if (swing > (opts.oscillationSwing ?? 0.3) && reversals >= 3) {
      notes.push({
        kind: "oscillating",
        message: `the smoothed loss swings ${(swing * 100).toFixed(0)}% around ${level.toPrecision(3)} with ${reversals} reversals in the second half: lower the learning rate (e.g. halve it)`,
        numbers: { swing, reversals, level, window: w },
      });
    }
  }

  if (notes.length === 0) {
    const tol = opts.plateauTolerance ?? 0.1;
    let settled = ma.length;
    while (settled > 0 && Math.abs(ma[settled - 1] - end) <= tol * end) settled--;
    const settledFraction = settled / n;
    if (Math.abs(change) < 0.05 && settledFraction < (opts.earlyFraction ?? 0.25)) {
      notes.push({
        kind: "flat",
        message: `loss barely moved (${(change * 100).toFixed(1)}%): check that the captions and images are what you expect, then try a higher learning rate or more data`,
        numbers: { start, end, change },
      });
    } else if (settledFraction < (opts.earlyFraction ?? 0.25)) {
      notes.push({
        kind: "plateau-early",
        message: `the smoothed loss reached its final level (${end.toPrecision(3)} +-${tol * 100}%) by step ${settled} of ${n} (${(settledFraction * 100).toFixed(0)}%) and stayed there: more (or more varied) images or more epochs give the rest of the run something to learn`,
        numbers: { settledAt: settled, settledFraction, start, end, change },
      });
    } else {
      notes.push({
        kind: "falling",
        message: `loss fell ${(-change * 100).toFixed(0)}% (from ${start.toPrecision(3)} to ${end.toPrecision(3)}); no sign of trouble`,
        numbers: { start, end, change },
      });
    }
  }
  return notes;
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
