/**
 * Finds nodes ORT will constant-fold over large weights. At load time ORT evaluates every node whose inputs are
 * all initializers/constants and stores the result as a new in-memory initializer, so Reshape(w), Cast(w),
 * Mul(w, 2)... turn a memory-mapped weight into a heap copy (measured: a 256 KiB external weight behind a
 * Reshape, Unsqueeze, Cast or Mul came back inline in ORT's optimized model; used directly it stayed external).
 * Session creation reports these so model code can move the op to the activation side.
 */
import type { Graph, Node, Value } from "../graph/ir.ts";
import { DTYPE_BYTES, numel } from "../graph/ir.ts";

/** Weights at least this large are worth a warning when folded. */
export const FOLD_WARN_BYTES = 64 * 1024;

export interface FoldedWeight {
  node: Node;
  /** Largest weight (bytes) feeding the folded expression. */
  weightBytes: number;
}

/** Nodes computed from initializers only that read a weight of at least `minBytes`. */
export function foldedWeightNodes(graph: Graph, minBytes = FOLD_WARN_BYTES): FoldedWeight[] {
  const weightBytes = new Map<Value, number>(); // constant-foldable values -> largest weight behind them
  for (const v of graph.initializers) {
    weightBytes.set(v, v.kind === "initializer" ? numel(v.shape) * DTYPE_BYTES[v.dtype] : 0);
  }
  const found: FoldedWeight[] = [];
  for (const node of graph.nodes) {
    let biggest = 0;
    let foldable = true;
    for (const inp of node.inputs) {
      if (!inp) continue;
      const w = weightBytes.get(inp);
      if (w === undefined) {
        foldable = false;
        break;
      }
      biggest = Math.max(biggest, w);
    }
    if (!foldable) continue;
    for (const o of node.outputs) weightBytes.set(o, biggest);
    if (biggest >= minBytes) found.push({ node, weightBytes: biggest });
  }
  return found;
}

/** A Cast of a half-precision weight up to float32: how fp16/bf16 checkpoints run on CPU, expected, not a bug. */
function isHalfWeightCast(node: Node): boolean {
  const from = node.inputs[0]?.dtype;
  return node.op === "Cast" && (from === "float16" || from === "bfloat16");
}

export function foldWarning(found: FoldedWeight[]): string | undefined {
  const casts = found.filter((f) => isHalfWeightCast(f.node));
  const others = found.filter((f) => !isHalfWeightCast(f.node));
  const lines: string[] = [];
  if (casts.length > 0) {
    const mib = casts.reduce((n, f) => n + f.weightBytes, 0) / 2 ** 20;
    lines.push(
      `lora-studio: ${casts.length} half-precision weight(s) (${mib.toFixed(1)} MiB as stored) are widened to ` +
        "float32 in memory for this provider; an fp32 checkpoint would be memory-mapped without the copy.",
    );
  }
  if (others.length > 0) {
    const list = others
      .slice(0, 5)
      .map((f) => `${f.node.name} (${f.node.op}, ${(f.weightBytes / 2 ** 20).toFixed(2)} MiB weight)`)
      .join(", ");
    lines.push(
      `lora-studio: ${others.length} node(s) compute only from weights and will be constant-folded by ONNX ` +
        `Runtime into in-memory copies of those weights: ${list}${others.length > 5 ? ", ..." : ""}. ` +
        "Apply the op to the activation instead (e.g. Gemm transB rather than a transposed weight).",
    );
  }
  return lines.length > 0 ? lines.join("\n") : undefined;
}
