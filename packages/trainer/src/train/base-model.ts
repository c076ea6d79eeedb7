/**
 * Opening the base model for training: the checkpoint (single .safetensors or diffusers folder, via the engine's
 * loader), its architecture (module tree, for LoRA targets and kohya names), the DDPM noise schedule, the CLIP
 * tokenizer, and a VAE identity for the latent cache keys.
 *
 * A single-file SD1 checkpoint carries no tokenizer files. They are looked for, in order, in the folder given
 * by the caller (TrainOptions.tokenizerDir), in $LORA_STUDIO_CLIP_TOKENIZER, and next to the checkpoint
 * (`<dir>/tokenizer/` or `<dir>/clip-tokenizer/`); the error says so when none is found.
 */
import { createHash } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  architectureFor,
  type Checkpoint,
  ClipTokenizer,
  createNoiseSchedule,
  type NoiseSchedule,
  type OpenCheckpointOptions,
  openCheckpoint,
  readScheduleConfig,
  SD_SCHEDULE,
} from "@lora-studio/engine";
import type { ModelArchitecture } from "@lora-studio/prompt-lora";

export interface BaseModel {
  checkpoint: Checkpoint;
  architecture: ModelArchitecture;
  schedule: NoiseSchedule;
  tokenizer: ClipTokenizer;
  /** The folder the tokenizer was read from (sample rendering opens the same one). */
  tokenizerDir: string;
  /** Identifies the VAE weights in latent cache keys (path, size and mtime of the file(s)). */
  vaeId: string;
  /** 8 x 2^(UNet downsamplings): image sides must be multiples of this. */
  sizeMultiple: number;
  /** VAE downsampling factor (8 for SD). */
  vaeFactor: number;
}

export class BaseModelError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = "BaseModelError";
  }
}

export async function openBaseModel(
  path: string,
  opts: { tokenizerDir?: string; checkpoint?: OpenCheckpointOptions } = {},
): Promise<BaseModel> {
  const checkpoint = await openCheckpoint(path, opts.checkpoint);
  try {
    if (checkpoint.family !== "sd1" && checkpoint.family !== "sd2-512" && checkpoint.family !== "sd2-768-v") {
      throw new BaseModelError(path, `training supports SD1/SD2 models; this is ${checkpoint.family}`);
    }
    const diffusers = checkpoint.layout === "diffusers";
    const architecture = architectureFor(
      checkpoint.unet,
      checkpoint.textEncoder,
      diffusers ? "" : "cond_stage_model.transformer.",
    );
    const schedPath = join(path, "scheduler", "scheduler_config.json");
    const scheduleConfig =
      diffusers && existsSync(schedPath)
        ? await readScheduleConfig(schedPath)
        : { ...SD_SCHEDULE, predictionType: checkpoint.unet.prediction_type ?? SD_SCHEDULE.predictionType };
    const schedule = createNoiseSchedule({
      ...scheduleConfig,
      predictionType:
        (checkpoint.unet.prediction_type as "epsilon" | "v_prediction" | undefined) ??
        scheduleConfig.predictionType,
    });
    const tokenizerFolder = tokenizerDir(path, diffusers, opts.tokenizerDir);
    const tokenizer = await ClipTokenizer.fromDirectory(tokenizerFolder);
    const vaeFactor = 2 ** (checkpoint.vae.block_out_channels.length - 1);
    const sizeMultiple = vaeFactor * 2 ** (checkpoint.unet.block_out_channels.length - 1);
    return {
      checkpoint,
      architecture,
      schedule,
      tokenizer,
      tokenizerDir: tokenizerFolder,
      vaeId: fileIdentity(path),
      sizeMultiple,
      vaeFactor,
    };
  } catch (err) {
    await checkpoint.close();
    throw err;
  }
}

function tokenizerDir(modelPath: string, diffusers: boolean, given: string | undefined): string {
  const candidates = [
    given,
    diffusers ? modelPath : undefined,
    process.env.LORA_STUDIO_CLIP_TOKENIZER,
    join(dirname(modelPath), "tokenizer"),
    join(dirname(modelPath), "clip-tokenizer"),
  ].filter((c): c is string => c !== undefined && c !== "");
  for (const c of candidates) {
    if (existsSync(join(c, "vocab.json")) || existsSync(join(c, "tokenizer", "vocab.json"))) return c;
  }
  throw new BaseModelError(
    modelPath,
    "no CLIP tokenizer found (vocab.json + merges.txt): a single-file checkpoint has none; put the files in " +
      `${join(dirname(modelPath), "tokenizer")}/ or set LORA_STUDIO_CLIP_TOKENIZER to their folder`,
  );
}

/** Cheap identity of the model file(s): path, size, mtime (hashing GBs at every start would cost minutes). */
function fileIdentity(path: string): string {
  const vae = join(path, "vae", "diffusion_pytorch_model.safetensors");
  const file = existsSync(vae) ? vae : path;
  const st = statSync(file);
  return createHash("sha256").update(`${file}\0${st.size}\0${st.mtimeMs}`).digest("hex").slice(0, 16);
}
