// The progress bar's two rules: drawn only on a terminal, and only once a step has run for the delay.
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { createProgress } from "../src/util/progress.ts";

/** A stream that says it is a terminal, collecting what is drawn on it. */
function terminal(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const s = new PassThrough();
  let out = "";
  s.on("data", (d) => {
    out += d;
  });
  Object.assign(s, { isTTY, columns: 100 });
  return { stream: s as unknown as NodeJS.WriteStream, text: () => out };
}

test("draws on a TTY once the delay has passed", async () => {
  const t = terminal(true);
  const p = createProgress("hashing", { stream: t.stream, delayMs: 0 });
  try {
    p.update(3, 10);
    await new Promise((r) => setImmediate(r));
    assert.match(t.text(), /hashing \[.*\] 30% \| 3\/10/);
  } finally {
    p.stop();
    p.stop(); // idempotent
  }
});

test("draws nothing when the stream is not a TTY", async () => {
  const t = terminal(false);
  const p = createProgress("hashing", { stream: t.stream, delayMs: 0 });
  p.update(5, 10);
  p.stop();
  await new Promise((r) => setImmediate(r));
  assert.equal(t.text(), "");
});

test("draws nothing for a step shorter than the delay", async () => {
  const t = terminal(true);
  const p = createProgress("hashing", { stream: t.stream, delayMs: 1000 });
  p.update(1, 2);
  p.update(2, 2);
  p.stop();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(t.text(), "");
});

test("a step that reports rarely still shows its bar after the delay", async () => {
  const t = terminal(true);
  const p = createProgress("baking", { stream: t.stream, delayMs: 30 });
  try {
    p.update(1, 4);
    await new Promise((r) => setTimeout(r, 120));
    assert.match(t.text(), /baking/);
  } finally {
    p.stop();
  }
});
