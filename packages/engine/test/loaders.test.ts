/**
 * Checkpoint loaders: key mapping checked against the reference converter's own manifests (tiny-sd1.keys.json and
 * the full-size sd15-original-keys.json, both written by diffusers' conversion script, each original key with its
 * diffusers key), configs derived from shapes vs the diffusers configs, every tensor used or reported, family
 * detection, pickle refusal, and errors naming a missing or misshapen tensor.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { SafetensorsFile, TensorInfo } from "@lora-studio/prompt-lora";
import { openSafetensors, writeSafetensors } from "@lora-studio/prompt-lora";
import { buildClipTextGraph } from "../src/models/clip-text.ts";
import type { Checkpoint } from "../src/models/loader/checkpoint.ts";
import { inspectCheckpoint, openCheckpoint, singleFileCheckpoint } from "../src/models/loader/checkpoint.ts";
import { detectDiffusersFamily, detectSingleFileFamily } from "../src/models/loader/detect.ts";
import { CheckpointError } from "../src/models/loader/errors.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from "../src/models/vae/autoencoder-kl.ts";
import { FIXTURES, TINY, TINY_DIFFUSERS, TINY_OPTIONS, TINY_SINGLE } from "./models.helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "loaders-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Manifest {
  keys: Record<string, { shape: number[]; diffusers: string }>;
}

/** A header-only SafetensorsFile (no data): fileOffset = the tensor's index, so a lookup can be traced back. */
function headerOnlyFile(
  path: string,
  entries: [string, number[]][],
  metadata: Record<string, string> = {},
): SafetensorsFile {
  const tensors = new Map<string, TensorInfo>(
    entries.map(([name, shape], i) => [name, { name, dtype: "F16", shape, fileOffset: i, byteLength: 2 }]),
  );
  const noData = () => Promise.reject(new Error("header-only test file"));
  return {
    path,
    headerByteLength: 0,
    dataStart: 0,
    metadata,
    tensors,
    readRaw: noData,
    readFloat32: noData,
    close: async () => {},
  };
}

const componentOf = (ck: Checkpoint, c: string) =>
  c === "unet" ? ck.weights.unet : c === "vae" ? ck.weights.vae : ck.weights.textEncoder;

/** Every manifest key is where our mapping of its diffusers key points. */
function checkManifestMapping(ck: Checkpoint, file: SafetensorsFile, m: Manifest): void {
  for (const [original, entry] of Object.entries(m.keys)) {
    const [component, key] = entry.diffusers.split(":");
    const t = componentOf(ck, component).tensor(key, entry.shape);
    assert.ok("offset" in t, `${key} must be referenced externally`);
    assert.equal(
      t.offset,
      file.tensors.get(original)?.fileOffset,
      `${component}:${key} should map to ${original}`,
    );
  }
}

function buildAll(ck: Checkpoint, latent: number): void {
  buildUNetGraph(ck.unet, ck.weights.unet, { batch: 1, height: latent, width: latent });
  buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: 1 });
  const f = 2 ** (ck.vae.block_out_channels.length - 1);
  buildVaeEncoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: latent * f, width: latent * f });
  buildVaeDecoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: latent, width: latent });
}

test("tiny-sd1 single file: every key maps as the reference converter wrote it, none unused", async () => {
  const manifest: Manifest = JSON.parse(readFileSync(`${TINY}tiny-sd1.keys.json`, "utf8"));
  const file = await openSafetensors(TINY_SINGLE);
  const ck = singleFileCheckpoint(file, TINY_OPTIONS);
  try {
    assert.equal(ck.family, "sd1");
    checkManifestMapping(ck, file, manifest);
    assert.deepEqual(ck.unused(), []);
  } finally {
    await ck.close();
  }
});

test("configs derived from the single file's shapes equal the diffusers folder's config.json", async () => {
  const single = await openCheckpoint(TINY_SINGLE, TINY_OPTIONS);
  const folder = await openCheckpoint(TINY_DIFFUSERS);
  try {
    assert.equal(folder.layout, "diffusers");
    assert.equal(folder.family, "sd1");
    assert.deepEqual(single.unet, folder.unet);
    assert.deepEqual(single.vae, folder.vae);
    assert.deepEqual(single.textEncoder, folder.textEncoder);
    buildAll(folder, 4);
    assert.deepEqual(folder.unused(), []);
  } finally {
    await single.close();
    await folder.close();
  }
});

test("full-size SD1.5 manifest: SD1.5 configs derived, UNet/TE/VAE graphs built, every key consumed", () => {
  const raw = JSON.parse(readFileSync(`${FIXTURES}sd15-original-keys.json`, "utf8"));
  const manifest: Manifest = raw;
  const extras = Object.keys(raw.not_produced_by_the_conversion_but_found_in_real_files);
  const entries: [string, number[]][] = Object.entries(manifest.keys).map(([k, v]) => [k, v.shape]);
  for (const k of extras) entries.push([k, [1]]);
  const file = headerOnlyFile("/models/v1-5-pruned.safetensors", entries);
  const ck = singleFileCheckpoint(file);
  assert.equal(ck.family, "sd1");
  const want = raw.configs;
  assert.deepEqual(ck.unet.block_out_channels, want.unet.block_out_channels);
  assert.deepEqual(ck.unet.down_block_types, want.unet.down_block_types);
  assert.deepEqual(ck.unet.up_block_types, want.unet.up_block_types);
  assert.equal(ck.unet.attention_head_dim, want.unet.attention_head_dim);
  assert.equal(ck.unet.cross_attention_dim, want.unet.cross_attention_dim);
  assert.deepEqual(ck.vae.block_out_channels, want.vae.block_out_channels);
  for (const f of ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"] as const)
    assert.equal(ck.textEncoder[f], want.text_encoder[f], f);
  buildAll(ck, 64);
  // Only the buffers the conversion does not produce (position_ids, schedule buffers...) are left, and reported.
  assert.deepEqual(
    ck
      .unused()
      .map((u) => u.key)
      .sort(),
    [...extras].sort(),
  );
  checkManifestMapping(ck, file, manifest);
});

test("family detection from keys, shapes, metadata and file names", () => {
  const ctxKey = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight";
  const sd2: [string, number[]][] = [
    ["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", [3072, 1024]],
    [ctxKey, [320, 1024]],
  ];
  const shapes = (e: [string, number[]][]) => new Map(e);
  assert.equal(
    detectSingleFileFamily(shapes(sd2), {}, "/m/v2-1_768-ema-pruned.safetensors").family,
    "sd2-768-v",
  );
  assert.equal(
    detectSingleFileFamily(shapes(sd2), {}, "/m/v2-1_512-ema-pruned.safetensors").family,
    "sd2-512",
  );
  assert.equal(
    detectSingleFileFamily(shapes(sd2), { "modelspec.prediction_type": "epsilon" }, "/m/x.safetensors")
      .family,
    "sd2-512",
  );
  const sdxl: [string, number[]][] = [["conditioner.embedders.1.model.ln_final.weight", [1280]]];
  assert.equal(detectSingleFileFamily(shapes(sdxl), {}, "/m/x.safetensors").family, "sdxl");
  assert.equal(
    detectSingleFileFamily(shapes([[ctxKey, [320, 768]]]), {}, "/m/unet-only.safetensors").family,
    "sd1",
  );
  assert.equal(detectSingleFileFamily(shapes([["foo", [1]]]), {}, "/m/x.safetensors").family, "unknown");
  assert.equal(detectDiffusersFamily(false, 1024, "v_prediction").family, "sd2-768-v");
  assert.equal(detectDiffusersFamily(true, 2048, "epsilon").family, "sdxl");
});

test("SD2 and SDXL files are recognised and reported; building SDXL is refused with the family named", async () => {
  const sd2 = join(tmp, "sd21-768.safetensors");
  await writeSafetensors(sd2, [
    { name: "cond_stage_model.model.ln_final.weight", dtype: "F32", shape: [4], data: new Float32Array(4) },
  ]);
  assert.equal((await inspectCheckpoint(sd2)).family, "sd2-768-v");
  const sdxl = join(tmp, "sdxl.safetensors");
  await writeSafetensors(sdxl, [
    {
      name: "conditioner.embedders.1.model.ln_final.weight",
      dtype: "F32",
      shape: [4],
      data: new Float32Array(4),
    },
  ]);
  assert.equal((await inspectCheckpoint(sdxl)).family, "sdxl");
  await assert.rejects(openCheckpoint(sdxl), (e: unknown) => {
    assert.ok(e instanceof CheckpointError);
    assert.equal(e.code, "UNSUPPORTED_FAMILY");
    assert.match(e.message, /sdxl/);
    return true;
  });
});

test(".ckpt pickles are refused, never opened, with how to convert", async () => {
  const ckpt = join(tmp, "model.ckpt");
  writeFileSync(ckpt, "not even read");
  const zipInDisguise = join(tmp, "renamed.safetensors");
  writeFileSync(zipInDisguise, Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0]));
  for (const p of [ckpt, zipInDisguise]) {
    await assert.rejects(openCheckpoint(p), (e: unknown) => {
      assert.ok(e instanceof CheckpointError);
      assert.equal(e.code, "PICKLE_REFUSED");
      assert.match(e.message, /safetensors/);
      assert.match(e.message, /save_file/);
      return true;
    });
  }
});

test("a missing or misshapen tensor is an error naming it", async () => {
  const real = await openSafetensors(TINY_SINGLE);
  const entries: [string, number[]][] = [...real.tensors.values()].map((t) => [t.name, [...t.shape]]);
  await real.close();
  const gone = "model.diffusion_model.output_blocks.4.1.transformer_blocks.0.attn2.to_v.weight";
  const missing = singleFileCheckpoint(
    headerOnlyFile(
      "/m/a.safetensors",
      entries.filter(([k]) => k !== gone),
    ),
    TINY_OPTIONS,
  );
  assert.throws(
    () => buildUNetGraph(missing.unet, missing.weights.unet, { batch: 1, height: 8, width: 8 }),
    (e: unknown) =>
      e instanceof CheckpointError &&
      e.code === "MISSING_TENSOR" &&
      e.key === gone &&
      e.message.includes(gone),
  );
  const bent = "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight";
  const misshapen = singleFileCheckpoint(
    headerOnlyFile(
      "/m/b.safetensors",
      entries.map(([k, s]) => [k, k === bent ? [32, 63, 1, 1] : s]),
    ),
    TINY_OPTIONS,
  );
  assert.throws(
    () => buildVaeDecoderGraph(misshapen.vae, misshapen.weights.vae, { batch: 1, height: 4, width: 4 }),
    (e: unknown) =>
      e instanceof CheckpointError &&
      e.code === "SHAPE_MISMATCH" &&
      e.key === bent &&
      /\[32,63,1,1\]/.test(e.message),
  );
});
