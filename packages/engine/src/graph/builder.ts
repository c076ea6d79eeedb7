/**
 * GraphBuilder: creates values and nodes of one graph, tracks name scopes that mirror model module paths
 * ("down_blocks.0.attentions.0"), and prunes dead nodes when the graph is finished.
 *
 * The typed op functions (ops/*.ts) take Values and find their builder through `builderOf`, so model code reads
 * `add(matmul(x, w), bias)` without threading the builder through every call. Each op function infers the
 * output dtype/shape and calls `fail` with the op, the input shapes and the scope path when the inputs cannot
 * work, so shape bugs surface while building, not as an ORT error about an anonymous node.
 */

import { f32ToBf16Bits, f32ToF16Bits } from "./half.ts";
import type { Attribute, DType, Graph, InlineTensor, Node, TensorSource, Value, ValueKind } from "./ir.ts";
import { formatShape, isExternal, numel } from "./ir.ts";

export class GraphBuildError extends Error {
  readonly op: string;
  readonly scope: string;
  readonly inputShapes: number[][];
  constructor(op: string, scope: string, inputShapes: number[][], reason: string) {
    const at = scope === "" ? "<root>" : scope;
    super(`${op} at ${at}: ${reason} (input shapes ${inputShapes.map((s) => formatShape(s)).join(", ")})`);
    this.name = "GraphBuildError";
    this.op = op;
    this.scope = scope;
    this.inputShapes = inputShapes;
  }
}

/** Attribute constructors. */
export const attr = {
  int: (value: number): Attribute => ({ kind: "int", value }),
  float: (value: number): Attribute => ({ kind: "float", value }),
  string: (value: string): Attribute => ({ kind: "string", value }),
  ints: (value: number[]): Attribute => ({ kind: "ints", value }),
  floats: (value: number[]): Attribute => ({ kind: "floats", value }),
  tensor: (value: InlineTensor): Attribute => ({ kind: "tensor", value }),
};

export interface OutputSpec {
  dtype: DType;
  shape: readonly number[];
  /** Explicit value name (graph outputs); otherwise "<node name>:<i>". */
  name?: string;
}

const owners = new WeakMap<Value, GraphBuilder>();

/** The builder a value belongs to; throws when values of two graphs are mixed. */
export function builderOf(...values: (Value | number | undefined)[]): GraphBuilder {
  let found: GraphBuilder | undefined;
  for (const v of values) {
    if (v === undefined || typeof v === "number") continue;
    const b = owners.get(v);
    if (!b) throw new Error(`value ${v.name} was not created by a GraphBuilder`);
    if (found && found !== b)
      throw new Error(`value ${v.name} belongs to another graph than the other operands`);
    found = b;
  }
  if (!found) throw new Error("an op needs at least one Value operand to know its graph");
  return found;
}

/** Numbers as the typed array that stores `dtype` (16-bit floats as bit patterns). */
export function typedArrayFor(dtype: DType, values: readonly number[]): ArrayBufferView {
  switch (dtype) {
    case "float32":
      return Float32Array.from(values);
    case "float64":
      return Float64Array.from(values);
    case "int64":
      return BigInt64Array.from(values, (x) => BigInt(Math.trunc(x)));
    case "int32":
      return Int32Array.from(values);
    case "int8":
      return Int8Array.from(values);
    case "uint8":
    case "bool":
      return Uint8Array.from(values, (x) => (dtype === "bool" ? (x ? 1 : 0) : x));
    case "float16":
      return Uint16Array.from(values, f32ToF16Bits);
    case "bfloat16":
      return Uint16Array.from(values, f32ToBf16Bits);
  }
}

export class GraphBuilder {
  readonly name: string;
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly initializers: Value[] = [];
  readonly nodes: Node[] = [];
  private readonly scopeStack: string[] = [];
  private readonly names = new Set<string>();
  private readonly constantCache = new Map<string, Value>();
  /** Node outputs computable from initializers/constants alone (ORT constant-folds these at load). */
  private readonly constantExprs = new WeakSet<Value>();
  /** ...of which those that read a weight (folding would materialise a heap copy of it). */
  private readonly weightExprs = new WeakSet<Value>();
  private nextValueId = 0;
  private nextNodeId = 0;

  constructor(name = "lora_studio_graph") {
    this.name = name;
  }

  /** Current scope path, segments joined with "." ("" at the root). */
  get scopePath(): string {
    return this.scopeStack.join(".");
  }

  /** Runs `fn` with `name` appended to the scope path; names created inside carry the path. */
  scope<T>(name: string, fn: () => T): T {
    this.scopeStack.push(name);
    try {
      return fn();
    } finally {
      this.scopeStack.pop();
    }
  }

  /** Throws a GraphBuildError naming the op, the input shapes and the current scope path. */
  fail(op: string, inputs: readonly (Value | undefined)[], reason: string): never {
    throw new GraphBuildError(
      op,
      this.scopePath,
      inputs.map((v) => (v ? [...v.shape] : [])),
      reason,
    );
  }

  private claimName(name: string): string {
    if (this.names.has(name)) throw new Error(`graph ${this.name}: duplicate value name "${name}"`);
    this.names.add(name);
    return name;
  }

  private newValue(fields: Omit<Value, "id" | "scope" | "shape"> & { shape: readonly number[] }): Value {
    for (const d of fields.shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new Error(
          `value ${fields.name}: shape ${formatShape(fields.shape)} must be static non-negative ints`,
        );
      }
    }
    const v: Value = { ...fields, shape: [...fields.shape], id: this.nextValueId++, scope: this.scopePath };
    owners.set(v, this);
    return v;
  }

  private scopedName(name: string): string {
    return this.scopePath === "" ? name : `${this.scopePath}.${name}`;
  }

  /** Declares a graph input fed at run time. The name is used verbatim (feeds are keyed by it). */
  input(name: string, dtype: DType, shape: readonly number[]): Value {
    const v = this.newValue({ name: this.claimName(name), dtype, shape, kind: "input" });
    this.inputs.push(v);
    return v;
  }

  /**
   * Declares a named weight. `name` is prefixed with the scope path ("down_blocks.0.proj.weight").
   * External tensors stay in their file (see ../onnx/external.ts); inline ones are embedded.
   */
  initializer(name: string, tensor: TensorSource): Value {
    const expected = numel(tensor.shape);
    if (!isExternal(tensor)) {
      const n = (tensor.data as unknown as { length: number }).length;
      if (n !== expected) {
        throw new Error(`initializer ${name}: ${n} elements for shape ${formatShape(tensor.shape)}`);
      }
    }
    const v = this.newValue({
      name: this.claimName(this.scopedName(name)),
      dtype: tensor.dtype,
      shape: tensor.shape,
      kind: "initializer",
      tensor,
    });
    this.initializers.push(v);
    return v;
  }

  /**
   * A constant tensor (inline). Numbers are stored in `dtype` (default float32); shape defaults to [] for one
   * number and [n] for an array. Identical small constants are shared.
   */
  constant(
    values: number | readonly number[] | InlineTensor,
    dtype: DType = "float32",
    shape?: number[],
  ): Value {
    let tensor: InlineTensor;
    if (typeof values === "number" || Array.isArray(values)) {
      const arr = typeof values === "number" ? [values] : (values as number[]);
      const sh = shape ?? (typeof values === "number" ? [] : [arr.length]);
      if (numel(sh) !== arr.length)
        throw new Error(`constant: ${arr.length} values for shape ${formatShape(sh)}`);
      tensor = { dtype, shape: sh, data: typedArrayFor(dtype, arr) };
    } else {
      tensor = values as InlineTensor;
    }
    const n = numel(tensor.shape);
    let key: string | undefined;
    if (n <= 64) {
      const raw = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
      key = `${tensor.dtype}|${tensor.shape.join(",")}|${Array.from(raw).join(",")}`;
      const hit = this.constantCache.get(key);
      if (hit) return hit;
    }
    const v = this.newValue({
      name: this.claimName(`${this.scopedName("const")}_${this.nextValueId}`),
      dtype: tensor.dtype,
      shape: tensor.shape,
      kind: "constant",
      tensor,
    });
    this.initializers.push(v);
    if (key !== undefined) this.constantCache.set(key, v);
    return v;
  }

  /** int64 1-D constant (shape vectors, axes, starts/ends). */
  constInts(values: readonly number[]): Value {
    return this.constant(values, "int64", [values.length]);
  }

  /**
   * Appends a node whose output types the caller has already inferred (op functions do this). Use the typed
   * op functions instead of calling this directly unless the op has no function yet.
   */
  addNode(
    op: string,
    inputs: readonly (Value | undefined)[],
    attributes: Record<string, Attribute>,
    outputs: readonly OutputSpec[],
    domain = "",
  ): Value[] {
    for (const v of inputs) {
      if (v && owners.get(v) !== this) this.fail(op, inputs, `operand ${v.name} belongs to another graph`);
    }
    const id = this.nextNodeId++;
    const nodeName = this.claimName(this.scopePath === "" ? `${op}_${id}` : `${this.scopePath}/${op}_${id}`);
    const outs: Value[] = [];
    const node: Node = {
      id,
      op,
      name: nodeName,
      domain,
      inputs: [...inputs],
      outputs: outs,
      attributes,
      scope: this.scopePath,
    };
    outputs.forEach((spec, i) => {
      outs.push(
        this.newValue({
          name: this.claimName(spec.name ?? `${nodeName}:${i}`),
          dtype: spec.dtype,
          shape: spec.shape,
          kind: "node" as ValueKind,
          producer: node,
          outputIndex: i,
        }),
      );
    });
    const isConst = (v: Value | undefined) =>
      !v || v.kind === "initializer" || v.kind === "constant" || this.constantExprs.has(v);
    if (inputs.every(isConst)) {
      const readsWeight = inputs.some((v) => v && this.isWeightExpression(v));
      for (const o of outs) {
        this.constantExprs.add(o);
        if (readsWeight) this.weightExprs.add(o);
      }
    }
    this.nodes.push(node);
    return outs;
  }

  /** True for an initializer or a node output computed from initializers (and constants) only. */
  isWeightExpression(v: Value): boolean {
    return v.kind === "initializer" || this.weightExprs.has(v);
  }

  /**
   * Marks `v` as a graph output. With `name`, an Identity node gives it that exact output name
   * (e.g. "loss", "state_out.lora_A"). Returns the output value.
   */
  output(v: Value, name?: string): Value {
    builderOf(v);
    let out = v;
    if (name !== undefined && name !== v.name) {
      [out] = this.addNode("Identity", [v], {}, [{ dtype: v.dtype, shape: v.shape, name }]);
    }
    if (this.outputs.includes(out)) throw new Error(`graph ${this.name}: ${out.name} is already an output`);
    this.outputs.push(out);
    return out;
  }

  /**
   * Finishes the graph: keeps only nodes the outputs depend on (dead-node elimination) and the initializers
   * those nodes read. Inputs are all kept unless `pruneInputs` (feeding an undeclared input is an ORT error).
   */
  build(options: { pruneInputs?: boolean } = {}): Graph {
    if (this.outputs.length === 0)
      throw new Error(`graph ${this.name} has no outputs: call output(value, name)`);
    const liveValues = new Set<Value>(this.outputs);
    const liveNodes = new Set<Node>();
    // Reverse creation order is reverse topological order: one pass suffices.
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const node = this.nodes[i];
      if (!node.outputs.some((o) => liveValues.has(o))) continue;
      liveNodes.add(node);
      for (const inp of node.inputs) if (inp) liveValues.add(inp);
    }
    return {
      name: this.name,
      inputs: options.pruneInputs ? this.inputs.filter((v) => liveValues.has(v)) : [...this.inputs],
      outputs: [...this.outputs],
      initializers: this.initializers.filter((v) => liveValues.has(v)),
      nodes: this.nodes.filter((n) => liveNodes.has(n)),
    };
  }
}

/** Turns a number operand into a scalar constant of `like`'s dtype (for `mul(x, 0.5)`). */
export function asValue(b: GraphBuilder, x: Value | number, like: Value): Value {
  return typeof x === "number" ? b.constant(x, like.dtype, []) : x;
}
