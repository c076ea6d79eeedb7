/**
 * fp32 weight cache: a 16-bit copy of tiny-sd1.safetensors (UNet fp16, text encoder bf16, VAE left float32) loads
 * through float32 cache files. Checked against independent routes: the graphs ORT runs with in-graph casts (the
 * old path) and prompt-lora's own dtype conversion of the source; the cache's life cycle (reuse without rewrite,
 * invalidation, corruption, concurrent builds in one and in two processes, the size cap) is checked on real files.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type DType, fromFloat32, openSafetensors, writeSafetensors } from "@lora-studio/prompt-lora";
import type { Graph } from "../src/graph/ir.ts";
import { isExternal } from "../src/graph/ir.ts";
import { buildClipTextGraph } from "../src/models/clip-text.ts";
import {
  type Checkpoint,
  type OpenCheckpointOptions,
  openCheckpoint,
} from "../src/models/loader/checkpoint.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { buildVaeDecoderGraph } from "../src/models/vae/autoencoder-kl.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";
import { f32, loadReference, runOnce, TINY_OPTIONS, TINY_SINGLE } from "./models.helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "fp32-cache-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Writes tiny-sd1 with the UNet in `unet` dtype, the text encoder in `te`, the VAE as stored (float32). */
async function halfCopy(path: string, unet: DType = "F16", te: DType = "BF16", scale = 1): Promise<void> {
  const src = await openSafetensors(TINY_SINGLE);
  const dtypeOf = (name: string): DType =>
    name.startsWith("model.diffusion_model.") ? unet : name.startsWith("cond_stage_model.") ? te : "F32";
  await writeSafetensors(
    path,
    [...src.tensors.values()].map((t) => {
      const dtype = t.dtype === "F32" ? dtypeOf(t.name) : t.dtype;
      return {
        name: t.name,
        dtype,
        shape: t.shape,
        data: async () =>
          t.dtype === "F32"
            ? fromFloat32(
                (await src.readFloat32(t.name)).map((v) => v * scale),
                dtype,
              )
            : await src.readRaw(t.name),
      };
    }),
  );
  await src.close();
}

function cacheOptions(dir: string, messages: string[] = [], extra: object = {}): OpenCheckpointOptions {
  return { ...TINY_OPTIONS, fp32Cache: { dir, onMessage: (m) => messages.push(m), ...extra } };
}

function fileId(path: string): string {
  // Milliseconds: marking a use rewrites mtime through utimes, which takes seconds as a double (~0.2 µs steps).
  const st = statSync(path, { bigint: true });
  return `${st.ino}:${st.mtimeNs / 1_000_000n}`;
}

interface Inputs {
  unet: Record<string, HostTensor>;
  te: Record<string, HostTensor>;
  vae: Record<string, HostTensor>;
  unetShape: { batch: number; height: number; width: number };
  teBatch: number;
  vaeShape: { batch: number; height: number; width: number };
}
let inputs: Inputs;
const half = join(tmp, "tiny-half.safetensors");

before(async () => {
  await halfCopy(half);
  const u = await loadReference("04_unet");
  const [n, c, h, w] = u.shape("sample");
  const t = await loadReference("02_text_encoder");
  const v = await loadReference("03_vae");
  const lat = v.shape("decode_latents_8");
  inputs = {
    unet: {
      sample: f32([n, c, h, w], u.f32("sample")),
      timestep: { dtype: "int64", shape: [n], data: u.int64("timesteps") },
      encoder_hidden_states: f32(u.shape("encoder_hidden_states"), u.f32("encoder_hidden_states")),
    },
    unetShape: { batch: n, height: h, width: w },
    te: {
      input_ids: {
        dtype: "int64",
        shape: t.shape("last_hidden_state").slice(0, 2),
        data: t.int64("input_ids"),
      },
    },
    teBatch: t.shape("last_hidden_state")[0],
    vae: { latents: f32(lat, v.f32("decode_latents_8")) },
    vaeShape: { batch: lat[0], height: lat[2], width: lat[3] },
  };
});

function graphs(ck: Checkpoint): Record<"unet" | "te" | "vae", Graph> {
  return {
    unet: buildUNetGraph(ck.unet, ck.weights.unet, { ...inputs.unetShape, timestepDType: "int64" }).graph,
    te: buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: inputs.teBatch }).graph,
    vae: buildVaeDecoderGraph(ck.vae, ck.weights.vae, inputs.vaeShape).graph,
  };
}

async function outputs(ck: Checkpoint): Promise<Record<string, Float32Array>> {
  const g = graphs(ck);
  const out: Record<string, Float32Array> = {};
  for (const k of ["unet", "te", "vae"] as const) {
    const r = await runOnce(g[k], inputs[k]);
    for (const [name, t] of Object.entries(r)) out[`${k}.${name}`] = t.data as Float32Array;
  }
  return out;
}

test("outputs through the fp32 cache equal the in-graph-cast outputs; graphs hold no 16-bit weights or Casts", async () => {
  const dir = join(tmp, "c1");
  const messages: string[] = [];
  const cached = await openCheckpoint(half, cacheOptions(dir, messages));
  assert.deepEqual(cached.fp32Cache.map((e) => [e.component, e.built]).sort(), [
    ["text_encoder", true],
    ["unet", true],
  ]);
  assert.equal(messages.length, 4);
  assert.match(
    messages[0],
    /fp32 weight cache: converting (unet|text_encoder) of .* to float32 \(first use; /,
  );
  assert.match(
    messages.filter((m) => m.includes(": converted "))[0],
    /fp32 weight cache: converted .*: [\d.]+ MiB in .* holds [\d.]+ MiB \(cap 20\.00 GiB\)/,
  );
  const g = graphs(cached);
  for (const k of ["unet", "te"] as const) {
    const refs = g[k].initializers.filter((v) => v.tensor && isExternal(v.tensor));
    assert.ok(refs.length > 0);
    for (const v of refs) {
      assert.equal(v.dtype, "float32");
      assert.ok((v.tensor as { path: string }).path.startsWith(dir), `${v.name} not from the cache`);
    }
    assert.ok(!g[k].nodes.some((n) => n.op === "Cast" && n.inputs.some((i) => i?.kind === "initializer")));
  }
  // The all-float32 VAE is referenced in place.
  assert.ok(g.vae.initializers.every((v) => !v.tensor || !isExternal(v.tensor) || v.tensor.path === half));

  const viaCache = await outputs(cached);
  // Only the UNet/text encoder/VAE decoder were built: usage is still reported against the checkpoint's keys.
  const unused = cached.unused().map((u) => u.file);
  assert.ok(unused.every((f) => f === half));
  await cached.close();

  const inPlace = await openCheckpoint(half, { ...TINY_OPTIONS, fp32Cache: false });
  assert.equal(inPlace.fp32Cache.length, 0);
  const gOld = graphs(inPlace);
  assert.ok(gOld.unet.initializers.some((v) => v.dtype === "float16"));
  assert.ok(gOld.te.initializers.some((v) => v.dtype === "bfloat16"));
  const viaCasts = await outputs(inPlace);
  await inPlace.close();

  assert.deepEqual(Object.keys(viaCache).sort(), Object.keys(viaCasts).sort());
  for (const [name, a] of Object.entries(viaCache)) {
    const b = viaCasts[name];
    let worst = 0;
    for (let i = 0; i < a.length; i++)
      worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
    assert.ok(worst <= 1e-6, `${name}: cache vs casts differ by ${worst}`);
  }
});

test("cached tensors are the source values converted exactly (checked by prompt-lora's own conversion)", async () => {
  const dir = join(tmp, "c1");
  const ck = await openCheckpoint(half, cacheOptions(dir));
  const src = await openSafetensors(half);
  for (const e of ck.fp32Cache) {
    const cache = await openSafetensors(e.path);
    for (const t of cache.tensors.values()) {
      assert.equal(t.dtype, "F32");
      assert.deepEqual(await cache.readFloat32(t.name), await src.readFloat32(t.name), t.name);
    }
    // 64-byte alignment of the data area and of all 64-byte-multiple tensors.
    for (const t of cache.tensors.values())
      if (t.byteLength % 64 === 0) assert.equal(t.fileOffset % 64, 0, t.name);
    await cache.close();
  }
  await src.close();
  await ck.close();
});

test("a second load reuses the cache without rewriting it; touching or rewriting the checkpoint rebuilds it", async () => {
  const dir = join(tmp, "c2");
  const path = join(tmp, "reuse.safetensors");
  await halfCopy(path);
  const first = await openCheckpoint(path, cacheOptions(dir));
  const unetCache = first.fp32Cache.find((e) => e.component === "unet")!.path;
  await first.close();
  const before = fileId(unetCache);

  const messages: string[] = [];
  const second = await openCheckpoint(path, cacheOptions(dir, messages));
  assert.ok(second.fp32Cache.every((e) => !e.built));
  assert.equal(messages.length, 0);
  assert.equal(fileId(unetCache), before);
  await second.close();

  const later = new Date(Date.now() + 5000);
  utimesSync(path, later, later);
  const touched = await openCheckpoint(path, cacheOptions(dir));
  const e = touched.fp32Cache.find((x) => x.component === "unet")!;
  assert.ok(e.built);
  assert.match(e.reason ?? "", /checkpoint changed \(source_mtime_ns/);
  assert.notEqual(fileId(unetCache), before);
  await touched.close();

  // New contents (every weight doubled): the cache must hold the new values.
  await halfCopy(path, "F16", "BF16", 2);
  const rewritten = await openCheckpoint(path, cacheOptions(dir));
  assert.ok(rewritten.fp32Cache.every((x) => x.built));
  const cache = await openSafetensors(unetCache);
  const src = await openSafetensors(path);
  const orig = await openSafetensors(TINY_SINGLE);
  const key = "model.diffusion_model.input_blocks.0.0.weight";
  const got = await cache.readFloat32(key);
  assert.deepEqual(got, await src.readFloat32(key));
  const o = await orig.readFloat32(key);
  assert.ok(got.some((v, i) => v !== 0 && Math.abs(v / o[i] - 2) < 1e-2));
  for (const f of [cache, src, orig]) await f.close();
  await rewritten.close();
});

test("truncated, corrupt-header and corrupt-data cache files are rebuilt, never used", async () => {
  const dir = join(tmp, "c3");
  const ck = await openCheckpoint(half, cacheOptions(dir));
  const e = ck.fp32Cache.find((x) => x.component === "unet")!;
  await ck.close();
  const damage: [string, (p: string) => Promise<void>, "sample" | "full", RegExp][] = [
    ["truncated", async (p) => truncateSync(p, statSync(p).size - 100), "sample", /unreadable/],
    ["header", async (p) => patch(p, 20, "#"), "sample", /unreadable/],
    [
      "first tensor data",
      async (p) => patch(p, await firstDataByte(p), "\u00ff\u00ff\u00ff\u00ff"),
      "sample",
      /checksum/,
    ],
    [
      "mid-tensor data",
      async (p) => patch(p, await midLargest(p), "\u00ff\u00ff\u00ff\u00ff"),
      "full",
      /data checksum/,
    ],
  ];
  for (const [what, hurt, verify, why] of damage) {
    await hurt(e.path);
    const again = await openCheckpoint(half, cacheOptions(dir, [], { verify }));
    const x = again.fp32Cache.find((y) => y.component === "unet")!;
    assert.ok(x.built, `${what}: not rebuilt`);
    assert.match(x.reason ?? "", why, what);
    await again.close();
    const ok = await openCheckpoint(half, cacheOptions(dir, [], { verify: "full" }));
    assert.ok(
      ok.fp32Cache.every((y) => !y.built),
      `${what}: rebuilt file not accepted`,
    );
    await ok.close();
  }
});

async function patch(path: string, at: number, bytes: string): Promise<void> {
  const fh = await open(path, "r+");
  await fh.write(Buffer.from(bytes, "latin1"), 0, bytes.length, at);
  await fh.close();
}

async function firstDataByte(path: string): Promise<number> {
  const f = await openSafetensors(path);
  await f.close();
  return f.dataStart;
}

async function midLargest(path: string): Promise<number> {
  const f = await openSafetensors(path);
  await f.close();
  const big = [...f.tensors.values()].sort((a, b) => b.byteLength - a.byteLength)[0];
  assert.ok(big.byteLength > 3 * 4096 + 8, "the test needs a tensor larger than the sampled blocks");
  return big.fileOffset + Math.floor(big.byteLength / 2);
}

test("concurrent loads share one build (in one process) and never corrupt the cache (two processes)", async () => {
  const dir = join(tmp, "c4");
  const messages: string[] = [];
  const [a, b] = await Promise.all([
    openCheckpoint(half, cacheOptions(dir, messages)),
    openCheckpoint(half, cacheOptions(dir, messages)),
  ]);
  assert.equal(messages.filter((m) => m.includes(": converted ")).length, 2, "one conversion per component");
  assert.equal(messages.length, 4);
  await Promise.all([a.close(), b.close()]);

  const dir2 = join(tmp, "c5");
  const child = fileURLToPath(new URL("./support/fp32-cache-child.ts", import.meta.url));
  const run = () =>
    new Promise<{ entries: { built: boolean }[]; messages: string[] }>((resolve, reject) => {
      const p = spawn(process.execPath, ["--import", "tsx", child, half, dir2], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      p.stdout.on("data", (d) => (out += d));
      p.stderr.on("data", (d) => (err += d));
      p.on("close", (code) => {
        const line = out.split("\n").find((l) => l.startsWith("RESULT "));
        if (code !== 0 || !line) reject(new Error(`child failed (${code}): ${err.slice(-1000)}`));
        else resolve(JSON.parse(line.slice(7)));
      });
    });
  const results = await Promise.all([run(), run()]);
  const builds = results.flatMap((r) => r.entries).filter((e) => e.built).length;
  assert.equal(builds, 2, "each component converted once across both processes (build lock)");
  assert.deepEqual(
    readdirSync(dir2).filter((f) => f.includes(".tmp-") || f.endsWith(".lock")),
    [],
    "temp or lock files left behind",
  );
  const check = await openCheckpoint(half, cacheOptions(dir2, [], { verify: "full" }));
  assert.ok(check.fp32Cache.length === 2 && check.fp32Cache.every((e) => !e.built));
  await check.close();
});

test("a stale lock and a dead build's temp file are cleaned up; the size cap evicts least recently used files", async () => {
  const dir = join(tmp, "c6");
  const one = await openCheckpoint(half, cacheOptions(dir));
  const size = one.fp32Cache.reduce((n, e) => n + e.bytes, 0);
  const oldFiles = one.fp32Cache.map((e) => e.path);
  await one.close();

  const other = join(tmp, "other.safetensors");
  await halfCopy(other, "F16", "F16");
  // A lock left by a process that no longer exists, and the temp file of its killed build.
  const deadPid = 2 ** 22 + 12345;
  const probe = await openCheckpoint(other, cacheOptions(join(tmp, "probe")));
  const names = probe.fp32Cache.map((e) => e.path.split("/").pop()!);
  await probe.close();
  writeFileSync(join(dir, `${names[0]}.lock`), JSON.stringify({ pid: deadPid, host: hostname() }));
  writeFileSync(join(dir, `.${names[0]}.tmp-${deadPid}-abcdef`), "partial");

  const messages: string[] = [];
  const two = await openCheckpoint(other, cacheOptions(dir, messages, { maxBytes: size + 1024 }));
  assert.ok(two.fp32Cache.every((e) => e.built));
  const left = readdirSync(dir);
  assert.ok(!left.some((f) => f.includes(".tmp-") || f.endsWith(".lock")), left.join(", "));
  for (const p of oldFiles) assert.ok(!left.includes(p.split("/").pop()!), `${p} not evicted`);
  assert.ok(messages.some((m) => /removed .* least recently used/.test(m)));
  await two.close();
});

test("fp32Cache: false and LORA_STUDIO_FP32_CACHE=0 keep 16-bit weights in place; float32 checkpoints need no cache", async () => {
  const dir = join(tmp, "c7");
  process.env.LORA_STUDIO_FP32_CACHE = "0";
  try {
    const ck = await openCheckpoint(half, { ...TINY_OPTIONS, fp32Cache: undefined });
    assert.equal(ck.fp32Cache.length, 0);
    await ck.close();
  } finally {
    delete process.env.LORA_STUDIO_FP32_CACHE;
  }
  const fp32 = await openCheckpoint(TINY_SINGLE, cacheOptions(dir));
  assert.equal(fp32.fp32Cache.length, 0);
  await fp32.close();
  assert.throws(() => statSync(dir), "no cache folder for a float32 checkpoint");
});

test("caches of checkpoints that no longer exist are removed at the next build", async () => {
  const dir = join(tmp, "c8");
  const gone = join(tmp, "gone.safetensors");
  await halfCopy(gone);
  const a = await openCheckpoint(gone, cacheOptions(dir));
  const orphans = a.fp32Cache.map((e) => e.path.split("/").pop()!);
  await a.close();
  rmSync(gone);
  const b = await openCheckpoint(half, cacheOptions(dir, [], { maxBytes: Number.POSITIVE_INFINITY }));
  const left = readdirSync(dir);
  for (const o of orphans) assert.ok(!left.includes(o), `${o} kept`);
  assert.equal(left.length, 2);
  await b.close();
});
