/**
 * "Baked" LoRA: a WeightSource that hands out W + delta for the modules a stacked adapter touches and the
 * checkpoint's own (memory-mapped) tensors for everything else. A graph built on it has no LoRA inputs: this is
 * what WebUIs do (patch the weights) and the reference the adapter-input path is checked against. Switching
 * stacks means computing the deltas again and creating a new session.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { type Adapter, moduleDelta, toFloat32 } from "@lora-studio/prompt-lora";
import type { InlineTensor, TensorSource } from "../graph/ir.ts";
import { isExternal } from "../graph/ir.ts";
import type { WeightSource } from "../nn/module.ts";
import { AdapterInputError, componentModules, type GraphComponent } from "./adapter-inputs.ts";

const ST_DTYPE = { float32: "F32", float16: "F16", bfloat16: "BF16" } as const;

/** A tensor source as float32 values (reads the bytes of external tensors from their file). */
export function readTensorFloat32(src: TensorSource, key: string): Float32Array {
  if (isExternal(src)) {
    const code = ST_DTYPE[src.dtype as keyof typeof ST_DTYPE];
    if (!code) throw new AdapterInputError(key, `cannot bake into a ${src.dtype} weight`);
    const bytes = new Uint8Array(src.byteLength);
    const fd = openSync(src.path, "r");
    try {
      let done = 0;
      while (done < bytes.length) {
        const n = readSync(fd, bytes, done, bytes.length - done, src.offset + done);
        if (n === 0) throw new AdapterInputError(key, `${src.path} ends inside the tensor`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    return toFloat32(bytes, code);
  }
  const t = src as InlineTensor;
  if (t.data instanceof Float32Array) return t.data.slice();
  if (t.data instanceof Float64Array) return Float32Array.from(t.data);
  throw new AdapterInputError(key, `cannot bake into a ${t.dtype} weight`);
}

/**
 * `base` with the stack's deltas (te or unet modules) added to the matching `<path>.weight` tensors, in float32.
 * Modules of the stack that no built graph asks for are reported by `unapplied()`.
 */
export function bakedWeights(
  base: WeightSource,
  stack: Adapter | null,
  component: GraphComponent,
): WeightSource & { unapplied(): string[] } {
  const pending = new Map(componentModules(stack, component).map((m) => [`${m.path}.weight`, m]));
  const applied = new Set<string>();
  return {
    tensor(key, expected) {
      const src = base.tensor(key, expected);
      const m = pending.get(key);
      if (!m) return src;
      if (m.tensors.diff_b) throw new AdapterInputError(key, "bias deltas are not baked by the pipeline");
      const w = readTensorFloat32(src, key);
      // The stack folded te/unet multipliers and alpha/rank into its tensors: multiplier 1 here.
      const d = moduleDelta(m, 1);
      if (d.data.length !== w.length)
        throw new AdapterInputError(key, `delta [${d.shape}] does not match the weight [${src.shape}]`);
      for (let i = 0; i < w.length; i++) w[i] += d.data[i];
      applied.add(key);
      return { dtype: "float32", shape: [...src.shape], data: w };
    },
    unapplied: () => [...pending.keys()].filter((k) => !applied.has(k)),
  };
}
