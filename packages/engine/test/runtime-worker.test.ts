import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import { add, matmul, mul, reduceSum, tanh } from "../src/graph/ops/index.ts";
import { Session } from "../src/runtime/session.ts";
import { TrainStepRunner } from "../src/runtime/train-step.ts";
import { WorkerSession } from "../src/runtime/worker-session.ts";

/** A chain of MatMul+Tanh on [n,n] that takes a noticeable time on CPU. */
function heavyGraph(n: number, depth: number) {
  const b = new GraphBuilder("heavy");
  const x = b.input("x", "float32", [n, n]);
  let h = x;
  for (let i = 0; i < depth; i++) h = tanh(matmul(h, x));
  b.output(reduceSum(h, undefined, false), "s");
  return b.build();
}

function gapWatcher() {
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(maxGap, performance.now() - last);
    },
  };
}

test("WorkerSession: main event loop keeps ticking during a long run, results equal in-thread Session", async () => {
  const x = new Float32Array(384 * 384).map((_, i) => Math.sin(i) * 0.05);
  const feeds = () => ({ x: { dtype: "float32" as const, shape: [384, 384], data: x.slice() } });
  const opts = { intraOpThreads: 1, onMessage: () => {} };
  // Machines differ ~5x in single-core GEMM speed: size the chain so one run takes about 250 ms here.
  const probe = await Session.create(heavyGraph(384, 8), opts);
  await probe.run(feeds());
  const p0 = performance.now();
  await probe.run(feeds());
  const probeMs = performance.now() - p0;
  await probe.release();
  const g = heavyGraph(384, Math.min(400, Math.max(8, Math.ceil((8 * 250) / probeMs))));

  // Control: in-thread, the same run freezes a 5 ms timer for most of its duration.
  const local = await Session.create(g, opts);
  const watch = gapWatcher();
  const t0 = performance.now();
  const expected = await local.run(feeds());
  const localMs = performance.now() - t0;
  const localGap = watch.stop();
  await local.release();
  assert.ok(localMs > 60, `in-thread run took only ${localMs.toFixed(0)} ms`);
  assert.ok(localGap > localMs * 0.5, `in-thread run should block the loop (gap ${localGap.toFixed(0)} ms)`);

  const ws = await WorkerSession.create(g, opts);
  try {
    assert.deepEqual([...ws.inputNames], ["x"]);
    let ticks = 0;
    let maxGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 5);
    const start = performance.now();
    const got = await ws.run(feeds(), undefined, { transfer: "all" });
    const elapsed = performance.now() - start;
    clearInterval(timer);
    assert.ok(Math.abs((got.s.data[0] as number) - (expected.s.data[0] as number)) < 1e-3);
    // The timer kept firing while the worker computed.
    assert.ok(ticks >= elapsed / 5 / 4, `timer fired ${ticks} times in ${elapsed.toFixed(0)} ms`);
    assert.ok(
      maxGap < Math.max(50, elapsed / 2),
      `event loop stalled ${maxGap.toFixed(0)} ms of ${elapsed.toFixed(0)} ms`,
    );
  } finally {
    await ws.release();
  }
});

test("WorkerSession transfers feeds when asked (caller's buffer detached) and copies otherwise", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [4]);
  b.output(mul(x, 3), "y");
  const ws = await WorkerSession.create(b.build(), { onMessage: () => {} });
  try {
    const kept = Float32Array.from([1, 2, 3, 4]);
    const r1 = await ws.run({ x: { dtype: "float32", shape: [4], data: kept } });
    assert.deepEqual([...r1.y.data], [3, 6, 9, 12]);
    assert.equal(kept.length, 4);
    const moved = Float32Array.from([1, 1, 1, 1]);
    const r2 = await ws.run({ x: { dtype: "float32", shape: [4], data: moved } }, undefined, {
      transfer: ["x"],
    });
    assert.deepEqual([...r2.y.data], [3, 3, 3, 3]);
    assert.equal(moved.buffer.byteLength, 0, "transferred buffer is detached");
    await assert.rejects(ws.run({}), /missing inputs x/, "errors cross the thread boundary");
  } finally {
    await ws.release();
  }
});

function quadraticStep() {
  // w <- w - lr * 2 (w - t); loss = sum((w - t)^2): converges geometrically to t.
  const b = new GraphBuilder("quad");
  const w = b.input("state_in.w", "float32", [3]);
  const t = b.input("target", "float32", [3]);
  const lr = b.input("lr", "float32", []);
  const d = add(w, mul(t, -1));
  b.output(reduceSum(mul(d, d), undefined, false), "loss");
  b.output(add(w, mul(mul(d, lr), -2)), "state_out.w");
  return b.build();
}

for (const kind of ["worker", "in-thread"] as const) {
  test(`TrainStepRunner swaps state_in/state_out (gradient descent on a quadratic), ${kind}`, async () => {
    const graph = quadraticStep();
    const s =
      kind === "worker"
        ? await WorkerSession.create(graph, { onMessage: () => {} })
        : await Session.create(graph);
    try {
      const w0 = new Float32Array(3);
      const runner = new TrainStepRunner(s, new Map([["w", { dtype: "float32", shape: [3], data: w0 }]]));
      const target = { dtype: "float32" as const, shape: [3], data: Float32Array.from([1, -2, 0.5]) };
      const lrT = { dtype: "float32" as const, shape: [], data: Float32Array.from([0.25]) };
      const losses: number[] = [];
      for (let i = 0; i < 8; i++)
        losses.push((await runner.step({ target, lr: lrT })).loss.data[0] as number);
      assert.ok(Math.abs(losses[0] - 5.25) < 1e-6);
      for (let i = 1; i < losses.length; i++) assert.ok(Math.abs(losses[i] - losses[i - 1] * 0.25) < 1e-5);
      assert.equal(runner.stepCount, 8);
      const wNow = runner.state.get("w")!.data as Float32Array;
      assert.ok(Math.abs(wNow[1] - -2 * (1 - 0.5 ** 8)) < 1e-5);
      assert.notEqual(wNow, w0, "state buffers are swapped, not written in place");
      if (kind === "worker") {
        assert.equal(w0.buffer.byteLength, 0, "state moved to the worker (transferred, not copied)");
        assert.equal(target.data.length, 3, "per-step inputs are copied unless transferInputs");
      }
      assert.throws(() => new TrainStepRunner(s, new Map()), /no initial value for state "w"/);
    } finally {
      await s.release();
    }
  });
}
