/** Shared by the training tests: a small generated dataset (sharp) and a config on the tiny fixture model. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { resolveConfig } from "../src/config/load.ts";
import { configSchema, type RawConfig, type TrainConfig } from "../src/config/schema.ts";

export const FIXTURES = fileURLToPath(new URL("../../../../shared/fixtures/", import.meta.url));
export const TINY_DIFFUSERS = join(FIXTURES, "tiny-sd1", "diffusers");
export const TINY_SINGLE = join(FIXTURES, "tiny-sd1", "tiny-sd1.safetensors");

/**
 * `count` pictures of `size` px: soft dark blobs on a light paper colour (an "ink wash" look), each with a caption.
 * Deterministic (no randomness beyond the index).
 */
export async function makeDataset(dir: string, count = 4, size = 64): Promise<void> {
  const sub = join(dir, "2_inkwash");
  mkdirSync(sub, { recursive: true });
  for (let i = 0; i < count; i++) {
    const data = Buffer.alloc(size * size * 3);
    const cx = size * (0.3 + (0.4 * ((i * 37) % 10)) / 10);
    const cy = size * (0.3 + (0.4 * ((i * 53) % 10)) / 10);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const d = Math.hypot(x - cx, y - cy) / size;
        const ink = Math.exp(-d * d * 18) * (0.8 + 0.2 * Math.sin((x + y + i * 5) / 3));
        const o = (y * size + x) * 3;
        data[o] = Math.round(235 - 200 * ink);
        data[o + 1] = Math.round(228 - 195 * ink);
        data[o + 2] = Math.round(210 - 170 * ink);
      }
    }
    await sharp(data, { raw: { width: size, height: size, channels: 3 } })
      .png()
      .toFile(join(sub, `img${i}.png`));
    writeFileSync(join(sub, `img${i}.txt`), `inkwash painting, blob ${i % 2 === 0 ? "left" : "right"}`);
  }
}

/** Removes test folders (called at the end of a passing test; a failing one leaves them for inspection). */
export function removeDirs(...dirs: string[]): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A resolved config on the tiny model: 64 px, rank 4, fixed seed; `over` overrides keys. */
export function tinyConfig(dataDir: string, outDir: string, over: Partial<RawConfig> = {}): TrainConfig {
  const raw = configSchema.parse({
    train_data_dir: dataDir,
    base_model: TINY_DIFFUSERS,
    output_dir: outDir,
    lora_rank: 4,
    resolution: 64,
    enable_bucket: false,
    batch_size: 1,
    learning_rate: 1e-3,
    max_train_steps: 20,
    seed: 1234,
    save_precision: "float",
    output_name: "tiny",
    ...over,
  });
  return resolveConfig(raw);
}
