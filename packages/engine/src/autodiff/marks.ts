/**
 * Marks the forward graph carries for the backward pass, kept beside the graph (WeakMap/WeakSet keyed by the
 * builder's own objects) so the IR stays plain ONNX data:
 * - stopGradient(x): an Identity whose output passes no gradient back (targets, EMA copies, frozen branches);
 * - checkpoint(b, fn): the nodes `fn` creates form a segment whose inner activations are not kept for the
 *   backward pass but recomputed inside it (see grad.ts, "Gradient checkpointing").
 */
import type { GraphBuilder } from "../graph/builder.ts";
import type { Node, Value } from "../graph/ir.ts";
import { identity } from "../graph/ops/index.ts";

const stopped = new WeakSet<Value>();

/** Returns x unchanged in the forward pass; grad() treats the result as a constant. */
export function stopGradient(x: Value): Value {
  const y = identity(x);
  stopped.add(y);
  return y;
}

export function isGradientStopped(v: Value): boolean {
  return stopped.has(v);
}

export interface CheckpointSegment {
  /** Label for error messages and benches (the scope path when created). */
  readonly label: string;
  /** The forward nodes of the segment in creation (topological) order. */
  readonly nodes: readonly Node[];
}

const segmentsOf = new WeakMap<GraphBuilder, CheckpointSegment[]>();

/**
 * Runs `fn` (which builds forward nodes on `b`) and marks those nodes as one recomputed segment. Segments must
 * not nest; a typical segment is one ResNet or transformer block. Returns what `fn` returns.
 */
export function checkpoint<T>(b: GraphBuilder, fn: () => T, label = b.scopePath): T {
  const list = segmentsOf.get(b) ?? [];
  const start = b.nodes.length;
  const result = fn();
  const nodes = b.nodes.slice(start);
  const inner = new Set(nodes);
  for (const s of list) {
    if (s.nodes.some((n) => inner.has(n)))
      throw new Error(`checkpoint "${label}" overlaps segment "${s.label}"`);
  }
  if (nodes.length > 0) list.push({ label, nodes });
  segmentsOf.set(b, list);
  return result;
}

export function checkpointSegments(b: GraphBuilder): readonly CheckpointSegment[] {
  return segmentsOf.get(b) ?? [];
}
