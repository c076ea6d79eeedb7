/**
 * One bake patch: a checkpoint tensor plus its deltas, computed in float32 and re-encoded in the tensor's own
 * dtype. Used by bake.ts in-process and by merge-worker.ts (the tensor is then read by the worker itself, so
 * only the adapter factors and the finished bytes cross threads).
 */
import { moduleDelta } from "../adapters/delta.ts";
import type { AdapterModule } from "../adapters/types.ts";
import { matmul, matrix } from "../math/matrix.ts";
import { addProductToHalves, addToHalves } from "../math/simd-f16.ts";
import { fromFloat32, isFloatDType, type SafetensorsFile } from "../safetensors/index.ts";
import type { TensorInfo } from "../safetensors/types.ts";
import { MergeError } from "./errors.ts";

/** One delta to add to a checkpoint tensor (a row slice of it for fused tensors). */
export interface Patch {
  module: AdapterModule;
  rows?: [number, number];
  /** DoRA modules: applied one adapter at a time from the base weight, with this multiplier. */
  doraMultiplier?: number;
}

/** The tensor `info` of `file` with every patch of `list` added, in the tensor's dtype (same byte length). */
export async function patchedTensor(
  file: SafetensorsFile,
  info: TensorInfo,
  list: Patch[],
): Promise<Uint8Array> {
  if (!isFloatDType(info.dtype)) {
    throw new MergeError(
      "SHAPE_MISMATCH",
      `tensor has dtype ${info.dtype}; only float weights can be baked`,
      info.name,
      file.path,
    );
  }
  const n = info.shape.reduce((a, b) => a * b, 1);
  const only = list.length === 1 ? list[0] : undefined;
  if (only && !only.rows && only.doraMultiplier === undefined && info.dtype === "F16") {
    // The usual case: one stacked delta over a whole fp16 weight, fused into the half data on the SIMD kernel
    // (the float32 weight is never materialised) and written back into the buffer just read (readRaw's
    // buffer is ours alone), so a bake allocates no second copy of its patched tensors.
    const raw = await file.readRaw(info.name);
    const halves = new Uint16Array(raw.buffer, raw.byteOffset, n);
    if (fusedLoraBake(only.module, halves)) return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    const delta = checkedDelta(stackedDelta(only.module), n, only, info, file, 0, info.shape[0] ?? 1);
    return new Uint8Array(addToHalves(halves, delta).buffer);
  }
  const w = await file.readFloat32(info.name);
  const original = list.some((p) => p.doraMultiplier !== undefined) ? Float32Array.from(w) : w;
  const rowLength = info.shape.length > 0 ? w.length / info.shape[0] : w.length;
  for (const p of list) {
    const [r0, r1] = p.rows ?? [0, info.shape[0] ?? 1];
    const start = r0 * rowLength;
    const length = (r1 - r0) * rowLength;
    let delta: Float32Array;
    if (p.doraMultiplier !== undefined) {
      const base = {
        shape: [r1 - r0, ...info.shape.slice(1)],
        data: original.subarray(start, start + length),
      };
      delta = moduleDelta(p.module, p.doraMultiplier, base).data;
    } else {
      delta = stackedDelta(p.module);
    }
    checkedDelta(delta, length, p, info, file, r0, r1);
    for (let i = 0; i < length; i++) w[start + i] += delta[i];
  }
  return fromFloat32(w, info.dtype);
}

function checkedDelta(
  delta: Float32Array,
  length: number,
  p: Patch,
  info: TensorInfo,
  file: SafetensorsFile,
  r0: number,
  r1: number,
): Float32Array {
  if (delta.length !== length) {
    const key = `${p.module.component}:${p.module.path}`;
    throw new MergeError(
      "SHAPE_MISMATCH",
      `module ${key} has a delta of ${delta.length} values, the weight${p.rows ? ` rows ${r0}..${r1}` : ""} [${info.shape}] has ${length}`,
      info.name,
      file.path,
    );
  }
  return delta;
}

/** W += up @ down in place for a stacked LoRA module of W's exact size, product and encoding fused
 * (simd-f16.ts); false (W untouched) outside the fused case. */
function fusedLoraBake(m: AdapterModule, halves: Uint16Array): boolean {
  if (m.kind !== "lora" || m.tensors.mid || m.alpha !== m.tensors.down.shape[0]) return false;
  const down = m.tensors.down;
  const up = m.tensors.up;
  const r = down.shape[0];
  const inner = down.data.length / Math.max(r, 1);
  const rows = up.shape[0];
  if (rows * inner !== halves.length || up.data.length !== rows * r) return false;
  return addProductToHalves(up.data, down.data, rows, r, inner, halves, halves) !== undefined;
}

/** Delta of a stacked module (scale already 1): up @ down on the SIMD kernel, or the full diff. */
function stackedDelta(m: AdapterModule): Float32Array {
  if (m.kind === "lora" && !m.tensors.mid && m.alpha === m.tensors.down.shape[0]) {
    const down = m.tensors.down;
    const up = m.tensors.up;
    const r = down.shape[0];
    const inner = down.data.length / Math.max(r, 1);
    if (r === 0) return new Float32Array(up.shape[0] * inner);
    return matmul(matrix(up.shape[0], r, up.data), matrix(r, inner, down.data)).data;
  }
  return moduleDelta(m, 1).data;
}
