/**
 * Before/after pictures for the demo: each prompt rendered by the engine's txt2img pipeline on the base model
 * alone and with the trained LoRA (`<lora:NAME:1>` resolved in the output folder, as the WebUI would), with the
 * same seed, sampler, steps and guidance, composed into one grid PNG: top row before, bottom row after. The
 * 64 px pictures are enlarged (Lanczos) to `cellSize` so the grid is readable at a glance, and captioned with
 * the whole prompt.
 */
import { dirname, join } from "node:path";
import { composeGrid, type GridCell, renderPrompt, SdModel, Txt2ImgPipeline } from "@lora-studio/engine";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import sharp from "sharp";

export interface BeforeAfterOptions {
  /** Base checkpoint (single file; its tokenizer/ folder sits next to it). */
  base: string;
  loraDir: string;
  loraName: string;
  prompts: string[];
  size: number;
  seed: number;
  out: string;
  steps?: number;
  cfg?: number;
  /** Side of each picture in the grid, px (default 192: the 64 px renders x 3). */
  cellSize?: number;
}

/** The settings every before/after picture is rendered with (the same for both rows). */
export const BEFORE_AFTER_SAMPLING = { sampler: "DDIM", steps: 30, cfg: 5 } as const;

async function enlarge(rgb: Uint8Array, size: number, to: number): Promise<Uint8Array> {
  if (to === size) return rgb;
  const out = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), {
    raw: { width: size, height: size, channels: 3 },
  })
    .resize(to, to, { kernel: "lanczos3" })
    .raw()
    .toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Renders the grid and returns the 8-bit RGB pictures (before[i], after[i]) at render size for callers that inspect them. */
export async function renderBeforeAfter(
  o: BeforeAfterOptions,
): Promise<{ before: Uint8Array[]; after: Uint8Array[] }> {
  const model = await SdModel.open({
    model: o.base,
    tokenizer: join(dirname(o.base), "tokenizer"),
    worker: false,
  });
  try {
    const pipe = new Txt2ImgPipeline(model);
    const render = async (prompt: string) =>
      (
        await renderPrompt(pipe, {
          prompt,
          loraDir: o.loraDir,
          strictLoras: true,
          width: o.size,
          height: o.size,
          steps: o.steps ?? BEFORE_AFTER_SAMPLING.steps,
          cfg: o.cfg ?? BEFORE_AFTER_SAMPLING.cfg,
          sampler: BEFORE_AFTER_SAMPLING.sampler,
          seed: o.seed,
        })
      ).images[0].rgb;
    const before: Uint8Array[] = [];
    const after: Uint8Array[] = [];
    for (const p of o.prompts) before.push(await render(p));
    for (const p of o.prompts) after.push(await render(`${p} <lora:${o.loraName}:1>`));
    const cell = o.cellSize ?? 3 * o.size;
    const cells: GridCell[] = [];
    for (const [row, label] of [
      [before, "before (base model)"],
      [after, "after (+ LoRA)"],
    ] as const)
      for (const [i, p] of o.prompts.entries())
        cells.push({
          rgb: await enlarge(row[i], o.size, cell),
          width: cell,
          height: cell,
          caption: `${label}: ${p}`,
        });
    const png = await composeGrid(cells, {
      columns: o.prompts.length,
      gap: 8,
      fontSize: 14,
      captionLines: 3,
      texts: { Description: "lora-studio demo: top row base model, bottom row base model + LoRA" },
    });
    await atomicWriteFile(o.out, png);
    return { before, after };
  } finally {
    await model.close();
  }
}
