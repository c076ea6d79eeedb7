/**
 * Per-parameter optimizer updates as graph ops, float32 throughout (master weights and moments). Each update
 * takes the parameter, its (already clipped) gradient, its state tensors and the step scalars, and returns the
 * new parameter and state. Formulas follow the published algorithms:
 * - AdamW (Loshchilov & Hutter; PyTorch's torch.optim.AdamW): decoupled decay p *= 1 - lr*wd, bias correction
 *   from the 1-based step t via Pow, p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps);
 * - SGD with momentum (PyTorch semantics, dampening 0, coupled L2 decay, optional Nesterov);
 * - Lion (Chen et al. 2023): p = p(1 - lr*wd) - lr*sign(b1 m + (1-b1) g); m = b2 m + (1-b2) g.
 */
import { builderOf } from "../graph/builder.ts";
import type { Value } from "../graph/ir.ts";
import { add, div, mul, pow, sign, sqrt, sub } from "../graph/ops/index.ts";

export type OptimizerConfig =
  | { kind: "adamw"; beta1?: number; beta2?: number; eps?: number; weightDecay?: number }
  | { kind: "sgd"; momentum?: number; nesterov?: boolean; weightDecay?: number }
  | { kind: "lion"; beta1?: number; beta2?: number; weightDecay?: number };

/** Scalars every update may read: learning rate and the 1-based step of this update. */
export interface StepScalars {
  lr: Value;
  step: Value;
}

export interface ParamUpdate {
  param: Value;
  state: Record<string, Value>;
}

/** Names of the state tensors (same shape as the parameter, zero-initialised) an optimizer keeps per parameter. */
export function optimizerSlots(cfg: OptimizerConfig): string[] {
  switch (cfg.kind) {
    case "adamw":
      return ["m", "v"];
    case "sgd":
      return (cfg.momentum ?? 0) > 0 ? ["momentum"] : [];
    case "lion":
      return ["m"];
  }
}

/** Decoupled weight decay factor 1 - lr*wd (a scalar Value), or undefined when wd = 0. */
function decay(lr: Value, wd: number): Value | undefined {
  return wd === 0 ? undefined : sub(1, mul(lr, wd));
}

export function applyOptimizer(
  cfg: OptimizerConfig,
  p: Value,
  g: Value,
  state: Record<string, Value>,
  s: StepScalars,
): ParamUpdate {
  switch (cfg.kind) {
    case "adamw": {
      const b = builderOf(p);
      const [b1, b2, eps, wd] = [
        cfg.beta1 ?? 0.9,
        cfg.beta2 ?? 0.999,
        cfg.eps ?? 1e-8,
        cfg.weightDecay ?? 0.01,
      ];
      const m = add(mul(state.m, b1), mul(g, 1 - b1));
      const v = add(mul(state.v, b2), mul(mul(g, g), 1 - b2));
      const bc1 = sub(1, pow(b.constant(b1, "float32", []), s.step));
      const bc2 = sub(1, pow(b.constant(b2, "float32", []), s.step));
      const denom = add(div(sqrt(v), sqrt(bc2)), eps);
      const f = decay(s.lr, wd);
      const decayed = f ? mul(p, f) : p;
      return { param: sub(decayed, mul(div(s.lr, bc1), div(m, denom))), state: { m, v } };
    }
    case "sgd": {
      const [mu, wd] = [cfg.momentum ?? 0, cfg.weightDecay ?? 0];
      const gd = wd === 0 ? g : add(g, mul(p, wd));
      if (mu === 0) return { param: sub(p, mul(gd, s.lr)), state: {} };
      const buf = add(mul(state.momentum, mu), gd);
      const dir = cfg.nesterov ? add(gd, mul(buf, mu)) : buf;
      return { param: sub(p, mul(dir, s.lr)), state: { momentum: buf } };
    }
    case "lion": {
      const [b1, b2, wd] = [cfg.beta1 ?? 0.9, cfg.beta2 ?? 0.99, cfg.weightDecay ?? 0];
      const c = add(mul(state.m, b1), mul(g, 1 - b1));
      const f = decay(s.lr, wd);
      const param = sub(f ? mul(p, f) : p, mul(sign(c), s.lr));
      return { param, state: { m: add(mul(state.m, b2), mul(g, 1 - b2)) } };
    }
  }
}
