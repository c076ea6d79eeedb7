import assert from "node:assert/strict";
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import { gather, gemm } from "../src/graph/ops/index.ts";
import { writeModelFile } from "../src/onnx/model-file.ts";
import { type SafetensorsTensorRef, safetensorsExternal } from "../src/onnx/safetensors-ref.ts";
import { Session } from "../src/runtime/session.ts";
import { assertClose, rng } from "./graph-ops.helpers.ts";

const fixture = new URL("../../../../shared/fixtures/tiny-sd1/tiny-sd1.safetensors", import.meta.url)
  .pathname;
const FC1 = "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"; // F32 [64, 32]
const TOKENS = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"; // F32 [49408, 32]
const quiet = { onMessage: () => {} };

/** Independent header parse (8-byte LE length + JSON), so the test does not rely on the code under test. */
async function headerOf(path: string): Promise<{ refs: Map<string, SafetensorsTensorRef>; bytes: Buffer }> {
  const bytes = await readFile(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const json = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  const refs = new Map<string, SafetensorsTensorRef>();
  for (const [name, e] of Object.entries<{ dtype: string; shape: number[]; data_offsets: [number, number] }>(
    json,
  )) {
    if (name === "__metadata__") continue;
    const [a, z] = e.data_offsets;
    refs.set(name, { name, dtype: e.dtype, shape: e.shape, fileOffset: 8 + n + a, byteLength: z - a });
  }
  return { refs, bytes };
}

function f32At(bytes: Buffer, ref: SafetensorsTensorRef, index: number): number {
  return bytes.readFloatLE(ref.fileOffset + 4 * index);
}

async function tempWeights(): Promise<{ dir: string; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), "engine-ext-"));
  const path = join(dir, "model.safetensors");
  await copyFile(fixture, path);
  return { dir, path };
}

/** gemm(x, fc1, transB) and gather(token_embedding, ids) from the file, checked against the bytes. */
function buildProbe(paths: { fc1: string; tok: string }, refs: Map<string, SafetensorsTensorRef>) {
  const b = new GraphBuilder("ext");
  const x = b.input("x", "float32", [3, 32]);
  const ids = b.input("ids", "int64", [4]);
  const w = b.scope("text_model.encoder.layers.0.mlp.fc1", () =>
    b.initializer("weight", safetensorsExternal(paths.fc1, refs.get(FC1)!)),
  );
  const emb = b.initializer("token_embedding.weight", safetensorsExternal(paths.tok, refs.get(TOKENS)!));
  b.output(gemm(x, w, undefined, { transB: true }), "y");
  b.output(gather(emb, ids), "e");
  return b.build();
}

async function checkProbe(
  session: Session,
  refs: Map<string, SafetensorsTensorRef>,
  bytes: Buffer,
): Promise<void> {
  const rand = rng(5);
  const x = Float32Array.from({ length: 96 }, () => rand());
  const ids = [0n, 49407n, 320n, 7n];
  const out = await session.run({
    x: { dtype: "float32", shape: [3, 32], data: x },
    ids: { dtype: "int64", shape: [4], data: BigInt64Array.from(ids) },
  });
  const fc1 = refs.get(FC1)!;
  const tok = refs.get(TOKENS)!;
  const y: number[] = [];
  for (let i = 0; i < 3; i++)
    for (let o = 0; o < 64; o++) {
      let s = 0;
      for (let k = 0; k < 32; k++) s += x[i * 32 + k] * f32At(bytes, fc1, o * 32 + k);
      y.push(s);
    }
  assert.deepEqual(out.y.shape, [3, 64]);
  assertClose(out.y.data as Float32Array, y, 1e-5, "gemm against fc1");
  const e = ids.flatMap((id) => Array.from({ length: 32 }, (_, k) => f32At(bytes, tok, Number(id) * 32 + k)));
  assertClose(out.e.data as Float32Array, e, 0, "gather from token_embedding");
}

test("initializers point into a safetensors file by offset: values match the bytes; the .onnx is removed after creation", async () => {
  const { dir, path } = await tempWeights();
  try {
    const { refs, bytes } = await headerOf(path);
    const graph = buildProbe({ fc1: path, tok: path }, refs);
    const file = await writeModelFile(graph);
    assert.equal(file.strategy, "weights-dir");
    assert.equal((await readdir(dir)).length, 2, "the .onnx is written next to the weights");
    assert.ok((await stat(file.modelPath)).size < 4096, "weights are referenced, not embedded");
    await file.cleanup();
    assert.deepEqual(await readdir(dir), ["model.safetensors"]);

    const session = await Session.create(graph, quiet);
    assert.deepEqual(await readdir(dir), ["model.safetensors"], "no model file left behind");
    await checkProbe(session, refs, bytes); // the session keeps working without its .onnx
    await session.release();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("weights in two directories: the model goes to a cache dir with hard links, removed afterwards", async () => {
  const a = await tempWeights();
  const b = await tempWeights();
  const cacheDir = await mkdtemp(join(tmpdir(), "engine-cache-"));
  try {
    const { refs, bytes } = await headerOf(a.path);
    const graph = buildProbe({ fc1: a.path, tok: b.path }, refs);
    const file = await writeModelFile(graph, { cacheDir });
    assert.equal(file.strategy, "cache-links");
    assert.equal((await stat(a.path)).nlink, 2, "hard link, not a copy");
    await file.cleanup();
    assert.equal((await stat(a.path)).nlink, 1);
    const session = await Session.create(graph, { ...quiet, cacheDir });
    await checkProbe(session, refs, bytes);
    await session.release();
    assert.deepEqual(await readdir(cacheDir), [], "cache entries are removed once the session exists");
  } finally {
    for (const d of [a.dir, b.dir, cacheDir]) await rm(d, { recursive: true, force: true });
  }
});

test("a read-only weights directory: the model goes to the cache dir with a hard link", async () => {
  const a = await tempWeights();
  const cacheDir = await mkdtemp(join(tmpdir(), "engine-cache-"));
  await chmod(a.dir, 0o555);
  try {
    const { refs, bytes } = await headerOf(a.path);
    const graph = buildProbe({ fc1: a.path, tok: a.path }, refs);
    const file = await writeModelFile(graph, { cacheDir });
    assert.equal(file.strategy, "cache-links");
    await file.cleanup();
    assert.deepEqual(await readdir(a.dir), ["model.safetensors"]);
    const session = await Session.create(graph, { ...quiet, cacheDir });
    await checkProbe(session, refs, bytes);
    await session.release();
  } finally {
    await chmod(a.dir, 0o755);
    for (const d of [a.dir, cacheDir]) await rm(d, { recursive: true, force: true });
  }
});

test("a cache dir on another filesystem falls back to copying, with a warning", async (t) => {
  const shm = "/dev/shm";
  const shmDev = await stat(shm).then(
    (s) => s.dev,
    () => undefined,
  );
  if (shmDev === undefined || shmDev === (await stat(tmpdir())).dev) {
    t.skip("no second filesystem (/dev/shm) here");
    return;
  }
  const a = await tempWeights();
  const b = await tempWeights();
  const cacheDir = join(shm, `engine-cache-${process.pid}`);
  await mkdir(cacheDir, { recursive: true });
  try {
    const { refs, bytes } = await headerOf(a.path);
    const warnings: string[] = [];
    const session = await Session.create(buildProbe({ fc1: a.path, tok: b.path }, refs), {
      cacheDir,
      onMessage: (m) => warnings.push(m),
    });
    assert.equal(warnings.length, 2);
    assert.match(warnings[0], /cannot hard-link .*model\.safetensors.*copying 0\.02 GiB/);
    await checkProbe(session, refs, bytes);
    await session.release();
  } finally {
    for (const d of [a.dir, b.dir, cacheDir]) await rm(d, { recursive: true, force: true });
  }
});

test("in-memory initializers of 1 KiB or more go to a sidecar data file; small ones and constants stay inline", async () => {
  const rand = rng(9);
  const big = Float32Array.from({ length: 64 * 32 }, () => rand());
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [2, 32]);
  const w = b.initializer("w", { dtype: "float32", shape: [64, 32], data: big });
  const small = b.initializer("s", { dtype: "float32", shape: [64], data: new Float32Array(64).fill(0.5) });
  const y = b.output(gemm(x, w, small, { transB: true }), "y");
  const graph = b.build();
  const file = await writeModelFile(graph);
  const files = await readdir(join(file.modelPath, ".."));
  const data = files.find((f) => f.endsWith(".data"));
  assert.ok(data, "sidecar .data written");
  assert.equal((await stat(join(file.modelPath, "..", data))).size, big.byteLength);
  assert.ok((await stat(file.modelPath)).size < 1024);
  await file.cleanup();
  const session = await Session.create(graph, quiet);
  const xv = Float32Array.from({ length: 64 }, () => rand());
  const out = await session.run({ x: { dtype: "float32", shape: [2, 32], data: xv } });
  const exp: number[] = [];
  for (let i = 0; i < 2; i++)
    for (let o = 0; o < 64; o++) {
      let s = 0.5;
      for (let k = 0; k < 32; k++) s += xv[i * 32 + k] * big[o * 32 + k];
      exp.push(s);
    }
  assertClose(out[y.name].data as Float32Array, exp, 1e-5, "spilled weight");
  await session.release();
});
