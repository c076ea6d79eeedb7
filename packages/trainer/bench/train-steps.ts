/**
 * LoRA training speed and memory through the whole trainer (train(): data, latent cache, step graphs in a worker,
 * saves): steps per second and peak RSS on the tiny fixture model, and on full-size SD1.5 shapes (a random fp16
 * checkpoint with every tensor name and shape of a real SD1.5 file, generated in os.tmpdir() from
 * shared/fixtures/sd15-original-keys.json and deleted afterwards) at 256 and 512 px, batch 1, rank 8.
 * Each case runs in its own child process, so each peak RSS is its own.
 *
 * With --te every case also runs with train_text_encoder (the joint text-encoder + UNet step).
 *
 *   npx tsx packages/trainer/bench/train-steps.ts [--sizes 256,512] [--steps 4] [--opt disabled,all] [--no-sd15] [--te]
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeSyntheticCheckpoint } from "@lora-studio/prompt-lora";
import sharp from "sharp";
import { resolveConfig } from "../src/config/load.ts";
import { configSchema } from "../src/config/schema.ts";
import { train } from "../src/train/train.ts";

const FIXTURES = fileURLToPath(new URL("../../../../shared/fixtures/", import.meta.url));

interface Case {
  label: string;
  model: string;
  size: number;
  rank: number;
  steps: number;
  opt: "disabled" | "all";
  checkpointing: boolean;
  trainTextEncoder?: boolean;
  dataDir: string;
  outDir: string;
}

interface CaseResult {
  label: string;
  setupSeconds: number;
  secondsPerStep: number;
  stepsPerSecond: number;
  peakRssMiB: number;
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

async function runCase(c: Case): Promise<CaseResult> {
  const config = resolveConfig(
    configSchema.parse({
      train_data_dir: c.dataDir,
      base_model: c.model,
      output_dir: c.outDir,
      lora_rank: c.rank,
      resolution: c.size,
      enable_bucket: false,
      batch_size: 1,
      max_train_steps: c.steps,
      gradient_checkpointing: c.checkpointing,
      train_text_encoder: c.trainTextEncoder === true,
      save_precision: "fp16",
    }),
  );
  const t0 = performance.now();
  let setup = 0;
  const stepTimes: number[] = [];
  let last = 0;
  await train(config, {
    tokenizerDir: join(FIXTURES, "clip-tokenizer"),
    graphOptimization: c.opt,
    onEvent: (e) => {
      if (e.type !== "step") return;
      const now = performance.now();
      if (e.step === 1) last = now;
      else {
        stepTimes.push((now - last) / 1000);
        last = now;
      }
      if (e.step === 1) setup = (now - t0) / 1000;
    },
  });
  stepTimes.sort((a, b) => a - b);
  const median = stepTimes[Math.floor(stepTimes.length / 2)];
  return {
    label: c.label,
    setupSeconds: setup,
    secondsPerStep: median,
    stepsPerSecond: 1 / median,
    peakRssMiB: (process.resourceUsage().maxRSS * 1024) / 2 ** 20,
  };
}

/** A random fp16 SD1.5 checkpoint with the real names and shapes. */
async function generateSd15(path: string): Promise<void> {
  await writeSyntheticCheckpoint(join(FIXTURES, "sd15-original-keys.json"), path, { dtype: "F16" });
}

async function makeImages(dir: string, size: number, count: number): Promise<void> {
  mkdirSync(join(dir, "1_bench"), { recursive: true });
  for (let i = 0; i < count; i++) {
    const data = Buffer.alloc(size * size * 3);
    for (let p = 0; p < data.length; p++) data[p] = (p * 7 + i * 31 + ((p / size) | 0)) & 0xff;
    await sharp(data, { raw: { width: size, height: size, channels: 3 } })
      .png()
      .toFile(join(dir, "1_bench", `b${i}.png`));
    writeFileSync(join(dir, "1_bench", `b${i}.txt`), `bench picture ${i}`);
  }
}

async function main() {
  const childArg = arg("child", "");
  if (childArg !== "") {
    const result = await runCase(JSON.parse(childArg) as Case);
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
    return;
  }
  const steps = Number(arg("steps", "4"));
  const sizes = arg("sizes", "256,512").split(",").map(Number);
  const opts = arg("opt", "disabled").split(",") as Case["opt"][];
  const work = join(tmpdir(), `lora-studio-train-bench-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const cases: Case[] = [];
  try {
    await makeImages(join(work, "data64"), 64, 2);
    for (const opt of opts) {
      cases.push({
        label: `tiny-sd1 64px rank 8 (ORT opt ${opt})`,
        model: join(FIXTURES, "tiny-sd1", "diffusers"),
        size: 64,
        rank: 8,
        steps: Math.max(steps, 20),
        opt,
        checkpointing: false,
        dataDir: join(work, "data64"),
        outDir: join(work, `out-tiny-${opt}`),
      });
    }
    if (!process.argv.includes("--no-sd15")) {
      const model = join(work, "sd15-random-fp16.safetensors");
      const t = performance.now();
      await generateSd15(model);
      console.log(`generated random SD1.5 checkpoint in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      for (const size of sizes) {
        await makeImages(join(work, `data${size}`), size, 2);
        for (const opt of opts) {
          cases.push({
            label: `SD1.5 shapes ${size}px rank 8 batch 1 (ORT opt ${opt})`,
            model,
            size,
            rank: 8,
            steps,
            opt,
            checkpointing: size >= 512,
            dataDir: join(work, `data${size}`),
            outDir: join(work, `out-${size}-${opt}`),
          });
        }
      }
    }
    if (process.argv.includes("--te")) {
      for (const c of [...cases]) {
        cases.push({
          ...c,
          label: `${c.label}, train_text_encoder`,
          trainTextEncoder: true,
          outDir: `${c.outDir}-te`,
        });
      }
    }
    for (const c of cases) {
      const r = spawnSync(
        process.execPath,
        ["--import", "tsx", fileURLToPath(import.meta.url), "--child", JSON.stringify(c)],
        {
          encoding: "utf8",
          maxBuffer: 1 << 26,
        },
      );
      const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
      if (!line) {
        console.log(`${c.label}: failed (exit ${r.status})\n${r.stderr.slice(-2000)}`);
        continue;
      }
      const res = JSON.parse(line.slice(7)) as CaseResult;
      console.log(
        `${res.label}${c.checkpointing ? ", gradient checkpointing" : ""}: ${res.stepsPerSecond.toFixed(3)} steps/s ` +
          `(${res.secondsPerStep.toFixed(2)} s/step, median of ${c.steps - 1}), setup ${res.setupSeconds.toFixed(1)} s, ` +
          `peak RSS ${res.peakRssMiB.toFixed(0)} MiB`,
      );
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
