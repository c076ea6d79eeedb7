/**
 * `lora prompt "<text>" [--lora-dir DIR]`: the prompt without its tokens, each network with the
 * multipliers A1111 applies, the file it resolves to and its hash, what is missing, and token errors.
 * Exit code 1 when a token is malformed (the JSON is still printed); missing LoRAs are not an error,
 * as in A1111, which generates without them.
 */
import { existsSync, statSync } from "node:fs";
import type { Command } from "commander";
import { scanLibrary } from "../../library/scan.ts";
import { parsePrompt } from "../../prompt/parse.ts";
import { type Resolution, resolveNetworks } from "../../prompt/resolve.ts";
import { createProgress } from "../../util/progress.ts";
import { action, addJsonOption, CliError, defaultCacheDir, printJson, printLine, table } from "../output.ts";

interface PromptOptions {
  json?: boolean;
  loraDir?: string;
  cacheDir?: string;
  cache?: boolean;
  comments?: boolean;
}

const DEFAULT_LORA_DIR = "models/Lora";

export function registerPrompt(program: Command): void {
  addJsonOption(
    program
      .command("prompt")
      .description(
        "parse the <lora:...> tokens of a prompt as A1111 does and resolve them against a LoRA folder",
      )
      .argument("<text>", "the prompt")
      .option(
        "--lora-dir <dir>",
        `LoRA folder to resolve names in (default: ${DEFAULT_LORA_DIR} if it exists)`,
      )
      .option("--cache-dir <dir>", "metadata/hash cache folder")
      .option("--no-cache", "do not read or write the cache")
      .option("--no-comments", "do not strip # comments first (A1111 strips them by default)"),
  ).action(action(runPrompt));
}

async function runPrompt(text: string, opts: PromptOptions): Promise<void> {
  const parsed = parsePrompt(text, { stripComments: opts.comments !== false });
  const loraDir = opts.loraDir ?? (existsSync(DEFAULT_LORA_DIR) ? DEFAULT_LORA_DIR : undefined);
  let resolution: Resolution;
  const warnings = [...parsed.warnings];
  if (loraDir === undefined) {
    resolution = resolveNetworks(parsed, []);
    // Without a folder nothing can be called missing: names are simply not resolved.
    resolution.missing = [];
    resolution.notFoundMessage = null;
    warnings.push(`no LoRA folder: names are not resolved (use --lora-dir)`);
  } else {
    if (!existsSync(loraDir) || !statSync(loraDir).isDirectory())
      throw new CliError(`${loraDir}: no such folder`);
    const progress = createProgress("listing LoRAs");
    try {
      const listing = await scanLibrary(loraDir, {
        cacheDir: opts.cache === false ? undefined : (opts.cacheDir ?? defaultCacheDir()),
        onProgress: (done, total) => progress.update(done, total),
      });
      resolution = resolveNetworks(parsed, listing.entries);
    } finally {
      progress.stop();
    }
  }
  warnings.push(...resolution.warnings);
  const networks = resolution.networks.map((n) => ({
    type: n.type,
    name: n.name,
    te: n.te,
    unet: n.unet,
    dyn: n.dyn,
    file: n.entry?.path ?? null,
    hash: n.entry?.shortHash ?? null,
    token: n.token,
    column: n.column,
    tokenType: n.tokenType,
    written: n.written,
  }));
  if (opts.json) {
    printJson({
      prompt: parsed.prompt,
      networks,
      missing: resolution.missing,
      errors: parsed.errors,
      unknown: parsed.unknown,
      unusable: resolution.unusable,
      warnings,
    });
  } else {
    printLine(`prompt: ${parsed.prompt}`);
    const rows = networks.map((n) => [
      n.type,
      n.name,
      `te ${n.te}`,
      `unet ${n.unet}`,
      n.dyn === null ? "" : `dyn ${n.dyn}`,
      n.file === null
        ? loraDir === undefined || n.type !== "lora"
          ? "-"
          : "NOT FOUND"
        : `${n.file} [${n.hash ?? "?"}]`,
    ]);
    for (const line of table(rows)) printLine(`  ${line}`);
    if (resolution.notFoundMessage) printLine(resolution.notFoundMessage);
    for (const u of parsed.unknown)
      printLine(`unknown network type "${u.type}": ${u.token} (column ${u.column}), removed`);
    for (const u of resolution.unusable) printLine(`cannot apply ${u.name} (${u.path}): ${u.reason}`);
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    for (const e of parsed.errors)
      process.stderr.write(`error: ${e.token} (column ${e.column}): ${e.message}\n`);
  }
  if (parsed.errors.length > 0) process.exitCode = 1;
}
