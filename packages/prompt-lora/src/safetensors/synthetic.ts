/**
 * A checkpoint with real tensor names and shapes and random contents, written from a key manifest such as
 * `sd15-original-keys.json` ({ keys: { name: { shape } } }). Benchmarks use it to measure full-size models
 * without shipping weights. One block of N(0, std) values is tiled over every tensor: drawing a fresh normal
 * for each of a billion elements would dominate the benchmark.
 */
import { readFile } from "node:fs/promises";
import { f32ToF16 } from "./dtypes.ts";
import type { DType } from "./types.ts";
import { writeSafetensors } from "./writer.ts";

export interface SyntheticCheckpointOptions {
  dtype?: Extract<DType, "F16" | "F32">;
  std?: number;
  seed?: number;
}

export async function writeSyntheticCheckpoint(
  manifestPath: string,
  outPath: string,
  { dtype = "F16", std = 0.02, seed = 12345 }: SyntheticCheckpointOptions = {},
): Promise<void> {
  const manifest = JSON.parse(await readFile(manifestPath, "utf8")) as {
    keys: Record<string, { shape: number[] }>;
  };
  let state = seed >>> 0 || 1;
  const uniform = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 0.5) / 2 ** 32;
  };
  const normals = new Float32Array(1 << 20).map(
    () => std * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()),
  );
  const block: Float32Array | Uint16Array = dtype === "F16" ? f32ToF16(normals) : normals;
  await writeSafetensors(
    outPath,
    Object.entries(manifest.keys).map(([name, { shape }]) => ({
      name,
      dtype,
      shape,
      data: () => {
        const n = shape.reduce((a, d) => a * d, 1);
        const out = dtype === "F16" ? new Uint16Array(n) : new Float32Array(n);
        for (let at = 0; at < n; at += block.length)
          out.set(block.subarray(0, Math.min(block.length, n - at)), at);
        return out;
      },
    })),
  );
}
