/**
 * The Train form's ETA sources through POST /api/train/plan on the real service: earlier training jobs of the
 * same model and step shape ("estimated from N previous runs", the median of their speeds), the same model at
 * another size scaled by pixels ("rough estimate"), and nothing to go by (null). The jobs are real rows of the
 * service's SQLite store with the metric events a training job persists; the expected figures are computed here
 * from the it/s values written.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import type { Service } from "../src/server/serve.ts";
import { call, makeDirs, start } from "./support/service.ts";
import { makeTrainDataset, TINY_DIFFUSERS } from "./support/train-fixture.ts";

/** A finished training job as the store keeps it: its resolved config and its last metric event. */
function pastRun(svc: Service, config: Record<string, unknown>, itPerSec: number): void {
  const job = svc.queue.store.create("train", { config });
  svc.queue.store.appendEvent(job.id, "metric", { step: 10, totalSteps: 10, itPerSec });
  svc.queue.store.update(job.id, { state: "done" });
}

test("plan ETA: from N previous runs of the same shape, rough from another size, none without runs", async () => {
  const dirs = await makeDirs("ls-eta-");
  const svc = await start(dirs);
  try {
    const datasets = join(dirs.dataDir, "datasets");
    await makeTrainDataset(datasets, "squares", "sqstyle", 3);
    const form = {
      train_data_dir: "squares",
      base_model: TINY_DIFFUSERS,
      resolution: 64,
      enable_bucket: false,
    };
    const plan = async () => {
      const r = await call(svc, "POST", "/api/train/plan", { yaml: JSON.stringify({ ...form, epochs: 2 }) });
      assert.equal(r.status, 200, r.body.error);
      assert.equal(r.body.totalSteps, 6); // 3 images x 1 repeat x 2 epochs
      return r.body.eta as {
        source: string;
        secondsPerStep: number;
        etaSeconds: number;
        text: string;
      } | null;
    };
    assert.equal(await plan(), null);

    // a run of the same model at 128 px: 4x the pixels of 64 px, 2 it/s there -> 0.5 s/step / 4 here
    const resolved = (over: Record<string, unknown>) => ({
      base_model: TINY_DIFFUSERS,
      resolution: [64, 64],
      batch_size: 1,
      lora_rank: 8,
      gradient_accumulation_steps: 1,
      gradient_checkpointing: false,
      execution_provider: "cpu",
      mixed_precision: "no",
      train_text_encoder: false,
      ...over,
    });
    pastRun(svc, resolved({ resolution: [128, 128] }), 2);
    const rough = await plan();
    assert.equal(rough?.source, "rough");
    assert.ok(Math.abs((rough?.secondsPerStep ?? 0) - 0.5 / 4) < 1e-12);
    assert.ok(Math.abs((rough?.etaSeconds ?? 0) - 6 * 0.125) < 1e-12);
    assert.match(rough?.text ?? "", /^rough estimate/);

    // three runs of this very shape at 4, 5 and 10 it/s: the median speed, 0.2 s/step
    for (const speed of [4, 10, 5]) pastRun(svc, resolved({}), speed);
    pastRun(svc, resolved({ lora_rank: 64 }), 1); // another rank: not the same step
    const history = await plan();
    assert.equal(history?.source, "history");
    assert.ok(Math.abs((history?.secondsPerStep ?? 0) - 0.2) < 1e-12);
    assert.ok(Math.abs((history?.etaSeconds ?? 0) - 1.2) < 1e-12);
    assert.match(history?.text ?? "", /^estimated from 3 previous runs/);
  } finally {
    await svc.close();
  }
});

test("a train-estimate job takes the training job's loader options, and names a bad one", async () => {
  const dirs = await makeDirs("ls-eta-model-");
  const svc = await start(dirs);
  try {
    await makeTrainDataset(join(dirs.dataDir, "datasets"), "squares", "sqstyle", 2);
    const config = {
      train_data_dir: "squares",
      base_model: TINY_DIFFUSERS,
      resolution: 64,
      enable_bucket: false,
    };
    const bad = await call(svc, "POST", "/api/jobs", {
      kind: "train-estimate",
      params: { config, model: { unet_heads: [2, 0] } },
    });
    assert.equal(bad.status, 400);
    assert.match(String(bad.body.error), /train-estimate.*model\.unet_heads\[1\] must be a positive integer/);
    const wrongType = await call(svc, "POST", "/api/jobs", {
      kind: "train-estimate",
      params: { config, model: { prediction_type: "x0" } },
    });
    assert.match(String(wrongType.body.error), /model\.prediction_type must be epsilon or v_prediction/);
    const good = await call(svc, "POST", "/api/jobs", {
      kind: "train-estimate",
      params: { config, model: { prediction_type: "v_prediction" } },
    });
    assert.equal(good.status, 202, good.body.error);
    assert.deepEqual(svc.queue.store.get(good.body.id as string)?.params, {
      ...(svc.queue.store.get(good.body.id as string)?.params as object),
      checkpointOptions: { predictionType: "v_prediction" },
    });
    await call(svc, "POST", `/api/jobs/${good.body.id}/cancel`);
  } finally {
    await svc.close();
  }
});
