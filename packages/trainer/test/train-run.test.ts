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
import {
  buildUNetGraph,
  type HostTensor,
  loraInputNames,
  openCheckpoint,
  Session,
} from "@lora-studio/engine";
import { readAdapter } from "@lora-studio/prompt-lora";
import sharp from "sharp";
import { epochBatches } from "../src/dataset/order.ts";
import { orderBuckets, planDataset } from "../src/dataset/plan.ts";
import { readMetrics } from "../src/logging/metrics.ts";
import { openBaseModel } from "../src/train/base-model.ts";
import { prepareBatch } from "../src/train/batch.ts";
import { cacheLatents, TextEmbedder } from "../src/train/encoders.ts";
import { EVAL_TIMESTEPS } from "../src/train/evaluation.ts";
import { train } from "../src/train/train.ts";
import { makeDataset, removeDirs, TINY_DIFFUSERS, tempDir, tinyConfig } from "./train.helpers.ts";

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
  const base = await openBaseModel(TINY_DIFFUSERS);
  const plan = await planDataset(config);
  const latents = await cacheLatents(base, plan.images, {
    seed: config.seed,
    flipAug: false,
    diskDir: null,
    session: {},
  });
  const embedder = await TextEmbedder.create(base, { clipSkip: 1, cacheable: true, session: {} });
  const ck = await openCheckpoint(TINY_DIFFUSERS);
  const ranks = new Map(adapter.modules.map((m) => [m.path, m.tensors.down.shape[0]] as [string, number]));
  const { graph } = buildUNetGraph(ck.unet, ck.weights.unet, {
    batch: 1,
    height: 8,
    width: 8,
    lora: { component: "unet", ranks },
  });
  const unet = await Session.create(graph, { graphOptimizationLevel: "disabled", onMessage: () => {} });
  const evalLoss = async (strength: number) => {
    const batch = epochBatches(orderBuckets(plan), 1, config.seed, 0)[0];
    let sum = 0;
    for (const [e, t] of EVAL_TIMESTEPS.entries()) {
      const { feeds } = await prepareBatch(
        {
          seed: config.seed,
          schedule: base.schedule,
          images: plan.images,
          latents,
          embedder,
          flipAug: false,
          noiseOffset: 0,
          captions: { shuffleCaption: false, keepTokens: 0, captionDropoutRate: 0 },
        },
        batch,
        -1,
        { timesteps: [t], noiseKey: -1 - e },
      );
      const f: Record<string, HostTensor> = {
        sample: feeds.sample,
        timestep: feeds.timestep,
        encoder_hidden_states: feeds.encoder_hidden_states,
      };
      for (const m of adapter.modules) {
        const names = loraInputNames("unet", m.path);
        f[names.down] = { dtype: "float32", shape: m.tensors.down.shape, data: m.tensors.down.data };
        f[names.up] = { dtype: "float32", shape: m.tensors.up.shape, data: m.tensors.up.data };
        f[names.scale] = {
          dtype: "float32",
          shape: [],
          data: Float32Array.of((strength * (m.alpha ?? 0)) / m.tensors.down.shape[0]),
        };
      }
      const o = (await unet.run(f)).out.data as Float32Array;
      const target = feeds.target.data as Float32Array;
      let s = 0;
      for (let i = 0; i < o.length; i++) s += (o[i] - target[i]) ** 2;
      sum += s / o.length;
    }
    return sum / EVAL_TIMESTEPS.length;
  };
  const withLora = await evalLoss(1);
  const withoutLora = await evalLoss(0);
  await unet.release();
  await embedder.release();
  await ck.close();
  await base.checkpoint.close();
  const lastEval = result.evalLosses.at(-1)!.loss;
  assert.ok(
    Math.abs(withLora - lastEval) <= 1e-4 * lastEval,
    `file + inference UNet: ${withLora}, trainer: ${lastEval}`,
  );
  assert.ok(Math.abs(withoutLora - result.evalLosses[0].loss) <= 1e-4 * withoutLora);
  removeDirs(data, out);
});
