/**
 * A seed reproduces a run wherever the files live: the same base model copied to another folder (new path, new
 * mtime) and the same pictures in another folder train to bit-identical losses. (The latents' posterior sample
 * used to be seeded by the latent-cache key, which names the VAE file by path and mtime.)
 */
import assert from "node:assert/strict";
import { cpSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { TrainEvent } from "../src/train/events.ts";
import { train } from "../src/train/train.ts";
import { makeDataset, removeDirs, TINY_DIFFUSERS, tempDir, tinyConfig } from "./train.helpers.ts";

async function losses(base: string, data: string): Promise<number[]> {
  const out = tempDir("ls-repro-out-");
  const events: TrainEvent[] = [];
  const config = tinyConfig(data, out, { base_model: base, max_train_steps: 3, threads: 1 });
  await train(config, { onEvent: (e) => events.push(e) });
  removeDirs(out);
  return events.flatMap((e) => (e.type === "step" ? [e.loss] : []));
}

test("the same seed trains to the same losses from another folder and another copy of the base model", async () => {
  const [baseA, baseB, dataA, dataB] = ["base-a-", "base-b-", "data-a-", "data-b-"].map((p) =>
    tempDir(`ls-repro-${p}`),
  );
  cpSync(TINY_DIFFUSERS, baseA, { recursive: true });
  cpSync(TINY_DIFFUSERS, baseB, { recursive: true });
  const vae = join(baseB, "vae", "diffusion_pytorch_model.safetensors");
  utimesSync(vae, new Date(), new Date(Date.now() - 86_400_000));
  await makeDataset(dataA, 2);
  await makeDataset(dataB, 2);
  const a = await losses(baseA, dataA);
  const b = await losses(baseB, dataB);
  assert.equal(a.length, 3);
  assert.deepEqual(b, a);
  removeDirs(baseA, baseB, dataA, dataB);
});
