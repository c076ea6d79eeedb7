/**
 * Cancel terminates a running job's worker at once (not after its current step); pause is announced at once
 * and takes effect after the current step. Real service on loopback, the real trainer on the tiny fixture model,
 * saving after every step so that a cancel can land in the middle of a write: afterwards no temp file of the
 * atomic writer is left anywhere and every file under a final name is whole.
 */
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { openSafetensors } from "@lora-studio/prompt-lora";
import { parseTempName } from "../src/jobs/leftovers.ts";
import type { JobEvent } from "../src/jobs/store.ts";
import type { Service } from "../src/server/serve.ts";
import { call, makeDirs, start, waitForJob } from "./support/service.ts";
import {
  CLIP_TOKENIZER,
  makeTrainDataset,
  TINY_SINGLE_MODEL,
  tinyTrainConfig,
} from "./support/train-fixture.ts";

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

/** Resolves with the first event of `id` matching `pred` (persisted ones first). */
function nextEvent(svc: Service, id: string, pred: (e: JobEvent) => boolean): Promise<JobEvent> {
  const seen = svc.queue.store.eventsSince(id, 0).find(pred);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const on = (e: JobEvent) => {
      if (e.jobId === id && pred(e)) {
        svc.queue.events.off("event", on);
        resolve(e);
      }
    };
    svc.queue.events.on("event", on);
  });
}

const step = (e: JobEvent) => (e.data as { step: number }).step;

async function submit(svc: Service, name: string): Promise<string> {
  const r = await call(svc, "POST", "/api/jobs", {
    kind: "train",
    params: {
      config: tinyTrainConfig({
        train_data_dir: "squares",
        output_name: name,
        max_train_steps: 400,
        save_steps: 1,
        cache_latents_to_disk: true,
      }),
      model: TINY_SINGLE_MODEL,
      graph_optimization: "disabled",
    },
  });
  assert.equal(r.status, 202, r.body.error);
  return r.body.id as string;
}

test("cancel terminates a training mid-step: cancelled at once, no temp files, every output whole", async () => {
  const dirs = await makeDirs("ls-cancel-");
  const svc = await start(dirs, { clipTokenizerDir: CLIP_TOKENIZER });
  try {
    await makeTrainDataset(join(dirs.dataDir, "datasets"), "squares", "sqstyle", 2);
    // Cancelled half a step after step 3's event: inside step 4 or its save (the setup before the first step
    // takes most of a run on this model, so one run keeps the test short).
    for (const [n, fraction] of [0.5].entries()) {
      const id = await submit(svc, `cancelled${n}`);
      const third = await nextEvent(svc, id, (e) => e.type === "metric" && step(e) >= 3);
      const perStep = 1000 / Number((third.data as { itPerSec: number }).itPerSec);
      await new Promise((r) => setTimeout(r, fraction * perStep));
      const t0 = performance.now();
      const r = await call(svc, "POST", `/api/jobs/${id}/cancel`);
      const took = performance.now() - t0;
      assert.equal(r.status, 200, r.body.error);
      // the answer already says cancelled: the worker is gone, not asked to stop after its step
      assert.equal(r.body.state, "cancelled");
      assert.ok(took < 5000, `cancel took ${took.toFixed(0)} ms`);
      const events = svc.queue.store.eventsSince(id, 0);
      const stopAt = events.findIndex((e) => e.type === "stop-requested");
      assert.ok(stopAt > 0);
      assert.deepEqual(events[stopAt].data, { reason: "cancel" });
      const laterSteps = events.slice(stopAt).filter((e) => e.type === "metric");
      assert.deepEqual(laterSteps, [], "no step is reported after the cancel");
      const job = await waitForJob(svc, id, ["cancelled"], 1000);
      assert.equal(job.state, "cancelled");
    }
    // the service is alive and answering
    assert.equal((await call(svc, "GET", "/api/health")).status, 200);
    const files = [...(await walk(dirs.dataDir)), ...(await walk(dirs.loraDir))];
    const temps = files.filter((f) => parseTempName(f.split("/").at(-1) ?? "") !== null);
    assert.deepEqual(temps, [], "no temp file of an interrupted write is left");
    // every LoRA/state file under its final name is whole: prompt-lora's reader refuses a file whose tensors
    // do not tile its data area exactly (a truncated file)
    const tensors = files.filter((f) => f.endsWith(".safetensors") && f.includes(join("data", "runs")));
    assert.ok(tensors.length >= 4, `saved files: ${tensors.length}`);
    for (const f of tensors) {
      const st = await openSafetensors(f);
      assert.ok(st.tensors.size > 0, f);
      await st.close();
    }
    // nothing was hot-loaded for the cancelled runs' final names
    assert.ok(!files.some((f) => /lora-studio\/cancelled\d\.safetensors$/.test(f)));
  } finally {
    await svc.close();
  }
});
