/**
 * Loss scaling for mixed-precision (fp16) training, as graph ops inside the training step. fp16 gradients of
 * small losses underflow (fp16's smallest normal is 6.1e-5), so the loss is multiplied by a scale S before the
 * backward pass and the float32 master gradients are multiplied by 1/S after it.
 *
 * - static: a fixed S.
 * - dynamic (torch.amp.GradScaler semantics, its defaults: init 2^16, growth 2, backoff 0.5, interval 2000): S is
 *   training state `optimizer.loss_scale`; a step whose gradients contain Inf/NaN (fp16 overflow) is skipped and
 *   S *= backoff; after `growthInterval` consecutive good optimizer updates (counter state
 *   `optimizer.loss_scale_good_steps`) S *= growth (unless that would overflow float32) and the counter restarts.
 *
 * Hand-written here because the scale has to live in the same graph as the update it gates (one session.run per
 * step; ORT's own training ops are not available in onnxruntime-node).
 */
import { and, isInfOp, not } from "../autodiff/extra-ops.ts";
import type { GraphBuilder } from "../graph/builder.ts";
import type { Value } from "../graph/ir.ts";
import { add, div, equal, mul, where } from "../graph/ops/index.ts";

export type LossScaling =
  | { kind: "static"; scale: number }
  | {
      kind: "dynamic";
      initScale?: number;
      growthFactor?: number;
      backoffFactor?: number;
      growthInterval?: number;
    };

export const LOSS_SCALE_STATE = "optimizer.loss_scale";
export const LOSS_SCALE_GOOD_STEPS_STATE = "optimizer.loss_scale_good_steps";

/** torch.amp.GradScaler's defaults (checked against torch/amp/grad_scaler.py; kohya's trainers use them). */
export const DYNAMIC_LOSS_SCALE_DEFAULTS = {
  initScale: 2 ** 16,
  growthFactor: 2,
  backoffFactor: 0.5,
  growthInterval: 2000,
} as const;

export class LossScaleError extends Error {
  override name = "LossScaleError";
}

/** Dynamic scaling with torch's defaults filled in; checks the values. */
export function resolveDynamic(s: Extract<LossScaling, { kind: "dynamic" }>) {
  const r = {
    initScale: s.initScale ?? DYNAMIC_LOSS_SCALE_DEFAULTS.initScale,
    growthFactor: s.growthFactor ?? DYNAMIC_LOSS_SCALE_DEFAULTS.growthFactor,
    backoffFactor: s.backoffFactor ?? DYNAMIC_LOSS_SCALE_DEFAULTS.backoffFactor,
    growthInterval: s.growthInterval ?? DYNAMIC_LOSS_SCALE_DEFAULTS.growthInterval,
  };
  if (!(r.initScale > 0) || !Number.isFinite(r.initScale))
    throw new LossScaleError(`initScale must be a positive finite number, got ${r.initScale}`);
  if (!(r.growthFactor > 1)) throw new LossScaleError(`growthFactor must be > 1, got ${r.growthFactor}`);
  if (!(r.backoffFactor > 0 && r.backoffFactor < 1))
    throw new LossScaleError(`backoffFactor must be in (0, 1), got ${r.backoffFactor}`);
  if (!Number.isInteger(r.growthInterval) || r.growthInterval < 1)
    throw new LossScaleError(`growthInterval must be a positive integer, got ${r.growthInterval}`);
  return r;
}

/** Declares a float32 scalar state (graph input `state_in.<name>`) with an initial value. */
export type ScalarStateIn = (name: string, init: number) => Value;

export interface LossScaleGraph {
  /** The scale S (a constant, or the state input), float32 []. */
  scale: Value;
  /**
   * Emits the next scale state from this micro-step's outcome: `finite` (bool []) the micro-step's gradients and
   * loss were finite; `counted` (bool []) a good optimizer update happened. Returns nothing for static scaling.
   */
  update(finite: Value, counted: Value, emit: (name: string, v: Value) => void): void;
}

export function lossScaleGraph(b: GraphBuilder, s: LossScaling, stateIn: ScalarStateIn): LossScaleGraph {
  if (s.kind === "static") {
    if (!(s.scale > 0) || !Number.isFinite(s.scale))
      throw new LossScaleError(`static loss scale must be a positive finite number, got ${s.scale}`);
    return { scale: b.constant(s.scale, "float32", []), update: () => {} };
  }
  const d = resolveDynamic(s);
  const scale = stateIn(LOSS_SCALE_STATE, d.initScale);
  const good = stateIn(LOSS_SCALE_GOOD_STEPS_STATE, 0);
  return {
    scale,
    update(finite, counted, emit) {
      // A float32 counter is exact far beyond any growth interval (< 2^24) and it restarts at the interval.
      const goodNext = where(finite, where(counted, add(good, 1), good), b.constant(0, "float32", []));
      const grow = equal(goodNext, b.constant(d.growthInterval, "float32", []));
      const grown = mul(scale, d.growthFactor);
      const next = where(
        finite,
        where(and(grow, not(isInfOp(grown))), grown, scale),
        mul(scale, d.backoffFactor),
      );
      emit(LOSS_SCALE_STATE, next);
      emit(LOSS_SCALE_GOOD_STEPS_STATE, where(grow, b.constant(0, "float32", []), goodNext));
    },
  };
}

/** The master gradient from the gradient of the scaled loss: g / S (float32). */
export const unscale = (g: Value, scale: Value): Value => mul(g, div(1, scale));
