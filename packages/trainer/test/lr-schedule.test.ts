import assert from "node:assert/strict";
import { test } from "node:test";
import { lrMultiplier, resolveWarmupSteps } from "../src/config/lr-schedule.ts";

const close = (a: number, b: number, msg?: string) =>
  assert.ok(Math.abs(a - b) < 1e-12, `${msg ?? ""} ${a} != ${b}`);

test("constant and constant_with_warmup", () => {
  assert.equal(lrMultiplier("constant", 0, { warmupSteps: 10, totalSteps: 100 }), 1);
  close(lrMultiplier("constant_with_warmup", 0, { warmupSteps: 10, totalSteps: 100 }), 0);
  close(lrMultiplier("constant_with_warmup", 4, { warmupSteps: 10, totalSteps: 100 }), 0.4);
  close(lrMultiplier("constant_with_warmup", 10, { warmupSteps: 10, totalSteps: 100 }), 1);
  close(lrMultiplier("constant_with_warmup", 99, { warmupSteps: 10, totalSteps: 100 }), 1);
});

test("linear: warmup then decay to zero at the last step", () => {
  const o = { warmupSteps: 10, totalSteps: 110 };
  close(lrMultiplier("linear", 5, o), 0.5);
  close(lrMultiplier("linear", 10, o), 1);
  close(lrMultiplier("linear", 60, o), 0.5); // (110-60)/(110-10)
  close(lrMultiplier("linear", 110, o), 0);
  close(lrMultiplier("linear", 200, o), 0, "floored at 0");
});

test("cosine: half a cosine from 1 to 0 after warmup", () => {
  const o = { warmupSteps: 0, totalSteps: 100 };
  close(lrMultiplier("cosine", 0, o), 1);
  close(lrMultiplier("cosine", 50, o), 0.5);
  close(lrMultiplier("cosine", 25, o), 0.5 * (1 + Math.cos(Math.PI / 4)));
  close(lrMultiplier("cosine", 100, o), 0);
  const w = { warmupSteps: 20, totalSteps: 120 };
  close(lrMultiplier("cosine", 10, w), 0.5);
  close(lrMultiplier("cosine", 70, w), 0.5);
});

test("cosine_with_restarts: num_cycles hard restarts, zero at the end", () => {
  const o = { warmupSteps: 0, totalSteps: 100, numCycles: 2 };
  close(lrMultiplier("cosine_with_restarts", 0, o), 1);
  close(lrMultiplier("cosine_with_restarts", 25, o), 0.5);
  close(lrMultiplier("cosine_with_restarts", 49, o), 0.5 * (1 + Math.cos(Math.PI * 0.98)));
  close(lrMultiplier("cosine_with_restarts", 50, o), 1, "restart");
  close(lrMultiplier("cosine_with_restarts", 75, o), 0.5);
  close(lrMultiplier("cosine_with_restarts", 100, o), 0);
  // One cycle equals plain cosine.
  for (const s of [0, 13, 50, 87]) {
    close(
      lrMultiplier("cosine_with_restarts", s, { warmupSteps: 5, totalSteps: 100, numCycles: 1 }),
      lrMultiplier("cosine", s, { warmupSteps: 5, totalSteps: 100 }),
    );
  }
});

test("warmup below 1 is a fraction of the total (kohya)", () => {
  assert.equal(resolveWarmupSteps(0.1, 250), 25);
  assert.equal(resolveWarmupSteps(0.05, 30), 2);
  assert.equal(resolveWarmupSteps(12, 250), 12);
  close(lrMultiplier("linear", 10, { warmupSteps: 0.1, totalSteps: 200 }), 0.5);
});
