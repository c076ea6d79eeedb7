/**
 * Optimized-model cache (src/runtime/optimized-cache.ts) on the tiny UNet read through the fp32 weight cache:
 * the first session stores ORT's optimized graph, later ones load it with optimizations disabled, and outputs are
 * bit-identical to a session optimized from scratch every time (in-process and through the worker). A damaged
 * entry or changed weights mean a rebuild, never a wrong model; the opt-outs turn it off.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fromFloat32, openSafetensors, writeSafetensors } from "@lora-studio/prompt-lora";
import type { Graph } from "../src/graph/ir.ts";
import { type Checkpoint, openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { trimOptimizedModels } from "../src/runtime/optimized-cache.ts";
import { cpuPlan, prepareModelFile, Session, type SessionOptions } from "../src/runtime/session.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";
import { WorkerSession } from "../src/runtime/worker-session.ts";
import { f32, loadReference, TINY_OPTIONS, TINY_SINGLE } from "./models.helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "ort-opt-cache-test-"));
const dir = join(tmp, "weights");
let ck: Checkpoint;
let graph: Graph;
let feeds: Record<string, HostTensor>;
let reference: Float32Array;

/** tiny-sd1 with the UNet in float16, so its graph reads fp32 weight-cache files. */
async function halfUNetCopy(path: string): Promise<void> {
  const src = await openSafetensors(TINY_SINGLE);
  await writeSafetensors(
    path,
    [...src.tensors.values()].map((t) => {
      const half = t.dtype === "F32" && t.name.startsWith("model.diffusion_model.");
      return {
        name: t.name,
        dtype: half ? "F16" : t.dtype,
        shape: t.shape,
        data: async () =>
          half ? fromFloat32(await src.readFloat32(t.name), "F16") : await src.readRaw(t.name),
      };
    }),
  );
  await src.close();
}

const entries = () => readdirSync(dir).filter((n) => n.startsWith("ort-opt-") && n.endsWith(".json"));

async function run(
  opts: SessionOptions = {},
  worker = false,
): Promise<{ out: Float32Array; messages: string[] }> {
  const messages: string[] = [];
  // Each message as "<level>: <text>" (the engine's default level is "warn").
  const o = { ...opts, onMessage: (m: string, level?: string) => messages.push(`${level ?? "warn"}: ${m}`) };
  const s = worker ? await WorkerSession.create(graph, o) : await Session.create(graph, o);
  const r = await s.run(feeds);
  await s.release();
  return { out: r[Object.keys(r)[0]].data as Float32Array, messages };
}

async function plan(opts: SessionOptions = {}) {
  const file = await prepareModelFile(graph, opts, () => {});
  try {
    return await cpuPlan(graph, file, opts, () => {});
  } finally {
    await file.cleanup();
  }
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

before(async () => {
  const half = join(tmp, "tiny-half.safetensors");
  await halfUNetCopy(half);
  ck = await openCheckpoint(half, { ...TINY_OPTIONS, fp32Cache: { dir, onMessage: () => {} } });
  const u = await loadReference("04_unet");
  const [n, c, h, w] = u.shape("sample");
  graph = buildUNetGraph(ck.unet, ck.weights.unet, {
    batch: n,
    height: h,
    width: w,
    timestepDType: "int64",
  }).graph;
  feeds = {
    sample: f32([n, c, h, w], u.f32("sample")),
    timestep: { dtype: "int64", shape: [n], data: u.int64("timesteps") },
    encoder_hidden_states: f32(u.shape("encoder_hidden_states"), u.f32("encoder_hidden_states")),
  };
  reference = (await run({ optimizedModelCache: false })).out;
});

after(async () => {
  await ck?.close();
  rmSync(tmp, { recursive: true, force: true });
});

test("stores on first use, then loads the stored model; outputs bit-identical to optimizing anew", async () => {
  assert.equal(entries().length, 0, "optimizedModelCache: false stores nothing");
  const first = await run();
  assert.ok(
    // The tiny UNet's entry is a few MiB: "debug", left out by hosts unless LORA_STUDIO_VERBOSE=1.
    first.messages.some((m) => /^debug: lora-studio: optimized-model cache: stored /.test(m)),
    first.messages.join("\n"),
  );
  assert.equal(entries().length, 1);
  const manifest = JSON.parse(readFileSync(join(dir, entries()[0]), "utf8"));
  assert.ok(manifest.blobs.length > 0, "NCHWc reordered some conv weights into blobs");
  assert.equal((await plan())?.hit, true);
  const second = await run();
  assert.deepEqual(second.messages, []);
  const inWorker = await run({}, true);
  for (const r of [first, second, inWorker]) assert.ok(bits(r.out).equals(bits(reference)));
  // Nothing left behind but the entry, its model and blobs (no temp files, no ORT data file).
  assert.deepEqual(
    readdirSync(dir).filter(
      (n) => n.startsWith("ort-opt-") && !/\.(json|onnx)$/.test(n) && n !== "ort-opt-blobs",
    ),
    [],
  );
});

test("a damaged blob or changed weights mean a rebuild, never a wrong model", async () => {
  await run();
  const manifest = JSON.parse(readFileSync(join(dir, entries()[0]), "utf8"));
  const blob = join(dir, manifest.blobs[0].file);
  const bytes = readFileSync(blob);
  bytes[0] ^= 0xff;
  writeFileSync(blob, bytes);
  assert.equal((await plan())?.hit, false);
  assert.equal(entries().length, 0, "the bad entry is removed");
  const rebuilt = await run();
  assert.ok(rebuilt.messages.some((m) => m.includes("stored")));
  assert.ok(bits(rebuilt.out).equals(bits(reference)));
  assert.equal((await plan())?.hit, true);

  // The fp32 cache file rewritten (new mtime): a new key; storing it trims the entry that names the old file.
  const weights = readdirSync(dir).find((n) => n.endsWith(".f32.safetensors"))!;
  const st = statSync(join(dir, weights));
  utimesSync(join(dir, weights), st.atime, new Date(st.mtimeMs + 5000));
  const old = entries();
  assert.equal((await plan())?.hit, false);
  const after = await run();
  assert.ok(bits(after.out).equals(bits(reference)));
  assert.equal(entries().length, 1);
  assert.notDeepEqual(entries(), old);
});

test("opt-outs: the session option, the environment variable, other levels and providers", async () => {
  assert.equal(await plan({ optimizedModelCache: false }), undefined);
  assert.equal(await plan({ graphOptimizationLevel: "extended" }), undefined);
  assert.equal(await plan({ executionProvider: "webgpu" }), undefined);
  process.env.LORA_STUDIO_ORT_CACHE = "0";
  try {
    assert.equal(await plan(), undefined);
  } finally {
    delete process.env.LORA_STUDIO_ORT_CACHE;
  }
  assert.notEqual(await plan(), undefined);
});

test("`auto` that ends on the CPU goes through the cache too, in-process and in the worker", async (t) => {
  for (const name of entries()) rmSync(join(dir, name));
  const first = await run({ executionProvider: "auto" });
  if (!first.messages.some((m) => /"auto" is using cpu/.test(m))) {
    t.skip("a GPU provider loaded here: auto did not fall back to the CPU");
    return;
  }
  assert.ok(
    first.messages.some((m) => /optimized-model cache: stored /.test(m)),
    first.messages.join("\n"),
  );
  const inWorker = await run({ executionProvider: "auto" }, true);
  assert.ok(!inWorker.messages.some((m) => m.includes("stored")), "the worker loads the stored model");
  assert.equal(
    inWorker.messages.filter((m) => m.startsWith('warn: lora-studio: execution provider "auto" is using cpu'))
      .length,
    1,
  );
  for (const r of [first, inWorker]) assert.ok(bits(r.out).equals(bits(reference)));
});

test("the fp32 cache's size cap counts the optimized models, and evicts them with their weights", async () => {
  if (entries().length === 0) await run();
  assert.equal(entries().length, 1);
  const optimized = await trimOptimizedModels(dir);
  const weightFiles = () => readdirSync(dir).filter((n) => n.endsWith(".f32.safetensors"));
  assert.equal(weightFiles().length, 1);
  const weightBytes = statSync(join(dir, weightFiles()[0])).size;
  assert.ok(optimized > weightBytes / 10, `optimized models hold ${optimized} bytes`);

  // A second checkpoint of the same shapes: its weights fit under the cap only if the optimized models of the
  // first (now closed, so least recently used and evictable) are counted and go with the first's weights.
  await ck.close();
  const other = join(tmp, "other-half.safetensors");
  await halfUNetCopy(other);
  const messages: string[] = [];
  ck = await openCheckpoint(other, {
    ...TINY_OPTIONS,
    fp32Cache: {
      dir,
      onMessage: (m, level) => messages.push(`${level}: ${m}`),
      maxBytes: 2 * weightBytes + optimized / 2,
    },
  });
  assert.equal(weightFiles().length, 1, messages.join("\n"));
  assert.equal(entries().length, 0, "the evicted weights' optimized model went with them");
  assert.ok(
    messages.some((m) => /^info: .*removed .* least recently used\) and .* of its optimized models/.test(m)),
    messages.join("\n"),
  );
});
