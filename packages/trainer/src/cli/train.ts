/**
 * `pnpm train --config my.yaml [--dry-run] [--no-measure] [--resume DIR|FILE] [--ort-opt disabled|...|all]`
 * `pnpm train --from-kohya config.toml [--write my.yaml] [--dry-run]`
 *
 * Trains a LoRA from a YAML config (or a kohya / lora-scripts config imported on the fly). --dry-run prints the
 * resolved plan (images used and skipped, captions, repeats, buckets, the step arithmetic) with the time and
 * memory of one step measured on the real model (--no-measure: a bound from the graph). Ctrl-C once pauses
 * (saves a checkpoint, resumable with --resume OUTPUT_DIR); twice stops at once.
 */
import { writeFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { Command, Option } from "commander";
import { ConfigError } from "../config/errors.ts";
import { fromKohya, kohyaImportToYaml } from "../config/kohya.ts";
import { loadConfig, parseConfig } from "../config/load.ts";
import type { TrainConfig } from "../config/schema.ts";
import { planDataset } from "../dataset/plan.ts";
import { formatPlan } from "../dataset/plan-text.ts";
import { estimateStep } from "../train/estimate.ts";
import { consoleProgress } from "../train/progress.ts";
import { train } from "../train/train.ts";

interface Flags {
  config?: string;
  fromKohya?: string;
  write?: string;
  dryRun?: boolean;
  measure: boolean;
  resume?: string;
  tokenizer?: string;
  ortOpt?: "disabled" | "basic" | "extended" | "all";
}

async function resolveConfigFrom(flags: Flags): Promise<TrainConfig> {
  if (flags.config !== undefined) return loadConfig(flags.config);
  if (flags.fromKohya === undefined)
    throw new Error("give --config FILE.yaml or --from-kohya FILE.toml|.json");
  const imported = await fromKohya(flags.fromKohya);
  const yaml = kohyaImportToYaml(imported, basename(flags.fromKohya));
  for (const r of imported.reports)
    if (r.kind !== "converted") process.stderr.write(`${r.kind}: ${r.key}: ${r.message}\n`);
  if (flags.write !== undefined) {
    writeFileSync(flags.write, yaml);
    process.stderr.write(`wrote ${flags.write}\n`);
  }
  // Paths in a kohya file are relative to where it lives, like ours are to the YAML file.
  return parseConfig(yaml, resolve(flags.fromKohya));
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command()
    .name("train")
    .description("Train a Stable Diffusion LoRA from a folder of pictures")
    .option("--config <file>", "training config (YAML)")
    .option("--from-kohya <file>", "import a kohya .toml or lora-scripts .json config")
    .option("--write <file>", "with --from-kohya: also write the converted YAML here")
    .option("--dry-run", "print the plan and the time/memory estimate, train nothing")
    .option("--no-measure", "with --dry-run: do not time a step, bound memory from the graph")
    .option("--resume <path>", "continue from a saved state (output folder or *-state.safetensors)")
    .option("--tokenizer <dir>", "CLIP tokenizer folder (single-file checkpoints)")
    .addOption(
      new Option("--ort-opt <level>", "ONNX Runtime graph optimization level").choices([
        "disabled",
        "basic",
        "extended",
        "all",
      ]),
    )
    .exitOverride();
  try {
    program.parse(argv, { from: "user" });
  } catch (err) {
    return (err as { exitCode?: number }).exitCode ?? 2;
  }
  const flags = program.opts<Flags>();
  let config: TrainConfig;
  try {
    config = await resolveConfigFrom(flags);
  } catch (err) {
    process.stderr.write(
      `${err instanceof ConfigError ? err.message : `error: ${(err as Error).message}`}\n`,
    );
    return 2;
  }
  if (flags.resume !== undefined) config = { ...config, resume: resolve(flags.resume) };
  if (flags.dryRun) {
    const plan = await planDataset(config);
    process.stdout.write(`${formatPlan(plan)}\n`);
    const est = await estimateStep(config, plan, {
      measure: flags.measure,
      tokenizerDir: flags.tokenizer,
      graphOptimization: flags.ortOpt,
    });
    const lines = formatPlan(plan, { secondsPerStep: est.secondsPerStep, memoryBytes: est.memoryBytes })
      .split("\n")
      .filter((l) => l.startsWith("estimated"));
    const how =
      est.method === "measured"
        ? `(one step measured on ${est.bucket.join("x")}, batch ${config.batch_size}; memory = peak RSS of the measurement)`
        : `(memory: upper bound from the ${est.bucket.join("x")} step graph; time not measured)`;
    process.stdout.write(`${est.training}\n${lines.join("\n")}\n${how}\n`);
    return 0;
  }
  const progress = consoleProgress();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) process.stderr.write("\npausing after this step (Ctrl-C again to stop now)\n");
    else process.exit(130);
  };
  process.on("SIGINT", onSigint);
  try {
    const result = await train(config, {
      onEvent: progress,
      tokenizerDir: flags.tokenizer,
      graphOptimization: flags.ortOpt,
      control: () => (interrupts > 0 ? "pause" : undefined),
    });
    progress.stop();
    if (result.status === "paused") {
      process.stderr.write(`paused at step ${result.step}; continue with --resume ${config.output_dir}\n`);
    }
    return 0;
  } catch (err) {
    progress.stop();
    process.stderr.write(`error: ${(err as Error).message}\n`);
    return 1;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("cli/train.ts")) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
