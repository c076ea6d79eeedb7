/**
 * Lists a generated models/Lora folder of 1,000 kohya LoRAs twice: cold (empty metadata cache: every
 * header read, every adapter summarized, every file hashed) and warm (cache hit for every file: no tensor
 * data read, no hash computed). Files are the fixture LoRA's tensors (rank 4, 88 modules, 167 KiB) under
 * 1,000 names with their own ss_output_name, spread over 10 subfolders.
 * Note: "cold" is cold for our cache only; the OS page cache holds the just-written files.
 *   npx tsx packages/prompt-lora/bench/list-library.ts [count] [concurrency]
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { scanLibrary } from "../src/library/scan.ts";
import { readSafetensors, writeSafetensors } from "../src/safetensors/index.ts";

const count = Number(process.argv[2] ?? 1000);
const concurrency = process.argv[3] === undefined ? undefined : Number(process.argv[3]);
const fixture = new URL(
  "../../../../shared/fixtures/tiny-sd1/lora/tiny-sd1-lora-kohya.safetensors",
  import.meta.url,
).pathname;

const tmp = await mkdtemp(join(tmpdir(), "lora-bench-"));
try {
  const root = join(tmp, "Lora");
  const { tensors, metadata } = await readSafetensors(fixture);
  const list = [...tensors].map(([name, t]) => ({
    name,
    dtype: "F32" as const,
    shape: t.shape,
    data: t.data,
  }));
  let t = performance.now();
  for (let i = 0; i < count; i++) {
    const folder = join(root, `set${i % 10}`);
    if (i < 10) await mkdir(folder, { recursive: true });
    await writeSafetensors(join(folder, `lora_${i}.safetensors`), list, {
      ...metadata,
      ss_output_name: `style-${i}`,
    });
  }
  console.log(`generated ${count} LoRAs in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  const cacheDir = join(tmp, "cache");
  t = performance.now();
  const cold = await scanLibrary(root, { cacheDir, concurrency });
  const coldMs = performance.now() - t;
  t = performance.now();
  const warm = await scanLibrary(root, { cacheDir });
  const warmMs = performance.now() - t;
  if (warm.stats.analyzed !== 0 || cold.stats.analyzed !== count)
    throw new Error("unexpected cache statistics");
  const mib = cold.entries.reduce((s, e) => s + e.size, 0) / 2 ** 20;
  console.log(
    `cold listing (no cache): ${(coldMs / 1000).toFixed(2)} s for ${count} files, ${mib.toFixed(0)} MiB hashed`,
  );
  console.log(
    `warm listing (cache):    ${(warmMs / 1000).toFixed(2)} s (${(warmMs / count).toFixed(2)} ms/file)`,
  );
  console.log(`warm/cold: ${(warmMs / coldMs).toFixed(3)}`);
} finally {
  await rm(tmp, { recursive: true, force: true });
}
