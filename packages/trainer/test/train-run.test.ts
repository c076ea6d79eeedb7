/**
 * A short real LoRA training run on the tiny SD1 fixture model (64 px pictures made here with sharp, rank 4,
 * 40 steps, fixed seed):
 *  - the loss on a FIXED evaluation batch (fixed timesteps and noise) falls: mean of the first 5 evaluations vs
 *    the last 5, so per-step timestep noise cannot fake it;
 *  - the written LoRA loads through prompt-lora's readAdapter with kohya names, alphas and metadata, and its
 *    sshs_model_hash is the SHA-256 of the file's data section;
 *  - independently of the training graph: the engine's INFERENCE UNet with the adapter read back from the file
 *    reproduces the trainer's last evaluation loss, and without the adapter its first one;
 *  - logs: metrics.jsonl has every step, TensorBoard file and loss-curve PNG exist.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readAdapter } from "@lora-studio/prompt-lora";
import sharp from "sharp";
import { readMetrics } from "../src/logging/metrics.ts";
import { train } from "../src/train/train.ts";
import { inferenceEvalLosses } from "./inference-eval.helpers.ts";
import { makeDataset, removeDirs, tempDir, tinyConfig } from "./train.helpers.ts";

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

test("a 40-step LoRA run on the tiny model lowers the fixed-batch loss and writes a kohya LoRA", async () => {
  const data = tempDir("ls-train-data-");
  await makeDataset(data);
  const out = tempDir("ls-train-out-");
  const config = tinyConfig(data, out, {
    max_train_steps: 40,
    learning_rate: 2e-3,
    save_steps: 20,
    sample_prompts: ["inkwash painting, blob left --s 4 --d 5"],
    sample_every_n_steps: 20,
  });
  const events: string[] = [];
  const result = await train(config, {
    evalEvery: 4,
    graphOptimization: "disabled",
    onEvent: (e) => events.push(e.type),
  });

  assert.equal(result.status, "done");
  assert.equal(result.losses.length, 40);
  assert.ok(result.losses.every(Number.isFinite));
  assert.equal(result.evalLosses.length, 11); // step 0, 4, ..., 40
  const first = mean(result.evalLosses.slice(0, 5).map((e) => e.loss));
  const last = mean(result.evalLosses.slice(-5).map((e) => e.loss));
  assert.ok(last < first * 0.97, `fixed-batch loss did not fall: first 5 mean ${first}, last 5 mean ${last}`);
  assert.ok(
    events.includes("saved") && events.includes("done") && events.filter((t) => t === "step").length === 40,
  );

  // The LoRA file, through prompt-lora.
  const loraPath = join(out, "tiny.safetensors");
  assert.equal(result.loraPath, loraPath);
  assert.ok(existsSync(join(out, "tiny-step00000020.safetensors")));
  const adapter = await readAdapter(loraPath);
  assert.equal(adapter.format, "kohya");
  assert.equal(adapter.family, "sd1");
  assert.deepEqual(adapter.unknownKeys, []);
  const q = adapter.modules.find(
    (m) => m.path === "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
  );
  assert.ok(q, "to_q of the first transformer block is trained");
  assert.deepEqual(q.tensors.down.shape, [4, 32]);
  assert.deepEqual(q.tensors.up.shape, [32, 4]);
  assert.equal(q.alpha, 4);
  assert.ok(
    q.tensors.up.data.some((v) => v !== 0),
    "lora_up moved away from its zero init",
  );
  const md = adapter.metadata;
  assert.equal(md.ss_network_dim, "4");
  assert.equal(md.ss_network_alpha, "4.0");
  assert.equal(md.ss_network_module, "networks.lora");
  assert.equal(md.ss_steps, "40");
  assert.equal(md.ss_base_model_version, "sd_v1");
  assert.equal(md.ss_output_name, "tiny");
  assert.equal(md["modelspec.architecture"], "stable-diffusion-v1/lora");
  assert.equal(md["modelspec.resolution"], "64x64");
  const raw = readFileSync(loraPath);
  const keys = Object.keys(JSON.parse(raw.subarray(8, 8 + Number(raw.readBigUInt64LE(0))).toString("utf8")));
  assert.ok(
    keys.includes("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"),
  );
  assert.ok(keys.includes("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha"));
  const dataSection = raw.subarray(8 + Number(raw.readBigUInt64LE(0)));
  assert.equal(md.sshs_model_hash, createHash("sha256").update(dataSection).digest("hex"));

  // Logs.
  const metrics = readMetrics(join(out, "metrics.jsonl"));
  assert.deepEqual(
    metrics.map((m) => m.step),
    Array.from({ length: 40 }, (_, i) => i + 1),
  );
  assert.deepEqual(
    metrics.map((m) => m.loss),
    result.losses,
  );
  assert.equal(readdirSync(join(out, "logs")).filter((f) => f.startsWith("events.out.tfevents")).length, 1);
  assert.ok(readFileSync(join(out, "loss-curve.png")).subarray(1, 4).toString() === "PNG");

  // Sample grids before training, at step 20 and at the end; the trained LoRA changes the picture.
  assert.deepEqual(
    readdirSync(join(out, "samples")).sort(),
    [0, 20, 40].map((s) => `tiny-step${String(s).padStart(8, "0")}.png`),
  );
  const pixels = async (step: number) =>
    (
      await sharp(join(out, "samples", `tiny-step${String(step).padStart(8, "0")}.png`))
        .raw()
        .toBuffer()
    ).valueOf();
  const before = await pixels(0);
  const after = await pixels(40);
  assert.equal(before.length, after.length);
  assert.ok(!before.equals(after), "the sample after training equals the one before");

  // Independent check of the file: inference UNet + the adapter read back = the trainer's evaluation losses.
  const [withLora, withoutLora] = await inferenceEvalLosses(config, adapter, [1, 0]);
  const lastEval = result.evalLosses.at(-1)!.loss;
  assert.ok(
    Math.abs(withLora - lastEval) <= 1e-4 * lastEval,
    `file + inference UNet: ${withLora}, trainer: ${lastEval}`,
  );
  assert.ok(Math.abs(withoutLora - result.evalLosses[0].loss) <= 1e-4 * withoutLora);
  removeDirs(data, out);
});
