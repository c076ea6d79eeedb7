// Spawns the real CLI (node --import tsx .../cli/main.ts) on fixture files copied into a temp folder and
// checks its output and exit codes; expected values are computed here from the raw file bytes / tensors.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { readSafetensors } from "../src/safetensors/index.ts";

const repoRoot = new URL("../../../", import.meta.url).pathname;
const fixtures = new URL("../../../../shared/fixtures/", import.meta.url).pathname;
const fixtureLora = join(fixtures, "tiny-sd1/lora/tiny-sd1-lora-kohya.safetensors");
const fixtureAlpha1 = join(fixtures, "tiny-sd1/lora/tiny-sd1-lora-kohya-alpha1.safetensors");
const fixtureCheckpoint = join(fixtures, "tiny-sd1/tiny-sd1.safetensors");

/** kohya module -> its weight in the original single-file layout (input_blocks index 1 + 3 block + layer,
 *  output_blocks index 3 block + layer), written out by hand for the two modules the tests check. */
const CHECKED_MODULES: Array<[string, string]> = [
  [
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k",
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_k.weight",
  ],
  [
    "lora_unet_up_blocks_2_attentions_2_transformer_blocks_0_attn2_to_out_0",
    "model.diffusion_model.output_blocks.8.1.transformer_blocks.0.attn2.to_out.0.weight",
  ],
];

let tmp: string;
let loraDir: string;
let cacheDir: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], entry = "packages/prompt-lora/src/cli/main.ts"): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", entry, ...args], {
      cwd: repoRoot,
      env: { ...process.env, LORA_STUDIO_CACHE_DIR: cacheDir, LORA_STUDIO_DEBUG: "" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** A1111's Lora hash: SHA-256 of the bytes after the 8 + N header, first 12 hex. */
function addnetShort(path: string): string {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  return createHash("sha256")
    .update(bytes.subarray(8 + n))
    .digest("hex")
    .slice(0, 12);
}

/** up @ down * alpha / rank for one kohya module, computed directly from the file's tensors. */
async function kohyaDelta(path: string, module: string): Promise<Float64Array> {
  const { tensors } = await readSafetensors(path);
  const down = tensors.get(`${module}.lora_down.weight`)!;
  const up = tensors.get(`${module}.lora_up.weight`)!;
  const alpha = tensors.get(`${module}.alpha`)?.data[0];
  const [r, inF] = down.shape;
  const outF = up.shape[0];
  const scale = alpha === undefined ? 1 : alpha / r;
  const out = new Float64Array(outF * inF);
  for (let o = 0; o < outF; o++)
    for (let i = 0; i < inF; i++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += up.data[o * r + k] * down.data[k * inF + i];
      out[o * inF + i] = s * scale;
    }
  return out;
}

function assertNoStack(run: Run): void {
  assert.doesNotMatch(run.stderr, /\n\s+at /, "no stack trace");
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "lora-cli-"));
  loraDir = join(tmp, "Lora");
  cacheDir = join(tmp, "cache");
  await mkdir(join(loraDir, "styles"), { recursive: true });
  await copyFile(fixtureLora, join(loraDir, "ink.safetensors"));
  await copyFile(fixtureAlpha1, join(loraDir, "styles", "soft.safetensors"));
  await writeFile(join(tmp, "corrupt.safetensors"), readFileSync(fixtureLora).subarray(0, 200));
  await copyFile(fixtureCheckpoint, join(tmp, "base.safetensors"));
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

// Each test spawns the CLI a few times; they are independent, so they run side by side.
describe("CLI", { concurrency: 4 }, () => {
  test("prompt --json: the documented object, resolved files and hashes", async () => {
    const r = await cli([
      "prompt",
      "--json",
      "a cat <lora:ink:0.7>, <lora:soft:0.5:0.3:2> <lora:nope> <lora:gone:1>",
      "--lora-dir",
      loraDir,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.prompt, "a cat ,   ");
    assert.deepEqual(out.missing, ["nope", "gone"]);
    assert.deepEqual(out.errors, []);
    const pick = (n: Record<string, unknown>) => ({
      type: n.type,
      name: n.name,
      te: n.te,
      unet: n.unet,
      dyn: n.dyn,
      file: n.file,
      hash: n.hash,
    });
    assert.deepEqual(out.networks.map(pick), [
      {
        type: "lora",
        name: "ink",
        te: 0.7,
        unet: 0.7,
        dyn: null,
        file: join(loraDir, "ink.safetensors"),
        hash: addnetShort(fixtureLora),
      },
      {
        type: "lora",
        name: "soft",
        te: 0.5,
        unet: 0.3,
        dyn: 2,
        file: join(loraDir, "styles", "soft.safetensors"),
        hash: addnetShort(fixtureAlpha1),
      },
      { type: "lora", name: "nope", te: 1, unet: 1, dyn: null, file: null, hash: null },
      { type: "lora", name: "gone", te: 1, unet: 1, dyn: null, file: null, hash: null },
    ]);
  });

  test("prompt: a malformed number is reported with its column and exit code 1", async () => {
    const r = await cli([
      "prompt",
      "--json",
      "masterpiece <lora:ink:abc> <lora:ink:0.5>",
      "--lora-dir",
      loraDir,
    ]);
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout);
    assert.equal(out.errors.length, 1);
    assert.equal(out.errors[0].token, "<lora:ink:abc>");
    assert.equal(out.errors[0].column, 13);
    assert.match(out.errors[0].message, /"abc" is not a number/);
    assert.equal(out.networks.length, 1);
    const text = await cli(["prompt", "x <lora:ink:abc> <lora:nope>", "--lora-dir", loraDir]);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /Lora not found: nope/);
    assert.match(text.stderr, /error: <lora:ink:abc> \(column 3\)/);
  });

  test("inspect --json: format, family, modules, ranks, alpha, metadata, hashes", async () => {
    const r = await cli(["inspect", "--json", join(loraDir, "ink.safetensors")]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    const { tensors, metadata } = await readSafetensors(fixtureLora);
    const moduleNames = new Set([...tensors.keys()].map((k) => k.split(".")[0]));
    assert.equal(out.format, "kohya");
    assert.equal(out.family, "sd1");
    assert.equal(out.moduleCount, moduleNames.size);
    assert.equal(out.modules.length, moduleNames.size);
    assert.ok(out.modules.every((m: { rank: number; alpha: number }) => m.rank === 4 && m.alpha === 4));
    assert.deepEqual(out.ranks, [4]);
    assert.deepEqual(out.alphas, [4]);
    assert.deepEqual(out.metadata, metadata);
    assert.equal(out.hashes.sha256, createHash("sha256").update(readFileSync(fixtureLora)).digest("hex"));
    assert.equal(out.hashes.addnetShort, addnetShort(fixtureLora));
    const text = await cli(["inspect", join(loraDir, "ink.safetensors")]);
    assert.match(text.stdout, /format: +kohya/);
    assert.match(text.stdout, new RegExp(`AutoV3 ${addnetShort(fixtureLora)}`));
  });

  test("inspect: a corrupt or missing file is one line on stderr and exit code 1", async () => {
    const r = await cli(["inspect", join(tmp, "corrupt.safetensors")]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.match(r.stderr, /^error: .*corrupt\.safetensors/);
    assertNoStack(r);
    const j = await cli(["inspect", "--json", join(tmp, "corrupt.safetensors")]);
    assert.equal(j.code, 1);
    assert.match(JSON.parse(j.stdout).error, /corrupt\.safetensors/);
    const missing = await cli(["inspect", join(tmp, "nothing.safetensors")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^error: .*no such file\n$/);
  });

  test("list: table and --json; the second listing comes from the cache", async () => {
    const first = await cli(["list", "--json", loraDir]);
    assert.equal(first.code, 0, first.stderr);
    const a = JSON.parse(first.stdout);
    assert.deepEqual(a.entries.map((e: { name: string }) => e.name).sort(), ["ink", "soft"]);
    const second = await cli(["list", loraDir]);
    assert.equal(second.code, 0);
    assert.match(second.stdout, /^NAME +ALIAS +FAMILY/);
    assert.match(second.stdout, new RegExp(`soft .* ${addnetShort(fixtureAlpha1)} +styles`));
    assert.match(second.stderr, /2 files \(2 from cache, 0 read\)/);
    const none = await cli(["list", join(tmp, "no-such-dir")]);
    assert.equal(none.code, 1);
    assertNoStack(none);
  });

  test("convert kohya -> peft -> kohya gives back the fixture's tensors", async () => {
    const peft = join(tmp, "ink-peft.safetensors");
    const back = join(tmp, "ink-back.safetensors");
    const r1 = await cli(["convert", join(loraDir, "ink.safetensors"), "--to", "peft", "-o", peft]);
    assert.equal(r1.code, 0, r1.stderr);
    const p = await readSafetensors(peft);
    assert.ok([...p.tensors.keys()].every((k) => k.startsWith("unet.") && /lora_[AB]\.weight$/.test(k)));
    const r2 = await cli(["convert", "--json", peft, "--to", "kohya", "-o", back]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(JSON.parse(r2.stdout).from, "peft");
    const orig = await readSafetensors(fixtureLora);
    const again = await readSafetensors(back);
    assert.deepEqual([...again.tensors.keys()].sort(), [...orig.tensors.keys()].sort());
    for (const [k, t] of orig.tensors) assert.deepEqual(again.tensors.get(k)?.data, t.data, k);
    const bad = await cli(["convert", peft, "--to", "onnx", "-o", back]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /format must be kohya or peft/);
  });

  test("merge: the exact stack's delta is 0.7 delta(A) + 0.3 delta(B) on the UNet", async () => {
    const out = join(tmp, "merged.safetensors");
    const a = join(loraDir, "ink.safetensors");
    const b = join(loraDir, "styles", "soft.safetensors");
    const r = await cli(["merge", "--json", "-o", out, `${a}:0.7`, `${b}:0.5:0.3`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      JSON.parse(r.stdout).inputs.map((i: { te: number; unet: number }) => [i.te, i.unet]),
      [
        [0.7, 0.7],
        [0.5, 0.3],
      ],
    );
    for (const module of [
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k",
      "lora_unet_up_blocks_2_attentions_2_transformer_blocks_0_attn2_to_out_0",
    ]) {
      const da = await kohyaDelta(a, module);
      const db = await kohyaDelta(b, module);
      const dm = await kohyaDelta(out, module);
      let maxErr = 0;
      let maxAbs = 0;
      for (let i = 0; i < dm.length; i++) {
        const want = 0.7 * da[i] + 0.3 * db[i];
        maxErr = Math.max(maxErr, Math.abs(dm[i] - want));
        maxAbs = Math.max(maxAbs, Math.abs(want));
      }
      assert.ok(
        maxErr <= 1e-6 * Math.max(maxAbs, 1e-3),
        `${module}: max error ${maxErr} (max |delta| ${maxAbs})`,
      );
    }
    const bad = await cli(["merge", "-o", out, `${a}:0.7:x`]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /no such file/);
    assertNoStack(bad);
  });

  /** max |got - want| / max |want| over a module's weight delta. */
  function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
    let err = 0;
    let norm = 0;
    for (let i = 0; i < want.length; i++) {
      err = Math.max(err, Math.abs(got[i] - want[i]));
      norm = Math.max(norm, Math.abs(want[i]));
    }
    return err / norm;
  }

  test("bake: W + m * scale * up @ down for A1111's multipliers; a LoRA named twice counts twice", async () => {
    const base = join(tmp, "base.safetensors");
    const out = join(tmp, "baked.safetensors");
    // A1111 applies a name given twice twice, both times with the last token's multipliers: 2 x 0.35 = 0.7.
    const r = await cli([
      "bake",
      "--json",
      "--base",
      base,
      "-o",
      out,
      "cat <lora:ink:0.1> <lora:ink:0.35>",
      "--lora-dir",
      loraDir,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.prompt, "cat  ");
    assert.deepEqual(
      summary.networks.map((n: { te: number }) => n.te),
      [0.35, 0.35],
    );
    assert.ok(summary.warnings.some((w: string) => w.includes("named 2 times")));
    const before = await readSafetensors(base);
    const after = await readSafetensors(out);
    assert.equal(after.tensors.size, before.tensors.size);
    for (const [module, key] of CHECKED_MODULES) {
      const delta = await kohyaDelta(fixtureLora, module);
      const w = before.tensors.get(key)!.data;
      const got = after.tensors.get(key)!.data;
      const want = Array.from(w, (x, i) => x + 0.7 * delta[i]);
      assert.ok(relativeError(got, want) < 1e-6, `${key}: ${relativeError(got, want)}`);
      const change = Array.from(got, (x, i) => x - w[i]);
      assert.ok(
        relativeError(
          change,
          Array.from(delta, (d) => 0.7 * d),
        ) < 1e-3,
        `${key} delta`,
      );
    }
    const untouched = "model.diffusion_model.out.2.weight";
    assert.deepEqual(after.tensors.get(untouched)?.data, before.tensors.get(untouched)?.data);

    const missing = await cli([
      "bake",
      "--base",
      base,
      "-o",
      join(tmp, "x.safetensors"),
      "<lora:ink> <lora:nope>",
      "--lora-dir",
      loraDir,
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^error: Lora not found: nope/);
    assertNoStack(missing);
    const again = await cli(["bake", "--base", base, "-o", out, "<lora:ink>", "--lora-dir", loraDir]);
    assert.equal(again.code, 1, "an existing output is not replaced without --overwrite");
    assertNoStack(again);
  });

  test("extract: a rank-4 LoRA from (baked - base) reproduces the baked delta", async () => {
    const base = join(tmp, "base.safetensors");
    const tuned = join(tmp, "tuned.safetensors");
    const out = join(tmp, "extracted.safetensors");
    const b = await cli(["bake", "--base", base, "-o", tuned, "<lora:ink:0.7>", "--lora-dir", loraDir]);
    assert.equal(b.code, 0, b.stderr);
    const r = await cli(["extract", "--json", "--base", base, "--tuned", tuned, "--rank", "4", "-o", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).family, "sd1");
    const before = await readSafetensors(base);
    const after = await readSafetensors(tuned);
    for (const [module, key] of CHECKED_MODULES) {
      const w = before.tensors.get(key)!.data;
      const change = Array.from(after.tensors.get(key)!.data, (x, i) => x - w[i]);
      const extracted = await kohyaDelta(out, module);
      assert.ok(relativeError(extracted, change) < 1e-3, `${module}: ${relativeError(extracted, change)}`);
    }
    const bad = await cli(["extract", "--base", base, "--tuned", tuned, "--rank", "0", "-o", out]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--rank must be a positive integer/);
  });

  test("bin/prompt-lora.mjs runs the same CLI; usage errors exit non-zero without a stack", async () => {
    const r = await cli(
      ["prompt", "--json", "<lora:ink>", "--lora-dir", loraDir],
      "packages/prompt-lora/bin/prompt-lora.mjs",
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).networks[0].hash, addnetShort(fixtureLora));
    const u = await cli(["frobnicate"]);
    assert.notEqual(u.code, 0);
    assertNoStack(u);
  });
});
