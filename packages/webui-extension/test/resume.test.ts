import assert from "node:assert/strict";
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import type { JobEvent } from "../src/jobs/store.ts";
import type { Service } from "../src/server/serve.ts";
import { call, type Dirs, FIXTURE_LORA, makeDirs, start, waitForJob } from "./support/service.ts";

const COPIES = 150;

async function bigLibrary(): Promise<Dirs> {
  const dirs = await makeDirs();
  await mkdir(join(dirs.loraDir, "bulk"));
  for (let i = 0; i < COPIES; i++)
    await copyFile(
      FIXTURE_LORA,
      join(dirs.loraDir, "bulk", `copy-${String(i).padStart(3, "0")}.safetensors`),
    );
  return dirs;
}

function firstProgress(svc: Service, id: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (ev: JobEvent) => {
      if (ev.jobId === id && ev.type === "progress") {
        svc.queue.events.off("event", on);
        resolve();
      }
    };
    svc.queue.events.on("event", on);
  });
}

interface Result {
  files: number;
  analyzed: number;
  resumedFrom: number;
}

test("a resumable job pauses at a checkpoint and resumes where it stopped", async () => {
  const dirs = await bigLibrary();
  const svc = await start(dirs);
  try {
    const r = await call(svc, "POST", "/api/jobs", { kind: "library-index" });
    assert.equal(r.status, 202, r.body.error);
    const id = r.body.id as string;
    await firstProgress(svc, id);
    assert.equal((await call(svc, "POST", `/api/jobs/${id}/pause`)).status, 200);
    await waitForJob(svc, id, ["paused"]);
    const checkpoint = svc.queue.store.get(id)?.checkpoint as { done: string[] } | undefined;
    const k = checkpoint?.done.length ?? 0;
    assert.ok(k >= 1 && k < COPIES + 2, `checkpoint holds ${k} files`);
    assert.equal((await call(svc, "POST", `/api/jobs/${id}/resume`)).status, 200);
    const job = await waitForJob(svc, id, ["done", "failed"]);
    assert.equal(job.state, "done", String(job.error));
    const result = job.result as Result;
    assert.deepEqual(result, { files: COPIES + 2, analyzed: COPIES + 2 - k, resumedFrom: k, unreadable: 0 });
    // the index is complete: a listing opens no file
    const list = await call(svc, "GET", "/api/lora");
    assert.deepEqual(list.body.stats, { files: COPIES + 2, fromCache: COPIES + 2, analyzed: 0 });
    const states = svc.queue.store
      .eventsSince(id, 0)
      .filter((e) => e.type === "state")
      .map((e) => (e.data as { state: string }).state);
    assert.deepEqual(states, ["queued", "running", "paused", "queued", "running", "done"]);
  } finally {
    await svc.close();
  }
});

test("a resumable job interrupted by a service stop resumes from its checkpoint at the next start", async () => {
  const dirs = await bigLibrary();
  let svc = await start(dirs);
  const r = await call(svc, "POST", "/api/jobs", { kind: "library-index" });
  const id = r.body.id as string;
  await firstProgress(svc, id);
  await svc.close();
  svc = await start(dirs);
  try {
    const job = await waitForJob(svc, id, ["done", "failed"]);
    assert.equal(job.state, "done", String(job.error));
    const result = job.result as Result;
    assert.ok(result.resumedFrom >= 1, `resumed from ${result.resumedFrom}`);
    assert.equal(result.files, COPIES + 2);
    const logs = svc.queue.store.eventsSince(id, 0).filter((e) => e.type === "log");
    assert.ok(logs.some((e) => /^resuming: \d+ of 152 files/.test((e.data as { message: string }).message)));
  } finally {
    await svc.close();
  }
});

test("cancelling a running job stops it between two items and marks it cancelled", async () => {
  const dirs = await bigLibrary();
  const svc = await start(dirs);
  try {
    const r = await call(svc, "POST", "/api/jobs", { kind: "library-index" });
    const id = r.body.id as string;
    await firstProgress(svc, id);
    assert.equal((await call(svc, "POST", `/api/jobs/${id}/cancel`)).status, 200);
    const job = await waitForJob(svc, id, ["cancelled", "done", "failed"]);
    assert.equal(job.state, "cancelled");
    assert.equal((await call(svc, "POST", `/api/jobs/${id}/resume`)).status, 409);
    assert.equal((await call(svc, "POST", `/api/jobs/${id}/cancel`)).status, 409);
  } finally {
    await svc.close();
  }
});
