/** Message levels (src/runtime/messages.ts): small cache work is "debug", hidden unless LORA_STUDIO_VERBOSE=1. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { consoleSink, NOTABLE_BYTES, shown, sizeLevel } from "../src/runtime/messages.ts";

test("cache work under 64 MiB is debug, from 64 MiB on info", () => {
  assert.equal(NOTABLE_BYTES, 64 * 2 ** 20);
  assert.equal(sizeLevel(0), "debug");
  assert.equal(sizeLevel(NOTABLE_BYTES - 1), "debug");
  assert.equal(sizeLevel(NOTABLE_BYTES), "info");
  assert.equal(sizeLevel(3.4 * 2 ** 30), "info", "an SD1.5 UNet's cache is news");
});

test("hosts show info and warn always, debug only with LORA_STUDIO_VERBOSE=1", (t) => {
  const printed: string[] = [];
  t.mock.method(console, "warn", (m: string) => printed.push(m));
  const before = process.env.LORA_STUDIO_VERBOSE;
  try {
    delete process.env.LORA_STUDIO_VERBOSE;
    assert.ok(shown(undefined) && shown("info") && shown("warn"));
    assert.equal(shown("debug"), false);
    consoleSink("small", "debug");
    consoleSink("big", "info");
    consoleSink("problem");
    process.env.LORA_STUDIO_VERBOSE = "1";
    assert.equal(shown("debug"), true);
    consoleSink("small, verbose", "debug");
  } finally {
    if (before === undefined) delete process.env.LORA_STUDIO_VERBOSE;
    else process.env.LORA_STUDIO_VERBOSE = before;
  }
  assert.deepEqual(printed, ["big", "problem", "small, verbose"]);
});
