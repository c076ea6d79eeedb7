/** Training fixtures for the service tests: a tiny captioned dataset made with sharp, and job configs on the tiny model. */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FIXTURES } from "./service.ts";
import { sharp } from "./sharp.ts";

export const TINY_SINGLE = join(FIXTURES, "tiny-sd1", "tiny-sd1.safetensors");
export const TINY_DIFFUSERS = join(FIXTURES, "tiny-sd1", "diffusers");
export const CLIP_TOKENIZER = join(FIXTURES, "clip-tokenizer");
/** The tiny single-file model's text encoder is 32 wide: its head count cannot be inferred (see the engine loader). */
export const TINY_SINGLE_MODEL = { text_encoder_heads: 4 };

/**
 * `count` 64 px pictures (a coloured square on paper, one per index) with captions starting with the trigger
 * tag `trigger`, in `<datasetsDir>/<name>/`.
 */
export async function makeTrainDataset(
  datasetsDir: string,
  name: string,
  trigger: string,
  count = 4,
): Promise<string> {
  const dir = join(datasetsDir, name);
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const size = 64;
    const data = Buffer.alloc(size * size * 3, 230);
    const x0 = 8 + ((i * 13) % 24);
    for (let y = 16; y < 48; y++) {
      for (let x = x0; x < x0 + 24; x++) {
        const o = (y * size + x) * 3;
        data[o] = 40 + 50 * i;
        data[o + 1] = 90;
        data[o + 2] = 200 - 40 * i;
      }
    }
    const png = await sharp(data, { raw: { width: size, height: size, channels: 3 } })
      .png()
      .toBuffer();
    await writeFile(join(dir, `sq${i}.png`), png);
    await writeFile(join(dir, `sq${i}.txt`), `${trigger}, square ${i}, paper`);
  }
  return dir;
}

/** A small config of the trainer's keys on the tiny model (64 px, rank 4, fixed seed). */
export function tinyTrainConfig(over: Record<string, unknown>): Record<string, unknown> {
  return {
    base_model: TINY_SINGLE,
    lora_rank: 4,
    resolution: 64,
    enable_bucket: false,
    batch_size: 1,
    learning_rate: 1e-3,
    seed: 7,
    save_precision: "float",
    ...over,
  };
}
