import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fromKohya, kohyaImportToYaml } from "../src/config/kohya.ts";
import { parseConfig } from "../src/config/load.ts";

const TOML = `
[model_arguments]
pretrained_model_name_or_path = "models/v1-5-pruned.safetensors"
v2 = false

[additional_network_arguments]
network_module = "networks.lora"
network_dim = 32
network_alpha = 16.0
network_args = ["conv_dim=8", "conv_alpha=4"]
network_train_unet_only = true

[optimizer_arguments]
optimizer_type = "AdamW8bit"
learning_rate = 1e-4
unet_lr = 1e-4
lr_scheduler = "cosine_with_restarts"
lr_warmup_steps = 50
lr_scheduler_num_cycles = 3

[dataset_arguments]
train_data_dir = "data/train"
resolution = "512,768"
enable_bucket = true
min_bucket_reso = 256
max_bucket_reso = 1024
caption_extension = ".txt"
shuffle_caption = true
keep_tokens = 1
color_aug = true
flip_aug = false
cache_latents = true

[training_arguments]
output_dir = "out"
output_name = "my_style"
save_every_n_steps = 200
train_batch_size = 2
max_train_epochs = 10
max_train_steps = 1600
seed = 1234
clip_skip = 2
mixed_precision = "bf16"
gradient_checkpointing = true
gradient_accumulation_steps = 2
min_snr_gamma = 5.0
noise_offset = 0.05
xformers = true
some_future_option = 7
`;

test("a kohya .toml maps the common keys and reports everything it does not carry over", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kohya-"));
  const path = join(dir, "config.toml");
  await writeFile(path, TOML);
  const { config, reports } = await fromKohya(path);
  assert.equal(config.base_model, "models/v1-5-pruned.safetensors");
  assert.equal(config.lora_rank, 32);
  assert.equal(config.lora_alpha, 16);
  assert.equal(config.conv_rank, 8);
  assert.equal(config.conv_alpha, 4);
  assert.equal(config.train_text_encoder, false);
  assert.equal(config.optimizer, "AdamW");
  assert.equal(config.lr_scheduler, "cosine_with_restarts");
  assert.equal(config.lr_scheduler_num_cycles, 3);
  assert.deepEqual(config.resolution, [512, 768]);
  assert.equal(config.batch_size, 2);
  assert.equal(config.epochs, 10);
  assert.equal(config.max_train_steps, undefined, "max_train_epochs overrides max_train_steps in sd-scripts");
  assert.equal(config.save_steps, 200);
  assert.equal(config.mixed_precision, "no");
  assert.equal(config.clip_skip, 2);
  const kinds = Object.fromEntries(reports.map((r) => [r.key, r.kind]));
  assert.equal(kinds.optimizer_type, "converted");
  assert.equal(kinds.mixed_precision, "converted");
  assert.equal(kinds.max_train_steps, "converted");
  assert.equal(kinds.color_aug, "unsupported");
  assert.equal(kinds.xformers, "ignored");
  assert.equal(kinds.some_future_option, "unknown");
  assert.equal(kinds.network_module, undefined, "networks.lora is supported, so not reported");

  // The imported YAML loads as a valid config.
  const yaml = kohyaImportToYaml({ config, reports }, path);
  assert.match(yaml, /# unsupported: color_aug/);
  const loaded = parseConfig(yaml, join(dir, "imported.yaml"));
  assert.equal(loaded.lora_rank, 32);
  assert.equal(loaded.train_data_dir, join(dir, "data", "train"));
});

test("a lora-scripts GUI .json imports; lycoris is reported as unsupported", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kohya-"));
  const path = join(dir, "gui.json");
  await writeFile(
    path,
    JSON.stringify({
      model_train_type: "sd-lora",
      pretrained_model_name_or_path: "./sd15.safetensors",
      train_data_dir: "./train",
      resolution: "512,512",
      network_module: "lycoris.kohya",
      network_dim: 8,
      optimizer_type: "Prodigy",
      lr_scheduler: "polynomial",
      vae: "",
    }),
  );
  const { config, reports } = await fromKohya(path);
  assert.equal(config.resolution, 512);
  assert.equal(config.lora_rank, 8);
  assert.equal(config.lora_alpha, 1, "sd-scripts' default network_alpha is 1, not the rank");
  assert.equal(config.lr_scheduler, "linear");
  const byKey = new Map(reports.map((r) => [r.key, r]));
  assert.equal(byKey.get("network_module")?.kind, "unsupported");
  assert.match(byKey.get("network_module")!.message, /lycoris\.kohya/);
  assert.equal(byKey.get("optimizer_type")?.kind, "unsupported");
  assert.equal(byKey.get("model_train_type")?.kind, "ignored");
  assert.equal(byKey.has("vae"), false, "empty GUI fields are not settings");
});
