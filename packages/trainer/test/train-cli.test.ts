/**
 * `pnpm train --dry-run` (the real CLI in a child process): prints the plan with the step arithmetic spelled out,
 * the skipped file with its reason, and a time and memory estimate from one measured step; writes no LoRA.
 * `--from-kohya` maps a kohya .toml (network_dim, train_batch_size, max_train_steps, ...) onto the same plan.
 * Config errors exit with code 2 and name the file, the key and a suggestion.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { makeDataset, removeDirs, TINY_DIFFUSERS, tempDir } from "./train.helpers.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", "packages/trainer/src/cli/train.ts", ...args], {
    cwd: REPO,
    encoding: "utf8",
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("train --dry-run prints the plan, the step arithmetic and a measured estimate; --from-kohya maps kohya keys", async () => {
  const dir = tempDir("ls-cli-");
  await makeDataset(join(dir, "data"), 3);
  writeFileSync(join(dir, "data", "2_inkwash", "broken.png"), "not a png");
  writeFileSync(
    join(dir, "cfg.yaml"),
    `train_data_dir: data\nbase_model: ${TINY_DIFFUSERS}\noutput_dir: out\nlora_rank: 4\nresolution: 64\nenable_bucket: false\nbatch_size: 2\nepochs: 5\n`,
  );
  const r = cli("--config", join(dir, "cfg.yaml"), "--dry-run", "--ort-opt", "disabled");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /images: 3 used, 1 skipped/);
  assert.match(r.stdout, /skipped 2_inkwash\/broken\.png: /);
  assert.match(
    r.stdout,
    /3 images x 2 repeats = 6 samples \/ batch 2 = 3 steps per epoch x 5 epochs = 15 steps/,
  );
  assert.match(r.stdout, /estimated time: \d+ s \(\d+\.\d\d s\/step\)/);
  assert.match(r.stdout, /estimated memory: \d+\.\d\d GiB/);
  assert.match(r.stdout, /one step measured on 64x64, batch 2/);
  assert.equal(existsSync(join(dir, "out", "lora.safetensors")), false);

  writeFileSync(
    join(dir, "kohya.toml"),
    [
      `pretrained_model_name_or_path = "${TINY_DIFFUSERS}"`,
      'train_data_dir = "data"',
      'output_dir = "out"',
      "network_dim = 4",
      "network_alpha = 2",
      "train_batch_size = 1",
      "max_train_steps = 7",
      'resolution = "64,64"',
      "enable_bucket = false",
      "xformers = true",
    ].join("\n"),
  );
  const k = cli(
    "--from-kohya",
    join(dir, "kohya.toml"),
    "--dry-run",
    "--no-measure",
    "--write",
    join(dir, "imported.yaml"),
  );
  assert.equal(k.code, 0, k.stderr);
  assert.match(k.stdout, /max_train_steps 7 decides the length/);
  assert.match(k.stdout, /estimated memory: \d+\.\d\d GiB/);
  assert.match(k.stdout, /upper bound from the 64x64 step graph/);
  assert.ok(existsSync(join(dir, "imported.yaml")));

  writeFileSync(join(dir, "bad.yaml"), `train_data_dir: data\nbase_model: x\nlora_rnak: 8\n`);
  const bad = cli("--config", join(dir, "bad.yaml"), "--dry-run");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /bad\.yaml:3:1: lora_rnak: unknown key \(did you mean "lora_rank"\?\)/);
  removeDirs(dir);
});
