/**
 * `prompt-lora` / `pnpm lora <command>`: WebUI prompt tokens, LoRA library listing, inspection,
 * conversion, merging, baking and extraction. Every command takes --json; every failure is one line on
 * stderr (or `{"error": ...}` with --json) and exit code 1.
 */
import { readFileSync } from "node:fs";
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
    .version(packageVersion())
    .showHelpAfterError("(run with --help for usage)");
  registerPrompt(program);
  registerLibrary(program);
  registerConvert(program);
  registerMerge(program);
  registerBake(program);
  return program;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

export async function main(argv: string[]): Promise<void> {
  // `pnpm lora ...` runs in the repository root; relative paths the user typed are relative to where
  // they typed them, which pnpm passes as INIT_CWD.
  if (process.env.npm_lifecycle_event === "lora" && process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);
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
