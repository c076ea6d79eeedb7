import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { listWebuiLoras } from "../src/bridge/webui.ts";
import { startA1111Host } from "./support/a1111-host.ts";
import { builtExtension, call, connectWs, makeDirs, start, waitForJob } from "./support/service.ts";

test("a LoRA written by a job into the host's models/Lora shows in GET /sdapi/v1/loras after the service's refresh", async () => {
  const dirs = await makeDirs();
  const host = await startA1111Host({
    webuiDir: join(dirs.root, "webui"),
    extensionDir: await builtExtension(),
  });
  const svc = await start(dirs, { webuiUrl: host.url });
  try {
    const before = await listWebuiLoras(host.url);
    assert.deepEqual(
      before.map((l) => l.name),
      ["tiny", "tiny-b"],
    );
    await call(svc, "PUT", "/api/lora/user-metadata", {
      path: "tiny-b.safetensors",
      metadata: { "activation text": "tinytrigger" },
    });
    const ws = await connectWs(svc.url, { token: svc.token });
    const r = await call(svc, "POST", "/api/lora/merge", {
      inputs: [{ path: "tiny-b.safetensors", te: 0.7 }],
      output: "studio/hot",
      rank: 4,
    });
    assert.equal(r.status, 202, r.body.error);
    const job = await waitForJob(svc, r.body.id as string, ["done", "failed"]);
    assert.equal(job.state, "done", String(job.error));
    assert.equal(host.refreshCount(), 1);
    const afterList = await listWebuiLoras(host.url);
    const hot = afterList.find((l) => l.name === "hot");
    assert.ok(hot, JSON.stringify(afterList.map((l) => l.name)));
    assert.equal(hot.alias, "hot");
    assert.equal(hot.path, join(dirs.loraDir, "studio", "hot.safetensors"));
    assert.equal(hot.metadata.ss_output_name, "hot");
    const side = JSON.parse(await readFile(join(dirs.loraDir, "studio", "hot.json"), "utf8"));
    assert.equal(side["activation text"], "tinytrigger");
    // the page is told too
    const changed = await ws.waitFor((m) => m.type === "library-changed");
    assert.deepEqual(changed.files, ["studio/hot.safetensors"]);
    ws.ws.close();
  } finally {
    await svc.close();
    await host.close();
  }
});

test("when the WebUI does not answer, the job still succeeds and its log says why the refresh failed", async () => {
  const dirs = await makeDirs();
  const svc = await start(dirs, { webuiUrl: "http://127.0.0.1:9" });
  try {
    const r = await call(svc, "POST", "/api/lora/merge", {
      inputs: [{ path: "tiny-b.safetensors" }],
      output: "cold",
    });
    const job = await waitForJob(svc, r.body.id as string, ["done", "failed"]);
    assert.equal(job.state, "done");
    const logs = svc.queue.store.eventsSince(job.id as string, 0).filter((e) => e.type === "log");
    assert.ok(
      logs.some((e) =>
        /hot-load: POST .*refresh-loras/.test(String((e.data as { message: string }).message)),
      ),
    );
  } finally {
    await svc.close();
  }
});
