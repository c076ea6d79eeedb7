/**
 * openCheckpoint: a user's model as configs + weight sources for the three SD components, from either
 * - a single .safetensors file in the original layout (model.diffusion_model.*, first_stage_model.*,
 *   cond_stage_model.transformer.*), configs derived from the tensor shapes, or
 * - a diffusers folder (model_index.json, unet/, text_encoder/, vae/, scheduler/ with config.json files).
 * Weights stay in their files (ExternalTensor references). `usage()` lists every stored tensor no built graph
 * has used so far. Pickles (.ckpt/.pt/.bin) are refused without being opened.
 * A component stored in 16 bits is referenced through its float32 cache (fp32-cache.ts) unless the `fp32Cache`
 * option (or LORA_STUDIO_FP32_CACHE=0) turns that off: the CPU provider computes in float32 anyway.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { extname, join, resolve } from "node:path";
import { openSafetensors, type SafetensorsFile } from "@lora-studio/prompt-lora";
import type { WeightSource } from "../../nn/module.ts";
import { consoleSink } from "../../runtime/messages.ts";
import {
  type ClipTextConfig,
  parseClipTextConfig,
  parseUNetConfig,
  parseVaeConfig,
  type UNetModelConfig,
  type VaeConfig,
} from "../configs.ts";
import {
  deriveClipTextConfig,
  deriveOpenClipTextConfig,
  deriveUNetConfig,
  deriveVaeConfig,
  type ShapeMap,
} from "./derive-configs.ts";
import { detectDiffusersFamily, detectSingleFileFamily, type ModelFamilyId } from "./detect.ts";
import { CheckpointError, pickleRefusal } from "./errors.ts";
import {
  type Fp32CacheEntry,
  type Fp32CacheOptions,
  fp32CacheDisabledByEnv,
  openFp32Cache,
} from "./fp32-cache.ts";
import {
  architectureFor,
  openClipKeyMapper,
  textEncoderKeyMapper,
  unetKeyMapper,
  vaeKeyMapper,
} from "./original-keys.ts";
import { FileWeights } from "./weights.ts";

export interface OpenCheckpointOptions {
  /** Overrides the prediction type (SD2 files cannot tell 512-epsilon from 768-v by their tensors). */
  predictionType?: "epsilon" | "v_prediction";
  /** Text-encoder heads for single files whose width is not a multiple of 64 (tiny test models). */
  textEncoderHeads?: number;
  /** UNet heads (one for all levels, or per level) for single files off the SD1/SD2 conventions. */
  unetHeads?: number | number[];
  /**
   * float32 weight cache for 16-bit components (default: on, in the default folder). `false` references the
   * 16-bit tensors in place and casts them in the graph: what GPU providers want (fp32CacheForProvider picks).
   */
  fp32Cache?: false | Fp32CacheOptions;
}

export interface UnusedTensor {
  file: string;
  key: string;
}

export interface Checkpoint {
  path: string;
  layout: "single-file" | "diffusers";
  family: ModelFamilyId;
  familyEvidence: string;
  unet: UNetModelConfig;
  vae: VaeConfig;
  textEncoder: ClipTextConfig;
  weights: { unet: WeightSource; vae: WeightSource; textEncoder: WeightSource };
  /** Stored tensors no graph built from this checkpoint has used (so far). */
  unused(): UnusedTensor[];
  /** Components whose weights come from the fp32 cache (empty: all referenced in place). */
  fp32Cache: Fp32CacheEntry[];
  close(): Promise<void>;
}

const PICKLE_EXT = new Set([".ckpt", ".pt", ".pth", ".bin", ".pkl"]);

/** Refuses pickles by extension or by content (zip container "PK", or pickle protocol byte 0x80). */
async function refusePickle(path: string): Promise<void> {
  if (PICKLE_EXT.has(extname(path).toLowerCase())) throw pickleRefusal(path);
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    if ((head[0] === 0x50 && head[1] === 0x4b) || head[0] === 0x80) throw pickleRefusal(path);
  } finally {
    await fh.close();
  }
}

function shapesOf(file: SafetensorsFile): Map<string, readonly number[]> {
  return new Map([...file.tensors.values()].map((t) => [t.name, t.shape]));
}

function unusedIn(files: FileWeights[]): UnusedTensor[] {
  const byFile = new Map<SafetensorsFile, Set<string>>();
  for (const w of files) {
    const s = byFile.get(w.file) ?? new Set<string>();
    for (const k of w.used) s.add(k);
    byFile.set(w.file, s);
  }
  const out: UnusedTensor[] = [];
  for (const [file, used] of byFile)
    for (const k of file.tensors.keys()) if (!used.has(k)) out.push({ file: file.path, key: k });
  return out;
}

function unsupported(path: string, family: ModelFamilyId, evidence: string): CheckpointError {
  return new CheckpointError(
    "UNSUPPORTED_FAMILY",
    path,
    `recognised as ${family} (${evidence}); only SD1 and SD2 models can be built so far`,
  );
}

/**
 * The checkpoint view of an open single-file safetensors (header only: nothing is read). Exported so a key/shape
 * manifest can be checked without a multi-GB file.
 */
export function singleFileCheckpoint(file: SafetensorsFile, o: OpenCheckpointOptions = {}): Checkpoint {
  return singleFileParts(file, o).checkpoint;
}

/** One component's weights and the prefix of its keys in its file: the unit the fp32 cache converts. */
interface CachePart {
  component: "unet" | "vae" | "text_encoder";
  weights: FileWeights;
  prefix: string;
}

function singleFileParts(
  file: SafetensorsFile,
  o: OpenCheckpointOptions,
): { checkpoint: Checkpoint; parts: CachePart[] } {
  const path = file.path;
  const shapes: ShapeMap = shapesOf(file);
  const det = detectSingleFileFamily(shapes, file.metadata, path);
  if (det.family === "unknown") throw new CheckpointError("NOT_A_CHECKPOINT", path, det.evidence);
  if (det.family === "sdxl") throw unsupported(path, det.family, det.evidence);
  const sd2 = det.family === "sd2-512" || det.family === "sd2-768-v";
  const prediction = o.predictionType ?? (det.family === "sd2-768-v" ? "v_prediction" : "epsilon");
  const unet = deriveUNetConfig(shapes, path, {
    headConvention: sd2 ? "sd2" : "sd1",
    heads: o.unetHeads,
    predictionType: prediction,
  });
  const vae = deriveVaeConfig(shapes, path, 0.18215);
  const tePrefix = sd2 ? "cond_stage_model.model." : "cond_stage_model.transformer.";
  const textEncoder = sd2
    ? deriveOpenClipTextConfig(shapes, path, tePrefix, o.textEncoderHeads)
    : deriveClipTextConfig(shapes, path, tePrefix, o.textEncoderHeads);
  const arch = architectureFor(unet, textEncoder, tePrefix, sd2 ? "open-clip" : "hf-clip");
  const teKeys = sd2 ? openClipKeyMapper(arch, tePrefix) : textEncoderKeyMapper(tePrefix);
  const w = {
    unet: new FileWeights(file, unetKeyMapper(arch), "unet"),
    vae: new FileWeights(file, vaeKeyMapper(vae.block_out_channels.length), "vae"),
    textEncoder: new FileWeights(file, teKeys, "text_encoder"),
  };
  const checkpoint: Checkpoint = {
    path,
    layout: "single-file",
    family: det.family,
    familyEvidence: det.evidence,
    unet,
    vae,
    textEncoder,
    weights: w,
    unused: () => unusedIn([w.unet, w.vae, w.textEncoder]),
    fp32Cache: [],
    close: () => file.close(),
  };
  const parts: CachePart[] = [
    { component: "unet", weights: w.unet, prefix: "model.diffusion_model." },
    { component: "vae", weights: w.vae, prefix: "first_stage_model." },
    { component: "text_encoder", weights: w.textEncoder, prefix: tePrefix },
  ];
  return { checkpoint, parts };
}

/**
 * Points each 16-bit component at its fp32 cache (built on first use). A component whose cache cannot be made
 * (read-only or full disk, ...) keeps its 16-bit weights in place, with a message: slower, still correct.
 */
async function attachFp32Cache(
  ck: Checkpoint,
  parts: CachePart[],
  o: OpenCheckpointOptions,
): Promise<Checkpoint> {
  const options = o.fp32Cache ?? (fp32CacheDisabledByEnv() ? false : {});
  if (options === false) return ck;
  const say = options.onMessage ?? consoleSink;
  const releases: (() => Promise<void>)[] = [];
  for (const p of parts) {
    try {
      const c = await openFp32Cache(p.weights.file, p.prefix, p.component, options);
      if (!c) continue;
      p.weights.fp32Cache = c;
      releases.push(c.release);
      ck.fp32Cache.push(c.entry);
    } catch (e) {
      say(
        `lora-studio: no fp32 weight cache for the ${p.component} of ${ck.path} (${(e as Error).message}); ` +
          "using its 16-bit weights in place (cast in the graph: more memory, slower session creation)",
      );
    }
  }
  const close = ck.close;
  return {
    ...ck,
    close: async () => {
      for (const r of releases) await r();
      await close();
    },
  };
}

async function openSingleFile(path: string, o: OpenCheckpointOptions): Promise<Checkpoint> {
  await refusePickle(path);
  const file = await openSafetensors(path);
  try {
    const { checkpoint, parts } = singleFileParts(file, o);
    return await attachFp32Cache(checkpoint, parts, o);
  } catch (err) {
    await file.close();
    throw err;
  }
}

function readJson(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new CheckpointError("BAD_CONFIG", path, "file is missing");
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (cause) {
    throw new CheckpointError("BAD_CONFIG", path, `not valid JSON: ${(cause as Error).message}`);
  }
}

/** The component's weights file: <dir>/<name>.safetensors; a pickle-only component is refused. */
function componentFile(dir: string, base: string): string {
  // diffusers' fp16 "variant" files are the same layout in half precision.
  for (const name of [`${base}.safetensors`, `${base}.fp16.safetensors`]) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  const bin = join(dir, base === "model" ? "pytorch_model.bin" : `${base}.bin`);
  if (existsSync(bin)) throw pickleRefusal(bin);
  throw new CheckpointError("MISSING_TENSOR", dir, `no ${base}.safetensors in this component folder`);
}

async function openDiffusers(dir: string, o: OpenCheckpointOptions): Promise<Checkpoint> {
  const index = readJson(join(dir, "model_index.json"));
  const sched = existsSync(join(dir, "scheduler", "scheduler_config.json"))
    ? readJson(join(dir, "scheduler", "scheduler_config.json"))
    : {};
  const prediction = o.predictionType ?? (sched.prediction_type as string | undefined) ?? "epsilon";
  const unetCfgPath = join(dir, "unet", "config.json");
  const unetJson = readJson(unetCfgPath);
  const det = detectDiffusersFamily(
    "text_encoder_2" in index,
    Number(unetJson.cross_attention_dim),
    prediction,
  );
  if (det.family === "sdxl" || det.family === "unknown") throw unsupported(dir, det.family, det.evidence);
  const unet = parseUNetConfig(unetJson, unetCfgPath, prediction);
  const vae = parseVaeConfig(readJson(join(dir, "vae", "config.json")), join(dir, "vae", "config.json"));
  const teCfg = join(dir, "text_encoder", "config.json");
  const textEncoder = parseClipTextConfig(readJson(teCfg), teCfg);
  const files: SafetensorsFile[] = [];
  try {
    const openPart = async (sub: string, base: string) => {
      const f = await openSafetensors(componentFile(join(dir, sub), base));
      files.push(f);
      return f;
    };
    const identity = (k: string) => k;
    const w = {
      unet: new FileWeights(await openPart("unet", "diffusion_pytorch_model"), identity, "unet"),
      vae: new FileWeights(await openPart("vae", "diffusion_pytorch_model"), identity, "vae"),
      textEncoder: new FileWeights(await openPart("text_encoder", "model"), identity, "text_encoder"),
    };
    const checkpoint: Checkpoint = {
      path: dir,
      layout: "diffusers",
      family: det.family,
      familyEvidence: det.evidence,
      unet,
      vae,
      textEncoder,
      weights: w,
      unused: () => unusedIn([w.unet, w.vae, w.textEncoder]),
      fp32Cache: [],
      close: async () => {
        for (const f of files) await f.close();
      },
    };
    return await attachFp32Cache(
      checkpoint,
      [
        { component: "unet", weights: w.unet, prefix: "" },
        { component: "vae", weights: w.vae, prefix: "" },
        { component: "text_encoder", weights: w.textEncoder, prefix: "" },
      ],
      o,
    );
  } catch (err) {
    for (const f of files) await f.close();
    throw err;
  }
}

/** Opens a single-file checkpoint or a diffusers folder (detected by model_index.json). */
export async function openCheckpoint(path: string, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new CheckpointError("NOT_A_CHECKPOINT", abs, "no such file or folder");
  if (statSync(abs).isDirectory()) {
    if (!existsSync(join(abs, "model_index.json")))
      throw new CheckpointError(
        "NOT_A_CHECKPOINT",
        abs,
        "a folder must be a diffusers model (model_index.json)",
      );
    return openDiffusers(abs, options);
  }
  return openSingleFile(abs, options);
}

/** Layout and family of a checkpoint without building anything (SD2 / SDXL are reported, not refused). */
export async function inspectCheckpoint(
  path: string,
): Promise<{ layout: "single-file" | "diffusers"; family: ModelFamilyId; evidence: string }> {
  const abs = resolve(path);
  if (existsSync(abs) && statSync(abs).isDirectory()) {
    const index = readJson(join(abs, "model_index.json"));
    const unetJson = readJson(join(abs, "unet", "config.json"));
    const schedPath = join(abs, "scheduler", "scheduler_config.json");
    const prediction = existsSync(schedPath)
      ? String(readJson(schedPath).prediction_type ?? "epsilon")
      : "epsilon";
    const det = detectDiffusersFamily(
      "text_encoder_2" in index,
      Number(unetJson.cross_attention_dim),
      prediction,
    );
    return { layout: "diffusers", family: det.family, evidence: det.evidence };
  }
  await refusePickle(abs);
  const file = await openSafetensors(abs);
  try {
    const det = detectSingleFileFamily(shapesOf(file), file.metadata, abs);
    return { layout: "single-file", family: det.family, evidence: det.evidence };
  } finally {
    await file.close();
  }
}
