/**
 * "train": a LoRA training run of the trainer (the same config schema and code as `pnpm train`), in the job's
 * worker. `prepare` (service thread) validates the config with the trainer's parseConfig and planDataset, so a
 * bad key or an empty dataset is a 400 at submit, not a failed job; `run` calls the trainer's train() and
 * forwards its events as job events (plan, metric = step/loss/lr/it/s/ETA, sample, saved, log, error, health).
 * Pause: the trainer saves a checkpoint after the current step and returns; every save is also this job's
 * checkpoint, so a resume — after a pause or after a service restart — continues from the last saved state.
 * Every saved LoRA (or only the final one) is hot-loaded into the Lora folder (training/hot-load.ts).
 */
import { access } from "node:fs/promises";
import { basename, isAbsolute, join, relative } from "node:path";
import type { OpenCheckpointOptions } from "@lora-studio/engine";
import type { TrainConfig, TrainEvent } from "@lora-studio/trainer";
import { ConfigError, DatasetError, planDataset, train } from "@lora-studio/trainer";
import { resolveInside, toRelative } from "../../library/safe-path.ts";
import { activationTextFrom, type HotLoadSettings, installLora } from "../../training/hot-load.ts";
import { configText, newRunId, resolveJobConfig, runsDir } from "../../training/job-config.ts";
import {
  type JobContext,
  type JobEnvironment,
  type JobKind,
  type JobOutcome,
  JobParamsError,
  type WritePlace,
} from "../types.ts";

const GRAPH_LEVELS = ["disabled", "basic", "extended", "all"] as const;
type GraphLevel = (typeof GRAPH_LEVELS)[number];

export interface TrainJobParams {
  /** The config as the client sent it (shown in the Runs tab, reusable in the Train tab). */
  configText: string;
  /** The resolved config the trainer runs. */
  config: TrainConfig;
  runDir: string;
  loraDir: string;
  hotLoad: HotLoadSettings;
  tokenizerDir?: string;
  checkpointOptions?: OpenCheckpointOptions;
  graphOptimization?: GraphLevel;
  plan: { images: number; stepsPerEpoch: number; totalSteps: number };
}

/** What this job saves to resume from: the trainer's state file of its last save. */
interface TrainCheckpoint {
  statePath: string;
  step: number;
}

const fail = (message: string): never => {
  throw new JobParamsError("train", message);
};

function optionalNumber(v: unknown, name: string, failWith = fail): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) failWith(`${name} must be a number`);
  return v as number;
}

/** The job's `model` loader options (what a single file cannot state) as the engine's checkpoint options. */
export function checkpointOptions(
  v: unknown,
  failWith: (message: string) => never = fail,
): OpenCheckpointOptions | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v))
    failWith("model must be { prediction_type?, text_encoder_heads?, unet_heads? }");
  const m = v as Record<string, unknown>;
  const out: OpenCheckpointOptions = {};
  if (m.prediction_type !== undefined) {
    if (m.prediction_type !== "epsilon" && m.prediction_type !== "v_prediction")
      failWith("model.prediction_type must be epsilon or v_prediction");
    out.predictionType = m.prediction_type as "epsilon" | "v_prediction";
  }
  const heads = optionalNumber(m.text_encoder_heads, "model.text_encoder_heads", failWith);
  if (heads !== undefined) out.textEncoderHeads = heads;
  if (Array.isArray(m.unet_heads))
    out.unetHeads = m.unet_heads.map((h, i) =>
      typeof h === "number" && Number.isInteger(h) && h > 0
        ? h
        : failWith(`model.unet_heads[${i}] must be a positive integer`),
    );
  else {
    const u = optionalNumber(m.unet_heads, "model.unet_heads", failWith);
    if (u !== undefined) out.unetHeads = u;
  }
  return out;
}

async function prepare(raw: unknown, env: JobEnvironment): Promise<TrainJobParams> {
  const p = (raw ?? {}) as Record<string, unknown>;
  let config: TrainConfig;
  let runDir: string;
  try {
    const text = configText(p.config);
    const probe = resolveJobConfig(text, env.datasetsDir, runsDir(env.dataDir));
    runDir = join(runsDir(env.dataDir), newRunId(probe.output_name));
    config = resolveJobConfig(text, env.datasetsDir, runDir);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  let plan: Awaited<ReturnType<typeof planDataset>>;
  try {
    plan = await planDataset(config);
  } catch (err) {
    if (err instanceof DatasetError) fail(err.message);
    throw err;
  }
  const dir = await resolveInside(env.loraDir, p.lora_subfolder ?? env.loraSubfolder, "lora_subfolder");
  const finalLora = join(dir, `${config.output_name}.safetensors`);
  const exists = await access(finalLora).then(
    () => true,
    () => false,
  );
  if (exists && p.overwrite !== true) {
    fail(
      `${toRelative(env.loraDir, finalLora)} already exists in the Lora folder: choose another output_name (or pass overwrite: true)`,
    );
  }
  if (p.hot_load !== undefined && p.hot_load !== "every-save" && p.hot_load !== "final")
    fail("hot_load must be every-save or final");
  if (p.activation_text !== undefined && typeof p.activation_text !== "string")
    fail("activation_text must be a string");
  if (p.tokenizer_dir !== undefined && (typeof p.tokenizer_dir !== "string" || !isAbsolute(p.tokenizer_dir)))
    fail("tokenizer_dir must be an absolute folder path");
  if (p.graph_optimization !== undefined && !GRAPH_LEVELS.includes(p.graph_optimization as GraphLevel))
    fail(`graph_optimization must be one of ${GRAPH_LEVELS.join(", ")}`);
  const activation =
    typeof p.activation_text === "string" && p.activation_text.trim() !== ""
      ? p.activation_text.trim()
      : activationTextFrom(
          plan.images.map((im) => im.caption),
          config.keep_tokens,
          config.output_name,
        );
  return {
    configText: configText(p.config),
    config,
    runDir,
    loraDir: env.loraDir,
    hotLoad: {
      dir,
      every: p.hot_load !== "final",
      activationText: activation,
      preferredWeight: optionalNumber(p.preferred_weight, "preferred_weight") ?? 1,
      description: `lora-studio: ${plan.images.length} image(s) from ${basename(config.train_data_dir)}, rank ${config.lora_rank}, ${plan.totalSteps} steps`,
    },
    tokenizerDir: (p.tokenizer_dir as string | undefined) ?? env.clipTokenizerDir,
    checkpointOptions: checkpointOptions(p.model),
    graphOptimization: p.graph_optimization as GraphLevel | undefined,
    plan: { images: plan.images.length, stepsPerEpoch: plan.stepsPerEpoch, totalSteps: plan.totalSteps },
  };
}

/**
 * Hot-loads in the order the trainer saved, off the training callback (which must stay synchronous). A LoRA
 * goes to the Lora folder with the sample grid of its own step as preview: the trainer renders that grid
 * right after the save (save_steps that fall on sample_every_n_steps, and the final save), so such a save
 * waits for its grid; any other save takes the newest grid there is. Whatever still waits when the run
 * ends (e.g. a failed sample round) is installed then.
 */
class HotLoader {
  private chain: Promise<void> = Promise.resolve();
  private lastSample: { step: number; path: string } | undefined;
  private readonly waiting = new Map<number, string>();
  private readonly sampleEvery: number | undefined;

  constructor(
    private readonly ctx: JobContext,
    private readonly p: TrainJobParams,
  ) {
    const c = p.config;
    this.sampleEvery = c.sample_prompts.length > 0 ? c.sample_every_n_steps : undefined;
  }

  private install(loraPath: string, preview: string | undefined): void {
    this.chain = this.chain
      .then(async () => this.ctx.loraWritten([await installLora(loraPath, this.p.hotLoad, preview)]))
      .catch((err: Error) => this.ctx.log(`hot-load of ${basename(loraPath)}: ${err.message}`, "warn"));
  }

  saved(step: number, loraPath: string): void {
    const final = basename(loraPath) === `${this.p.config.output_name}.safetensors`;
    if (!this.p.hotLoad.every && !final) return;
    const gridFollows =
      this.sampleEvery !== undefined &&
      this.lastSample?.step !== step &&
      (final || step % this.sampleEvery === 0);
    if (gridFollows) this.waiting.set(step, loraPath);
    else this.install(loraPath, this.lastSample?.path);
  }

  sample(step: number, path: string): void {
    this.lastSample = { step, path };
    const lora = this.waiting.get(step);
    if (lora === undefined) return;
    this.waiting.delete(step);
    this.install(lora, path);
  }

  async idle(): Promise<void> {
    for (const lora of this.waiting.values()) this.install(lora, this.lastSample?.path);
    this.waiting.clear();
    await this.chain;
  }
}

function forward(ctx: JobContext, p: TrainJobParams, hot: HotLoader, e: TrainEvent): void {
  const out = p.config.output_dir;
  if (e.type === "log") ctx.log(e.message, e.level);
  else if (e.type === "plan" || e.type === "step") {
    const { type, ...data } = e;
    ctx.emit(type === "step" ? "metric" : "plan", data);
  } else if (e.type === "sample") {
    hot.sample(e.step, e.path);
    ctx.emit("sample", { step: e.step, path: relative(out, e.path) });
  } else if (e.type === "saved") {
    // Every save is a point this job can resume from (pause, or a service restart).
    ctx.saveCheckpoint({ statePath: e.statePath, step: e.step } satisfies TrainCheckpoint);
    hot.saved(e.step, e.loraPath);
    ctx.emit("saved", { step: e.step, lora: relative(out, e.loraPath) });
  } else if (e.type === "error") ctx.emit("error", { message: e.message, step: e.step });
  else if (e.type === "done") ctx.emit("health", { status: e.status, step: e.step, notes: e.health });
}

async function run(ctx: JobContext): Promise<JobOutcome> {
  const p = ctx.params as TrainJobParams;
  const saved = ctx.checkpoint as TrainCheckpoint | null;
  const config: TrainConfig = saved === null ? p.config : { ...p.config, resume: saved.statePath };
  if (saved !== null) ctx.log(`resuming from the checkpoint of step ${saved.step}`);
  const hot = new HotLoader(ctx, p);
  let result: Awaited<ReturnType<typeof train>>;
  try {
    result = await train(config, {
      tokenizerDir: p.tokenizerDir,
      checkpointOptions: p.checkpointOptions,
      graphOptimization: p.graphOptimization,
      onEvent: (e) => forward(ctx, p, hot, e),
      control: () => ctx.stopRequested() ?? undefined,
    });
  } finally {
    await hot.idle();
  }
  if (result.status === "paused") return { paused: true };
  if (result.status === "cancelled") throw new Error("cancelled");
  const final = join(p.hotLoad.dir, `${p.config.output_name}.safetensors`);
  return {
    result: {
      status: result.status,
      step: result.step,
      totalSteps: result.totalSteps,
      finalLoss: result.losses.at(-1) ?? null,
      outputDir: result.outputDir,
      lora: toRelative(p.loraDir, final),
    },
  };
}

/**
 * The trainer looks at a pause after each optimizer step (seconds on a real model, longer during the setup
 * before the first step): a stopping service gives it this long to checkpoint.
 */
const STOP_GRACE_MS = 120_000;

/** The run folder (outputs, state files, samples, latent cache) and this LoRA's files in the Lora folder. */
function writesTo(params: unknown): WritePlace[] {
  const p = params as TrainJobParams;
  return [
    { dir: p.runDir, recursive: true },
    { dir: p.config.output_dir, recursive: true },
    { dir: p.hotLoad.dir, recursive: false, namePrefixes: [p.config.output_name] },
  ];
}

export const kind: JobKind = {
  name: "train",
  resumable: true,
  stopGraceMs: STOP_GRACE_MS,
  writesTo,
  prepare,
  run,
};
