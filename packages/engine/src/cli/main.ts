/**
 * `pnpm engine <command>`: the engine's command line.
 *   generate "<prompt>" --model PATH ...   txt2img with <lora:...> tokens, PNG with WebUI infotext
 *   eval --model PATH --component ...      one component on named input tensors (parity with PyTorch)
 * Failures print one line on stderr and exit with code 1.
 */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { evalCommand } from "./eval.ts";
import { generateCommand } from "./generate.ts";
import { useCallerCwd } from "./options.ts";

export function buildProgram(): Command {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return new Command("engine")
    .description("lora-studio engine: Stable Diffusion inference and model evaluation on ONNX Runtime")
    .version(pkg.version)
    .showHelpAfterError("(run with --help for usage)")
    .addCommand(generateCommand())
    .addCommand(evalCommand());
}

useCallerCwd();
await buildProgram().parseAsync(process.argv);
