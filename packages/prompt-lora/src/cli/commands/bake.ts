/**
 * `lora bake --base CKPT -o OUT "<prompt with lora tokens>" --lora-dir DIR`: applies exactly the networks
 * A1111 would apply for that prompt (names resolved in the folder, A1111's multipliers, a LoRA named twice
 * applied twice) into a copy of the checkpoint. Unlike A1111, which generates without missing LoRAs, a
 * missing or unusable LoRA or a malformed token stops the bake unless --allow-missing is given.
 * `lora extract --base A --tuned B --rank R -o OUT`: a LoRA from the difference of two checkpoints.
 */
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { readAdapter, writeAdapter } from "../../adapters/index.ts";
import type { Adapter, ModelFamily } from "../../adapters/types.ts";
import { scanLibrary } from "../../library/scan.ts";
import type { StackEntry } from "../../merge/types.ts";
import { parsePrompt } from "../../prompt/parse.ts";
import { resolveNetworks } from "../../prompt/resolve.ts";
import { withProgress } from "../../util/progress.ts";
import {
  action,
  addJsonOption,
  CliError,
  defaultCacheDir,
  parsePositiveInt,
  printJson,
  printLine,
} from "../output.ts";
import { checkDtype, checkFormat } from "./convert.ts";
import { detectCheckpointFamily } from "./family.ts";

interface BakeCliOptions {
  json?: boolean;
  base: string;
  output: string;
  loraDir: string;
  cacheDir?: string;
  cache?: boolean;
  allowMissing?: boolean;
  overwrite?: boolean;
  family?: string;
}

interface ExtractCliOptions {
  json?: boolean;
  base: string;
  tuned: string;
  rank: string;
  convRank?: string;
  output: string;
  family?: string;
  format: string;
  dtype?: string;
}

export function registerBake(program: Command): void {
  addJsonOption(
    program
      .command("bake")
      .description("bake the LoRAs of an A1111 prompt into a checkpoint (single file or diffusers folder)")
      .argument("<prompt>", "prompt with <lora:name:te:unet> tokens")
      .requiredOption("--base <ckpt>", "base checkpoint: .safetensors (original layout) or diffusers folder")
      .requiredOption("-o, --output <out>", "new checkpoint (same layout as the base)")
      .requiredOption("--lora-dir <dir>", "LoRA folder the names are resolved in")
      .option("--family <family>", "sd1 | sd2 | sdxl, when the LoRAs do not say")
      .option("--allow-missing", "bake what is found even if some LoRAs are missing (as A1111 generates)")
      .option("--overwrite", "replace an existing output (never the base)")
      .option("--cache-dir <dir>", "metadata/hash cache folder")
      .option("--no-cache", "do not read or write the cache"),
  ).action(action(runBake));

  addJsonOption(
    program
      .command("extract")
      .description("extract a LoRA of rank R from the difference of two checkpoints (tuned minus base)")
      .requiredOption("--base <ckpt>", "base checkpoint (.safetensors or diffusers folder)")
      .requiredOption("--tuned <ckpt>", "fine-tuned checkpoint, same layout")
      .requiredOption("--rank <r>", "rank of linear and 1x1 conv modules")
      .option("--conv-rank <r>", "rank of k x k conv modules (default: not extracted)")
      .requiredOption("-o, --output <file>", "output .safetensors")
      .option("--family <family>", "sd1 | sd2 | sdxl (default: detected from the base's keys)")
      .option("--format <format>", "kohya | peft", "kohya")
      .option("--dtype <dtype>", "F32 | F16 | BF16 (default F32)"),
  ).action(action(runExtract));
}

function checkFamily(value: string | undefined): Exclude<ModelFamily, "unknown"> | undefined {
  if (value === undefined) return undefined;
  if (value !== "sd1" && value !== "sd2" && value !== "sdxl") {
    throw new CliError(`family must be sd1, sd2 or sdxl, got "${value}"`);
  }
  return value;
}

async function runBake(prompt: string, opts: BakeCliOptions): Promise<void> {
  const family = checkFamily(opts.family);
  if (!existsSync(opts.base)) throw new CliError(`${opts.base}: no such file or folder`);
  if (!existsSync(opts.loraDir) || !statSync(opts.loraDir).isDirectory()) {
    throw new CliError(`${opts.loraDir}: no such folder`);
  }
  const parsed = parsePrompt(prompt);
  if (parsed.errors.length > 0) {
    const e = parsed.errors[0];
    throw new CliError(`${e.token} (column ${e.column}): ${e.message}`);
  }
  const listing = await withProgress("listing LoRAs", (p) =>
    scanLibrary(opts.loraDir, {
      cacheDir: opts.cache === false ? undefined : (opts.cacheDir ?? defaultCacheDir()),
      onProgress: (done, total) => p.update(done, total),
    }),
  );
  const resolution = resolveNetworks(parsed, listing.entries);
  if (resolution.notFoundMessage !== null && !opts.allowMissing) {
    throw new CliError(
      `${resolution.notFoundMessage} (in ${opts.loraDir}; --allow-missing bakes the others)`,
    );
  }
  if (resolution.unusable.length > 0) {
    const u = resolution.unusable[0];
    throw new CliError(`cannot apply ${u.name} (${u.path}): ${u.reason}`);
  }
  const warnings = [...parsed.warnings, ...resolution.warnings];
  const adapters = new Map<string, Adapter>();
  const stack: StackEntry[] = [];
  const applied: Array<{ name: string; file: string; te: number; unet: number; dyn: number | null }> = [];
  for (const n of resolution.networks) {
    if (n.type === "hypernet") {
      warnings.push(`${n.token}: hypernetworks are not supported, not baked`);
      continue;
    }
    if (n.entry === null) continue;
    let adapter = adapters.get(n.entry.path);
    if (adapter === undefined) {
      adapter = await readAdapter(n.entry.path);
      adapters.set(n.entry.path, adapter);
    }
    stack.push({ adapter, te: n.te, unet: n.unet, dyn: n.dyn });
    applied.push({ name: n.name, file: n.entry.path, te: n.te, unet: n.unet, dyn: n.dyn });
  }
  if (stack.length === 0) throw new CliError("the prompt names no LoRA that could be found: nothing to bake");
  const { bakeCheckpoint } = await import("../../merge/bake.ts");
  const output = resolve(opts.output);
  const report = await withProgress("baking", (p) =>
    bakeCheckpoint({
      base: resolve(opts.base),
      output,
      adapters: stack,
      family,
      overwrite: opts.overwrite === true,
      onProgress: (done, total) => p.update(done, total),
    }),
  );
  const summary = {
    output,
    base: resolve(opts.base),
    prompt: parsed.prompt,
    networks: applied,
    missing: resolution.missing,
    bakedTensors: report.bakedTensors.length,
    copiedTensors: report.copiedTensors,
    unmatchedModules: report.unmatchedModules,
    warnings,
  };
  if (opts.json) {
    printJson(summary);
    return;
  }
  for (const a of applied) printLine(`baked ${a.name} (te ${a.te}, unet ${a.unet}) from ${a.file}`);
  printLine(`${report.bakedTensors.length} tensors changed, ${report.copiedTensors} copied -> ${output}`);
  printLine(`prompt without tokens: ${parsed.prompt}`);
  if (resolution.notFoundMessage) printLine(resolution.notFoundMessage);
  if (report.unmatchedModules.length > 0) {
    printLine(
      `warning: ${report.unmatchedModules.length} modules have no weight in the base, e.g. ${report.unmatchedModules[0]}`,
    );
  }
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
}

async function runExtract(opts: ExtractCliOptions): Promise<void> {
  const rank = parsePositiveInt(opts.rank, "--rank");
  const convRank = opts.convRank === undefined ? undefined : parsePositiveInt(opts.convRank, "--conv-rank");
  const format = checkFormat(opts.format);
  const dtype = checkDtype(opts.dtype);
  for (const p of [opts.base, opts.tuned])
    if (!existsSync(p)) throw new CliError(`${p}: no such file or folder`);
  const family = checkFamily(opts.family) ?? (await detectCheckpointFamily(opts.base));
  const { extractAdapter } = await import("../../merge/extract.ts");
  const adapter = await withProgress("extracting", (p) =>
    extractAdapter({
      base: resolve(opts.base),
      tuned: resolve(opts.tuned),
      rank,
      convRank,
      family,
      onProgress: (done, total) => p.update(done, total),
    }),
  );
  if (adapter.modules.length === 0)
    throw new CliError("the two checkpoints do not differ in any adapted module");
  const output = resolve(opts.output);
  await writeAdapter(output, adapter, dtype === undefined ? { format } : { format, dtype });
  const summary = {
    output,
    family,
    rank,
    convRank: convRank ?? null,
    modules: adapter.modules.length,
    format,
  };
  if (opts.json) printJson(summary);
  else printLine(`${adapter.modules.length} modules (rank ${rank}, ${family}) -> ${output} (${format})`);
}
