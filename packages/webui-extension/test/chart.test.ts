/** The Runs chart's numbers (ui/chart.ts): the moving average, the drawn range, axis labels. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { axisNumber, movingAverage, valueRange } from "../ui/chart.ts";

test("the moving average is bias-corrected: a constant series averages to itself from the first point", () => {
  assert.deepEqual(
    movingAverage([2, 2, 2]).map((v) => Number(v.toFixed(12))),
    [2, 2, 2],
  );
  const avg = movingAverage([0, 10], 0.5);
  assert.equal(avg[0], 0);
  assert.ok(Math.abs(avg[1] - 10 * (0.5 / 0.75)) < 1e-12);
});

test("a flat series gets a band around it; a varying one its own range", () => {
  assert.deepEqual(valueRange([1e-3, 1e-3, 1e-3]), [5e-4, 1.5e-3]);
  assert.deepEqual(valueRange([0, 0]), [-1, 1]);
  assert.deepEqual(valueRange([0.9, 1.2, 1.0]), [0.9, 1.2]);
});

test("axis labels: three significant digits, exponent form for learning-rate magnitudes", () => {
  assert.equal(axisNumber(1.2423), "1.24");
  assert.equal(axisNumber(0.0512), "0.0512");
  assert.equal(axisNumber(0.001), "1.00e-3");
  assert.equal(axisNumber(0), "0");
  assert.equal(axisNumber(250000), "2.50e+5");
});
