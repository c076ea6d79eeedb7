/**
 * The txt2img request (`POST /api/generate`, the A1111 API's field names) checked field by field into the
 * job's parameters. Hand-written rather than zod: zod is a dependency of the trainer, not of this package, and
 * the other job kinds here validate the same way (JobParamsError naming the field). Every problem is reported
 * at once. A seed of -1 is drawn here (A1111's fix_seed), so the job record holds the seed that was used.
 */
import { existsSync } from "node:fs";
import { isAbsolute } from "node:path";
import { SAMPLER_NAMES } from "@lora-studio/engine";
import { JobParamsError } from "../jobs/types.ts";

export const TXT2IMG_KIND = "txt2img";

/** Limits of this service's txt2img (CPU-first: small defaults, generous bounds). */
export const TXT2IMG_LIMITS = {
  promptChars: 20_000,
  steps: { min: 1, max: 150 },
  cfg: { min: 0, max: 30 },
  size: { min: 8, max: 2048, multiple: 8 },
  batch: { min: 1, max: 8 },
  clipSkip: { min: 1, max: 12 },
} as const;

export interface Txt2ImgParams {
  prompt: string;
  negativePrompt: string;
  steps: number;
  cfgScale: number;
  sampler: string;
  /** The seed of the first image (image i uses seed + i); never -1 here. */
  seed: number;
  width: number;
  height: number;
  batchSize: number;
  clipSkip: number;
  /** Absolute path of the base checkpoint (file or diffusers folder). */
  baseModel: string;
  /** Folders the job reads and writes, fixed when it is queued. */
  loraDir: string;
  cacheDir: string;
  outputsDir: string;
  tokenizerDir?: string;
}

const KNOWN = new Set([
  "prompt",
  "negative_prompt",
  "steps",
  "cfg_scale",
  "sampler",
  "sampler_name",
  "seed",
  "width",
  "height",
  "batch_size",
  "clip_skip",
  "base_model",
]);

/** A1111's get_fixed_seed: -1 becomes random.randrange(4294967294). */
export function fixSeed(seed: number): number {
  return seed === -1 ? Math.floor(Math.random() * 4294967294) : seed;
}

export interface Txt2ImgFolders {
  loraDir: string;
  cacheDir: string;
  outputsDir: string;
  tokenizerDir?: string;
  /** Used when the request names no base_model. */
  defaultBase: string;
}

export function parseTxt2ImgRequest(raw: unknown, folders: Txt2ImgFolders): Txt2ImgParams {
  const issues: string[] = [];
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new JobParamsError(TXT2IMG_KIND, "send a JSON object such as { prompt, steps, seed }");
  const p = raw as Record<string, unknown>;
  for (const k of Object.keys(p)) if (!KNOWN.has(k)) issues.push(`${k}: unknown field`);

  const text = (key: string, fallback: string): string => {
    const v = p[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "string") {
      issues.push(`${key}: must be a string`);
      return fallback;
    }
    if (v.length > TXT2IMG_LIMITS.promptChars)
      issues.push(`${key}: longer than ${TXT2IMG_LIMITS.promptChars} characters`);
    if (v.includes("\0")) issues.push(`${key}: contains a NUL character`);
    return v;
  };
  const number = (key: string, fallback: number, min: number, max: number, integer: boolean): number => {
    const v = p[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
      issues.push(`${key}: must be ${integer ? "an integer" : "a number"}`);
      return fallback;
    }
    if (v < min || v > max) issues.push(`${key}: must be in ${min}..${max}, got ${v}`);
    return v;
  };

  const prompt = text("prompt", "");
  const negativePrompt = text("negative_prompt", "");
  const steps = number("steps", 20, TXT2IMG_LIMITS.steps.min, TXT2IMG_LIMITS.steps.max, true);
  const cfgScale = number("cfg_scale", 7, TXT2IMG_LIMITS.cfg.min, TXT2IMG_LIMITS.cfg.max, false);
  const seed = number("seed", -1, -1, 2 ** 32 - 1, true);
  const size = TXT2IMG_LIMITS.size;
  const width = number("width", 512, size.min, size.max, true);
  const height = number("height", 512, size.min, size.max, true);
  for (const [k, v] of [
    ["width", width],
    ["height", height],
  ] as const)
    if (v % size.multiple !== 0) issues.push(`${k}: must be a multiple of ${size.multiple}, got ${v}`);
  const batchSize = number("batch_size", 1, TXT2IMG_LIMITS.batch.min, TXT2IMG_LIMITS.batch.max, true);
  const clipSkip = number("clip_skip", 1, TXT2IMG_LIMITS.clipSkip.min, TXT2IMG_LIMITS.clipSkip.max, true);
  // The A1111 API calls it sampler_name; "sampler" is accepted too.
  const sampler = text(p.sampler_name !== undefined ? "sampler_name" : "sampler", "Euler a");
  if (!(SAMPLER_NAMES as readonly string[]).includes(sampler))
    issues.push(`sampler: unknown "${sampler}"; known: ${SAMPLER_NAMES.join(", ")}`);
  const baseModel = text("base_model", folders.defaultBase);
  if (!isAbsolute(baseModel)) issues.push(`base_model: must be an absolute path, got ${baseModel}`);
  else if (!existsSync(baseModel)) issues.push(`base_model: ${baseModel} does not exist`);

  if (issues.length > 0) throw new JobParamsError(TXT2IMG_KIND, issues.join("; "));
  return {
    prompt,
    negativePrompt,
    steps,
    cfgScale,
    sampler,
    seed: fixSeed(seed),
    width,
    height,
    batchSize,
    clipSkip,
    baseModel,
    loraDir: folders.loraDir,
    cacheDir: folders.cacheDir,
    outputsDir: folders.outputsDir,
    tokenizerDir: folders.tokenizerDir,
  };
}
