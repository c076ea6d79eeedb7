// Parsing of merge inputs FILE[:TE[:UNET]], taken from the right so paths may contain ":".
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseInputSpec } from "../src/cli/commands/merge.ts";

test("FILE, FILE:TE, FILE:TE:UNET (unet defaults to te, as in a prompt token)", () => {
  assert.deepEqual(parseInputSpec("a.safetensors"), { path: "a.safetensors", te: 1, unet: 1 });
  assert.deepEqual(parseInputSpec("a.safetensors:0.7"), { path: "a.safetensors", te: 0.7, unet: 0.7 });
  assert.deepEqual(parseInputSpec("a.safetensors:0.5:-0.3"), { path: "a.safetensors", te: 0.5, unet: -0.3 });
  assert.deepEqual(parseInputSpec("a.safetensors:1e-1"), { path: "a.safetensors", te: 0.1, unet: 0.1 });
});

test("a ':' inside the path stays part of it unless what follows is a number", () => {
  assert.deepEqual(parseInputSpec("C:\\loras\\a.safetensors:0.5"), {
    path: "C:\\loras\\a.safetensors",
    te: 0.5,
    unet: 0.5,
  });
  assert.deepEqual(parseInputSpec("dir:x/a.safetensors"), { path: "dir:x/a.safetensors", te: 1, unet: 1 });
  // a trailing non-number is part of the name; the file check then reports it
  assert.deepEqual(parseInputSpec("a.safetensors:0.7:x"), { path: "a.safetensors:0.7:x", te: 1, unet: 1 });
  assert.deepEqual(parseInputSpec(":0.5"), { path: ":0.5", te: 1, unet: 1 });
  assert.throws(() => parseInputSpec(""), /expected FILE\[:TE\[:UNET\]\]/);
});
