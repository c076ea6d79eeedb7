#!/usr/bin/env node
// Runs every *.test.ts in the workspace with node's built-in test runner (through tsx),
// so CI prints one readable TAP/spec report. Pass paths or substrings to run a subset:
//   pnpm test prompt-lora     pnpm test packages/engine/test/autodiff.test.ts
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const roots = ["packages", "test"];
const skip = new Set(["node_modules", "dist", ".cache"]);

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    if (skip.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith(".test.ts")) out.push(relative(root, p));
  }
  return out;
}

const filters = process.argv.slice(2);
let files = roots.flatMap((r) => walk(join(root, r), [])).sort();
if (filters.length > 0) files = files.filter((f) => filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error(`no test files match ${filters.join(" ")}`);
  process.exit(1);
}
const args = ["--import", "tsx", "--test", "--test-concurrency=2", ...files];
// Tests that open fp16 checkpoints on the CPU build fp32 weight caches; keep them out of the user's ~/.cache.
const weightCache =
  process.env.LORA_STUDIO_WEIGHT_CACHE ?? mkdtempSync(join(tmpdir(), "lora-studio-test-weights-"));
const env = { ...process.env, LORA_STUDIO_WEIGHT_CACHE: weightCache };
const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit", env });
if (!process.env.LORA_STUDIO_WEIGHT_CACHE) rmSync(weightCache, { recursive: true, force: true });
process.exit(r.status ?? 1);
