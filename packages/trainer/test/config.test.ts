import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError, editDistance, suggest } from "../src/config/errors.ts";
import { loadConfig } from "../src/config/load.ts";
import { CONFIG_KEYS } from "../src/config/schema.ts";
import { targetModulePredicate } from "../src/config/targets.ts";

async function writeConfig(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cfg-"));
  const path = join(dir, "my_style.yaml");
  await writeFile(path, text);
  return path;
}

async function configError(text: string): Promise<{ err: ConfigError; path: string }> {
  const path = await writeConfig(text);
  try {
    await loadConfig(path);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    return { err, path };
  }
  assert.fail("loadConfig accepted an invalid config");
}

test("a tutorial-style config resolves paths against the config folder and fills defaults", async () => {
  const path = await writeConfig(
    [
      "train_data_dir: ./images",
      "base_model: ../models/tiny-sd1.safetensors",
      "lora_rank: 16",
      'target_modules: ["to_q", "to_v"]',
      "batch_size: 2",
      "epochs: 5",
      "learning_rate: 1.0e-4",
      "output_dir: out",
      'resolution: "512,768"',
      "optimizer: adamw",
      "caption_extension: caption",
    ].join("\n"),
  );
  const dir = join(path, "..");
  const c = await loadConfig(path);
  assert.equal(c.train_data_dir, join(dir, "images"));
  assert.equal(c.base_model, join(dir, "..", "models", "tiny-sd1.safetensors"));
  assert.equal(c.output_dir, join(dir, "out"));
  assert.equal(c.lora_alpha, 16, "lora_alpha defaults to lora_rank");
  assert.deepEqual(c.resolution, [512, 768]);
  assert.equal(c.optimizer, "AdamW");
  assert.equal(c.caption_extension, ".caption");
  assert.equal(c.learning_rate, 1e-4);
  assert.equal(c.config_path, path);
});

test("an unknown key names the file, the line and suggests the right key", async () => {
  const { err, path } = await configError(
    ["train_data_dir: imgs", "base_model: m.safetensors", "learning_rte: 0.0001", "lora_rank: 8"].join("\n"),
  );
  assert.equal(err.issues.length, 1);
  const issue = err.issues[0];
  assert.equal(issue.keyPath, "learning_rte");
  assert.equal(issue.line, 3);
  assert.equal(issue.column, 1);
  assert.match(issue.message, /did you mean "learning_rate"\?/);
  assert.ok(err.message.startsWith(`${path}:3:1: learning_rte:`), err.message);
});

test("a wrong type reports the value's line and column and the key path", async () => {
  const { err } = await configError(
    ["train_data_dir: imgs", "base_model: m.safetensors", "", "lora_rank:   eight", "epochs: 3"].join("\n"),
  );
  assert.equal(err.issues[0].keyPath, "lora_rank");
  assert.equal(err.issues[0].line, 4);
  assert.equal(err.issues[0].column, 14);
  assert.match(err.message, /:4:14: lora_rank: .*number/i);
});

test("nested values point at the list item; several issues are reported together", async () => {
  const { err } = await configError(
    [
      "train_data_dir: imgs",
      "base_model: m.safetensors",
      "target_modules:",
      "  - to_q",
      "  - 5",
      "optimizer: adamx",
      "batchsize: 2",
    ].join("\n"),
  );
  const byKey = new Map(err.issues.map((i) => [i.keyPath, i]));
  assert.equal(byKey.get("target_modules[1]")?.line, 5);
  assert.equal(byKey.get("optimizer")?.line, 6);
  assert.match(byKey.get("optimizer")!.message, /did you mean "AdamW"/);
  assert.deepEqual(
    err.issues.map((i) => i.line),
    [5, 6, 7],
    "issues come in file order",
  );
  assert.match(byKey.get("batchsize")!.message, /did you mean "batch_size"/);
});

test("missing required keys, YAML syntax errors and cross-field rules are reported", async () => {
  const missing = await configError("lora_rank: 4\n");
  assert.deepEqual(missing.err.issues.map((i) => i.keyPath).sort(), ["base_model", "train_data_dir"]);
  const syntax = await configError("train_data_dir: [a, b\nbase_model: x\n");
  assert.ok(syntax.err.issues[0].line !== undefined);
  assert.match(syntax.err.message, /YAML syntax/);
  const cross = await configError(
    "train_data_dir: d\nbase_model: m\nmin_bucket_reso: 2048\nmax_bucket_reso: 1024\n",
  );
  assert.equal(cross.err.issues[0].keyPath, "min_bucket_reso");
  assert.equal(cross.err.issues[0].line, 3);
});

test("sample_prompts may be a file, read relative to the config", async () => {
  const path = await writeConfig("train_data_dir: d\nbase_model: m\nsample_prompts: prompts.txt\n");
  await writeFile(join(path, "..", "prompts.txt"), "# comment\nink wash mountain\n\n  a crane, ink wash  \n");
  const c = await loadConfig(path);
  assert.deepEqual(c.sample_prompts, ["ink wash mountain", "a crane, ink wash"]);
});

test("did-you-mean: edit distance and the typo limit", () => {
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(suggest("lora_rnak", CONFIG_KEYS), "lora_rank");
  assert.equal(suggest("train-data-dir", CONFIG_KEYS), "train_data_dir");
  assert.equal(suggest("completely_different", CONFIG_KEYS), undefined);
});

test("target_modules match whole trailing path segments", () => {
  const p = targetModulePredicate(["to_q", "to_out.0", "/attn2\\.to_k$/"]);
  assert.equal(p("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"), true);
  assert.equal(p("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0"), true);
  assert.equal(p("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q_extra"), false);
  assert.equal(p("mid_block.attentions.0.transformer_blocks.0.attn2.to_k"), true);
  assert.equal(p("mid_block.attentions.0.transformer_blocks.0.attn1.to_k"), false);
  assert.equal(p("xto_q"), false);
});

test("execution_provider takes the engine's providers, auto included, and names the choices otherwise", async () => {
  for (const p of ["cpu", "cuda", "tensorrt", "webgpu", "auto", "CUDA"]) {
    const config = await loadConfig(
      await writeConfig(`train_data_dir: imgs\nbase_model: m.safetensors\nexecution_provider: ${p}\n`),
    );
    assert.equal(config.execution_provider, p.toLowerCase());
  }
  const { err } = await configError(
    "train_data_dir: imgs\nbase_model: m.safetensors\nexecution_provider: dml\n",
  );
  assert.equal(err.issues[0].keyPath, "execution_provider");
  assert.match(err.message, /:3:\d+: execution_provider: .*cpu.*cuda.*tensorrt.*webgpu.*auto/);
});
