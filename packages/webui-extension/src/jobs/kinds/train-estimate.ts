/**
 * "train-estimate": the trainer's `--dry-run` measurement of one optimizer step (estimateStep: the step graph of
 * the largest bucket built on the real model and timed over a few steps, plus peak memory), for the Train form's
 * ETA (training/eta.ts reads its result). A job, not a request: it loads the model and builds the step graph,
 * and it must not run beside a training (the timing would be wrong, and one GPU job runs at a time). In its own
 * process like training (ONNX Runtime; a cancel kills it at once).
 */

import type { OpenCheckpointOptions } from "@lora-studio/engine";
import type { TrainConfig } from "@lora-studio/trainer";
import { ConfigError, DatasetError, estimateStep, planDataset } from "@lora-studio/trainer";
import { configText, resolveJobConfig, runsDir } from "../../training/job-config.ts";
import { type JobContext, type JobEnvironment, type JobKind, JobParamsError } from "../types.ts";
import { checkpointOptions } from "./train.ts";

const GRAPH_LEVELS = ["disabled", "basic", "extended", "all"] as const;

interface TrainEstimateParams {
  config: TrainConfig;
  tokenizerDir?: string;
  graphOptimization?: (typeof GRAPH_LEVELS)[number];
  steps: number;
  checkpointOptions?: OpenCheckpointOptions;
}

const fail = (message: string): never => {
  throw new JobParamsError("train-estimate", message);
};

async function prepare(raw: unknown, env: JobEnvironment): Promise<TrainEstimateParams> {
  const p = (raw ?? {}) as Record<string, unknown>;
  let config: TrainConfig;
  try {
    config = resolveJobConfig(configText(p.config), env.datasetsDir, runsDir(env.dataDir));
    await planDataset(config);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof DatasetError) fail(err.message);
    throw err;
  }
  const steps = p.steps ?? 3;
  if (typeof steps !== "number" || !Number.isInteger(steps) || steps < 2 || steps > 20)
    fail("steps must be an integer from 2 to 20 (the first one, which warms up, is not counted)");
  const g = p.graph_optimization;
  if (g !== undefined && !GRAPH_LEVELS.includes(g as (typeof GRAPH_LEVELS)[number]))
    fail(`graph_optimization must be one of ${GRAPH_LEVELS.join(", ")}`);
  return {
    config,
    tokenizerDir: env.clipTokenizerDir,
    graphOptimization: g as TrainEstimateParams["graphOptimization"],
    steps: steps as number,
    checkpointOptions: checkpointOptions(p.model, fail),
  };
}

async function run(ctx: JobContext) {
  const p = ctx.params as TrainEstimateParams;
  ctx.progress(0, 1, "loading the model and building the step graph");
  const plan = await planDataset(p.config);
  const est = await estimateStep(p.config, plan, {
    measure: true,
    steps: p.steps,
    tokenizerDir: p.tokenizerDir,
    graphOptimization: p.graphOptimization,
    checkpointOptions: p.checkpointOptions,
  });
  if (est.secondsPerStep === undefined)
    throw new Error(`the step could not be timed${est.note ? `: ${est.note}` : ""}`);
  ctx.log(
    `${est.secondsPerStep.toFixed(3)} s per step at ${est.bucket.join("x")}, peak memory ${(est.memoryBytes / 2 ** 30).toFixed(2)} GiB`,
  );
  ctx.progress(1, 1, "measured");
  return {
    result: {
      secondsPerStep: est.secondsPerStep,
      memoryBytes: est.memoryBytes,
      bucket: est.bucket,
      totalSteps: plan.totalSteps,
      etaSeconds: plan.totalSteps * est.secondsPerStep,
    },
  };
}

export const kind: JobKind = { name: "train-estimate", resumable: false, prepare, run };
