import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { Rng } from "../src/dataset/rng.ts";
import { trainingHealth } from "../src/logging/health.ts";
import { lossCurveSvg, movingAverage, niceTicks, writeLossCurvePng } from "../src/logging/loss-curve.ts";
import { MetricsWriter, readMetrics } from "../src/logging/metrics.ts";

/** Per-step diffusion-like noise: the loss times a factor in [0.6, 1.4]. */
function noisy(curve: (t: number) => number, n: number, seed = 1): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => curve(i / n) * (0.6 + 0.8 * rng.next()));
}

test("a steadily falling loss is healthy", () => {
  const notes = trainingHealth(noisy((t) => 0.3 - 0.2 * t, 600));
  assert.deepEqual(
    notes.map((n) => n.kind),
    ["falling"],
  );
  assert.ok(notes[0].numbers.change < -0.5);
});

test("a loss that settles in the first tenth is an early plateau", () => {
  const notes = trainingHealth(noisy((t) => 0.1 + 0.3 * Math.exp(-t * 40), 600));
  assert.deepEqual(
    notes.map((n) => n.kind),
    ["plateau-early"],
  );
  assert.ok(notes[0].numbers.settledFraction < 0.25);
  assert.match(notes[0].message, /more .*images|epochs/);
});

test("a noisy loss that never falls is flat, not falling (over several seeds)", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    assert.deepEqual(
      trainingHealth(noisy(() => 0.2, 600, seed)).map((n) => n.kind),
      ["flat"],
      `seed ${seed}`,
    );
    assert.deepEqual(
      trainingHealth(noisy((t) => 0.3 - 0.2 * t, 600, seed)).map((n) => n.kind),
      ["falling"],
      `seed ${seed}`,
    );
  }
});

test("large slow swings in the second half are oscillation; a rising loss diverges", () => {
  const osc = trainingHealth(noisy((t) => 0.2 + 0.12 * Math.sin(t * 40), 800));
  assert.ok(
    osc.some((n) => n.kind === "oscillating"),
    JSON.stringify(osc),
  );
  assert.match(osc.find((n) => n.kind === "oscillating")!.message, /lower the learning rate/);
  const up = trainingHealth(noisy((t) => 0.1 + 0.3 * t * t, 600));
  assert.equal(up[0].kind, "diverging");
  assert.match(up[0].message, /fp32/);
  assert.equal(trainingHealth([0.2, 0.1, Number.NaN])[0].kind, "non-finite");
  assert.equal(trainingHealth([0.2, 0.1])[0].kind, "too-short");
});

test("moving average and ticks", () => {
  assert.deepEqual(movingAverage([1, 2, 3, 4, 5], 2), [1, 1.5, 2.5, 3.5, 4.5]);
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0, 600, 6), [0, 100, 200, 300, 400, 500, 600]);
});

test("the loss curve is a PNG of the asked size with both lines drawn", async () => {
  const dir = await mkdtemp(join(tmpdir(), "curve-"));
  const losses = noisy((t) => 0.3 - 0.2 * t, 300);
  const points = losses.map((loss, step) => ({ step, loss }));
  const svg = lossCurveSvg(points);
  assert.equal((svg.match(/<path /g) ?? []).length, 2);
  const path = join(dir, "loss.png");
  await writeLossCurvePng(path, points, { width: 640, height: 360 });
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.format, "raw");
  assert.deepEqual([info.width, info.height], [640, 360]);
  let red = 0;
  for (let i = 0; i < data.length; i += info.channels)
    if (data[i] > 150 && data[i + 1] < 90 && data[i + 2] < 90) red++;
  assert.ok(red > 300, `the thick moving-average line should be visible (${red} red pixels)`);
});

test("metrics.jsonl round-trips and ignores a line cut short", async () => {
  const dir = await mkdtemp(join(tmpdir(), "metrics-"));
  const path = join(dir, "metrics.jsonl");
  const w = new MetricsWriter(path);
  w.write({ step: 1, epoch: 0, loss: 0.5, lr_unet: 1e-4, wall_time: 1 });
  w.write({ step: 2, epoch: 0, loss: Number.NaN, wall_time: 2 });
  w.close();
  const { appendFileSync } = await import("node:fs");
  appendFileSync(path, '{"step": 3, "lo');
  const back = readMetrics(path);
  assert.equal(back.length, 2);
  assert.equal(back[0].lr_unet, 1e-4);
  assert.ok(Number.isNaN(back[1].loss));
});
