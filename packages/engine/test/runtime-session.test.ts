import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import { add, exp, mul } from "../src/graph/ops/index.ts";
import { ortSessionOptions, Session, SessionCreateError } from "../src/runtime/session.ts";

function duplicatedSubexpression() {
  const b = new GraphBuilder("cse");
  const x = b.input("x", "float32", [4]);
  // The same Exp(Mul(x, 2)) twice, as gradient checkpointing produces: CSE merges them unless disabled.
  b.output(add(exp(mul(x, 2)), mul(exp(mul(x, 2)), 3)), "y");
  return b.build();
}

/** Counts NodeProto op_type fields equal to `op` in a serialized model (tag 0x22, length, bytes). */
function countOps(model: Buffer, op: string): number {
  const needle = Buffer.from([0x22, op.length, ...Buffer.from(op)]);
  let n = 0;
  for (let i = model.indexOf(needle); i >= 0; i = model.indexOf(needle, i + 1)) n++;
  return n;
}

test("auto falls back to cpu with a message naming what is missing and how to install it", async (t) => {
  const messages: string[] = [];
  const s = await Session.create(duplicatedSubexpression(), {
    executionProvider: "auto",
    onMessage: (m) => messages.push(m),
  });
  if (s.provider !== "cpu") {
    t.skip(`this machine has ${s.provider}`);
    return;
  }
  assert.equal(messages.length, 1);
  assert.equal(s.fallback, messages[0]);
  assert.match(messages[0], /"auto" is using cpu/);
  assert.match(messages[0], /cuda unavailable: .+\n.*ONNXRUNTIME_NODE_INSTALL=cuda12.*CUDA 12 \+ cuDNN 9/);
  assert.match(messages[0], /webgpu unavailable: .+\n.*libvulkan\.so\.1/);
  const out = await s.run({ x: { dtype: "float32", shape: [4], data: Float32Array.from([0, 1, -1, 0.5]) } });
  const e = (v: number) => 4 * Math.exp(2 * v);
  assert.ok([0, 1, -1, 0.5].every((v, i) => Math.abs((out.y.data[i] as number) - e(v)) < 1e-4 * e(v)));
  await s.release();
});

test("an explicit provider that cannot load fails with a typed error and the install hint", async (t) => {
  try {
    const s = await Session.create(duplicatedSubexpression(), {
      executionProvider: "cuda",
      onMessage: () => {},
    });
    await s.release();
    t.skip("cuda is available here");
  } catch (e) {
    assert.ok(e instanceof SessionCreateError);
    assert.equal(e.failures[0].provider, "cuda");
    assert.match(e.message, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
  }
});

test("disabledOptimizers reaches ORT: CSE keeps recomputed subgraphs apart only when disabled", async () => {
  const dir = await mkdtemp(join(tmpdir(), "engine-opt-"));
  try {
    const g = duplicatedSubexpression();
    const merged = join(dir, "merged.onnx");
    const kept = join(dir, "kept.onnx");
    await (await Session.create(g, { optimizedModelFilePath: merged, onMessage: () => {} })).release();
    const s = await Session.create(g, {
      optimizedModelFilePath: kept,
      disabledOptimizers: ["CommonSubexpressionElimination"],
      intraOpThreads: 1,
      interOpThreads: 1,
      graphOptimizationLevel: "all",
    });
    await s.release();
    assert.equal(countOps(await readFile(merged), "Exp"), 1);
    assert.equal(countOps(await readFile(kept), "Exp"), 2);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("options map to ORT: no `extra` key unless needed, profiling writes a JSON trace", async () => {
  assert.ok(!("extra" in ortSessionOptions({}, "cpu")), "ORT throws on extra: undefined");
  assert.deepEqual(
    ortSessionOptions({ disabledOptimizers: ["A", "B"], configEntries: { "session.x": "1" } }, "cpu").extra,
    {
      session: { x: "1" },
      optimization: { disable_specified_optimizers: "A,B" },
    },
  );
  const dir = await mkdtemp(join(tmpdir(), "engine-prof-"));
  try {
    const s = await Session.create(duplicatedSubexpression(), {
      profiling: { filePrefix: join(dir, "prof") },
    });
    await s.run({ x: { dtype: "float32", shape: [4], data: new Float32Array(4) } });
    s.endProfiling();
    await s.release();
    const files = await readdir(dir);
    assert.equal(files.length, 1);
    assert.match(files[0], /^prof.*\.json$/);
    const trace = JSON.parse(await readFile(join(dir, files[0]), "utf8"));
    assert.ok(Array.isArray(trace) && trace.some((ev: { name?: string }) => /Exp/.test(ev.name ?? "")));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("run validates feed names", async () => {
  const s = await Session.create(duplicatedSubexpression());
  await assert.rejects(s.run({}), /missing inputs x/);
  const x = { dtype: "float32" as const, shape: [4], data: new Float32Array(4) };
  await assert.rejects(s.run({ x, nope: x }), /"nope" is not an input/);
  await s.release();
});
