/**
 * ModuleContext: what model code needs besides the graph builder. It resolves a parameter by its diffusers key
 * (scope path + local name, e.g. "down_blocks.0.resnets.0.conv1.weight") against a checkpoint's weights, checks
 * its shape, and knows which Linear / Conv2d modules carry a LoRA (see lora.ts).
 *
 * Model code opens scopes with `b.scope("down_blocks.0", ...)` exactly like the diffusers module tree, so the
 * initializer names equal the diffusers state-dict keys and LoRA graph inputs get their names for free.
 */
import type { GraphBuilder } from "../graph/builder.ts";
import type { DType, Graph, TensorSource, Value } from "../graph/ir.ts";
import { formatShape } from "../graph/ir.ts";
import { cast } from "../graph/ops/index.ts";

/** Where a component's parameters come from (a checkpoint component, or in-memory tensors in tests). */
export interface WeightSource {
  /**
   * The tensor for a diffusers state-dict key, checked against `expected` (throws naming the key when missing or
   * misshapen). Marks the stored tensor as used.
   */
  tensor(key: string, expected: readonly number[]): TensorSource;
  /**
   * Full fine-tuning: when present and returning a name, the parameter becomes a float32 graph INPUT of that
   * name (e.g. "state_in.<key>", the training-state convention of optim/appendTrainStep) instead of an
   * initializer, so the optimizer can update it. `tensor` is not called for such parameters.
   */
  graphInput?(key: string, expected: readonly number[]): string | undefined;
}

/** Which modules of a component carry a LoRA, with their rank. Paths are diffusers module paths. */
export interface LoraTargets {
  /** Component name used in the input names: "unet" | "te" | "te1" | "te2" | "vae". */
  component: string;
  /** Rank per module path; a module absent here (or with rank 0) gets no LoRA inputs and costs nothing. */
  ranks: ReadonlyMap<string, number>;
  /** Name down/up as training state inputs (`state_in.lora...`) for optim/appendTrainStep. */
  trainable?: boolean;
}

/**
 * The dtype the model's layers compute in. "float16" is mixed precision for GPUs (CUDA has fp16 kernels for every
 * op the models use): weights and activations in fp16, while norms, softmax and the timestep sinusoids run in
 * float32 (see layers.ts / attention.ts) and graph inputs/outputs stay float32. On CPU, ORT runs fp16 graphs
 * through inserted Casts (slower, more memory): use "float32" there.
 */
export type ComputeDType = "float32" | "float16";

export class ModelBuildError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`${key}: ${message}`);
    this.name = "ModelBuildError";
  }
}

export class ModuleContext {
  /** LoRA input groups created while building, in creation order (for callers that feed them). */
  readonly loraInputs: { path: string; down: Value; up: Value; scale: Value }[] = [];

  constructor(
    readonly b: GraphBuilder,
    readonly weights: WeightSource,
    readonly lora?: LoraTargets,
    readonly computeDType: ComputeDType = "float32",
  ) {}

  /** The current module path ("" at the root). */
  get path(): string {
    return this.b.scopePath;
  }

  /**
   * A parameter of the current module in `dtype` (default: the compute dtype). A stored tensor of another 16/32-bit
   * float dtype is cast in the graph (an fp16 checkpoint in an fp16 graph needs no cast; ORT folds the Cast of an
   * fp32 initializer once at load). float64 weights (float64 test graphs) stay float64 in float32 mode.
   */
  param(name: string, shape: readonly number[], dtype: ComputeDType = this.computeDType): Value {
    const key = this.path === "" ? name : `${this.path}.${name}`;
    const inputName = this.weights.graphInput?.(key, shape);
    if (inputName !== undefined) return this.as(this.b.input(inputName, "float32", shape), dtype);
    const src = this.weights.tensor(key, shape);
    if (src.shape.length !== shape.length || src.shape.some((d, i) => d !== shape[i])) {
      throw new ModelBuildError(key, `expected shape ${formatShape(shape)}, got ${formatShape(src.shape)}`);
    }
    const v = this.b.initializer(name, src);
    return v.dtype === "float64" && dtype === "float32" ? v : this.as(v, dtype);
  }

  /** A float32 `x` in the compute dtype: graph inputs enter the model's fp16 part through this Cast. */
  toCompute(x: Value): Value {
    return x.dtype === "float32" ? this.as(x, this.computeDType) : x;
  }

  /**
   * A 16-bit `x` as float32 (model outputs, and the parts an fp16 graph computes in float32); float32/float64
   * values pass unchanged.
   */
  toFloat32(x: Value): Value {
    return x.dtype === "float16" || x.dtype === "bfloat16" ? this.as(x, "float32") : x;
  }

  private as(x: Value, dtype: DType): Value {
    return x.dtype === dtype ? x : cast(x, dtype);
  }

  /** LoRA rank of the current module, 0 when it has none. */
  loraRank(): number {
    return this.lora?.ranks.get(this.path) ?? 0;
  }
}

/**
 * A finished model graph plus its build context: `ctx.b` is still live, so a training step (loss, grad,
 * optimizer) can be appended and the graph built again; `ctx.loraInputs` lists the LoRA inputs created.
 */
export interface BuiltGraph {
  graph: Graph;
  ctx: ModuleContext;
}

/** A WeightSource over in-memory float32/float64 arrays keyed by diffusers key (tests, synthetic models). */
export function memoryWeights(
  tensors: ReadonlyMap<string, { shape: number[]; data: Float32Array | Float64Array }>,
): WeightSource {
  return {
    tensor(key, expected) {
      const t = tensors.get(key);
      if (!t) throw new ModelBuildError(key, `missing tensor (expected ${formatShape(expected)})`);
      return { dtype: t.data instanceof Float64Array ? "float64" : "float32", shape: t.shape, data: t.data };
    },
  };
}

/**
 * A WeightSource whose parameters are all graph inputs named `${prefix}${key}` (full fine-tuning: every weight is
 * training state). `shapes` records each key and shape the model asked for, in build order, so a caller can
 * initialise or feed them; a key asked for twice with different shapes is an error.
 */
export function graphInputWeights(prefix = "state_in."): WeightSource & { shapes: Map<string, number[]> } {
  const shapes = new Map<string, number[]>();
  return {
    shapes,
    graphInput(key, expected) {
      const seen = shapes.get(key);
      if (seen && (seen.length !== expected.length || seen.some((d, i) => d !== expected[i])))
        throw new ModelBuildError(key, `asked for as ${formatShape(expected)} and as ${formatShape(seen)}`);
      shapes.set(key, [...expected]);
      return `${prefix}${key}`;
    },
    tensor(key) {
      throw new ModelBuildError(key, "graphInputWeights provides graph inputs only");
    },
  };
}
