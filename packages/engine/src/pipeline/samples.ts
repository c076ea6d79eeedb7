/**
 * Sample images during training: every prompt of a kohya sample-prompt file rendered with the adapter being
 * trained (fed as adapter inputs, so the sessions are reused from one save to the next), then one grid PNG with
 * the prompts as captions. Prompt options override `defaults`; sizes are rounded down to the model's size
 * multiple (Txt2ImgPipeline.sizeMultiple: 64 for SD1.5, as kohya rounds; at least one multiple).
 */
import type { Adapter } from "@lora-studio/prompt-lora";
import { type GridCell, writeGrid } from "./grid.ts";
import { createInfotext } from "./infotext.ts";
import { encodePng, toRgb8 } from "./png.ts";
import type { SamplePrompt } from "./sample-prompts.ts";
import type { Txt2ImgPipeline } from "./txt2img.ts";

export interface SampleDefaults {
  negative?: string;
  width?: number;
  height?: number;
  steps?: number;
  cfg?: number;
  /** kohya's default sample sampler is DDIM. */
  sampler?: string;
  /** Seed for prompts without --d; undefined = random per prompt. */
  seed?: number;
  /** A1111's "Clip skip" for every prompt (kohya samples with the run's clip_skip). Default 1. */
  clipSkip?: number;
}

export interface RenderedSample {
  prompt: SamplePrompt;
  seed: number;
  png: Buffer;
  cell: GridCell;
}

export interface SampleRun {
  samples: RenderedSample[];
  /** Where the grid was written (when `gridPath` was given). */
  gridPath?: string;
}

export async function renderSamples(
  pipe: Txt2ImgPipeline,
  prompts: SamplePrompt[],
  o: { adapter?: Adapter | null; defaults?: SampleDefaults; gridPath?: string; columns?: number } = {},
): Promise<SampleRun> {
  const d = o.defaults ?? {};
  if (o.adapter !== undefined) await pipe.setLoras(o.adapter);
  const samples: RenderedSample[] = [];
  for (const p of prompts) {
    const m = pipe.sizeMultiple;
    const width = Math.max(m, Math.floor((p.width ?? d.width ?? 512) / m) * m);
    const height = Math.max(m, Math.floor((p.height ?? d.height ?? 512) / m) * m);
    const seed = p.seed ?? d.seed ?? Math.floor(Math.random() * 2 ** 32);
    const negative = p.negative ?? d.negative ?? "";
    const r = await pipe.generate({
      prompt: p.prompt,
      negative,
      width,
      height,
      seed,
      steps: p.steps ?? d.steps ?? 20,
      cfg: p.cfg ?? d.cfg ?? 7,
      sampler: p.sampler ?? d.sampler ?? "DDIM",
      clipSkip: d.clipSkip,
    });
    const rgb = toRgb8(r.images, 0, width, height);
    const infotext = createInfotext({
      prompt: p.prompt,
      negative,
      steps: r.steps,
      sampler: r.sampler,
      cfg: r.cfg,
      seed,
      width,
      height,
      clipSkip: r.clipSkip,
      modelHash: await pipe.model.modelHash(),
      modelName: pipe.model.modelName,
    });
    samples.push({
      prompt: p,
      seed,
      png: await encodePng(rgb, width, height, { parameters: infotext }),
      cell: { rgb, width, height, caption: `${p.prompt} (seed ${seed})` },
    });
  }
  if (o.gridPath && samples.length > 0) {
    const texts = { prompts: samples.map((s) => s.prompt.prompt).join("\n") };
    await writeGrid(
      o.gridPath,
      samples.map((s) => s.cell),
      { columns: o.columns, texts },
    );
  }
  return { samples, gridPath: o.gridPath };
}
