/**
 * A stacked LoRA (prompt-lora's stackAdapters output) as graph inputs of the model graphs (nn/lora.ts):
 *   lora.<component>.<path>.down [cap, in(, kh, kw)], .up [out, cap(, 1, 1)], .scale [].
 *
 * Design: each model graph is built ONCE with a rank *capacity* per module; a stack of smaller rank is fed
 * zero-padded (extra rows of down and columns of up are zero, so they add exactly nothing). Switching between
 * stacks therefore only produces new input tensors; a graph is rebuilt only when a stack needs a module outside
 * the capacity map or a larger rank there, and capacities grow by powers of two so that happens rarely.
 * Modules a stack holds as a "full" delta D (LoHa, LoKr, CP, full diffs, summed by stackAdapters) are fed as an
 * exact factorization with rank = out features: down = D, up = identity (for convs the down conv is D itself
 * with the layer's stride/padding, the up conv a 1x1 identity).
 */
import type { Adapter, AdapterModule, ModuleSpec } from "@lora-studio/prompt-lora";
import { loraInputNames } from "../nn/lora.ts";
import type { HostTensor } from "../runtime/tensor.ts";

/** Graph component names the SD1/SD2 graphs use for their LoRA inputs. */
export type GraphComponent = "te" | "unet";

export class AdapterInputError extends Error {
  constructor(
    readonly module: string,
    message: string,
  ) {
    super(`${module}: ${message}`);
    this.name = "AdapterInputError";
  }
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Smallest power of two >= max(r, floor): the capacity a module gets when a graph must grow. */
export function rankBucket(r: number, floor = 4): number {
  let c = floor;
  while (c < r) c *= 2;
  return c;
}

/** The rank one stacked module needs: its rank for plain LoRA, out features for a full delta. */
export function neededRank(m: AdapterModule, spec: ModuleSpec): number {
  if (m.kind === "lora" && !m.tensors.mid) return m.tensors.down.shape[0];
  return spec.outFeatures;
}

/** Module specs of one component by path. */
export function specsByPath(
  modules: readonly ModuleSpec[],
  component: GraphComponent,
): Map<string, ModuleSpec> {
  return new Map(modules.filter((m) => m.component === component).map((m) => [m.path, m]));
}

function moduleSpec(specs: Map<string, ModuleSpec>, m: AdapterModule): ModuleSpec {
  const spec = specs.get(m.path);
  if (!spec) {
    throw new AdapterInputError(
      `${m.component}:${m.path}`,
      "the adapter targets a module this model does not have (wrong model family?)",
    );
  }
  return spec;
}

/** Modules of the stack that belong to `component` (SDXL's te1/te2 are refused: SD1/SD2 graphs only). */
export function componentModules(stack: Adapter | null, component: GraphComponent): AdapterModule[] {
  if (!stack) return [];
  for (const m of stack.modules) {
    if (m.component !== "te" && m.component !== "unet")
      throw new AdapterInputError(`${m.component}:${m.path}`, "SDXL text-encoder modules need an SDXL model");
  }
  return stack.modules.filter((m) => m.component === component);
}

/**
 * The capacity map a graph needs for `stack`, grown from `current` (returned unchanged, same object, when it
 * already suffices). `defaults` (kohya's default module set) seeds a new map so that later stacks on the usual
 * modules fit without a rebuild.
 */
export function growCapacity(
  current: ReadonlyMap<string, number> | undefined,
  stack: Adapter | null,
  component: GraphComponent,
  specs: Map<string, ModuleSpec>,
  defaults: ReadonlyMap<string, number>,
): ReadonlyMap<string, number> | undefined {
  const modules = componentModules(stack, component);
  if (modules.length === 0) return current;
  let next: Map<string, number> | undefined;
  for (const m of modules) {
    const need = neededRank(m, moduleSpec(specs, m));
    const have = (next ?? current)?.get(m.path) ?? 0;
    if (need <= have) continue;
    next ??= new Map(current ?? defaults);
    next.set(m.path, Math.max(rankBucket(need), next.get(m.path) ?? 0));
  }
  return next ?? current;
}

/** Stable text form of a capacity map (session cache keys). */
export function capacityKey(c: ReadonlyMap<string, number> | undefined): string {
  if (!c || c.size === 0) return "none";
  const ranks = [...c.values()];
  let h = 0;
  for (const [p, r] of [...c.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    for (let i = 0; i < p.length; i++) h = (Math.imul(h, 31) + p.charCodeAt(i)) | 0;
    h = (Math.imul(h, 31) + r) | 0;
  }
  return `${c.size}m-r${Math.max(...ranks)}-${(h >>> 0).toString(16)}`;
}

/** down [r, inner] / up [out, r] / scale of one stacked module, full deltas factorized with up = identity. */
function factors(
  m: AdapterModule,
  spec: ModuleSpec,
): { down: Float32Array; up: Float32Array; r: number; scale: number } {
  const inner = spec.inFeatures * spec.kernel[0] * spec.kernel[1];
  const out = spec.outFeatures;
  const where = `${m.component}:${m.path}`;
  if (m.kind === "lora" && !m.tensors.mid) {
    const { down, up } = m.tensors;
    const r = down.shape[0];
    if (numel(down.shape) !== r * inner || numel(up.shape) !== out * r) {
      throw new AdapterInputError(
        where,
        `down [${down.shape}] / up [${up.shape}] do not fit the layer (in ${spec.inFeatures}, out ${out}, kernel ${spec.kernel.join("x")})`,
      );
    }
    return { down: down.data, up: up.data, r, scale: m.alpha === undefined ? 1 : m.alpha / r };
  }
  if (m.tensors.diff_b)
    throw new AdapterInputError(where, "a bias delta cannot be fed as adapter inputs: use baked mode");
  const d = m.tensors.diff;
  if (!d || numel(d.shape) !== out * inner)
    throw new AdapterInputError(
      where,
      `${m.kind} module has no delta of ${out}x${inner} values (stack it first)`,
    );
  const up = new Float32Array(out * out);
  for (let i = 0; i < out; i++) up[i * out + i] = 1;
  return { down: d.data, up, r: out, scale: 1 };
}

/**
 * Feeds for every LoRA input of a graph built with `capacity`: the stack's modules zero-padded to their
 * capacity, every other module zeros with scale 0. Throws when the stack does not fit (grow the capacity first).
 */
export function adapterFeeds(
  stack: Adapter | null,
  component: GraphComponent,
  capacity: ReadonlyMap<string, number>,
  specs: Map<string, ModuleSpec>,
): Record<string, HostTensor> {
  const byPath = new Map(componentModules(stack, component).map((m) => [m.path, m]));
  const feeds: Record<string, HostTensor> = {};
  for (const [path, cap] of capacity) {
    const spec = specs.get(path);
    if (!spec) throw new AdapterInputError(`${component}:${path}`, "capacity names a module the model lacks");
    const [kh, kw] = spec.kernel;
    const inner = spec.inFeatures * kh * kw;
    const out = spec.outFeatures;
    const down = new Float32Array(cap * inner);
    const up = new Float32Array(out * cap);
    let scale = 0;
    const m = byPath.get(path);
    if (m) {
      const f = factors(m, spec);
      if (f.r > cap)
        throw new AdapterInputError(`${component}:${path}`, `rank ${f.r} exceeds the graph's ${cap}`);
      down.set(f.down.subarray(0, f.r * inner));
      for (let o = 0; o < out; o++) up.set(f.up.subarray(o * f.r, (o + 1) * f.r), o * cap);
      scale = f.scale;
    }
    const names = loraInputNames(component, path);
    const conv = spec.layer === "conv";
    feeds[names.down] = {
      dtype: "float32",
      shape: conv ? [cap, spec.inFeatures, kh, kw] : [cap, inner],
      data: down,
    };
    feeds[names.up] = { dtype: "float32", shape: conv ? [out, cap, 1, 1] : [out, cap], data: up };
    feeds[names.scale] = { dtype: "float32", shape: [], data: Float32Array.of(scale) };
  }
  for (const path of byPath.keys()) {
    if (!capacity.has(path))
      throw new AdapterInputError(
        `${component}:${path}`,
        "module has no LoRA inputs in this graph (grow the capacity)",
      );
  }
  return feeds;
}
