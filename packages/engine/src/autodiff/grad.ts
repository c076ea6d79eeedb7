/**
 * Reverse-mode autodiff over the graph IR: `grad(b, loss, wrt)` appends the backward graph to the same builder
 * and returns d loss / d wrt[i] as Values (shape and dtype of each wrt).
 *
 * The walk: (1) forward reachability from `wrt` (float values only; stopGradient outputs cut the path),
 * (2) backward reachability from `loss` through those values, (3) the nodes in both sets, in reverse creation
 * order (creation order is topological), each turned into its vector-Jacobian product by the one rule table in
 * rules.ts. Gradients that reach a value along several paths (fan-out) are summed once all consumers are done.
 *
 * Gradient checkpointing: nodes made inside `checkpoint(b, fn)` (marks.ts) form segments. When the backward
 * pass reaches a segment, its forward nodes are emitted again from the segment's inputs and that segment's rules
 * read the recomputed values, so the first copy's inner activations die right after the forward pass. ONNX has no
 * control dependencies and ORT orders nodes by a depth-first walk from the outputs, not by creation, so the copy
 * is pinned with data dependencies: its float inputs (activations and graph inputs) are read as
 * "x + 0 * anchor", where the anchor takes one element of the gradient arriving at the segment and of every
 * gradient the previously processed segment sent out (to its inputs and parameters). Without this ORT recomputes
 * right after the forward pass, or runs weight gradients late, and keeps everything alive (measured: no saving;
 * with it, see bench/train-step.ts). Sessions for such graphs must still disable ORT's
 * CommonSubexpressionElimination (`CHECKPOINT_DISABLED_OPTIMIZERS`), which merges identical copies.
 */
import type { GraphBuilder } from "../graph/builder.ts";
import type { Node, Value } from "../graph/ir.ts";
import { formatShape, isFloatDType, numel } from "../graph/ir.ts";
import { add, cast, constantOfShape, mul, reshape, slice } from "../graph/ops/index.ts";
import { AutodiffError } from "./errors.ts";
import { sum } from "./extra-ops.ts";
import { type CheckpointSegment, checkpointSegments, isGradientStopped } from "./marks.ts";
import { type RuleContext, VJP_RULES } from "./rules.ts";

export interface GradOptions {
  /** Cotangent of `loss` (same shape/dtype). Default: 1, which needs a one-element loss. */
  seed?: Value;
  /** Recompute checkpoint() segments inside the backward pass. Default true (no effect without segments). */
  checkpointing?: boolean;
}

/** ORT optimizers a graph with recomputed segments must skip (CSE would merge the copies back into one). */
export const CHECKPOINT_DISABLED_OPTIMIZERS = ["CommonSubexpressionElimination"] as const;

/** The same as raw onnxruntime-node session options (runtime/session.ts takes `disabledOptimizers`). */
export const CHECKPOINT_SESSION_OPTIONS = {
  extra: { optimization: { disable_specified_optimizers: CHECKPOINT_DISABLED_OPTIMIZERS.join(",") } },
};

export { AutodiffError };

const differentiable = (v: Value | undefined): v is Value =>
  v !== undefined && isFloatDType(v.dtype) && !isGradientStopped(v);

export function zerosLike(v: Value): Value {
  return constantOfShape(v, [...v.shape], 0, v.dtype);
}

/** Appends the backward graph of `loss` w.r.t. `wrt` to `b`; returns one gradient per entry of `wrt`. */
export function grad(b: GraphBuilder, loss: Value, wrt: readonly Value[], opts: GradOptions = {}): Value[] {
  if (!isFloatDType(loss.dtype))
    throw new AutodiffError(`grad: loss ${loss.name} is ${loss.dtype}, not float`);
  for (const w of wrt) {
    if (!isFloatDType(w.dtype))
      throw new AutodiffError(`grad: cannot differentiate w.r.t. ${w.dtype} ${w.name}`);
  }
  const seed = opts.seed ?? defaultSeed(b, loss);
  if (seed.dtype !== loss.dtype || formatShape(seed.shape) !== formatShape(loss.shape)) {
    throw new AutodiffError(
      `grad: seed ${seed.dtype}${formatShape(seed.shape)} does not match loss ${loss.dtype}${formatShape(loss.shape)}`,
    );
  }
  const forward = b.nodes.slice();

  const reach = new Set<Value>(wrt);
  for (const n of forward) {
    if (!n.inputs.some((i) => i !== undefined && reach.has(i))) continue;
    for (const o of n.outputs) if (differentiable(o)) reach.add(o);
  }
  const toLoss = new Set<Value>([loss]);
  const active: Node[] = [];
  for (let k = forward.length - 1; k >= 0; k--) {
    const n = forward[k];
    if (!n.outputs.some((o) => toLoss.has(o) && reach.has(o))) continue;
    active.push(n);
    for (const i of n.inputs) if (i !== undefined && reach.has(i)) toLoss.add(i);
  }

  const contributions = new Map<Value, Value[]>();
  const contribute = (v: Value, g: Value, by: string) => {
    if (formatShape(g.shape) !== formatShape(v.shape) || g.dtype !== v.dtype) {
      throw new AutodiffError(
        `grad: rule ${by} produced ${g.dtype}${formatShape(g.shape)} for ${v.name} (${v.dtype}${formatShape(v.shape)})`,
      );
    }
    const list = contributions.get(v);
    if (list) list.push(g);
    else contributions.set(v, [g]);
  };
  const total = (v: Value): Value | undefined => {
    const list = contributions.get(v);
    if (!list) return undefined;
    const s = list.length === 2 ? add(list[0], list[1]) : sum(list);
    contributions.set(v, [s]);
    return s;
  };
  contribute(loss, seed, "seed");

  const segments = opts.checkpointing === false ? [] : checkpointSegments(b);
  const segmentOf = new Map<Node, CheckpointSegment>();
  for (const s of segments) for (const n of s.nodes) segmentOf.set(n, s);
  const recomputed = new Map<CheckpointSegment, Map<Value, Value>>();
  // Gradients the current segment's rules send out of it (to its inputs and parameters); the next segment's
  // recompute waits for all of them, so this segment's recomputed activations are dead before the next appear.
  let barrier: Value[] = [];

  b.scope("grad", () => {
    for (const n of active) {
      const gs = n.outputs.map((o) => (reach.has(o) ? total(o) : undefined));
      if (gs.every((g) => g === undefined)) continue;
      const rule = VJP_RULES[n.op];
      if (!rule) {
        throw new AutodiffError(
          `grad: no VJP rule for ${n.op} (node ${n.name}); add one to autodiff/rules.ts`,
        );
      }
      const seg = segmentOf.get(n);
      let view = n;
      if (seg) {
        let remap = recomputed.get(seg);
        if (!remap) {
          remap = recompute(b, seg, [gs.find((g) => g !== undefined) as Value, ...barrier]);
          recomputed.set(seg, remap);
          barrier = [];
        }
        const r = remap;
        view = {
          ...n,
          inputs: n.inputs.map((i) => (i && r.get(i)) ?? i),
          outputs: n.outputs.map((o) => r.get(o) ?? o),
        };
      }
      // Rules see recomputed values in `view`; `needs` answers for the original value at the same input slot.
      const original = (v: Value | undefined) =>
        v === undefined ? undefined : (n.inputs[view.inputs.indexOf(v)] ?? v);
      const ctx: RuleContext = {
        needs: (v) => {
          const o = original(v);
          return o !== undefined && reach.has(o) && toLoss.has(o);
        },
        out: (i) => gs[i] ?? zerosLike(n.outputs[i]),
      };
      const ins = rule(view, gs[0] ?? zerosLike(n.outputs[0]), ctx);
      n.inputs.forEach((inp, i) => {
        const g = ins[i];
        if (g === undefined || !differentiable(inp) || !reach.has(inp)) return;
        contribute(inp, g, `${n.op}[${i}]`);
        if (seg && !(inp.producer && segmentOf.get(inp.producer) === seg)) barrier.push(g);
      });
    }
  });
  return wrt.map((w) => total(w) ?? zerosLike(w));
}

function defaultSeed(b: GraphBuilder, loss: Value): Value {
  if (numel(loss.shape) !== 1) {
    throw new AutodiffError(
      `grad: loss ${loss.name} has shape ${formatShape(loss.shape)}; reduce it to one element or pass opts.seed`,
    );
  }
  return b.constant(Array(1).fill(1), loss.dtype, [...loss.shape]);
}

/** One element of `v` as a [1] tensor of `dtype`: a cheap data dependency on v. */
function oneElement(v: Value, dtype: Value["dtype"]): Value {
  const one = slice(reshape(v, [numel(v.shape)]), [0], [1]);
  return one.dtype === dtype ? one : cast(one, dtype);
}

/**
 * Emits the segment's nodes again and returns original value -> recomputed value. The recomputed copy reads its
 * float inputs (activations and graph inputs) through "+ 0 * anchor", the anchor being one element of each value
 * in `after`: ORT orders nodes by a depth-first walk, not by creation, and would otherwise run the recompute as
 * soon as its inputs exist (right after the forward pass), keeping everything alive and saving nothing.
 */
function recompute(b: GraphBuilder, seg: CheckpointSegment, after: Value[]): Map<Value, Value> {
  const remap = new Map<Value, Value>();
  const inner = new Set(seg.nodes.flatMap((n) => n.outputs));
  const dtype = after[0].dtype;
  const anchor = reshape(mul(sum(after.map((v) => oneElement(v, dtype))), 0), []);
  const anchored = new Map<Value, Value>();
  const source = (v: Value): Value => {
    const r = remap.get(v);
    if (r) return r;
    if (inner.has(v) || (v.kind !== "node" && v.kind !== "input") || !isFloatDType(v.dtype)) return v;
    let a = anchored.get(v);
    if (!a) {
      a = add(v, anchor.dtype === v.dtype ? anchor : cast(anchor, v.dtype));
      anchored.set(v, a);
    }
    return a;
  };
  // Nodes computed from weights alone (e.g. Cast of an fp16 initializer) are reused, not cloned: ORT folds such
  // nodes into heap copies, so a clone would materialize every weight of the segment a second time.
  const weightOnly = new Set<Value>();
  const isWeight = (v: Value | undefined) =>
    v === undefined || v.kind === "initializer" || v.kind === "constant" || weightOnly.has(v);
  b.scope(`recompute.${seg.label || "segment"}`, () => {
    for (const n of seg.nodes) {
      if (n.inputs.every(isWeight)) {
        for (const o of n.outputs) weightOnly.add(o);
        continue;
      }
      const inputs = n.inputs.map((i) => (i === undefined ? undefined : source(i)));
      const outs = b.addNode(
        n.op,
        inputs,
        n.attributes,
        n.outputs.map((o) => ({ dtype: o.dtype, shape: o.shape })),
        n.domain,
      );
      n.outputs.forEach((o, k) => {
        remap.set(o, outs[k]);
      });
    }
  });
  return remap;
}
