import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { moduleDelta, readAdapter } from "@lora-studio/prompt-lora";
import { JobStore } from "../src/jobs/store.ts";
import { call, connectWs, FIXTURE_LORA, makeDirs, start, waitForJob } from "./support/service.ts";

interface Ev {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

test("a lora-merge job writes the exact weighted sum, its sidecar, and contiguous persisted events", async () => {
  const dirs = await makeDirs();
  const svc = await start(dirs);
  try {
    const r = await call(svc, "POST", "/api/lora/merge", {
      inputs: [
        { path: "style/tiny.safetensors", te: 0.5, unet: 0.25 },
        { path: "tiny-b.safetensors", te: 1, unet: 1 },
      ],
      output: "merged/sum",
      dtype: "F32",
    });
    assert.equal(r.status, 202, r.body.error);
    const job = await waitForJob(svc, r.body.id as string, ["done", "failed"]);
    assert.equal(job.state, "done", String(job.error));
    const events = svc.queue.store.eventsSince(job.id as string, 0);
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_, i) => i + 1),
    );
    assert.deepEqual(
      events.map((e) => e.type).filter((t) => t === "state"),
      ["state", "state", "state"],
    );
    assert.ok(events.some((e) => e.type === "progress"));
    // independent check: every module's delta is (w_a + w_b) times the fixture's delta
    const fixture = await readAdapter(FIXTURE_LORA);
    const merged = await readAdapter(join(dirs.loraDir, "merged", "sum.safetensors"));
    assert.equal(merged.modules.length, fixture.modules.length);
    for (const m of fixture.modules) {
      const got = merged.modules.find((x) => x.component === m.component && x.path === m.path);
      assert.ok(got, m.path);
      const w = m.component === "unet" ? 1.25 : 1.5;
      const want = moduleDelta(m, w).data;
      const have = moduleDelta(got).data;
      let err = 0;
      let norm = 0;
      for (let i = 0; i < want.length; i++) {
        err = Math.max(err, Math.abs(want[i] - have[i]));
        norm = Math.max(norm, Math.abs(want[i]));
      }
      assert.ok(err <= 1e-5 * norm + 1e-7, `${m.path}: ${err} vs ${norm}`);
    }
    const side = JSON.parse(await readFile(join(dirs.loraDir, "merged", "sum.json"), "utf8"));
    assert.equal(side["preferred weight"], 1);
    assert.equal(side["sd version"], "SD1");
    // an existing output is refused before queueing
    const again = await call(svc, "POST", "/api/lora/merge", {
      inputs: [{ path: "tiny-b.safetensors" }],
      output: "merged/sum",
    });
    assert.equal(again.status, 400);
    assert.match(again.body.error ?? "", /already exists/);
  } finally {
    await svc.close();
  }
});

test("a job running when the service stops is re-queued at the next start and finishes; history survives", async () => {
  const dirs = await makeDirs();
  let svc = await start(dirs);
  const r = await call(svc, "POST", "/api/lora/merge", {
    inputs: [{ path: "tiny-b.safetensors" }],
    output: "resized",
    rank: 2,
  });
  assert.equal(r.status, 202, r.body.error);
  const id = r.body.id as string;
  assert.equal(svc.queue.store.get(id)?.state, "running");
  const seqBefore = svc.queue.store.get(id)?.lastSeq ?? 0;
  await svc.close(); // the worker is killed mid-job, as in a crash
  const store = new JobStore(dirs.dataDir);
  assert.equal(store.get(id)?.state, "running");
  store.close();

  svc = await start(dirs);
  try {
    const job = await waitForJob(svc, id, ["done", "failed"]);
    assert.equal(job.state, "done", String(job.error));
    const events = svc.queue.store.eventsSince(id, 0);
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_, i) => i + 1),
    );
    const requeued = events.find((e) => e.seq > seqBefore && e.type === "state");
    assert.deepEqual(requeued?.data, {
      state: "queued",
      reason: "the service restarted while this job was running",
    });
    const list = await call(svc, "GET", "/api/jobs");
    assert.ok((list.body.jobs as Array<{ id: string }>).some((j) => j.id === id));
    const resized = await readAdapter(join(dirs.loraDir, "resized.safetensors"));
    assert.ok(resized.modules.every((m) => m.tensors.down.shape[0] <= 2));
  } finally {
    await svc.close();
  }
});

test("a reconnecting client gets exactly the events it missed (since), and 50 clients get the same stream", async () => {
  const dirs = await makeDirs();
  const svc = await start(dirs);
  try {
    const clients = await Promise.all(
      Array.from({ length: 50 }, () => connectWs(svc.url, { token: svc.token })),
    );
    await Promise.all(clients.map((c) => c.waitFor((m) => m.type === "hello")));
    const r = await call(svc, "POST", "/api/lora/merge", {
      inputs: [{ path: "style/tiny.safetensors" }, { path: "tiny-b.safetensors" }],
      output: "fifty",
      rank: 3,
    });
    assert.equal(r.status, 202, r.body.error);
    const id = r.body.id as string;
    // some subscribe at once, the others a little later: the replay must fill the gap for them
    for (const [i, c] of clients.entries()) {
      if (i % 2 === 1) await new Promise((res) => setTimeout(res, 5));
      c.send({ type: "subscribe", jobId: id, since: 0 });
    }
    const isDone = (m: Record<string, unknown>) =>
      m.type === "event" && (m.event as Ev).type === "state" && (m.event as Ev).data.state === "done";
    await Promise.all(clients.map((c) => c.waitFor(isDone, 60000)));
    const persisted = svc.queue.store.eventsSince(id, 0);
    const streams = clients.map((c) =>
      c.messages.filter((m) => m.type === "event").map((m) => m.event as Ev),
    );
    for (const s of streams) assert.deepEqual(s, JSON.parse(JSON.stringify(persisted)));

    // reconnect: a client that saw up to seq k gets k+1..n, nothing twice
    const k = Math.floor(persisted.length / 2);
    clients[0].ws.close();
    const again = await connectWs(svc.url, { token: svc.token });
    again.send({ type: "subscribe", jobId: id, since: k });
    const sub = await again.waitFor((m) => m.type === "subscribed");
    assert.equal(sub.lastSeq, persisted.length);
    const replay = again.messages.filter((m) => m.type === "event").map((m) => (m.event as Ev).seq);
    assert.deepEqual(
      replay,
      persisted.slice(k).map((e) => e.seq),
    );
    // and over HTTP too
    const http = await call(svc, "GET", `/api/jobs/${id}/events?since=${k}`);
    assert.deepEqual(
      (http.body.events as Ev[]).map((e) => e.seq),
      replay,
    );
    for (const c of [...clients, again]) c.ws.close();
  } finally {
    await svc.close();
  }
});

test("queued jobs pause, resume and cancel; a non-resumable running job refuses pause", async () => {
  const dirs = await makeDirs();
  const svc = await start(dirs);
  try {
    const a = await call(svc, "POST", "/api/lora/merge", {
      inputs: [{ path: "tiny-b.safetensors" }],
      output: "a",
      rank: 2,
    });
    const b = await call(svc, "POST", "/api/lora/merge", {
      inputs: [{ path: "tiny-b.safetensors" }],
      output: "b",
      rank: 2,
    });
    const c = await call(svc, "POST", "/api/lora/merge", {
      inputs: [{ path: "tiny-b.safetensors" }],
      output: "c",
      rank: 2,
    });
    // concurrency 1: a runs, b and c wait
    assert.equal(svc.queue.store.get(b.body.id as string)?.state, "queued");
    const p = await call(svc, "POST", `/api/jobs/${a.body.id}/pause`);
    assert.equal(p.status, 409);
    assert.match(p.body.error ?? "", /cannot pause/);
    assert.equal((await call(svc, "POST", `/api/jobs/${b.body.id}/pause`)).body.state, "paused");
    assert.equal((await call(svc, "POST", `/api/jobs/${c.body.id}/cancel`)).body.state, "cancelled");
    await waitForJob(svc, a.body.id as string, ["done"]);
    assert.equal(svc.queue.store.get(b.body.id as string)?.state, "paused");
    assert.equal((await call(svc, "POST", `/api/jobs/${b.body.id}/resume`)).status, 200);
    await waitForJob(svc, b.body.id as string, ["done"]);
    assert.equal((await call(svc, "POST", `/api/jobs/${c.body.id}/resume`)).status, 409);
    assert.equal((await call(svc, "POST", "/api/jobs", { kind: "nope" })).status, 400);
    // a train job without a config: the trainer's own message, at submit
    const train = await call(svc, "POST", "/api/jobs", { kind: "train", params: {} });
    assert.equal(train.status, 400);
    assert.match(train.body.error ?? "", /config must be YAML text or an object/);
  } finally {
    await svc.close();
  }
});
