/** Shared by the model/loader tests: fixture paths, reference tensors, running a graph, the parity measure. */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { openSafetensors, readSafetensors } from "@lora-studio/prompt-lora";
import type { Graph } from "../src/graph/ir.ts";
import { Session } from "../src/runtime/session.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";

export const FIXTURES = fileURLToPath(new URL("../../../../shared/fixtures/", import.meta.url));
export const TINY = `${FIXTURES}tiny-sd1/`;
export const TINY_SINGLE = `${TINY}tiny-sd1.safetensors`;
export const TINY_DIFFUSERS = `${TINY}diffusers`;
/** The tiny CLIP is 32 wide with 4 heads: no 64-wide-head convention applies, so single-file loads say so. */
export const TINY_OPTIONS = { textEncoderHeads: 4 };

export interface RefCase {
  f32(name: string): Float32Array;
  shape(name: string): number[];
  int64(name: string): BigInt64Array;
}

/** A reference case (tiny-sd1/reference/<name>.safetensors), float tensors as float32, int64 kept exact. */
export async function loadReference(name: string): Promise<RefCase> {
  const path = `${TINY}reference/${name}.safetensors`;
  const all = await readSafetensors(path);
  const file = await openSafetensors(path);
  const ints = new Map<string, BigInt64Array>();
  for (const info of file.tensors.values()) {
    if (info.dtype === "I64") {
      const raw = await file.readRaw(info.name);
      ints.set(info.name, new BigInt64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8));
    }
  }
  await file.close();
  const get = (n: string) => {
    const t = all.tensors.get(n);
    if (!t) throw new Error(`${name}: no reference tensor ${n}`);
    return t;
  };
  return {
    f32: (n) => get(n).data,
    shape: (n) => get(n).shape,
    int64: (n) => {
      const t = ints.get(n);
      if (!t) throw new Error(`${name}: no int64 tensor ${n}`);
      return t;
    },
  };
}

export const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: "float32", shape, data });

/** Builds a session on the CPU provider (float32), runs it once, releases it (optionally skipping ORT optimizers). */
export async function runOnce(
  graph: Graph,
  feeds: Record<string, HostTensor>,
  disabledOptimizers?: string[],
): Promise<Record<string, HostTensor>> {
  const s = await Session.create(graph, {
    executionProvider: "cpu",
    onMessage: () => {},
    disabledOptimizers,
  });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/** max|a - ref| / max|ref| */
export function relMaxDiff(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  assert.equal(a.length, ref.length, "length differs from the reference");
  let d = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(a[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return d / m;
}

export function assertClose(what: string, a: HostTensor | undefined, ref: Float32Array, tol = 1e-4): number {
  assert.ok(a, `${what}: no such output`);
  const r = relMaxDiff(a.data as Float32Array, ref);
  assert.ok(r <= tol, `${what}: max|diff| / max|ref| = ${r.toExponential(3)} > ${tol}`);
  return r;
}
