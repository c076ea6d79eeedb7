/**
 * Before/after pictures for the demo: each prompt rendered by the engine's txt2img pipeline on the base model
 * alone and with the trained LoRA (`<lora:NAME:1>` resolved in the output folder, as the WebUI would), with the
 * same seed, sampler and guidance, composed into one grid PNG: top row before, bottom row after.
 */
import { dirname, join } from "node:path";
import { composeGrid, type GridCell, renderPrompt, SdModel, Txt2ImgPipeline } from "@lora-studio/engine";
import { atomicWriteFile } from "@lora-studio/prompt-lora";

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
}

/** Renders the grid and returns the 8-bit RGB pictures (before[i], after[i]) for callers that inspect them. */
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
          steps: o.steps ?? 25,
          cfg: o.cfg ?? 5,
          sampler: "DDIM",
          seed: o.seed,
        })
      ).images[0].rgb;
    const before: Uint8Array[] = [];
    const after: Uint8Array[] = [];
    for (const p of o.prompts) before.push(await render(p));
    for (const p of o.prompts) after.push(await render(`${p} <lora:${o.loraName}:1>`));
    const cells: GridCell[] = [
      ...o.prompts.map((p, i) => ({
        rgb: before[i],
        width: o.size,
        height: o.size,
        caption: `before: ${p}`,
      })),
      ...o.prompts.map((p, i) => ({ rgb: after[i], width: o.size, height: o.size, caption: `after: ${p}` })),
    ];
    const png = await composeGrid(cells, { columns: o.prompts.length, fontSize: 9, captionLines: 4 });
    await atomicWriteFile(o.out, png);
    return { before, after };
  } finally {
    await model.close();
  }
}
