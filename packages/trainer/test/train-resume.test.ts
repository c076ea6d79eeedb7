/**
 * Resume gives the losses of an uninterrupted run:
 *  - a real `pnpm train` child process is killed with SIGKILL right after its step-4 save; resuming from its output
 *    folder continues to step 16, and all 16 per-step losses equal the uninterrupted run's (the first 4 come back
 *    from the saved history and also match the child's metrics.jsonl, which holds each step once afterwards);
 *  - a run in a worker thread paused from outside (trainInWorker().pause()) saves, stops, and resumes the same way.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { readMetrics } from "../src/logging/metrics.ts";
import { loadTrainState } from "../src/train/checkpoint.ts";
import { train } from "../src/train/train.ts";
import { trainInWorker } from "../src/train/worker.ts";
import { makeDataset, removeDirs, TINY_DIFFUSERS, tempDir, tinyConfig } from "./train.helpers.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const STEPS = 16;

function assertSameLosses(got: number[], want: number[], what: string) {
  assert.equal(got.length, want.length, `${what}: ${got.length} losses, expected ${want.length}`);
  got.forEach((l, i) => {
    assert.ok(
      Math.abs(l - want[i]) <= 1e-5 * Math.abs(want[i]),
      `${what}: step ${i + 1} loss ${l} vs ${want[i]}`,
    );
  });
}

test("kill -9 after a save, then resume: the same per-step losses as an uninterrupted run", async () => {
  const data = tempDir("ls-resume-data-");
  await makeDataset(data, 3);
  const settings = {
    max_train_steps: STEPS,
    save_steps: 4,
    learning_rate: 2e-3,
    flip_aug: true,
    noise_offset: 0.05,
  };

  const fast = { graphOptimization: "disabled" } as const; // short runs: session creation dominates
  const refOut = tempDir("ls-resume-ref-");
  const reference = await train(tinyConfig(data, refOut, settings), fast);
  assert.equal(reference.losses.length, STEPS);

  // The child: the CLI on a YAML file with the same settings, killed as soon as it reports the step-4 save.
  const dir = tempDir("ls-resume-kill-");
  const out = join(dir, "out");
  const yaml = [
    `train_data_dir: ${data}`,
    `base_model: ${TINY_DIFFUSERS}`,
    `output_dir: ${out}`,
    "output_name: tiny",
    "lora_rank: 4",
    "resolution: 64",
    "enable_bucket: false",
    "batch_size: 1",
    "seed: 1234",
    "save_precision: float",
    ...Object.entries(settings).map(([k, v]) => `${k}: ${v}`),
  ].join("\n");
  writeFileSync(join(dir, "cfg.yaml"), `${yaml}\n`);
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "packages/trainer/src/cli/train.ts", "--config", join(dir, "cfg.yaml")],
    {
      cwd: REPO,
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  const killed = await new Promise<NodeJS.Signals | null>((resolve) => {
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (/saved step 4:/.test(stderr) && child.exitCode === null) child.kill("SIGKILL");
    });
    child.on("exit", (_code, signal) => resolve(signal));
  });
  assert.equal(killed, "SIGKILL", `the child was not killed mid-run:\n${stderr}`);
  const saved = await loadTrainState(join(out, "tiny-state.safetensors"));
  assert.equal(saved.record.step, 4, "the kill landed before the step-8 save");
  assertSameLosses(
    readMetrics(join(out, "metrics.jsonl"))
      .slice(0, 4)
      .map((m) => m.loss),
    reference.losses.slice(0, 4),
    "child before the kill",
  );

  const resumed = await train(tinyConfig(data, out, { ...settings, resume: out }), fast);
  assert.equal(resumed.status, "done");
  assertSameLosses(resumed.losses, reference.losses, "resumed after SIGKILL");
  const logged = readMetrics(join(out, "metrics.jsonl"));
  assert.deepEqual(
    logged.map((m) => m.step),
    Array.from({ length: STEPS }, (_, i) => i + 1),
    "metrics.jsonl: each step once (lines the killed run wrote after its save are replaced)",
  );
  assertSameLosses(
    logged.map((m) => m.loss),
    reference.losses,
    "metrics.jsonl after resume",
  );

  // Pause from outside a worker-thread run, then resume in-process.
  const wOut = tempDir("ls-resume-worker-");
  let pausedAt = 0;
  const w = trainInWorker(tinyConfig(data, wOut, settings), {
    ...fast,
    onEvent: (e) => {
      if (e.type === "step" && e.step === 3) {
        pausedAt = e.step;
        w.pause();
      }
    },
  });
  const paused = await w.done;
  assert.equal(paused.status, "paused");
  assert.ok(paused.step >= pausedAt && paused.step < STEPS, `paused at ${paused.step}`);
  const continued = await train(tinyConfig(data, wOut, { ...settings, resume: wOut }), fast);
  assertSameLosses(continued.losses, reference.losses, "resumed after pause");
  removeDirs(data, dir, wOut, refOut);
});
