/**
 * Everything before the first training step: the data plan, the base model, LoRA targets, the latent and text
 * caches, the per-bucket step graphs, the initial (or resumed) training state and data-order position, the
 * kohya metadata fixed at the start, and the log writers. `train.ts` runs the loop on the result.
 */
import { randomInt } from "node:crypto";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  fp32CacheForProvider,
  type HostTensor,
  initialTrainState,
  isGpuProvider,
  kohyaLoraInit,
  type LoraModuleInfo,
  type MessageSink,
  messageShown,
  type OpenCheckpointOptions,
  type OptimizerConfig,
  resolveExecutionProvider,
  type SessionOptions,
} from "@lora-studio/engine";
import { atomicWriteFile } from "@lora-studio/prompt-lora";
import type { TrainConfig } from "../config/schema.ts";
import { textEmbeddingsCacheable } from "../dataset/captions.ts";
import { DataOrder } from "../dataset/order.ts";
import { type DataPlan, DatasetError, orderBuckets, planDataset } from "../dataset/plan.ts";
import { formatPlan } from "../dataset/plan-text.ts";
import { MetricsWriter, readMetrics } from "../logging/metrics.ts";
import { KOHYA_TAGS, TensorBoardWriter } from "../logging/tensorboard.ts";
import { datasetSummaryFromPlan, trainingMetadata } from "../output/metadata.ts";
import { type BaseModel, openBaseModel } from "./base-model.ts";
import type { BatchContext } from "./batch.ts";
import { checkStateMatches, loadTrainState, ResumeError, type SavedModule } from "./checkpoint.ts";
import { cacheLatents, TextEmbedder } from "./encoders.ts";
import type { TrainEvent, TrainEventHandler } from "./events.ts";
import { SampleRenderer } from "./sampling.ts";
import { StepGraphs, teModulesOf } from "./step-graphs.ts";
import { moduleAlpha, textEncoderLoraRanks, trainingSummary, unetLoraRanks } from "./targets.ts";

export interface TrainOptions {
  onEvent?: TrainEventHandler;
  /** Polled after every optimizer step: "pause" saves a checkpoint and returns, "cancel" returns at once. */
  control?: () => "pause" | "cancel" | undefined;
  /** CLIP tokenizer folder for single-file checkpoints (see base-model.ts for the search order). */
  tokenizerDir?: string;
  checkpointOptions?: OpenCheckpointOptions;
  /** Run the step graphs in a worker thread (default true). */
  worker?: boolean;
  /** Loss of a fixed batch (fixed timesteps and noise) before training and every N steps; 0/undefined: never. */
  evalEvery?: number;
  /** Pause (save and return) right after this optimizer step. */
  stopAfterStep?: number;
  /** ORT graph optimization level of the sessions (see DEFAULT_GRAPH_OPTIMIZATION). */
  graphOptimization?: SessionOptions["graphOptimizationLevel"];
}

export interface RunLogs {
  step(step: number, values: Record<string, number>): void;
  epochAverage(epoch: number, value: number): void;
  metrics(record: { step: number; epoch: number; loss: number; [key: string]: number | undefined }): void;
  flush(): void;
  close(): void;
}

export interface RunSetup {
  config: TrainConfig;
  plan: DataPlan;
  base: BaseModel;
  /** Options every session of the run uses (provider, threads, optimization level). */
  session: SessionOptions;
  family: "sd1" | "sd2";
  modules: SavedModule[];
  graphs: StepGraphs;
  batchContext: BatchContext;
  state: Map<string, HostTensor>;
  losses: number[];
  dataOrder: DataOrder;
  startStep: number;
  resumedFrom?: string;
  statePath: string;
  metadata: Record<string, string>;
  sessionId: number;
  trainingStartedAt: number;
  fingerprint: string;
  logs: RunLogs;
  maybeSample(step: number, final?: boolean): Promise<void>;
  /** Registers something to release with the run (sessions made by the loop). */
  addCleanup(fn: () => Promise<void>): void;
  release(): Promise<void>;
}

/**
 * ORT's graph optimizations ("all": constant folding, fusions) cost seconds of session creation on a training
 * graph (~9k nodes) but make full-size steps much faster (bench/train-steps.ts, SD1.5 shapes at 256 px: 12.8 s
 * per step with "all" vs 35 s with "disabled", and less memory), so they are on by default; short runs on tiny
 * models (tests) may turn them off.
 */
export const DEFAULT_GRAPH_OPTIMIZATION: NonNullable<SessionOptions["graphOptimizationLevel"]> = "all";

export function optimizerConfig(config: Pick<TrainConfig, "optimizer">): OptimizerConfig {
  // kohya's defaults: AdamW(weight_decay 0.01), Lion(betas 0.9/0.99, wd 0), SGD(momentum 0).
  switch (config.optimizer) {
    case "AdamW":
      return { kind: "adamw", weightDecay: 0.01 };
    case "Lion":
      return { kind: "lion", beta1: 0.9, beta2: 0.99, weightDecay: 0 };
    case "SGD":
      return { kind: "sgd", momentum: 0 };
  }
}

export function sessionOptions(config: TrainConfig, say: MessageSink): SessionOptions {
  return { executionProvider: config.execution_provider, intraOpThreads: config.threads, onMessage: say };
}

/** The settings a resume must share with the saved run (everything that decides the losses). */
export function lossSettings(config: TrainConfig, totalSteps: number): Record<string, unknown> {
  const c = config;
  return {
    base_model: c.base_model,
    lora_rank: c.lora_rank,
    lora_alpha: c.lora_alpha,
    conv_rank: c.conv_rank,
    conv_alpha: c.conv_alpha,
    target_modules: c.target_modules,
    batch_size: c.batch_size,
    gradient_accumulation_steps: c.gradient_accumulation_steps,
    learning_rate: c.learning_rate,
    unet_lr: c.unet_lr,
    optimizer: c.optimizer,
    lr_scheduler: c.lr_scheduler,
    lr_warmup_steps: c.lr_warmup_steps,
    total_steps: totalSteps,
    seed: c.seed,
    noise_offset: c.noise_offset,
    min_snr_gamma: c.min_snr_gamma,
    resolution: c.resolution,
    flip_aug: c.flip_aug,
    shuffle_caption: c.shuffle_caption,
    keep_tokens: c.keep_tokens,
    caption_dropout_rate: c.caption_dropout_rate,
    clip_skip: c.clip_skip,
    // Only when on, so states saved before the text encoder could be trained keep their fingerprint.
    ...(c.train_text_encoder ? { train_text_encoder: true, text_encoder_lr: c.text_encoder_lr } : {}),
  };
}

export async function setupRun(
  requested: TrainConfig,
  options: TrainOptions,
  emit: (e: TrainEvent) => void,
): Promise<RunSetup> {
  const say = (message: string, level: "info" | "warn" = "info") => emit({ type: "log", level, message });
  // Engine messages keep their level: cache builds are news ("info"), fallbacks and heap copies are warnings.
  const engineSay: MessageSink = (m, level) => {
    if (messageShown(level)) say(m, level === "debug" ? "info" : (level ?? "warn"));
  };
  // "auto" becomes the provider it finds before anything is built: weights, graphs and fp16 depend on it.
  const config: TrainConfig = {
    ...requested,
    execution_provider: await resolveExecutionProvider(requested.execution_provider, engineSay),
  };
  if (config.mixed_precision === "fp16" && !isGpuProvider(config.execution_provider)) {
    say(
      `mixed_precision: fp16 needs a GPU execution provider (cuda, tensorrt or webgpu, or auto finding one); on ${config.execution_provider} training runs in fp32`,
      "warn",
    );
  }
  if (!config.cache_latents) {
    say(
      "cache_latents: false changes nothing here: latents are always encoded once (flips included)",
      "info",
    );
  }
  const plan = await planDataset(config);
  const statePath = join(config.output_dir, `${config.output_name}-state.safetensors`);
  const resumePath =
    config.resume === undefined
      ? undefined
      : existsSync(config.resume) && statSync(config.resume).isDirectory()
        ? join(config.resume, `${config.output_name}-state.safetensors`)
        : config.resume;
  const resumed = resumePath === undefined ? undefined : await loadTrainState(resumePath);
  const settings = JSON.stringify(lossSettings(config, plan.totalSteps));
  if (resumed && resumed.record.fingerprint !== settings) {
    const was = JSON.parse(resumed.record.fingerprint) as Record<string, unknown>;
    const now = JSON.parse(settings) as Record<string, unknown>;
    const changed = Object.keys(now).filter((key) => JSON.stringify(was[key]) !== JSON.stringify(now[key]));
    throw new ResumeError(
      resumePath as string,
      `the config changed since this state was saved (${changed.join(", ")}); resume needs the same settings`,
    );
  }
  emit({
    type: "plan",
    text: formatPlan(plan),
    totalSteps: plan.totalSteps,
    stepsPerEpoch: plan.stepsPerEpoch,
    epochs: plan.epochs,
    startStep: resumed?.record.step ?? 0,
  });

  // The fp32 weight cache (engine/models/loader/fp32-cache) halves peak memory for fp16 checkpoints on the CPU;
  // GPU providers keep the 16-bit weights. The sample renderer opens the base again with the same options.
  const checkpointOptions: OpenCheckpointOptions = {
    fp32Cache: fp32CacheForProvider(config.execution_provider, engineSay),
    ...options.checkpointOptions,
  };
  const base = await openBaseModel(config.base_model, {
    tokenizerDir: options.tokenizerDir,
    checkpoint: checkpointOptions,
  });
  const cleanups: (() => Promise<void>)[] = [() => base.checkpoint.close()];
  const release = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    const bad = plan.buckets.filter((b) => b.bucket.some((s) => s % base.sizeMultiple !== 0));
    if (bad.length > 0) {
      throw new DatasetError(
        plan.dataDir,
        `bucket(s) ${bad.map((b) => b.bucket.join("x")).join(", ")} are not multiples of ${base.sizeMultiple}, ` +
          `which this model needs (VAE x UNet downsampling): use a resolution and bucket_reso_steps that are multiples of ${base.sizeMultiple}`,
      );
    }
    const session = {
      ...sessionOptions(config, engineSay),
      graphOptimizationLevel: options.graphOptimization ?? DEFAULT_GRAPH_OPTIMIZATION,
    };
    const ranks = unetLoraRanks(base.architecture.modules, config);
    const teRanks = config.train_text_encoder
      ? textEncoderLoraRanks(base.architecture.modules, config)
      : undefined;
    const specs = new Map(
      base.architecture.modules
        .filter((m) => m.component === "unet" || m.component === "te")
        .map((m) => [`${m.component}:${m.path}`, m]),
    );

    mkdirSync(config.output_dir, { recursive: true });
    say(`caching latents of ${plan.images.length} image(s)${config.flip_aug ? " and their mirrors" : ""}`);
    const latents = await cacheLatents(base, plan.images, {
      seed: config.seed,
      flipAug: config.flip_aug,
      diskDir: config.cache_latents_to_disk ? join(config.output_dir, "latent-cache") : null,
      session,
    });
    if (config.cache_latents_to_disk) say(`latent cache: ${latents.hits} reused, ${latents.misses} encoded`);
    // A trained text encoder runs inside the step graphs (captions go in as token ids every step), so the
    // frozen encoder and its embedding cache are not needed then.
    const cacheable = textEmbeddingsCacheable(config);
    const embedder = await TextEmbedder.create(base, {
      clipSkip: config.clip_skip,
      cacheable,
      session,
      encode: !config.train_text_encoder,
    });
    cleanups.push(() => embedder.release());
    if (cacheable) for (const im of plan.images) await embedder.embed(im.caption);

    const graphs = new StepGraphs(base, {
      ranks,
      optimizer: optimizerConfig(config),
      maxGradNorm: 1,
      accumulationSteps: config.gradient_accumulation_steps,
      gradientCheckpointing: config.gradient_checkpointing,
      session,
      worker: options.worker ?? true,
      textEncoder: teRanks && { ranks: teRanks, clipSkip: config.clip_skip },
      // fp16 only on a GPU provider: ORT's CPU runs fp16 through inserted Casts (slower, more memory).
      computeDType:
        config.mixed_precision === "fp16" && isGpuProvider(config.execution_provider) ? "float16" : "float32",
    });
    cleanups.push(() => graphs.release());
    const firstBucket = plan.buckets[0].bucket;
    const first = await graphs.get(firstBucket, Math.min(config.batch_size, plan.buckets[0].samples));
    const teInfos = teModulesOf(first.info);
    const saved = (component: SavedModule["component"], info: LoraModuleInfo): SavedModule => {
      const spec = specs.get(`${component}:${info.path}`);
      if (!spec) throw new Error(`LoRA module ${component}:${info.path} is not in the model's module tree`);
      return { component, info, alpha: moduleAlpha(spec, config), layer: spec.layer };
    };
    // kohya's order: text-encoder modules first, then the UNet's.
    const modules: SavedModule[] = [
      ...teInfos.map((info) => saved("te", info)),
      ...first.info.modules.map((info) => saved("unet", info)),
    ];
    say(trainingSummary(config, first.info.modules.length, teInfos.length));
    // UNet modules keep their init seeds whether or not the text encoder is trained (its modules come after).
    const fresh = initialTrainState(
      first.info.step,
      kohyaLoraInit([...first.info.modules, ...teInfos], config.seed),
    );
    if (resumed) checkStateMatches(resumePath as string, fresh, resumed.state);
    const state = resumed ? resumed.state : fresh;

    const sessionId = resumed?.record.sessionId ?? randomInt(0, 2 ** 31 - 1);
    const trainingStartedAt = resumed?.record.trainingStartedAt ?? Date.now() / 1000;
    const metadata = trainingMetadata({
      config,
      dataset: datasetSummaryFromPlan(plan),
      sessionId,
      trainingStartedAt,
    });
    const family = base.checkpoint.family === "sd1" ? "sd1" : "sd2";
    if (family === "sd2") {
      metadata.ss_v2 = "True";
      metadata.ss_base_model_version = "sd_v2";
    }
    // Steps logged after the saved state (a kill between saves) are redone by this run: drop their old lines.
    if (resumed) await truncateMetrics(join(config.output_dir, "metrics.jsonl"), resumed.record.step);
    const logs = openLogs(config.output_dir);
    cleanups.push(async () => logs.close());
    const sampler =
      config.sample_prompts.length > 0 && config.sample_every_n_steps !== undefined
        ? new SampleRenderer(config, modules, family, base.tokenizerDir, checkpointOptions)
        : undefined;
    if (sampler) cleanups.push(() => sampler.release());
    return {
      config,
      plan,
      base,
      session,
      family,
      modules,
      graphs,
      batchContext: {
        seed: config.seed,
        schedule: base.schedule,
        images: plan.images,
        latents,
        embedder,
        flipAug: config.flip_aug,
        noiseOffset: config.noise_offset,
        minSnrGamma: config.min_snr_gamma,
        captions: {
          shuffleCaption: config.shuffle_caption,
          keepTokens: config.keep_tokens,
          captionDropoutRate: config.caption_dropout_rate,
        },
        tokenIds: config.train_text_encoder,
      },
      state,
      losses: resumed ? [...resumed.losses] : [],
      dataOrder: new DataOrder(orderBuckets(plan), config.batch_size, config.seed, resumed?.record.dataOrder),
      startStep: resumed?.record.step ?? 0,
      resumedFrom: resumePath,
      statePath,
      metadata,
      sessionId,
      trainingStartedAt,
      fingerprint: settings,
      logs,
      async maybeSample(step, final = false) {
        const every = config.sample_every_n_steps;
        if (!sampler || every === undefined || (!final && step % every !== 0)) return;
        const path = await sampler.render(step, state);
        emit({ type: "sample", step, path });
      },
      addCleanup: (fn) => cleanups.push(fn),
      release,
    };
  } catch (err) {
    await release();
    throw err;
  }
}

async function truncateMetrics(path: string, lastStep: number): Promise<void> {
  if (!existsSync(path)) return;
  const kept = readMetrics(path).filter((r) => r.step <= lastStep);
  const text = kept.map((r) =>
    JSON.stringify(r, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v)),
  );
  await atomicWriteFile(path, text.length > 0 ? `${text.join("\n")}\n` : "");
}

function openLogs(dir: string): RunLogs {
  const tb = new TensorBoardWriter(join(dir, "logs"));
  const metrics = new MetricsWriter(join(dir, "metrics.jsonl"));
  return {
    step: (step, values) => tb.scalars(step, values),
    epochAverage: (epoch, value) => tb.scalars(epoch, { [KOHYA_TAGS.lossEpochAverage]: value }),
    metrics: (record) => {
      const clean = Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined));
      metrics.write({
        ...clean,
        step: record.step,
        epoch: record.epoch,
        loss: record.loss,
        wall_time: Date.now() / 1000,
      });
    },
    flush: () => {
      tb.flush();
      metrics.flush();
    },
    close: () => {
      tb.close();
      metrics.close();
    },
  };
}
