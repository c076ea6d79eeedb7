/**
 * "txt2img": the standalone mode's image generation. `<lora:name:w>` tokens resolve against the service's Lora
 * folder (the engine's renderPrompt: prompt-lora's A1111 name rules; names that match nothing are reported,
 * not fatal, as in A1111). One "progress" event per sampler step; the PNGs carry the WebUI infotext and are
 * written (atomically) as `<data>/outputs/txt2img/<YYYY-MM-DD>/<NNNNN>-<seed>.png`, A1111's naming.
 *
 * Runs in the service's thread (IN_SERVICE_KINDS) so the opened model stays cached between jobs
 * (generate/model-cache.ts); a cancel is honoured at the next sampler step.
 */
import { mkdir, readdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { renderPrompt } from "@lora-studio/engine";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import { modelCache } from "../../generate/model-cache.ts";
import { parseTxt2ImgRequest, TXT2IMG_KIND, type Txt2ImgParams } from "../../generate/params.ts";
import type { JobContext, JobEnvironment, JobKind, JobOutcome } from "../types.ts";

/** The demo base the trainer ships (a tiny model trained by this engine): the default without a WebUI. */
export const DEMO_BASE = fileURLToPath(
  new URL("../../../../trainer/assets/demo-base/demo-base.safetensors", import.meta.url),
);

/** $LORA_STUDIO_BASE_MODEL, else the demo base. */
export function defaultBaseModel(): string {
  return process.env.LORA_STUDIO_BASE_MODEL || DEMO_BASE;
}

export function txt2imgOutputsDir(dataDir: string): string {
  return join(dataDir, "outputs", TXT2IMG_KIND);
}

export interface GeneratedImage {
  /** Relative to `<data>/outputs/`, "/"-separated: what GET /api/outputs/<file> serves. */
  file: string;
  seed: number;
  infotext: string;
}

export interface Txt2ImgResult {
  images: GeneratedImage[];
  width: number;
  height: number;
  loras: Array<{ name: string; te: number; unet: number }>;
  missingLoras: string[];
  warnings: string[];
  /** Whether this job opened the model (false: the cached sessions were reused). */
  loadedModel: boolean;
  timingsMs: { text: number; denoise: number; decode: number; total: number };
}

async function prepare(raw: unknown, env: JobEnvironment): Promise<Txt2ImgParams> {
  return parseTxt2ImgRequest(raw, {
    loraDir: env.loraDir,
    cacheDir: join(env.dataDir, "cache"),
    outputsDir: txt2imgOutputsDir(env.dataDir),
    tokenizerDir: env.clipTokenizerDir,
    defaultBase: defaultBaseModel(),
  });
}

/** A1111's file numbering: one more than the highest `NNNNN-` prefix in the folder. */
async function nextNumber(dir: string): Promise<number> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let max = -1;
  for (const n of names) {
    const m = /^(\d{5,})-/.exec(n);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max + 1;
}

class Cancelled extends Error {
  constructor() {
    super("cancelled");
    this.name = "Cancelled";
  }
}

async function run(ctx: JobContext): Promise<JobOutcome> {
  const p = ctx.params as Txt2ImgParams;
  const t0 = performance.now();
  const checkStop = () => {
    if (ctx.stopRequested() !== null) throw new Cancelled();
  };
  const { rendered, opened } = await modelCache.use(
    p.baseModel,
    p.tokenizerDir,
    (m) => ctx.log(m),
    async (pipe, info) => {
      checkStop();
      if (info.opened) ctx.progress(0, p.steps, "loading model");
      const r = await renderPrompt(pipe, {
        prompt: p.prompt,
        negative: p.negativePrompt,
        loraDir: p.loraDir,
        cacheDir: p.cacheDir,
        sampler: p.sampler,
        steps: p.steps,
        cfg: p.cfgScale,
        seed: p.seed,
        width: p.width,
        height: p.height,
        batch: p.batchSize,
        clipSkip: p.clipSkip,
        onStep: (i, total) => {
          checkStop();
          ctx.progress(i + 1, total, "sampling");
        },
      });
      return { rendered: r, opened: info.opened };
    },
  );
  checkStop();
  for (const w of rendered.loras.warnings) ctx.log(w, "warn");
  const day = new Date().toISOString().slice(0, 10);
  const dir = join(p.outputsDir, day);
  await mkdir(dir, { recursive: true });
  let n = await nextNumber(dir);
  const images: GeneratedImage[] = [];
  for (const img of rendered.images) {
    const path = join(dir, `${String(n++).padStart(5, "0")}-${img.seed}.png`);
    await atomicWriteFile(path, img.png);
    const file = relative(join(p.outputsDir, ".."), path).split(/[\\/]/).join("/");
    images.push({ file, seed: img.seed, infotext: img.infotext });
    ctx.emit("image", { file, seed: img.seed });
  }
  const t = rendered.result.timings;
  const result: Txt2ImgResult = {
    images,
    width: rendered.result.width,
    height: rendered.result.height,
    loras: rendered.loras.loras.map((l) => ({ name: l.name, te: l.te, unet: l.unet })),
    missingLoras: rendered.loras.missing,
    warnings: rendered.loras.warnings,
    loadedModel: opened,
    timingsMs: { ...t, total: performance.now() - t0 },
  };
  return { result };
}

export const kind: JobKind = {
  name: TXT2IMG_KIND,
  resumable: false,
  writesTo: (params) => [{ dir: (params as Txt2ImgParams).outputsDir, recursive: true }],
  prepare,
  run,
};
