/**
 * `pnpm generate "<prompt>" --model PATH [options]`: txt2img with LoRAs named in the prompt, PNGs carrying the
 * WebUI infotext. Also `pnpm engine generate ...`.
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { atomicWriteFile, createProgress, readSafetensors } from "@lora-studio/prompt-lora";
import { Command, Option } from "commander";
import { renderPrompt } from "../pipeline/render.ts";
import { SdModel } from "../pipeline/sd-model.ts";
import { Txt2ImgPipeline } from "../pipeline/txt2img.ts";
import { consoleSink } from "../runtime/messages.ts";
import { SAMPLER_NAMES } from "../schedulers/samplers/types.ts";
import { floatOption, intOption, reportFailure, useCallerCwd } from "./options.ts";

interface GenerateFlags {
  negative: string;
  model: string;
  loraDir?: string;
  cacheDir: string;
  tokenizer?: string;
  sampler: string;
  steps: number;
  cfg: number;
  width: number;
  height: number;
  seed: number;
  batch: number;
  clipSkip: number;
  output: string;
  initLatents?: string;
  loraMode: "adapters" | "baked";
  threads?: number;
  textEncoderHeads?: number;
  json?: boolean;
}

/** $XDG_CACHE_HOME/lora-studio, else ~/.cache/lora-studio. */
export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "lora-studio");
}

/** Output file of image i: the given path for a single image, else <stem>-<i><ext>. */
export function outputPath(output: string, i: number, batch: number): string {
  if (batch === 1) return resolve(output);
  const m = /^(.*?)(\.[^./\\]+)?$/.exec(output) as RegExpExecArray;
  return resolve(`${m[1]}-${i}${m[2] ?? ".png"}`);
}

async function readInitLatents(path: string, batch: number): Promise<Float32Array> {
  const file = await readSafetensors(path);
  const t = file.tensors.get("latents");
  if (!t)
    throw new Error(
      `${path}: no tensor named "latents" (found: ${[...file.tensors.keys()].join(", ") || "none"})`,
    );
  if (t.shape.length !== 4 || t.shape[0] !== batch)
    throw new Error(`${path}: "latents" must be [${batch}, 4, height/8, width/8], got [${t.shape}]`);
  return t.data;
}

export async function runGenerate(prompt: string, f: GenerateFlags): Promise<void> {
  const model = await SdModel.open({
    model: f.model,
    tokenizer: f.tokenizer,
    intraOpThreads: f.threads,
    checkpoint: f.textEncoderHeads ? { textEncoderHeads: f.textEncoderHeads } : undefined,
    onMessage: consoleSink,
  });
  const progress = createProgress("sampling", { enabled: !f.json });
  try {
    const seed = f.seed >= 0 ? f.seed : Math.floor(Math.random() * 2 ** 32);
    const initLatents = f.initLatents ? await readInitLatents(f.initLatents, f.batch) : undefined;
    const pipe = new Txt2ImgPipeline(model);
    const rendered = await renderPrompt(pipe, {
      prompt,
      negative: f.negative,
      loraDir: f.loraDir,
      cacheDir: f.cacheDir,
      loraMode: f.loraMode,
      sampler: f.sampler,
      steps: f.steps,
      cfg: f.cfg,
      width: f.width,
      height: f.height,
      seed,
      batch: f.batch,
      clipSkip: f.clipSkip,
      initLatents,
      onStep: (i, total) => progress.update(i + 1, total),
    });
    progress.stop();
    const outputs: string[] = [];
    for (let i = 0; i < rendered.images.length; i++) {
      const path = outputPath(f.output, i, f.batch);
      await atomicWriteFile(path, rendered.images[i].png);
      outputs.push(path);
    }
    for (const w of rendered.loras.warnings) process.stderr.write(`warning: ${w}\n`);
    const r = rendered.result;
    if (f.json) {
      const settings = {
        prompt,
        negative: f.negative,
        model: model.checkpoint.path,
        modelHash: (await model.modelHash()) ?? null,
        sampler: r.sampler,
        steps: r.steps,
        cfg: r.cfg,
        width: r.width,
        height: r.height,
        seed,
        seeds: r.seeds,
        batch: r.batch,
        clipSkip: r.clipSkip,
        initLatents: f.initLatents ? resolve(f.initLatents) : null,
        loraMode: f.loraMode,
        loras: rendered.loras.loras,
        missingLoras: rendered.loras.missing,
      };
      const out = {
        settings,
        outputs,
        infotexts: rendered.images.map((x) => x.infotext),
        timingsMs: r.timings,
      };
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } else {
      for (const p of outputs) process.stdout.write(`${p}\n`);
    }
  } finally {
    progress.stop();
    await model.close();
  }
}

export function generateCommand(name = "generate"): Command {
  return new Command(name)
    .description(
      "txt2img: generate images from a prompt; <lora:name:te:unet> tokens apply LoRAs from --lora-dir",
    )
    .argument("<prompt>", "prompt with A1111 emphasis syntax and <lora:...> tokens")
    .option("--negative <text>", "negative prompt", "")
    .requiredOption(
      "--model <path>",
      "checkpoint: single .safetensors file (original layout) or diffusers folder",
    )
    .option(
      "--lora-dir <dir>",
      "folder the <lora:name> tokens are looked up in (file name or ss_output_name)",
    )
    .option(
      "--cache-dir <dir>",
      "cache of the Lora folder listing (headers, hashes) so files are hashed once",
      defaultCacheDir(),
    )
    .option(
      "--tokenizer <dir>",
      "CLIP tokenizer folder (vocab.json, merges.txt); default: the diffusers model's tokenizer/",
    )
    .addOption(
      new Option("--sampler <name>", "sampler (WebUI names)").choices(SAMPLER_NAMES).default("Euler a"),
    )
    .option("--steps <n>", "sampling steps", intOption("--steps", 1), 20)
    .option("--cfg <scale>", "classifier-free guidance scale", floatOption("--cfg"), 7)
    .option("--width <px>", "image width, a multiple of 8", intOption("--width", 8), 512)
    .option("--height <px>", "image height, a multiple of 8", intOption("--height", 8), 512)
    .option(
      "--seed <n>",
      "seed; image i uses seed+i (WebUI CPU RNG); -1 = random",
      intOption("--seed", -1),
      -1,
    )
    .option("--batch <n>", "images per run", intOption("--batch", 1), 1)
    .option(
      "--clip-skip <n>",
      'A1111 "Clip skip": 1 = last text-encoder layer, 2 = penultimate (then final layer norm), ...',
      intOption("--clip-skip", 1),
      1,
    )
    .option("-o, --output <file>", "PNG path; with --batch > 1: <stem>-<i>.png", "out.png")
    .option(
      "--init-latents <file>",
      "start from tensor `latents` [batch,4,h/8,w/8] (unit variance) of this .safetensors",
    )
    .addOption(
      new Option("--lora-mode <mode>", "adapters: graph inputs (no rebuild); baked: patched weights")
        .choices(["adapters", "baked"])
        .default("adapters"),
    )
    .option("--threads <n>", "ONNX Runtime intra-op threads", intOption("--threads", 1))
    .option(
      "--text-encoder-heads <n>",
      "text-encoder heads for single files off the 64-wide-head convention",
      intOption("--text-encoder-heads", 1),
    )
    .option("--json", "print settings, output paths and infotexts as JSON on stdout")
    .addHelpText(
      "after",
      `
The PNG's "parameters" text chunk holds the WebUI infotext (readable by the WebUI's PNG Info tab):
  <prompt>
  Negative prompt: <negative>
  Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: <AutoV2>, Model: <name>, Clip skip: 2, Lora hashes: "name: hash"
A progress bar is drawn on stderr when it is a terminal.`,
    )
    .action(async (prompt: string, flags: GenerateFlags) => {
      try {
        await runGenerate(prompt, flags);
      } catch (err) {
        reportFailure(err, flags.json === true);
      }
    });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  useCallerCwd();
  await generateCommand().parseAsync(process.argv);
}
