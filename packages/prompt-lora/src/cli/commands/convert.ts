/** `lora convert FILE --to peft|kohya -o OUT [--dtype F32|F16|BF16]`: any supported layout in, kohya or PEFT out. */
import { resolve } from "node:path";
import type { Command } from "commander";
import { readAdapter, writeAdapter } from "../../adapters/index.ts";
import { action, addJsonOption, CliError, printJson, printLine } from "../output.ts";

interface ConvertOptions {
  json?: boolean;
  to: string;
  output: string;
  dtype?: string;
}

export function registerConvert(program: Command): void {
  addJsonOption(
    program
      .command("convert")
      .description("rewrite an adapter in kohya (A1111/Forge/ComfyUI) or PEFT/diffusers layout")
      .argument("<file>", "adapter file (kohya, PEFT/diffusers or LyCORIS layout)")
      .requiredOption("--to <format>", "kohya | peft")
      .requiredOption("-o, --output <file>", "output .safetensors")
      .option("--dtype <dtype>", "F32 | F16 | BF16 (default F32)"),
  ).action(action(runConvert));
}

export function checkFormat(value: string): "kohya" | "peft" {
  if (value !== "kohya" && value !== "peft")
    throw new CliError(`format must be kohya or peft, got "${value}"`);
  return value;
}

export function checkDtype(value: string | undefined): "F32" | "F16" | "BF16" | undefined {
  if (value === undefined) return undefined;
  const v = value.toUpperCase();
  if (v !== "F32" && v !== "F16" && v !== "BF16")
    throw new CliError(`dtype must be F32, F16 or BF16, got "${value}"`);
  return v;
}

async function runConvert(file: string, opts: ConvertOptions): Promise<void> {
  const format = checkFormat(opts.to);
  const dtype = checkDtype(opts.dtype);
  const input = resolve(file);
  const output = resolve(opts.output);
  if (input === output) throw new CliError(`${output}: output would overwrite the input`);
  const adapter = await readAdapter(input);
  await writeAdapter(output, adapter, dtype === undefined ? { format } : { format, dtype });
  const summary = {
    input,
    output,
    from: adapter.format,
    to: format,
    family: adapter.family,
    modules: adapter.modules.length,
    unknownKeys: adapter.unknownKeys,
  };
  if (opts.json) printJson(summary);
  else {
    printLine(
      `${input} (${adapter.format}, ${adapter.family}, ${adapter.modules.length} modules) -> ${output} (${format})`,
    );
    if (adapter.unknownKeys.length > 0) {
      printLine(
        `warning: ${adapter.unknownKeys.length} keys not carried over: ${adapter.unknownKeys.slice(0, 5).join(", ")}`,
      );
    }
  }
}
