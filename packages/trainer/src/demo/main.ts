/**
 * `pnpm demo [--retrain] [--skip-samples] [--config FILE]`: the README's quick start, on a fresh clone, with no
 * downloads. `--config` runs the same steps on another config (the end-to-end test points it at a temp folder).
 *  1. writes the synthetic ink-wash dataset into runs/demo/inkwash/ unless it is there already;
 *  2. trains the LoRA of configs/demo.yaml against the shipped tiny base model, exactly as
 *     `pnpm train --config configs/demo.yaml` does (skipped when the LoRA exists, unless --retrain);
 *  3. renders the config's sample prompts with the base model alone and with the LoRA (same seeds) into
 *     runs/demo/before-after.png (top row before, bottom row after), and prints how close each picture's
 *     colours are to the training pictures' (style-score.ts) with a verdict (did every ink-wash prompt come out
 *     closer?), also written to runs/demo/style-score.json.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import sharp from "sharp";
import { main as trainCli } from "../cli/train.ts";
import { loadConfig } from "../config/load.ts";
import type { TrainConfig } from "../config/schema.ts";
import { parseCsv } from "../dataset/csv.ts";
import { writeDemoDataset } from "./dataset.ts";
import { renderBeforeAfter } from "./samples.ts";
import {
  formatScores,
  type PromptScore,
  type StyleVerdict,
  scorePrompts,
  styleVerdict,
} from "./style-score.ts";

const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
export const DEMO_CONFIG = join(REPO, "configs", "demo.yaml");
/** The ink-wash set: 24 pictures, as a small style dataset would have. */
export const DEMO_DATASET = { kind: "inkwash", count: 24, seed: 7 } as const;
/** The trigger word of the ink-wash captions: the sample prompts with it are the ones the verdict judges. */
export const DEMO_TRIGGER = "inkwash";

export async function runDemo(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      retrain: { type: "boolean" },
      "skip-samples": { type: "boolean" },
      config: { type: "string" },
    },
  });
  const configPath = values.config ?? DEMO_CONFIG;
  const config: TrainConfig = await loadConfig(configPath);
  if (!existsSync(config.base_model)) {
    process.stderr.write(
      `demo base model missing: ${config.base_model}\nrebuild it with: npx tsx packages/trainer/scripts/build-demo-base.ts\n`,
    );
    return 1;
  }
  const dataDir = config.train_data_dir;
  if (existsSync(join(dataDir, "metadata.csv"))) {
    process.stdout.write(`dataset: ${dataDir} (exists, kept)\n`);
  } else {
    const pictures = await writeDemoDataset(dataDir, DEMO_DATASET);
    process.stdout.write(
      `dataset: wrote ${pictures.length} ink-wash pictures + metadata.csv to ${dataDir}\n`,
    );
  }

  const loraPath = join(config.output_dir, `${config.output_name}.safetensors`);
  if (existsSync(loraPath) && !values.retrain) {
    process.stdout.write(`LoRA: ${loraPath} (exists; pnpm demo --retrain trains it again)\n`);
  } else {
    process.stdout.write(`training: pnpm train --config ${configPath}\n`);
    // Exactly the README's command: the base's tokenizer/ folder beside it is found by the model loader.
    const code = await trainCli(["--config", configPath]);
    if (code !== 0) return code;
    if (!existsSync(loraPath)) {
      process.stderr.write(`training finished but ${loraPath} was not written\n`);
      return 1;
    }
  }
  if (values["skip-samples"]) return 0;

  const out = join(dirname(config.output_dir), "before-after.png");
  await mkdir(dirname(out), { recursive: true });
  const prompts = config.sample_prompts;
  const { before, after } = await renderBeforeAfter({
    base: config.base_model,
    loraDir: config.output_dir,
    loraName: config.output_name,
    prompts,
    size: config.resolution[0],
    seed: config.seed,
    out,
  });
  process.stdout.write(`before/after: ${out} (top: base model, bottom: with the LoRA)\n`);
  const scores = scorePrompts(prompts, before, after, await readTrainingPictures(dataDir));
  process.stdout.write(`${formatScores(scores)}\n`);
  const verdict = prompts.some((p) => p.includes(DEMO_TRIGGER))
    ? styleVerdict(scores, DEMO_TRIGGER)
    : undefined;
  if (verdict) process.stdout.write(`${verdict.line}\n`);
  await atomicWriteFile(
    join(dirname(out), "style-score.json"),
    `${JSON.stringify({ scores, verdict } satisfies { scores: PromptScore[]; verdict?: StyleVerdict }, null, 2)}\n`,
  );
  process.stdout.write(`LoRA for the WebUI: ${loraPath} (copy into models/Lora)\n`);
  return 0;
}

/** The dataset's pictures (8-bit RGB) with their captions, in metadata.csv order. */
export async function readTrainingPictures(dir: string): Promise<{ caption: string; rgb: Uint8Array }[]> {
  const rows = parseCsv(await readFile(join(dir, "metadata.csv"), "utf8")).slice(1);
  const out: { caption: string; rgb: Uint8Array }[] = [];
  for (const [file, caption] of rows) {
    const raw = await sharp(join(dir, file)).removeAlpha().raw().toBuffer();
    out.push({ caption, rgb: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) });
  }
  return out;
}

if (process.argv[1]?.endsWith("demo/main.ts")) {
  runDemo(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`demo: ${err.message}\n`);
      process.exit(1);
    },
  );
}
