import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { TensorToWrite } from "@lora-studio/prompt-lora";
import { hashFile, writeSafetensors } from "@lora-studio/prompt-lora";
import { sshsHashes, withSshsHashes } from "../src/output/hashes.ts";
import {
  checkpointMetadata,
  localIsoSeconds,
  modelspecMetadata,
  trainingMetadata,
} from "../src/output/metadata.ts";
import { pyFloat, pyJsonDumps } from "../src/output/python-format.ts";

test("Python float and json.dumps spellings", () => {
  const cases: [number, string][] = [
    [1e-4, "0.0001"],
    [1e-5, "1e-05"],
    [5e-5, "5e-05"],
    [8, "8.0"],
    [0.5, "0.5"],
    [123.456, "123.456"],
    [1e16, "1e+16"],
    [1234567890123456, "1234567890123456.0"],
    [1700000000.123456, "1700000000.123456"],
    [-0.00012, "-0.00012"],
    [0.1 + 0.2, "0.30000000000000004"],
  ];
  for (const [x, s] of cases) assert.equal(pyFloat(x), s, `pyFloat(${x})`);
  assert.equal(
    pyJsonDumps({ "10_ink": { n_repeats: 10, img_count: 12 } }),
    '{"10_ink": {"n_repeats": 10, "img_count": 12}}',
  );
  assert.equal(pyJsonDumps({ a: [1, 2], é: "ü" }), '{"a": [1, 2], "\\u00e9": "\\u00fc"}');
});

const config = {
  output_name: "ink_style",
  learning_rate: 1e-4,
  unet_lr: undefined,
  text_encoder_lr: 5e-5,
  train_text_encoder: true,
  gradient_checkpointing: false,
  gradient_accumulation_steps: 1,
  lr_warmup_steps: 0,
  lr_scheduler: "cosine" as const,
  lora_rank: 8,
  lora_alpha: 8,
  conv_rank: 4,
  conv_alpha: 1,
  mixed_precision: "no" as const,
  clip_skip: 2,
  cache_latents: true,
  seed: 42,
  noise_offset: 0,
  optimizer: "AdamW" as const,
  caption_dropout_rate: 0,
  min_snr_gamma: 5,
  batch_size: 2,
  resolution: [512, 512] as [number, number],
  flip_aug: false,
  shuffle_caption: true,
  enable_bucket: true,
  bucket_no_upscale: false,
  min_bucket_reso: 256,
  max_bucket_reso: 1024,
  keep_tokens: 1,
  base_model: "/models/tiny-sd1.safetensors",
};

test("ss_* metadata: kohya's keys, all strings, Python spellings", () => {
  const m = trainingMetadata({
    config,
    dataset: {
      numTrainImages: 120,
      numBatchesPerEpoch: 60,
      numEpochs: 10,
      maxTrainSteps: 600,
      datasetDirs: { "10_ink": { n_repeats: 10, img_count: 12 } },
      tagFrequency: { "10_ink": { "ink wash": 12, mountain: 5 } },
      buckets: [{ resolution: [512, 512], count: 120 }],
      meanAspectError: 0,
    },
    sessionId: 12345,
    trainingStartedAt: 1700000000.5,
  });
  for (const [k, v] of Object.entries(m)) assert.equal(typeof v, "string", k);
  assert.equal(m.ss_network_dim, "8");
  assert.equal(m.ss_network_alpha, "8.0");
  assert.equal(m.ss_network_module, "networks.lora");
  assert.equal(m.ss_base_model_version, "sd_v1");
  assert.equal(m.ss_v2, "False");
  assert.equal(m.ss_output_name, "ink_style");
  assert.equal(m.ss_learning_rate, "0.0001");
  assert.equal(m.ss_text_encoder_lr, "5e-05");
  assert.equal(m.ss_unet_lr, "None");
  assert.equal(m.ss_resolution, "(512, 512)");
  assert.equal(m.ss_num_train_images, "120");
  assert.equal(m.ss_seed, "42");
  assert.equal(m.ss_clip_skip, "2");
  assert.equal(m.ss_training_started_at, "1700000000.5");
  assert.equal(m.ss_shuffle_caption, "True");
  assert.equal(m.ss_dataset_dirs, '{"10_ink": {"n_repeats": 10, "img_count": 12}}');
  assert.deepEqual(JSON.parse(m.ss_tag_frequency), { "10_ink": { "ink wash": 12, mountain: 5 } });
  assert.equal(m.ss_network_args, '{"conv_dim": "4", "conv_alpha": "1"}');
  assert.equal(m.ss_sd_model_name, "tiny-sd1.safetensors");
  const saved = checkpointMetadata(m, { steps: 600, epoch: 10, finishedAt: 1700000100.25 });
  assert.equal(saved.ss_steps, "600");
  assert.equal(saved.ss_epoch, "10");
  assert.equal(saved.ss_training_finished_at, "1700000100.25");
});

test("modelspec keys for an SD1 LoRA", () => {
  const m = modelspecMetadata({
    title: "ink_style",
    resolution: [512, 512],
    timestamp: 1700000000.9,
    clipSkip: 2,
  });
  assert.equal(m["modelspec.sai_model_spec"], "1.0.0");
  assert.equal(m["modelspec.architecture"], "stable-diffusion-v1/lora");
  assert.equal(m["modelspec.implementation"], "diffusers");
  assert.equal(m["modelspec.resolution"], "512x512");
  assert.equal(m["modelspec.prediction_type"], "epsilon");
  assert.equal(m["modelspec.encoder_layer"], "2");
  assert.equal(m["modelspec.date"], localIsoSeconds(1700000000));
  assert.match(m["modelspec.date"], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
});

function tensor(name: string, n: number, seed: number): TensorToWrite {
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.sin(seed * 1000 + i);
  return { name, dtype: "F32", shape: [n], data };
}

test("sshs_model_hash equals A1111's addnet hash of the written file; legacy hash reads 64 KiB at 1 MiB", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sshs-"));
  // > 1 MiB of data so the legacy window is real.
  const tensors = [
    tensor("lora_unet_a.lora_down.weight", 200_000, 1),
    tensor("lora_unet_a.lora_up.weight", 150_000, 2),
    tensor("lora_unet_a.alpha", 1, 3),
  ];
  const ssOnly = { ss_network_dim: "8", ss_output_name: "x" };
  const meta = await withSshsHashes(tensors, { ...ssOnly, "modelspec.title": "x" });
  const path = join(dir, "lora.safetensors");
  await writeSafetensors(path, tensors, meta);
  const fileHashes = await hashFile(path, 8 + Number(readFileSync(path).readBigUInt64LE(0)));
  assert.equal(meta.sshs_model_hash, fileHashes.addnet);

  // Legacy: the same tensors written with only the ss_* metadata, bytes [1 MiB, 1 MiB + 64 KiB).
  const ssPath = join(dir, "ss-only.safetensors");
  await writeSafetensors(ssPath, tensors, ssOnly);
  const window = readFileSync(ssPath).subarray(0x100000, 0x110000);
  assert.equal(meta.sshs_legacy_hash, createHash("sha256").update(window).digest("hex").slice(0, 8));

  // Small files: the legacy window is empty, the hash of nothing.
  const small = await sshsHashes([tensor("t", 4, 1)], {});
  assert.equal(small.sshs_legacy_hash, "e3b0c442");
});
