/**
 * Learning-rate schedules as diffusers' get_scheduler defines them (optimization.py), as a multiplier of the
 * base learning rate at optimizer step `step` (0-based, the value used for the update at that step):
 *  - constant:               1
 *  - constant_with_warmup:   step/warmup during warmup, then 1
 *  - linear:                 warmup, then (total - step) / (total - warmup), floored at 0
 *  - cosine:                 warmup, then 0.5 * (1 + cos(pi * 2 * num_cycles * progress)), num_cycles = 0.5
 *  - cosine_with_restarts:   warmup, then 0.5 * (1 + cos(pi * ((num_cycles * progress) % 1))), 0 once done
 * with progress = (step - warmup) / (total - warmup). Warmup is linear from 0: step / max(1, warmup).
 */
import type { LrSchedulerName } from "./schema.ts";

export interface LrScheduleOptions {
  /** Warmup steps; a value below 1 is a fraction of totalSteps (kohya's convention). */
  warmupSteps: number;
  totalSteps: number;
  /** cosine_with_restarts only (diffusers default 1); plain cosine uses diffusers' fixed half cycle. */
  numCycles?: number;
}

/** Warmup in whole steps (kohya: a float below 1 is a ratio of the total, rounded up). */
export function resolveWarmupSteps(warmup: number, totalSteps: number): number {
  return warmup > 0 && warmup < 1 ? Math.ceil(warmup * totalSteps) : Math.floor(warmup);
}

export function lrMultiplier(name: LrSchedulerName, step: number, opts: LrScheduleOptions): number {
  if (name === "constant") return 1;
  const warmup = resolveWarmupSteps(opts.warmupSteps, opts.totalSteps);
  if (step < warmup) return step / Math.max(1, warmup);
  if (name === "constant_with_warmup") return 1;
  const total = opts.totalSteps;
  if (name === "linear") return Math.max(0, (total - step) / Math.max(1, total - warmup));
  const progress = (step - warmup) / Math.max(1, total - warmup);
  if (name === "cosine") return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * progress)));
  // cosine_with_restarts
  if (progress >= 1) return 0;
  const cycles = opts.numCycles ?? 1;
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((cycles * progress) % 1))));
}

/** The learning rate at `step` for a base rate. */
export function learningRateAt(
  name: LrSchedulerName,
  baseLr: number,
  step: number,
  opts: LrScheduleOptions,
): number {
  return baseLr * lrMultiplier(name, step, opts);
}
