/**
 * `lora merge -o OUT A.safetensors:0.7 B.safetensors:0.5:0.3 [--rank R] [--format kohya|peft]`:
 * each input is `FILE[:TE[:UNET]]` (the multipliers of a `<lora:FILE:TE:UNET>` token: te default 1, unet
 * default te). Without --rank the result is the exact stack (ranks concatenated); with --rank it is
 * compressed to rank R by SVD and the relative error is reported.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { readAdapter, writeAdapter } from "../../adapters/index.ts";
import type { Adapter } from "../../adapters/types.ts";
import type { CompressionReport } from "../../merge/compress.ts";
import { stackAdapters } from "../../merge/stack.ts";
import type { StackEntry } from "../../merge/types.ts";
import { parsePythonFloat } from "../../prompt/numbers.ts";
import { withProgress } from "../../util/progress.ts";
import { action, addJsonOption, CliError, parsePositiveInt, printJson, printLine } from "../output.ts";
import { checkDtype, checkFormat } from "./convert.ts";

interface MergeOptions {
  json?: boolean;
  output: string;
  rank?: string;
  format: string;
  dtype?: string;
}

export function registerMerge(program: Command): void {
  addJsonOption(
    program
      .command("merge")
      .description("stack adapters exactly (weighted sum of deltas), optionally compressed to one rank")
      .argument(
        "<inputs...>",
        "FILE[:TE[:UNET]] for each adapter, e.g. a.safetensors:0.7 b.safetensors:0.5:0.3",
      )
      .requiredOption("-o, --output <file>", "output .safetensors")
      .option("--rank <r>", "compress the stack to this rank by SVD")
      .option("--format <format>", "kohya | peft", "kohya")
      .option("--dtype <dtype>", "F32 | F16 | BF16 (default F32)"),
  ).action(action(runMerge));
}

export interface InputSpec {
  path: string;
  te: number;
  unet: number;
}

/**
 * Splits `FILE[:TE[:UNET]]` from the right, so a path may itself contain ":" (the trailing segments are
 * taken as multipliers only when they are numbers).
 */
export function parseInputSpec(spec: string): InputSpec {
  const parts = spec.split(":");
  for (let k = Math.min(2, parts.length - 1); k >= 0; k--) {
    const path = parts.slice(0, parts.length - k).join(":");
    const numbers = parts.slice(parts.length - k).map(parsePythonFloat);
    if (path === "" || !numbers.every((n) => n.ok)) continue;
    const values = numbers.map((n) => (n.ok ? n.value : Number.NaN));
    const te = values[0] ?? 1;
    return { path, te, unet: values[1] ?? te };
  }
  throw new CliError(`"${spec}": expected FILE[:TE[:UNET]]`);
}

async function runMerge(inputs: string[], opts: MergeOptions): Promise<void> {
  const format = checkFormat(opts.format);
  const dtype = checkDtype(opts.dtype);
  const rank = opts.rank === undefined ? undefined : parsePositiveInt(opts.rank, "--rank");
  const specs = inputs.map(parseInputSpec);
  const output = resolve(opts.output);
  for (const s of specs) {
    if (!existsSync(s.path)) throw new CliError(`${s.path}: no such file`);
    if (resolve(s.path) === output) throw new CliError(`${output}: output would overwrite an input`);
  }
  const entries: StackEntry[] = [];
  for (const s of specs) entries.push({ adapter: await readAdapter(s.path), te: s.te, unet: s.unet });
  let result: Adapter = await withProgress("stacking", async (p) =>
    stackAdapters(entries, { onProgress: (done, total) => p.update(done, total) }),
  );
  let report: CompressionReport | null = null;
  if (rank !== undefined) {
    // Loaded on demand: the SVD code is only needed with --rank.
    const { compressAdapterParallel } = await import("../../merge/compress.ts");
    const compressed = await withProgress("compressing", async (p) =>
      compressAdapterParallel(result, rank, {
        onProgress: (done: number, total: number) => p.update(done, total),
      }),
    );
    result = compressed.adapter;
    report = compressed.report;
  }
  await writeAdapter(output, result, dtype === undefined ? { format } : { format, dtype });
  const summary = {
    output,
    format,
    inputs: specs.map((s) => ({ file: resolve(s.path), te: s.te, unet: s.unet })),
    modules: result.modules.length,
    rank: rank ?? null,
    relativeError: report?.totalRelativeError ?? null,
    moduleErrors: report?.modules ?? null,
  };
  if (opts.json) printJson(summary);
  else {
    printLine(`${specs.length} adapters -> ${output} (${format}, ${result.modules.length} modules)`);
    if (report !== null) {
      const worst = report.modules.reduce(
        (a, b) => (b.relativeError > a.relativeError ? b : a),
        report.modules[0],
      );
      printLine(`rank ${rank}: total relative Frobenius error ${report.totalRelativeError.toExponential(3)}`);
      if (worst)
        printLine(`worst module: ${worst.component} ${worst.path} ${worst.relativeError.toExponential(3)}`);
    }
  }
}
