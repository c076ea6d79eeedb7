/**
 * `execution_provider: auto` is settled before the run builds anything (engine resolveExecutionProvider): on a
 * machine without the CUDA build or a Vulkan loader the run says once that auto uses the CPU, treats fp16 as a
 * CPU run would (warns, trains in float32), and trains to the same losses as `execution_provider: cpu`.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { unavailableReason } from "@lora-studio/engine";
import type { TrainEvent } from "../src/train/events.ts";
import { train } from "../src/train/train.ts";
import { makeDataset, removeDirs, tempDir, tinyConfig } from "./train.helpers.ts";

test("auto on a CPU-only machine: one fallback line, fp16 refused as on cpu, the same losses as cpu", async (t) => {
  if (unavailableReason("cuda") === undefined || unavailableReason("webgpu") === undefined) {
    t.skip("a GPU provider may load here");
    return;
  }
  const data = tempDir("ls-provider-data-");
  await makeDataset(data, 2);
  const run = async (provider: "auto" | "cpu") => {
    const out = tempDir("ls-provider-out-");
    const events: TrainEvent[] = [];
    const config = tinyConfig(data, out, {
      execution_provider: provider,
      mixed_precision: "fp16",
      max_train_steps: 3,
      threads: 1,
    });
    await train(config, { onEvent: (e) => events.push(e) });
    removeDirs(out);
    const logs = events.flatMap((e) => (e.type === "log" ? [e] : []));
    const losses = events.flatMap((e) => (e.type === "step" ? [e.loss] : []));
    return { logs, losses };
  };
  const auto = await run("auto");
  const cpu = await run("cpu");
  const fallback = auto.logs.filter((l) => l.message.includes('"auto" is using cpu'));
  assert.equal(fallback.length, 1, "said once (this file is its own process)");
  assert.equal(fallback[0].level, "warn");
  const fp16 = auto.logs.find((l) => l.message.startsWith("mixed_precision: fp16"));
  assert.ok(fp16 && fp16.level === "warn" && /on cpu training runs in fp32/.test(fp16.message));
  assert.equal(auto.losses.length, 3);
  assert.deepEqual(auto.losses, cpu.losses, "auto settled on cpu trains exactly as cpu");
  removeDirs(data);
});
