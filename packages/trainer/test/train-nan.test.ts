/**
 * A diverging run (learning_rate 1e6) stops at the first NaN/Inf loss with a NonFiniteLossError that names the
 * step and the last good checkpoint and suggests the fixes; the checkpoint saved before (step 1) is intact and
 * finite, and nothing was saved for the bad step.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readAdapter } from "@lora-studio/prompt-lora";
import { loadTrainState } from "../src/train/checkpoint.ts";
import { NonFiniteLossError, type TrainEvent } from "../src/train/events.ts";
import { train } from "../src/train/train.ts";
import { makeDataset, removeDirs, tempDir, tinyConfig } from "./train.helpers.ts";

test("NaN loss stops the run, keeps the last good checkpoint and says what to change", async () => {
  const data = tempDir("ls-nan-data-");
  await makeDataset(data, 2);
  const out = tempDir("ls-nan-out-");
  const events: TrainEvent[] = [];
  const config = tinyConfig(data, out, { learning_rate: 1e6, save_steps: 1, max_train_steps: 20 });
  await assert.rejects(train(config, { onEvent: (e) => events.push(e) }), (err: unknown) => {
    assert.ok(err instanceof NonFiniteLossError);
    assert.ok(err.step >= 2 && err.step < 20, `diverged at step ${err.step}`);
    assert.match(err.message, /lower learning_rate/);
    assert.match(err.message, /fp32/);
    assert.equal(
      err.lastCheckpoint,
      join(out, `tiny-step${String(err.step - 1).padStart(8, "0")}.safetensors`),
    );
    return true;
  });
  const error = events.find((e) => e.type === "error");
  assert.ok(error && error.type === "error" && /became (NaN|Infinity|-Infinity)/.test(error.message));
  const saved = events.filter((e) => e.type === "saved");
  const lastGood = saved.at(-1);
  assert.ok(lastGood && lastGood.type === "saved");
  const state = await loadTrainState(join(out, "tiny-state.safetensors"));
  assert.equal(state.record.step, lastGood.step);
  for (const [name, t] of state.state) {
    if (t.data instanceof Float32Array)
      assert.ok(t.data.every(Number.isFinite), `${name} is not finite in the kept state`);
  }
  const lora = await readAdapter(lastGood.loraPath);
  assert.ok(lora.modules.every((m) => m.tensors.up.data.every(Number.isFinite)));
  assert.equal(existsSync(join(out, "tiny.safetensors")), false, "no final LoRA after a diverged run");
  assert.equal(
    readdirSync(out).filter((f) => /^tiny-step\d+\.safetensors$/.test(f)).length,
    lastGood.step,
    "one LoRA per good step, none for the bad one",
  );
  removeDirs(data, out);
});
