/**
 * What an image-to-text captioner folder says about itself, read from the JSON files Hugging Face exports ship:
 *
 * - `config.json`: the special ids. VisionEncoderDecoder (ViT-GPT2, TrOCR-like) keeps `decoder_start_token_id`,
 *   `eos_token_id`, `pad_token_id` at the top level and the decoder's own under `decoder`; BLIP keeps them under
 *   `text_config` and, as `BlipForConditionalGeneration.generate` does, starts with `text_config.bos_token_id`
 *   ([DEC]) and stops at `text_config.sep_token_id` ([SEP]) — its `eos_token_id` (2) is a token no caption has.
 * - `generation_config.json` (optional) overrides config.json's generation fields (max_length, num_beams, ...).
 * - `preprocessor_config.json`: size ({height,width}, {shortest_edge}, or a number), crop_size + do_center_crop,
 *   do_resize, resample (PIL codes), do_rescale + rescale_factor, do_normalize + image_mean/image_std.
 *
 * Every missing or wrong field is reported with the file and the key.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { GenerationOptions } from "./generate.ts";

export class CaptionerModelError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "CaptionerModelError";
  }
}

/** sharp kernels for PIL's resample codes (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming). */
export type ResizeKernel = "nearest" | "linear" | "cubic" | "lanczos3";
const PIL_RESAMPLE: Record<number, ResizeKernel> = {
  0: "nearest",
  1: "lanczos3",
  2: "linear",
  3: "cubic",
  4: "linear",
  5: "linear",
};

export interface ImageProcessing {
  /** "fill": resize to width x height ignoring the aspect ratio (ViT, BLIP); "crop": shortest edge, then centre crop. */
  mode: "fill" | "crop";
  /** Output size fed to the encoder. */
  width: number;
  height: number;
  /** "crop" mode: the shortest edge before cropping. */
  shortestEdge?: number;
  kernel: ResizeKernel;
  /** Applied to 0-255 values: x * rescale (1 when do_rescale is false), then (x - mean) / std per channel. */
  rescale: number;
  mean: [number, number, number];
  std: [number, number, number];
}

export interface SpecialIds {
  decoderStart: number;
  eos: number[];
  pad: number;
}

export interface CaptionerConfig {
  modelType: string;
  ids: SpecialIds;
  /** Defaults from config.json / generation_config.json, before the user's options. */
  generation: Partial<GenerationOptions>;
  image: ImageProcessing;
}

type Json = Record<string, unknown>;

async function readJson(path: string, optional: boolean): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && optional) return undefined;
    throw new CaptionerModelError(path, code === "ENOENT" ? "not found" : `cannot read (${code})`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("expected a JSON object");
    return v as Json;
  } catch (e) {
    throw new CaptionerModelError(path, `not valid JSON (${(e as Error).message})`);
  }
}

const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const int = (v: unknown): number | undefined => (Number.isInteger(v) ? (v as number) : undefined);
const ids = (v: unknown): number[] | undefined =>
  Number.isInteger(v)
    ? [v as number]
    : Array.isArray(v) && v.every(Number.isInteger)
      ? (v as number[])
      : undefined;

export async function readCaptionerConfig(dir: string): Promise<CaptionerConfig> {
  const configPath = join(dir, "config.json");
  const config = (await readJson(configPath, false))!;
  const genPath = join(dir, "generation_config.json");
  const gen = (await readJson(genPath, true)) ?? {};
  const modelType = typeof config.model_type === "string" ? config.model_type : "unknown";
  const decoderCfg = isObj(config.decoder) ? config.decoder : {};
  const textCfg = isObj(config.text_config) ? config.text_config : {};

  let start: number | undefined;
  let eos: number[] | undefined;
  let pad: number | undefined;
  if (modelType === "blip") {
    start = int(textCfg.bos_token_id) ?? 30522;
    eos = ids(textCfg.sep_token_id) ?? [102];
    pad = int(textCfg.pad_token_id) ?? 0;
  } else {
    const pick = <T>(f: (v: unknown) => T | undefined, key: string): T | undefined =>
      f(gen[key]) ?? f(config[key]) ?? f(decoderCfg[key]) ?? f(textCfg[key]);
    start = pick(int, "decoder_start_token_id") ?? pick(int, "bos_token_id");
    eos = pick(ids, "eos_token_id");
    pad = pick(int, "pad_token_id");
  }
  if (start === undefined)
    throw new CaptionerModelError(
      configPath,
      "no decoder_start_token_id or bos_token_id (top level or decoder)",
    );
  if (eos === undefined || eos.length === 0)
    throw new CaptionerModelError(configPath, "no eos_token_id (top level or decoder)");

  // Generation defaults: generation_config.json wins over config.json (as transformers reads them).
  const g = (key: string): unknown => gen[key] ?? config[key];
  const generation: Partial<GenerationOptions> = {};
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  if (int(g("max_length")) !== undefined) generation.maxLength = int(g("max_length"));
  if (int(g("max_new_tokens")) !== undefined) generation.maxNewTokens = int(g("max_new_tokens"));
  if (int(g("min_new_tokens")) !== undefined) generation.minNewTokens = int(g("min_new_tokens"));
  else if ((int(g("min_length")) ?? 0) > 1) generation.minNewTokens = int(g("min_length"))! - 1;
  if ((int(g("num_beams")) ?? 0) >= 1) generation.numBeams = int(g("num_beams"));
  if (num(g("length_penalty")) !== undefined) generation.lengthPenalty = num(g("length_penalty"));
  if (typeof g("early_stopping") === "boolean") generation.earlyStopping = g("early_stopping") as boolean;
  if ((int(g("no_repeat_ngram_size")) ?? 0) > 0)
    generation.noRepeatNgramSize = int(g("no_repeat_ngram_size"));
  if ((num(g("repetition_penalty")) ?? 1) !== 1) generation.repetitionPenalty = num(g("repetition_penalty"));

  const image = await readImageProcessing(join(dir, "preprocessor_config.json"));
  return { modelType, ids: { decoderStart: start, eos, pad: pad ?? eos[0] }, generation, image };
}

async function readImageProcessing(path: string): Promise<ImageProcessing> {
  const p = (await readJson(path, false))!;
  const bad = (key: string, want: string): never => {
    throw new CaptionerModelError(path, `"${key}" ${JSON.stringify(p[key])}: expected ${want}`);
  };
  const triple = (key: string, fallback: number[]): [number, number, number] => {
    const v = p[key] ?? fallback;
    const arr = typeof v === "number" ? [v, v, v] : v;
    if (!Array.isArray(arr) || arr.length !== 3 || !arr.every((x) => typeof x === "number"))
      return bad(key, "a number or a list of 3 numbers");
    return arr as [number, number, number];
  };
  const kernelCode = p.resample ?? 2;
  const kernel = PIL_RESAMPLE[kernelCode as number];
  if (!kernel) bad("resample", "a PIL resample code 0-5");
  const rescale =
    p.do_rescale === false ? 1 : p.rescale_factor === undefined ? 1 / 255 : (p.rescale_factor as number);
  if (typeof rescale !== "number" || !(rescale > 0)) bad("rescale_factor", "a positive number");
  const normalize = p.do_normalize !== false;
  const mean = normalize ? triple("image_mean", [0.5, 0.5, 0.5]) : ([0, 0, 0] as [number, number, number]);
  const std = normalize ? triple("image_std", [0.5, 0.5, 0.5]) : ([1, 1, 1] as [number, number, number]);
  if (std.some((s) => !(s > 0))) bad("image_std", "positive numbers");
  if (p.do_resize === false)
    bad("do_resize", "true (pictures of any size need resizing to the model's input)");

  const size = p.size;
  const crop = p.crop_size;
  const dims = (v: unknown, key: string): { w: number; h: number } | { edge: number } => {
    if (typeof v === "number" && v > 0) return { w: v, h: v };
    if (isObj(v) && int(v.height) && int(v.width)) return { w: v.width as number, h: v.height as number };
    if (isObj(v) && int(v.shortest_edge)) return { edge: v.shortest_edge as number };
    return bad(key, '{"height": H, "width": W}, {"shortest_edge": S} or a number');
  };
  const s = dims(size, "size");
  if ("edge" in s) {
    if (p.do_center_crop === false || crop === undefined)
      throw new CaptionerModelError(
        path,
        '"size" {"shortest_edge"} without a center crop gives no fixed input size',
      );
    const c = dims(crop, "crop_size");
    if ("edge" in c) return bad("crop_size", '{"height": H, "width": W} or a number');
    return { mode: "crop", width: c.w, height: c.h, shortestEdge: s.edge, kernel, rescale, mean, std };
  }
  if (p.do_center_crop === true && crop !== undefined) {
    const c = dims(crop, "crop_size");
    if (!("edge" in c) && (c.w !== s.w || c.h !== s.h))
      throw new CaptionerModelError(path, "center crop after a fixed-size resize is not supported");
  }
  return { mode: "fill", width: s.w, height: s.h, kernel, rescale, mean, std };
}
