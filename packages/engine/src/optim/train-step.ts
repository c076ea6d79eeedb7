/**
 * appendTrainStep: turns a forward graph with a scalar loss into ONE training-step graph: backward pass
 * (autodiff/grad.ts), gradient accumulation, non-finite guard, clipping by global norm and the optimizer
 * update. One session.run = one micro-step; parameters and optimizer state go in and come out updated, following
 * runtime/train-step.ts's convention: state X is the input `state_in.X` and the output `state_out.X`.
 *
 * Parameters of a group are updated as ONE flat vector (Concat of the flattened gradients, one optimizer update,
 * Split back): a LoRA has hundreds of small tensors, and per-tensor update chains made ORT session creation
 * slow (6.5k nodes and 2-7 s for 176 tensors) and run many tiny kernels. Moments therefore live as one flat
 * float32 state per group.
 *
 * State names: a trainable parameter is the graph input `state_in.<P>` (the model code creates it); per group
 * G the optimizer keeps `optimizer.<G>.m` / `.v` / `.momentum` and the accumulator `optimizer.<G>.acc` (flat,
 * length = the group's parameter count); counters are `optimizer.step` (float32 [], applied updates) and
 * `optimizer.micro_step` (int64 [], only with accumulation). Learning rates are inputs (float32 []): `lr` for the
 * default group (or `lr.<G>`), so schedulers change them per step without a rebuild. Outputs: `loss`,
 * `grad_norm` (global L2 norm before clipping), `nonfinite` (bool: this step's gradients or loss were NaN/Inf, so
 * they were dropped and nothing was updated) and, with accumulation, `applied` (bool).
 *
 * Guard semantics: with accumulationSteps = k > 1, a non-finite micro-batch is dropped (not added to the
 * accumulators); every k-th micro-step applies the mean of what was accumulated (sum / k) and resets them.
 *
 * Loss scaling (`lossScaling`, for fp16 compute, see loss-scale.ts): gradients are taken of loss x S and
 * multiplied by 1/S in float32 before the guard, so accumulators, clipping, `grad_norm` and the optimizer see true
 * gradients. With dynamic scaling an extra output `overflow` (bool) marks a skipped step whose gradients were
 * non-finite at a finite loss (S is backed off, nothing else changes); `nonfinite` then means only what stays
 * fatal: a non-finite loss, or non-finite gradients although S <= 1 (not an fp16 overflow).
 */

import { and, isInfOp, isNaNOp, mod, not, or, sum } from "../autodiff/extra-ops.ts";
import { CHECKPOINT_DISABLED_OPTIMIZERS, grad } from "../autodiff/grad.ts";
import { checkpointSegments } from "../autodiff/marks.ts";
import type { GraphBuilder } from "../graph/builder.ts";
import type { DType, Value } from "../graph/ir.ts";
import { formatShape, numel } from "../graph/ir.ts";
import {
  add,
  cast,
  concat,
  div,
  equal,
  greater,
  min,
  mul,
  reduceSum,
  reshape,
  split,
  sqrt,
  where,
} from "../graph/ops/index.ts";
import { type HostTensor, zeros } from "../runtime/tensor.ts";
import { STATE_IN, STATE_OUT } from "../runtime/train-step.ts";
import { type LossScaling, lossScaleGraph, unscale } from "./loss-scale.ts";
import { applyOptimizer, type OptimizerConfig, optimizerSlots } from "./optimizers.ts";

export const STEP_STATE = "optimizer.step";
export const MICRO_STEP_STATE = "optimizer.micro_step";

export interface ParamGroup {
  /** Group name (state names `optimizer.<name>.*`, learning-rate input `lr.<name>`). */
  name: string;
  /** Trainable parameters: float32 graph inputs named `state_in.<P>`. */
  params: Value[];
}

export interface TrainStepSpec {
  /** Scalar (one-element) float loss. */
  loss: Value;
  /** Trainable parameters (one group, learning-rate input `lr`); or use `groups`. */
  params?: Value[];
  /** Parameter groups with their own learning rates (e.g. UNet and text encoder). */
  groups?: ParamGroup[];
  optimizer: OptimizerConfig;
  /** Clip gradients to this global L2 norm (PyTorch clip_grad_norm_ semantics). */
  maxGradNorm?: number;
  /** Micro-batches per optimizer update (default 1). */
  accumulationSteps?: number;
  /** Recompute checkpoint() segments in the backward pass (default true). */
  checkpointing?: boolean;
  /** Loss scaling for fp16 compute graphs (loss-scale.ts); none by default. */
  lossScaling?: LossScaling;
}

export interface StateSpec {
  /** State name X (graph input state_in.X, output state_out.X). */
  name: string;
  dtype: DType;
  shape: number[];
  /** "param": the caller's initial parameter values; "zeros": starts at zero; "value": every element `value`. */
  init: "param" | "zeros" | "value";
  value?: number;
}

export interface TrainStepGraph {
  state: StateSpec[];
  /** Learning-rate input per group name (the default group of `params` is "default" -> "lr"). */
  lrInputs: Record<string, string>;
  outputs: { loss: string; gradNorm: string; nonfinite: string; applied?: string; overflow?: string };
  /** ORT optimizers the session must disable (non-empty when checkpoint segments are recomputed). */
  disabledOptimizers: string[];
}

export class TrainStepError extends Error {
  override name = "TrainStepError";
}

const flat = (vs: Value[]): Value => {
  const parts = vs.map((v) => reshape(v, [numel(v.shape)]));
  return parts.length === 1 ? parts[0] : concat(parts, 0);
};

function paramName(p: Value): string {
  if (p.kind !== "input" || !p.name.startsWith(STATE_IN)) {
    throw new TrainStepError(`trainable parameter ${p.name} must be a graph input named "${STATE_IN}<name>"`);
  }
  if (p.dtype !== "float32")
    throw new TrainStepError(
      `trainable parameter ${p.name} must be float32 (master weights), got ${p.dtype}`,
    );
  return p.name.slice(STATE_IN.length);
}

export function appendTrainStep(b: GraphBuilder, spec: TrainStepSpec): TrainStepGraph {
  const k = spec.accumulationSteps ?? 1;
  if (!Number.isInteger(k) || k < 1)
    throw new TrainStepError(`accumulationSteps must be a positive integer, got ${k}`);
  if (numel(spec.loss.shape) !== 1)
    throw new TrainStepError(`loss must have one element, got ${formatShape(spec.loss.shape)}`);
  const single = spec.groups === undefined;
  const groups = spec.groups ?? [{ name: "default", params: spec.params ?? [] }];
  const all = groups.flatMap((g) => g.params);
  if (all.length === 0) throw new TrainStepError("no trainable parameters");
  if (new Set(all).size !== all.length) throw new TrainStepError("a parameter appears twice");
  const state: StateSpec[] = all.map((p) => ({
    name: paramName(p),
    dtype: "float32",
    shape: [...p.shape],
    init: "param",
  }));
  const stateIn = (name: string, dtype: DType, shape: readonly number[]): Value => {
    state.push({ name, dtype, shape: [...shape], init: "zeros" });
    return b.input(STATE_IN + name, dtype, shape);
  };
  const emit = (name: string, v: Value) => b.output(v, STATE_OUT + name);
  const slotName = (group: string, slot: string) =>
    single ? `optimizer.${slot}` : `optimizer.${group}.${slot}`;

  const lossF32 = spec.loss.dtype === "float32" ? spec.loss : cast(spec.loss, "float32");
  const scaling = spec.lossScaling
    ? lossScaleGraph(b, spec.lossScaling, (name, init) => {
        state.push({ name, dtype: "float32", shape: [], init: "value", value: init });
        return b.input(STATE_IN + name, "float32", []);
      })
    : undefined;
  const scaledLoss = scaling ? mul(lossF32, scaling.scale) : spec.loss;
  const rawGrads = grad(b, scaledLoss, all, { checkpointing: spec.checkpointing });
  return b.scope("optimizer", () => {
    const grads = scaling ? rawGrads.map((g) => unscale(g, scaling.scale)) : rawGrads;
    const stepIn = stateIn(STEP_STATE, "float32", []);
    const starts = groups.map((_, i) => groups.slice(0, i).reduce((s, g) => s + g.params.length, 0));
    const flatGrads = groups.map((g, i) => flat(grads.slice(starts[i], starts[i] + g.params.length)));
    const sumSq = (vs: Value[]) => sum(vs.map((v) => reduceSum(mul(v, v), undefined, false)));
    const microSq = sumSq(flatGrads);
    const gradsBad = reshape(or(isNaNOp(microSq), isInfOp(microSq)), []);
    const lossBad = reshape(or(isNaNOp(lossF32), isInfOp(lossF32)), []);
    const finiteScalar = not(or(gradsBad, lossBad));

    let effective = flatGrads;
    let apply: Value | undefined;
    if (k > 1) {
      const micro = stateIn(MICRO_STEP_STATE, "int64", []);
      apply = equal(mod(micro, b.constant(k, "int64", [])), b.constant(k - 1, "int64", []));
      emit(MICRO_STEP_STATE, add(micro, b.constant(1, "int64", [])));
      effective = flatGrads.map((g, i) => {
        const name = slotName(groups[i].name, "acc");
        const acc = stateIn(name, "float32", g.shape);
        const total = add(acc, where(finiteScalar, g, 0));
        emit(name, where(apply as Value, 0, total));
        return div(total, k);
      });
    }
    const commit = apply ?? finiteScalar;
    const norm = sqrt(k > 1 ? sumSq(effective) : microSq);
    if (spec.maxGradNorm !== undefined) {
      const scale = min(
        b.constant(1, "float32", []),
        div(b.constant(spec.maxGradNorm, "float32", []), add(norm, 1e-6)),
      );
      effective = effective.map((g) => mul(g, scale));
    }
    const t = add(stepIn, 1);
    const lrInputs: Record<string, string> = {};
    const slots = optimizerSlots(spec.optimizer);
    groups.forEach((group, i) => {
      const lrName = single ? "lr" : `lr.${group.name}`;
      lrInputs[group.name] = lrName;
      const lr = b.input(lrName, "float32", []);
      const p = flat(group.params);
      const slotIn = Object.fromEntries(
        slots.map((s) => [s, stateIn(slotName(group.name, s), "float32", p.shape)]),
      );
      const upd = applyOptimizer(spec.optimizer, p, effective[i], slotIn, { lr, step: t });
      const next = where(commit, upd.param, p);
      const pieces =
        group.params.length === 1
          ? [next]
          : split(
              next,
              0,
              group.params.map((v) => numel(v.shape)),
            );
      group.params.forEach((v, j) => {
        emit(paramName(v), reshape(pieces[j], [...v.shape]));
      });
      for (const s of slots) emit(slotName(group.name, s), where(commit, upd.state[s], slotIn[s]));
    });
    emit(STEP_STATE, where(commit, t, stepIn));
    b.output(lossF32, "loss");
    b.output(norm, "grad_norm");
    const dynamic = spec.lossScaling?.kind === "dynamic" && scaling !== undefined;
    if (dynamic) {
      scaling.update(finiteScalar, apply ? and(apply, finiteScalar) : finiteScalar, emit);
      const overflow = and(gradsBad, not(lossBad));
      b.output(overflow, "overflow");
      b.output(or(lossBad, and(gradsBad, not(greater(scaling.scale, 1)))), "nonfinite");
    } else {
      scaling?.update(finiteScalar, finiteScalar, emit);
      b.output(not(finiteScalar), "nonfinite");
    }
    if (apply) b.output(apply, "applied");
    const recomputes = spec.checkpointing !== false && checkpointSegments(b).length > 0;
    return {
      state,
      lrInputs,
      outputs: {
        loss: "loss",
        gradNorm: "grad_norm",
        nonfinite: "nonfinite",
        applied: apply ? "applied" : undefined,
        overflow: dynamic ? "overflow" : undefined,
      },
      disabledOptimizers: recomputes ? [...CHECKPOINT_DISABLED_OPTIMIZERS] : [],
    };
  });
}

/**
 * Initial state for a TrainStepRunner: parameters from `params` (keyed by state name, float32 data of the
 * declared shape), everything else zero. Copies the parameter arrays (the runner hands buffers to ORT).
 */
export function initialTrainState(
  graph: TrainStepGraph,
  params: ReadonlyMap<string, Float32Array>,
): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const s of graph.state) {
    if (s.init === "zeros") {
      out.set(s.name, zeros(s.dtype, s.shape));
      continue;
    }
    if (s.init === "value") {
      const t = zeros(s.dtype, s.shape);
      (t.data as Float32Array).fill(s.value ?? 0);
      out.set(s.name, t);
      continue;
    }
    const data = params.get(s.name);
    if (!data) throw new TrainStepError(`no initial value for parameter "${s.name}"`);
    if (data.length !== numel(s.shape)) {
      throw new TrainStepError(
        `parameter "${s.name}": ${data.length} values for shape ${formatShape(s.shape)}`,
      );
    }
    out.set(s.name, { dtype: "float32", shape: [...s.shape], data: Float32Array.from(data) });
  }
  return out;
}
