/**
 * txt2img through the real service on loopback, with the tiny SD1 fixture model:
 * - POST /api/generate needs the token; bad fields are refused with 400 naming each field;
 * - a job streams one "progress" event per sampler step over the websocket while /api/health keeps answering,
 *   writes PNGs whose `parameters` text (read with a chunk walker written here) is the WebUI infotext, and the
 *   pixels equal the engine's Txt2ImgPipeline run in this process for the same seed, LoRA and clip skip;
 * - `<lora:...>` names resolve in the service's Lora folder, unknown ones are reported;
 * - a second request reuses the cached model (no new sessions);
 * - GET /api/outputs refuses traversal, non-PNG names and symlinks out of the folder.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { lorasFromPrompt, SdModel, Txt2ImgPipeline, toRgb8 } from "@lora-studio/engine";
import sharp from "sharp";
import { modelCache } from "../src/generate/model-cache.ts";
import { call, connectWs, FIXTURE_LORA, FIXTURES, makeDirs, start, waitForJob } from "./support/service.ts";
import { makeTrainDataset, tinyTrainConfig } from "./support/train-fixture.ts";

const TINY_DIFFUSERS = join(FIXTURES, "tiny-sd1", "diffusers");

/** The text of a PNG's tEXt chunk `keyword` (Latin-1), walking the chunks by their lengths. */
function pngText(png: Buffer, keyword: string): string | undefined {
  assert.equal(png.toString("latin1", 1, 4), "PNG");
  for (let at = 8; at < png.length; ) {
    const len = png.readUInt32BE(at);
    const type = png.toString("latin1", at + 4, at + 8);
    if (type === "tEXt") {
      const data = png.subarray(at + 8, at + 8 + len);
      const nul = data.indexOf(0);
      if (data.toString("latin1", 0, nul) === keyword) return data.toString("latin1", nul + 1);
    }
    at += 12 + len;
  }
  return undefined;
}

test("txt2img job: progress per step, PNG infotext, pixels = Txt2ImgPipeline, cached sessions, path checks", async () => {
  const dirs = await makeDirs("ls-gen-");
  const svc = await start(dirs);
  const ws = await connectWs(svc.url, { token: svc.token });
  try {
    const request = {
      prompt: "a red fox <lora:tiny:0.8> <lora:nowhere:1>",
      negative_prompt: "blurry",
      steps: 3,
      cfg_scale: 6.5,
      sampler: "Euler a",
      seed: 1234,
      width: 32,
      height: 32,
      batch_size: 2,
      clip_skip: 2,
      base_model: TINY_DIFFUSERS,
    };
    // auth and validation
    assert.equal((await call({ url: svc.url }, "POST", "/api/generate", request)).status, 401);
    const bad = await call(svc, "POST", "/api/generate", {
      ...request,
      steps: 0,
      width: 30,
      sampler: "Nope",
      extra: 1,
    });
    assert.equal(bad.status, 400);
    for (const field of ["steps", "width", "sampler", "extra"])
      assert.match(String(bad.body.error), new RegExp(field));

    await ws.waitFor((m) => m.type === "hello");
    const r = await call(svc, "POST", "/api/generate", request);
    assert.equal(r.status, 202, r.body.error);
    const id = r.body.id as string;
    ws.send({ type: "subscribe", jobId: id, since: 0 });
    // the service answers while the job runs
    const health = await call(svc, "GET", "/api/health");
    assert.equal(health.status, 200);
    assert.ok((health.body.jobKinds as string[]).includes("txt2img"));
    const job = await waitForJob(svc, id, ["done", "failed", "cancelled"], 60000);
    assert.equal(job.state, "done", String(job.error));
    await ws.waitFor((m) => m.type === "event" && (m.event as { type: string }).type === "result");
    const events = ws.messages
      .filter((m) => m.type === "event" && (m.event as { jobId: string }).jobId === id)
      .map((m) => m.event as { type: string; data: Record<string, unknown> });
    const sampling = events.filter((e) => e.type === "progress" && e.data.label === "sampling");
    assert.deepEqual(
      sampling.map((e) => [e.data.done, e.data.total]),
      [
        [1, 3],
        [2, 3],
        [3, 3],
      ],
    );

    const result = job.result as {
      images: { file: string; seed: number; infotext: string }[];
      missingLoras: string[];
      loras: { name: string; te: number }[];
      loadedModel: boolean;
    };
    assert.deepEqual(result.missingLoras, ["nowhere"]);
    assert.deepEqual(
      result.loras.map((l) => [l.name, l.te]),
      [["tiny", 0.8]],
    );
    assert.deepEqual(
      result.images.map((i) => i.seed),
      [1234, 1235],
    );
    assert.match(result.images[0].file, /^txt2img\/\d{4}-\d{2}-\d{2}\/00000-1234\.png$/);
    assert.match(result.images[1].file, /\/00001-1235\.png$/);

    // the LoRA's addnet short hash (sha256 of the bytes after the safetensors header), as A1111 lists it
    const lora = await readFile(FIXTURE_LORA);
    const addnet = createHash("sha256")
      .update(lora.subarray(8 + Number(lora.readBigUInt64LE(0))))
      .digest("hex")
      .slice(0, 12);
    // the reference: the engine's pipeline in this process, same settings
    const model = await SdModel.open({ model: TINY_DIFFUSERS, worker: false, onMessage: () => {} });
    try {
      const pipe = new Txt2ImgPipeline(model);
      const loras = await lorasFromPrompt(request.prompt, { loraDir: dirs.loraDir });
      await pipe.setLoras(loras.stack);
      const want = await pipe.generate({
        prompt: loras.prompt,
        negative: "blurry",
        steps: 3,
        cfg: 6.5,
        sampler: "Euler a",
        seed: 1234,
        width: 32,
        height: 32,
        batch: 2,
        clipSkip: 2,
      });
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`${svc.url}/api/outputs/${result.images[i].file}`);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("content-type"), "image/png");
        const png = Buffer.from(await res.arrayBuffer());
        const infotext = pngText(png, "parameters");
        assert.equal(infotext, result.images[i].infotext);
        assert.equal(
          infotext,
          `a red fox <lora:tiny:0.8> <lora:nowhere:1>\nNegative prompt: blurry\n` +
            `Steps: 3, Sampler: Euler a, CFG scale: 6.5, Seed: ${1234 + i}, Size: 32x32, Model: diffusers, Clip skip: 2, Lora hashes: "tiny: ${addnet}"`,
        );
        const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
        assert.deepEqual([info.width, info.height, info.channels], [32, 32, 3]);
        assert.deepEqual(new Uint8Array(data), toRgb8(want.images, i, 32, 32), `image ${i} pixel-equal`);
      }
    } finally {
      await model.close();
    }

    // second request, same base and shapes: the cached sessions are reused, none is created
    const before = modelCache.sessionsCreated;
    const again = await call(svc, "POST", "/api/generate", { ...request, seed: 7 });
    const job2 = await waitForJob(svc, again.body.id as string, ["done", "failed"], 60000);
    assert.equal(job2.state, "done", String(job2.error));
    assert.equal((job2.result as { loadedModel: boolean }).loadedModel, false);
    assert.equal(modelCache.sessionsCreated, before);

    // outputs path checks
    await writeFile(join(dirs.dataDir, "secret.png"), "x");
    await symlink(join(dirs.dataDir, "secret.png"), join(dirs.dataDir, "outputs", "link.png"));
    for (const path of [
      "../secret.png",
      "txt2img/%2e%2e/%2e%2e/secret.png",
      "txt2img/..%2f..%2fsecret.png",
      "link.png",
      "../token",
    ]) {
      const res = await fetch(`${svc.url}/api/outputs/${path}`);
      assert.ok(res.status === 400 || res.status === 404, `${path}: ${res.status}`);
      assert.notEqual(await res.text(), "x");
    }
  } finally {
    ws.ws.close();
    await svc.close();
  }
});

test("a txt2img job cancels mid-sampling; a training job releases the cached model", async () => {
  const dirs = await makeDirs("ls-gen-cancel-");
  const svc = await start(dirs, { baseModel: TINY_DIFFUSERS });
  try {
    const long = await call(svc, "POST", "/api/generate", { prompt: "x", steps: 150, width: 64, height: 64 });
    assert.equal(long.status, 202, long.body.error);
    const id = long.body.id as string;
    const sampled = () =>
      svc.queue.store
        .eventsSince(id, 0)
        .some((e) => e.type === "progress" && (e.data as { label?: string }).label === "sampling");
    for (let t = Date.now(); !sampled(); ) {
      assert.ok(Date.now() - t < 30000, "no sampling progress");
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await call(svc, "POST", `/api/jobs/${id}/cancel`)).status, 200);
    const cancelled = await waitForJob(svc, id, ["cancelled", "done", "failed"]);
    assert.equal(cancelled.state, "cancelled");
    const steps = svc.queue.store.eventsSince(id, 0).filter((e) => e.type === "progress").length;
    assert.ok(steps < 150, `stopped early (${steps} progress events)`);

    // the next job waits for the cancelled one to leave the pipeline, then runs on the cached model
    const short = await call(svc, "POST", "/api/generate", { prompt: "y", steps: 2, width: 32, height: 32 });
    const done = await waitForJob(svc, short.body.id as string, ["done", "failed"]);
    assert.equal(done.state, "done", String(done.error));
    assert.equal(modelCache.base, TINY_DIFFUSERS);

    // a training job needs the memory: the cached model is closed when it starts
    await makeTrainDataset(join(dirs.dataDir, "datasets"), "squares", "sq", 1);
    const config = tinyTrainConfig({
      base_model: TINY_DIFFUSERS,
      train_data_dir: "squares",
      max_train_steps: 1,
    });
    const train = await call(svc, "POST", "/api/jobs", { kind: "train", params: { config } });
    assert.equal(train.status, 202, train.body.error);
    await waitForJob(svc, train.body.id as string, ["running", "done", "failed"]);
    for (let t = Date.now(); modelCache.base !== null; ) {
      assert.ok(Date.now() - t < 10000, "the cached model was not released");
      await new Promise((r) => setTimeout(r, 20));
    }
    await call(svc, "POST", `/api/jobs/${train.body.id}/cancel`);
  } finally {
    await svc.close();
  }
});
