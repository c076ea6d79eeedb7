/**
 * Exact stacking: N adapters with their te/unet multipliers become one adapter whose delta is exactly the
 * weighted sum of their deltas.
 *
 * - Plain LoRA modules are concatenated along the rank: down rows [d_1; d_2; ...], up columns
 *   [s_1 m_1 u_1, s_2 m_2 u_2, ...] with each adapter's scale s = alpha / rank and multiplier m folded into its
 *   up block; the result's alpha equals its rank, so its scale is 1 and up @ down = sum_i s_i m_i u_i d_i.
 * - A module any adapter holds as LoHa, LoKr, full, CP-LoRA (lora_mid) has no exact low-rank concatenation, so
 *   that module becomes kind "full" whose diff is the sum of every contribution's delta (moduleDelta).
 * - A module present in only some adapters carries over (scaled the same way).
 * - `dyn` keeps the first dyn ranks of an adapter's LoRA modules; the scale stays alpha / (rank in the file),
 *   i.e. the truncated sum of the first dyn rank-one terms, as a DyLoRA is trained to be read.
 * DoRA modules (dora_scale) need the base weight and are rejected here: bake them instead.
 */
import { moduleBiasDelta, moduleDelta } from "../adapters/delta.ts";
import type { Adapter, AdapterModule, ModelFamily, Tensor } from "../adapters/types.ts";
import { MergeError } from "./errors.ts";
import type { ProgressCallback, StackEntry } from "./types.ts";

export interface StackOptions {
  onProgress?: ProgressCallback;
}

interface Contribution {
  module: AdapterModule;
  multiplier: number;
  dyn: number | null;
  source: string;
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Multiplier of a module: te for text-encoder components, unet (default te) for the UNet. */
export function multiplierFor(entry: StackEntry, component: AdapterModule["component"]): number {
  const te = entry.te ?? 1;
  return component === "unet" ? (entry.unet ?? te) : te;
}

export function stackAdapters(entries: StackEntry[], opts: StackOptions = {}): Adapter {
  if (entries.length === 0) throw new MergeError("EMPTY_STACK", "stackAdapters needs at least one adapter");
  const groups = new Map<string, Contribution[]>();
  entries.forEach((entry, i) => {
    const source = entry.adapter.source ?? `adapter #${i + 1}`;
    for (const module of entry.adapter.modules) {
      const key = `${module.component}:${module.path}`;
      const list = groups.get(key) ?? [];
      list.push({
        module,
        multiplier: multiplierFor(entry, module.component),
        dyn: entry.dyn ?? null,
        source,
      });
      groups.set(key, list);
    }
  });

  const modules: AdapterModule[] = [];
  let done = 0;
  for (const [key, list] of groups) {
    for (const c of list) {
      if (c.module.doraScale) {
        throw new MergeError(
          "NEEDS_BASE_WEIGHT",
          `${c.source}: module ${key} has dora_scale; its delta depends on the base weight, so it cannot be stacked (bake it instead)`,
          key,
        );
      }
    }
    const plain = list.every((c) => c.module.kind === "lora" && !c.module.tensors.mid);
    modules.push(plain ? concatLora(key, list) : sumAsFull(key, list));
    opts.onProgress?.(++done, groups.size, key);
  }

  return {
    source: entries.map((e, i) => e.adapter.source ?? `adapter #${i + 1}`).join(" + "),
    format: "kohya",
    family: commonFamily(entries),
    modules,
    metadata: stackMetadata(entries),
    unknownKeys: entries.flatMap((e) => e.adapter.unknownKeys),
  };
}

function commonFamily(entries: StackEntry[]): ModelFamily {
  const known = new Set(entries.map((e) => e.adapter.family).filter((f) => f !== "unknown"));
  if (known.size > 1) {
    throw new MergeError(
      "SHAPE_MISMATCH",
      `cannot stack adapters of different model families: ${[...known].join(", ")}`,
    );
  }
  return known.size === 1 ? [...known][0] : "unknown";
}

function stackMetadata(entries: StackEntry[]): Record<string, string> {
  const first = entries[0].adapter.metadata;
  const out: Record<string, string> = {};
  // Base-model facts shared by every input stay true of the stack; training facts (dims, steps) do not.
  for (const key of ["ss_base_model_version", "ss_v2", "modelspec.architecture", "ss_sd_model_name"]) {
    const v = first[key];
    if (v !== undefined && entries.every((e) => e.adapter.metadata[key] === v)) out[key] = v;
  }
  out.ss_network_module = "networks.lora";
  out.lora_studio_stack = JSON.stringify(
    entries.map((e, i) => ({
      source: e.adapter.source ?? `adapter #${i + 1}`,
      te: e.te ?? 1,
      unet: e.unet ?? e.te ?? 1,
      dyn: e.dyn ?? null,
    })),
  );
  return out;
}

/** Concatenates plain LoRA modules along the rank, folding scale x multiplier into each up block. */
function concatLora(key: string, list: Contribution[]): AdapterModule {
  const first = list[0].module;
  const parts = list.map((c) => {
    const down = c.module.tensors.down;
    const up = c.module.tensors.up;
    if (!down || !up)
      throw new MergeError("SHAPE_MISMATCH", `${c.source}: LoRA module ${key} lacks down or up`, key);
    const fileRank = down.shape[0];
    const rank = c.dyn !== null && c.dyn > 0 ? Math.min(c.dyn, fileRank) : fileRank;
    const scale = (c.module.alpha === undefined ? 1 : c.module.alpha / fileRank) * c.multiplier;
    return { c, down, up, fileRank, rank, scale, inner: numel(down.shape.slice(1)), out: up.shape[0] };
  });
  // The 4-D (conv) form wins when contributions disagree on [r, in] vs [r, in, 1, 1].
  const shaped = parts.find((p) => p.down.shape.length === 4) ?? parts[0];
  const inner = shaped.inner;
  const out = shaped.out;
  for (const p of parts) {
    if (p.inner !== inner || p.out !== out || numel(p.up.shape) !== p.out * p.fileRank) {
      throw new MergeError(
        "SHAPE_MISMATCH",
        `module ${key}: ${p.c.source} has down [${p.down.shape}] / up [${p.up.shape}], ` +
          `${shaped.c.source} has down [${shaped.down.shape}] / up [${shaped.up.shape}]`,
        key,
      );
    }
  }
  const total = parts.reduce((s, p) => s + p.rank, 0);
  const down = new Float32Array(total * inner);
  const up = new Float32Array(out * total);
  let offset = 0;
  for (const p of parts) {
    down.set(p.down.data.subarray(0, p.rank * inner), offset * inner);
    const upData = p.up.data;
    const { fileRank, rank, scale } = p;
    for (let o = 0; o < out; o++) {
      const src = o * fileRank;
      const dst = o * total + offset;
      for (let j = 0; j < rank; j++) up[dst + j] = upData[src + j] * scale;
    }
    offset += p.rank;
  }
  const conv = shaped.down.shape.length === 4;
  return {
    component: first.component,
    path: first.path,
    kind: "lora",
    layer: first.layer,
    tensors: {
      down: { shape: conv ? [total, ...shaped.down.shape.slice(1)] : [total, inner], data: down },
      up: { shape: conv ? [out, total, 1, 1] : [out, total], data: up },
    },
    alpha: total,
  };
}

/** Sums every contribution's delta (and bias delta) into one "full" module. */
function sumAsFull(key: string, list: Contribution[]): AdapterModule {
  let diff: Tensor | undefined;
  let bias: Tensor | undefined;
  for (const c of list) {
    const m =
      c.dyn !== null && c.dyn > 0 && c.module.kind === "lora" ? truncateLora(c.module, c.dyn) : c.module;
    const d = moduleDelta(m, c.multiplier);
    diff = accumulate(diff, d, key, c.source);
    const b = moduleBiasDelta(m, c.multiplier);
    if (b) bias = accumulate(bias, b, key, c.source);
  }
  const first = list[0].module;
  const tensors: Record<string, Tensor> = { diff: diff as Tensor };
  if (bias) tensors.diff_b = bias;
  return { component: first.component, path: first.path, kind: "full", layer: first.layer, tensors };
}

/** First `dyn` ranks of a LoRA module (CP mid included), keeping its scale alpha / file rank. */
function truncateLora(m: AdapterModule, dyn: number): AdapterModule {
  const down = m.tensors.down;
  const up = m.tensors.up;
  const fileRank = down.shape[0];
  const r = Math.min(dyn, fileRank);
  if (r === fileRank) return m;
  const inner = numel(down.shape.slice(1));
  const out = up.shape[0];
  const upData = new Float32Array(out * r);
  for (let o = 0; o < out; o++) upData.set(up.data.subarray(o * fileRank, o * fileRank + r), o * r);
  const tensors: Record<string, Tensor> = {
    down: { shape: [r, ...down.shape.slice(1)], data: down.data.slice(0, r * inner) },
    up: { shape: [out, r, ...up.shape.slice(2)], data: upData },
  };
  const mid = m.tensors.mid;
  if (mid) {
    const [, r2, kh, kw] = mid.shape;
    const midData = new Float32Array(r * r * kh * kw);
    for (let p = 0; p < r; p++)
      for (let q = 0; q < r; q++)
        midData.set(
          mid.data.subarray((p * r2 + q) * kh * kw, (p * r2 + q + 1) * kh * kw),
          (p * r + q) * kh * kw,
        );
    tensors.mid = { shape: [r, r, kh, kw], data: midData };
  }
  // alpha rescaled so alpha' / r = alpha / fileRank (no alpha: scale 1 whatever the rank, so none needed).
  return { ...m, tensors, alpha: m.alpha === undefined ? undefined : (m.alpha * r) / fileRank };
}

function accumulate(acc: Tensor | undefined, d: Tensor, key: string, source: string): Tensor {
  if (!acc) return { shape: [...d.shape], data: Float32Array.from(d.data) };
  if (acc.data.length !== d.data.length) {
    throw new MergeError(
      "SHAPE_MISMATCH",
      `module ${key}: ${source}'s delta [${d.shape}] differs from [${acc.shape}]`,
      key,
    );
  }
  // Prefer the 4-D shape when one contribution reports [out, in] and another [out, in, 1, 1].
  const shape = d.shape.length > acc.shape.length ? [...d.shape] : acc.shape;
  for (let i = 0; i < acc.data.length; i++) acc.data[i] += d.data[i];
  return { shape, data: acc.data };
}
