/**
 * train_text_encoder on the tiny SD1 fixture (64 px pictures made here, rank 4):
 *  - a short real run lowers the loss on a fixed evaluation batch, moves the text-encoder LoRA (lora_up no longer
 *    zero), and writes a kohya file with lora_te_* and lora_unet_* keys and the ss_* learning-rate metadata that
 *    prompt-lora reads back with the right components; independently of the training graph, the engine's
 *    INFERENCE text encoder + UNet with the adapter read back from the file reproduce the trainer's last
 *    evaluation loss (so the file's TE LoRA is the trained one, at the right scale); TensorBoard and
 *    metrics.jsonl carry the text encoder's learning rate;
 *  - text_encoder_lr: 0 leaves the text-encoder LoRA exactly at its initial value while the UNet LoRA moves;
 *  - resuming from a mid-run save gives the same per-step losses as the uninterrupted run (captions shuffled and
 *    dropped per step, so the caption randomness must resume too; gradient checkpointing on).
 */
import assert from "node:assert/strict";
import { copyFileSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readAdapter } from "@lora-studio/prompt-lora";
import { readMetrics } from "../src/logging/metrics.ts";
import { loadTrainState } from "../src/train/checkpoint.ts";
import { train } from "../src/train/train.ts";
import { inferenceEvalLosses } from "./inference-eval.helpers.ts";
import { makeDataset, removeDirs, tempDir, tinyConfig } from "./train.helpers.ts";

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fast = { graphOptimization: "disabled" } as const;
const TE_MODULES_PER_LAYER = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.out_proj",
  "mlp.fc1",
  "mlp.fc2",
];

function headerKeys(path: string): string[] {
  const raw = readFileSync(path);
  return Object.keys(JSON.parse(raw.subarray(8, 8 + Number(raw.readBigUInt64LE(0))).toString("utf8")));
}

test("train_text_encoder: the loss falls, the TE LoRA moves, and the kohya file holds lora_te_* + lora_unet_*", async () => {
  const data = tempDir("ls-te-data-");
  await makeDataset(data);
  const out = tempDir("ls-te-out-");
  const config = tinyConfig(data, out, {
    max_train_steps: 20,
    learning_rate: 4e-3,
    text_encoder_lr: 2e-3,
    train_text_encoder: true,
    sample_prompts: ["inkwash painting, blob left --s 3 --d 5"],
    sample_every_n_steps: 20,
  });
  const result = await train(config, { ...fast, evalEvery: 4 });
  assert.equal(result.status, "done");
  assert.equal(result.losses.length, 20);
  const first = mean(result.evalLosses.slice(0, 3).map((e) => e.loss));
  const last = mean(result.evalLosses.slice(-3).map((e) => e.loss));
  assert.ok(last < first * 0.97, `fixed-batch loss did not fall: ${first} -> ${last}`);

  // The file, through prompt-lora.
  const loraPath = join(out, "tiny.safetensors");
  const adapter = await readAdapter(loraPath);
  assert.equal(adapter.format, "kohya");
  assert.deepEqual(adapter.unknownKeys, []);
  const te = adapter.modules.filter((m) => m.component === "te");
  const unet = adapter.modules.filter((m) => m.component === "unet");
  assert.deepEqual(
    te.map((m) => m.path).sort(),
    [0, 1].flatMap((l) => TE_MODULES_PER_LAYER.map((s) => `text_model.encoder.layers.${l}.${s}`)).sort(),
  );
  assert.ok(unet.length > 0);
  for (const m of te) {
    assert.equal(m.alpha, 4);
    assert.deepEqual(m.tensors.down.shape, [4, m.path.endsWith("fc2") ? 64 : 32]);
    assert.ok(
      m.tensors.up.data.some((v) => v !== 0),
      `${m.path}: lora_up is still zero`,
    );
  }
  const keys = headerKeys(loraPath);
  for (const k of [
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
    "lora_te_text_model_encoder_layers_1_mlp_fc2.lora_up.weight",
    "lora_te_text_model_encoder_layers_1_mlp_fc2.alpha",
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight",
  ])
    assert.ok(keys.includes(k), `missing ${k}`);
  const md = adapter.metadata;
  assert.equal(md.ss_text_encoder_lr, "0.002");
  assert.equal(md.ss_unet_lr, "None");
  assert.equal(md.ss_learning_rate, "0.004");
  assert.equal(md.ss_network_train_unet_only, "False");

  // Logs: the text encoder's learning rate in metrics.jsonl and under kohya's TensorBoard tag.
  const metrics = readMetrics(join(out, "metrics.jsonl"));
  assert.ok(metrics.every((m) => m.lr_textencoder === 2e-3 && m.lr_unet === 4e-3));
  const tb = readdirSync(join(out, "logs")).find((f) => f.startsWith("events.out.tfevents"));
  assert.ok(tb);
  assert.ok(readFileSync(join(out, "logs", tb)).includes("lr/textencoder"));
  assert.equal(readdirSync(join(out, "samples")).length, 2);

  // Independent check of the file: inference text encoder + UNet with the adapter read back from disk.
  const [withLora, withoutLora] = await inferenceEvalLosses(config, adapter, [1, 0]);
  const lastEval = result.evalLosses.at(-1)?.loss ?? Number.NaN;
  assert.ok(
    Math.abs(withLora - lastEval) <= 1e-4 * lastEval,
    `file + inference TE/UNet: ${withLora}, trainer: ${lastEval}`,
  );
  assert.ok(Math.abs(withoutLora - result.evalLosses[0].loss) <= 1e-4 * withoutLora);
  removeDirs(data, out);
});

test("text_encoder_lr: 0 keeps the text-encoder LoRA at its initial value while the UNet LoRA moves", async () => {
  const data = tempDir("ls-te0-data-");
  await makeDataset(data, 2);
  const out = tempDir("ls-te0-out-");
  const config = tinyConfig(data, out, {
    max_train_steps: 4,
    save_steps: 2,
    train_text_encoder: true,
    text_encoder_lr: 0,
  });
  await train(config, fast);
  const early = await readAdapter(join(out, "tiny-step00000002.safetensors"));
  const final = await readAdapter(join(out, "tiny.safetensors"));
  assert.equal(final.metadata.ss_text_encoder_lr, "0.0");
  const byPath = new Map(early.modules.map((m) => [`${m.component}:${m.path}`, m]));
  let te = 0;
  let unetMoved = 0;
  for (const m of final.modules) {
    const e = byPath.get(`${m.component}:${m.path}`);
    assert.ok(e);
    if (m.component === "te") {
      te++;
      assert.ok(
        m.tensors.up.data.every((v) => v === 0),
        `${m.path}: lora_up left zero`,
      );
      assert.deepEqual(m.tensors.down.data, e.tensors.down.data, `${m.path}: lora_down changed`);
    } else if (m.tensors.up.data.some((v, i) => v !== e.tensors.up.data[i])) unetMoved++;
  }
  assert.equal(te, 12);
  assert.ok(unetMoved > 0, "no UNet module moved between step 2 and step 4");
  removeDirs(data, out);
});

test("train_text_encoder: resuming from a mid-run save gives the same per-step losses as the whole run", async () => {
  const data = tempDir("ls-te-resume-data-");
  await makeDataset(data, 3);
  const settings = {
    max_train_steps: 6,
    save_steps: 3,
    learning_rate: 2e-3,
    train_text_encoder: true,
    shuffle_caption: true,
    caption_dropout_rate: 0.25,
    gradient_checkpointing: true,
  };
  // The uninterrupted run; its step-3 training state is copied aside when saved (the file is rewritten at 6).
  const refOut = tempDir("ls-te-resume-ref-");
  const out = tempDir("ls-te-resume-");
  const step3 = join(out, "step3-state.safetensors");
  const reference = await train(tinyConfig(data, refOut, settings), {
    ...fast,
    onEvent: (e) => {
      if (e.type === "saved" && e.step === 3) copyFileSync(e.statePath, step3);
    },
  });
  const saved = await loadTrainState(step3);
  assert.equal(saved.record.step, 3);
  const names = [...saved.state.keys()];
  assert.ok(names.some((n) => n.startsWith("lora.te.text_model.encoder.layers.0.self_attn.q_proj.")));
  assert.ok(names.includes("optimizer.te.m") && names.includes("optimizer.unet.m"));
  const resumed = await train(tinyConfig(data, out, { ...settings, resume: step3 }), fast);
  assert.equal(resumed.losses.length, reference.losses.length);
  resumed.losses.forEach((l, i) => {
    const want = reference.losses[i];
    assert.ok(Math.abs(l - want) <= 1e-5 * Math.abs(want), `step ${i + 1}: ${l} vs ${want}`);
  });
  removeDirs(data, out, refOut);
});
