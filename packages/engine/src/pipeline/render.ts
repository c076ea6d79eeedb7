/**
 * From a WebUI-style prompt (with `<lora:...>` tokens) to PNG files carrying the WebUI infotext: resolves and
 * stacks the LoRAs, applies them to the pipeline, generates, and encodes each image with its `parameters` chunk.
 * Used by the `generate` CLI, the service's txt2img jobs and the trainer's sample images.
 *
 * Negative prompt: AUTOMATIC1111 parses extra networks from the positive prompts only
 * (StableDiffusionProcessing.parse_extra_network_prompts touches `self.prompts`; setup_conds hands
 * `self.negative_prompts` to the text encoder as written), so a `<lora:...>` in the negative prompt applies no
 * LoRA and is encoded as plain text. We do the same, and say so in a warning instead of silently.
 */
import { parsePrompt } from "@lora-studio/prompt-lora";
import { createInfotext } from "./infotext.ts";
import { lorasFromPrompt, type PromptLoras } from "./lora-prompt.ts";
import { encodePng, toRgb8 } from "./png.ts";
import type { LoraMode, Txt2ImgOptions, Txt2ImgPipeline, Txt2ImgResult } from "./txt2img.ts";

export interface RenderOptions extends Omit<Txt2ImgOptions, "prompt"> {
  /** Prompt as the user wrote it, `<lora:name:te:unet>` tokens included. */
  prompt: string;
  loraDir?: string;
  cacheDir?: string;
  loraMode?: LoraMode;
  /** Fail when a LoRA name matches no file (default: warn, as the WebUI). */
  strictLoras?: boolean;
}

export interface RenderedImage {
  png: Buffer;
  rgb: Uint8Array;
  seed: number;
  infotext: string;
}

export interface Rendered {
  images: RenderedImage[];
  result: Txt2ImgResult;
  loras: PromptLoras;
}

export async function renderPrompt(pipe: Txt2ImgPipeline, o: RenderOptions): Promise<Rendered> {
  const loras = await lorasFromPrompt(o.prompt, {
    loraDir: o.loraDir,
    cacheDir: o.cacheDir,
    strict: o.strictLoras,
  });
  await pipe.setLoras(loras.stack, o.loraMode ?? "adapters");
  const neg = parsePrompt(o.negative ?? "");
  const ignored = [...neg.networks, ...neg.errors, ...neg.unknown].map((n) => n.token);
  if (ignored.length > 0)
    loras.warnings.push(
      `negative prompt: ${ignored.join(" ")} not applied (extra networks are read from the positive prompt only, as in A1111; the text is encoded as written)`,
    );
  const result = await pipe.generate({ ...o, prompt: loras.prompt });
  const modelHash = await pipe.model.modelHash();
  const images: RenderedImage[] = [];
  for (let i = 0; i < result.batch; i++) {
    const infotext = createInfotext({
      prompt: o.prompt,
      negative: o.negative,
      steps: result.steps,
      sampler: result.sampler,
      cfg: result.cfg,
      seed: result.seeds[i],
      width: result.width,
      height: result.height,
      clipSkip: result.clipSkip,
      modelHash,
      modelName: pipe.model.modelName,
      loraHashes: loras.loras.map((l) => ({ name: l.name, hash: l.shortHash })),
    });
    const rgb = toRgb8(result.images, i, result.width, result.height);
    images.push({
      png: await encodePng(rgb, result.width, result.height, { parameters: infotext }),
      rgb,
      seed: result.seeds[i],
      infotext,
    });
  }
  return { images, result, loras };
}
