// Throughput of the safetensors module on a ~500 MB synthetic F16 checkpoint in os.tmpdir():
// streaming write (incl. fsync + rename), header open, readRaw of every tensor, f16 -> f32 conversion.
// Run: npx tsx packages/prompt-lora/bench/safetensors-io.ts [sizeMB]
import { rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { f16ToF32, f32ToF16 } from "../src/safetensors/dtypes.ts";
import { openSafetensors } from "../src/safetensors/reader.ts";
import type { TensorToWrite } from "../src/safetensors/types.ts";
import { writeSafetensors } from "../src/safetensors/writer.ts";

const sizeMB = Number(process.argv[2] ?? 500);
const tensorElements = 1280 * 1280; // ~3.1 MB per F16 tensor, like a large SD conv/linear weight
const tensorCount = Math.max(1, Math.round((sizeMB * 1e6) / (tensorElements * 2)));
const path = join(tmpdir(), `safetensors-bench-${process.pid}.safetensors`);

// One source buffer of realistic half values, handed out lazily per tensor (generation is not what we time).
const source = f32ToF16(Float32Array.from({ length: tensorElements }, (_, i) => Math.sin(i) * 0.05));
const tensors: TensorToWrite[] = Array.from({ length: tensorCount }, (_, i) => ({
  name: `model.diffusion_model.block_${i}.weight`,
  dtype: "F16",
  shape: [1280, 1280],
  data: () => source,
}));

const mbps = (bytes: number, ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;

try {
  let t = performance.now();
  await writeSafetensors(path, tensors, { bench: "safetensors-io" });
  const writeMs = performance.now() - t;
  const bytes = (await stat(path)).size;

  t = performance.now();
  const file = await openSafetensors(path);
  const openMs = performance.now() - t;

  t = performance.now();
  let readBytes = 0;
  const raws: Buffer[] = [];
  for (const name of file.tensors.keys()) {
    const raw = await file.readRaw(name);
    readBytes += raw.byteLength;
    if (raws.length < 16) raws.push(raw);
  }
  const readMs = performance.now() - t;
  await file.close();

  // Conversion alone, on tensors already in memory (16 tensors x 3 passes).
  t = performance.now();
  let converted = 0;
  for (let pass = 0; pass < 3; pass++) {
    for (const raw of raws) {
      const out = f16ToF32(new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2));
      converted += out.length;
    }
  }
  const convMs = performance.now() - t;

  t = performance.now();
  let encoded = 0;
  for (const raw of raws.slice(0, 4)) {
    encoded += f32ToF16(f16ToF32(new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2))).length;
  }
  const roundTripMs = performance.now() - t;

  console.log(
    `file: ${(bytes / 1e6).toFixed(0)} MB, ${tensorCount} F16 tensors of ${tensorElements} elements`,
  );
  console.log(`write (streamed, fsync, rename): ${writeMs.toFixed(0)} ms, ${mbps(bytes, writeMs)}`);
  console.log(`open (header parse + validation): ${openMs.toFixed(2)} ms`);
  console.log(`readRaw all tensors (page cache warm): ${readMs.toFixed(0)} ms, ${mbps(readBytes, readMs)}`);
  console.log(
    `f16 -> f32: ${(converted / 1e6 / (convMs / 1000)).toFixed(0)} M elements/s (${mbps(converted * 2, convMs)} of f16 input)`,
  );
  console.log(
    `f16 -> f32 -> f16 round trip: ${(encoded / 1e6 / (roundTripMs / 1000)).toFixed(0)} M elements/s`,
  );
} finally {
  await rm(path, { force: true });
}
