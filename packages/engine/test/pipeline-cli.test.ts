/**
 * The CLIs end to end, as subprocesses on a temp copy of the tiny model:
 * - `generate` from a single-file checkpoint with --init-latents = the 07 DDIM 64 px reference noise: the PNG's
 *   pixels equal the reference image (x255, truncated) within one level; the `parameters` chunk, read back with
 *   an independent PNG chunk parser (own CRC-32), is the WebUI infotext with the model's AutoV2 hash and the
 *   LoRA's addnet short hash, both computed here with node:crypto;
 * - --help documents the flags; a bad size fails with one line and exit code 1;
 * - `engine eval --loss-grad`: loss and LoRA gradients against 05_lora_unet (1e-3 relative, Frobenius), and the
 *   text encoder against 02_text_encoder.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { readSafetensors, writeSafetensors } from "@lora-studio/prompt-lora";
import sharp from "sharp";
import { FIXTURES, loadReference, relMaxDiff, TINY } from "./models.helpers.ts";
import { copyTinyModel, type TinyCopy } from "./pipeline.helpers.ts";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const GENERATE = join(ROOT, "packages/engine/src/cli/generate.ts");
const ENGINE = join(ROOT, "packages/engine/src/cli/main.ts");

function run(script: string, args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", script, ...args], {
    cwd: ROOT,
    encoding: "utf8",
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let tiny: TinyCopy;
before(() => {
  tiny = copyTinyModel("pipeline-cli-");
  mkdirSync(join(tiny.dir, "Lora"));
  copyFileSync(`${TINY}lora/tiny-sd1-lora-kohya.safetensors`, join(tiny.dir, "Lora", "ink.safetensors"));
});
after(() => tiny?.remove());

// ---- an independent PNG reader: chunk walk with a bitwise CRC-32 ----
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunks(png: Buffer): { type: string; data: Buffer }[] {
  assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], "PNG signature");
  const out: { type: string; data: Buffer }[] = [];
  let at = 8;
  while (at < png.length) {
    const len = png.readUInt32BE(at);
    const type = png.toString("latin1", at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + len);
    assert.equal(png.readUInt32BE(at + 8 + len), crc32(png.subarray(at + 4, at + 8 + len)), `CRC of ${type}`);
    out.push({ type, data });
    at += 12 + len;
  }
  return out;
}

function textChunks(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of pngChunks(png)) {
    if (c.type !== "tEXt") continue;
    const nul = c.data.indexOf(0);
    out[c.data.toString("latin1", 0, nul)] = c.data.toString("latin1", nul + 1);
  }
  return out;
}

test("generate: --init-latents reproduces the 07 DDIM reference image; PNG infotext with hashes", async () => {
  const ref = await loadReference("07_pipeline_ddim_64");
  const params = JSON.parse(readFileSync(`${TINY}reference/07_pipeline_ddim_64.json`, "utf8")).params;
  const latents = join(tiny.dir, "latents.safetensors");
  const lat = ref.f32("latents_in");
  await writeSafetensors(latents, [
    {
      name: "latents",
      dtype: "F32",
      shape: [1, 4, 8, 8],
      data: new Uint8Array(lat.buffer, lat.byteOffset, lat.byteLength),
    },
  ]);
  const out = join(tiny.dir, "out.png");
  // ink at unet multiplier 0 and te 0: listed in the infotext, no effect on the pixels.
  const prompt = `${params.prompt}<lora:ink:0:0>`;
  const r = run(GENERATE, [
    prompt,
    "--model",
    tiny.single,
    "--tokenizer",
    `${FIXTURES}clip-tokenizer`,
    "--text-encoder-heads",
    "4",
    "--lora-dir",
    join(tiny.dir, "Lora"),
    "--cache-dir",
    join(tiny.dir, "cache"),
    "--sampler",
    "DDIM",
    "--steps",
    "4",
    "--cfg",
    "7.5",
    "--width",
    "64",
    "--height",
    "64",
    "--seed",
    "42",
    "--init-latents",
    latents,
    "-o",
    out,
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout);
  assert.deepEqual(json.outputs, [out]);
  assert.ok(existsSync(join(tiny.dir, "cache", "lora-library-cache.json")), "library cache not written");
  assert.equal(json.settings.seed, 42);

  const png = readFileSync(out);
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height, info.channels], [64, 64, 3]);
  const want = ref.f32("image");
  let worst = 0;
  for (let i = 0; i < want.length; i++)
    worst = Math.max(worst, Math.abs(data[i] - Math.trunc(255 * want[i])));
  assert.ok(worst <= 1, `pixels differ from the reference by ${worst} levels`);

  const sha = createHash("sha256").update(readFileSync(tiny.single)).digest("hex");
  const lora = readFileSync(join(tiny.dir, "Lora", "ink.safetensors"));
  const addnet = createHash("sha256")
    .update(lora.subarray(8 + Number(lora.readBigUInt64LE(0))))
    .digest("hex");
  const expected = [
    prompt,
    `Steps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 64x64, Model hash: ${sha.slice(0, 10)}, Model: tiny-sd1, Lora hashes: "ink: ${addnet.slice(0, 12)}"`,
  ].join("\n");
  assert.equal(textChunks(png).parameters, expected);
  assert.deepEqual(
    pngChunks(png)
      .map((c) => c.type)
      .slice(0, 2),
    ["IHDR", "tEXt"],
  );
});

test("generate --help documents the flags; a bad size fails with one line", () => {
  const help = run(GENERATE, ["--help"]);
  assert.equal(help.code, 0);
  for (const flag of [
    "--negative",
    "--model",
    "--lora-dir",
    "--sampler",
    "--steps",
    "--cfg",
    "--width",
    "--height",
    "--seed",
    "--batch",
    "-o, --output",
    "--init-latents",
    "--json",
  ])
    assert.ok(help.stdout.includes(flag), `--help lacks ${flag}`);
  const bad = run(GENERATE, [
    "x",
    "--model",
    tiny.diffusers,
    "--width",
    "60",
    "--height",
    "64",
    "--steps",
    "1",
  ]);
  assert.equal(bad.code, 1);
  assert.match(
    bad.stderr.trim(),
    /^error: width must be a positive multiple of 32 for this model \(.*\), got 60$/,
  );
});

test("engine eval: text encoder and the UNet LoRA loss/gradients match the reference", async () => {
  const te = join(tiny.dir, "te-in.safetensors");
  const ref2 = await loadReference("02_text_encoder");
  const ids = ref2.int64("input_ids");
  await writeSafetensors(te, [
    {
      name: "input_ids",
      dtype: "I64",
      shape: [6, 77],
      data: new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength),
    },
  ]);
  const teOut = join(tiny.dir, "te-out.safetensors");
  const r1 = run(ENGINE, [
    "eval",
    "--model",
    tiny.diffusers,
    "--component",
    "text_encoder",
    "--inputs",
    te,
    "--out",
    teOut,
  ]);
  assert.equal(r1.code, 0, r1.stderr);
  const got1 = (await readSafetensors(teOut)).tensors;
  assert.ok(relMaxDiff(got1.get("out")?.data ?? [], ref2.f32("last_hidden_state")) <= 1e-4);
  assert.ok(relMaxDiff(got1.get("pooler_output")?.data ?? [], ref2.f32("pooler_output")) <= 1e-4);

  const ref5 = await loadReference("05_lora_unet");
  const f32 = (name: string, shape: number[], d: Float32Array) => ({
    name,
    dtype: "F32" as const,
    shape,
    data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength),
  });
  const ts = ref5.int64("timesteps");
  const inputs = join(tiny.dir, "unet-in.safetensors");
  await writeSafetensors(inputs, [
    f32("sample", [2, 4, 8, 8], ref5.f32("noisy_latents")),
    {
      name: "timestep",
      dtype: "I64",
      shape: [2],
      data: new Uint8Array(ts.buffer, ts.byteOffset, ts.byteLength),
    },
    f32("encoder_hidden_states", [2, 77, 32], ref5.f32("encoder_hidden_states")),
    f32("noise", [2, 4, 8, 8], ref5.f32("target")),
  ]);
  const outPath = join(tiny.dir, "unet-out.safetensors");
  const lora = `${TINY}lora/tiny-sd1-lora-kohya.safetensors`;
  const r2 = run(ENGINE, [
    "eval",
    "--model",
    tiny.diffusers,
    "--component",
    "unet",
    "--inputs",
    inputs,
    "--out",
    outPath,
    "--lora",
    lora,
    "--loss-grad",
  ]);
  assert.equal(r2.code, 0, r2.stderr);
  const got = (await readSafetensors(outPath)).tensors;
  assert.ok(
    relMaxDiff(got.get("out")?.data ?? [], ref5.f32("unet_output_lora")) <= 1e-4,
    "UNet output with the LoRA",
  );
  assert.ok(Math.abs((got.get("loss")?.data[0] ?? 0) - ref5.f32("loss")[0]) <= 1e-5 * ref5.f32("loss")[0]);
  const gradNames = [...got.keys()].filter((k) => k.startsWith("lora_unet_"));
  assert.equal(gradNames.length, 2 * 88);
  for (const name of gradNames) {
    const g = got.get(name)?.data as Float32Array;
    const want = ref5.f32(`grad.${name}`);
    let num = 0;
    let den = 0;
    for (let i = 0; i < want.length; i++) {
      num += (g[i] - want[i]) ** 2;
      den += want[i] ** 2;
    }
    assert.ok(Math.sqrt(num / den) <= 1e-3, `${name}: relative error ${Math.sqrt(num / den)}`);
  }
});
