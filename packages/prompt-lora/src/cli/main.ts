/**
 * `prompt-lora` / `pnpm lora <command>`: WebUI prompt tokens, LoRA library listing, inspection,
 * conversion, merging, baking and extraction. Every command takes --json; every failure is one line on
 * stderr (or `{"error": ...}` with --json) and exit code 1.
 */
import { Command } from "commander";
import { registerBake } from "./commands/bake.ts";
import { registerConvert } from "./commands/convert.ts";
import { registerLibrary } from "./commands/library.ts";
import { registerMerge } from "./commands/merge.ts";
import { registerPrompt } from "./commands/prompt.ts";
import { reportError } from "./output.ts";

export function buildProgram(): Command {
  const program = new Command("prompt-lora")
    .description(
      "LoRA toolkit for Stable Diffusion: A1111 prompt tokens, library, convert, merge, bake, extract",
    )
    .showHelpAfterError("(run with --help for usage)");
  registerPrompt(program);
  registerLibrary(program);
  registerConvert(program);
  registerMerge(program);
  registerBake(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  // `lora list DIR | head`: a closed pipe ends the command quietly, as for any Unix tool.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    reportError(err, argv.includes("--json"));
    process.exitCode = 1;
  }
}

await main(process.argv);
