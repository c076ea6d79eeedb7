/**
 * train(config): the whole LoRA run. loadConfig'd settings -> planDataset -> base model -> latents cached once
 * -> text embeddings (cached when static) -> one step graph per bucket (worker thread) -> the step loop with the
 * lr schedule, gradient accumulation, logs, saves, optional pause/cancel, resume from a saved state, and the
 * training-health note at the end. See setup.ts for everything before the first step.
 */
import { join } from "node:path";
import type { HostTensor } from "@lora-studio/engine";
import { learningRateAt } from "../config/lr-schedule.ts";
import type { TrainConfig } from "../config/schema.ts";
import { trainingHealth } from "../logging/health.ts";
import { writeLossCurvePng } from "../logging/loss-curve.ts";
import { KOHYA_TAGS } from "../logging/tensorboard.ts";
import { checkpointMetadata, modelspecMetadata } from "../output/metadata.ts";
import { type PreparedBatch, prepareBatch } from "./batch.ts";
import { saveLora, saveTrainState } from "./checkpoint.ts";
import { FixedBatchEvaluator } from "./evaluation.ts";
import { NonFiniteLossError, type TrainEvent } from "./events.ts";
import { type RunSetup, setupRun, type TrainOptions } from "./setup.ts";
import { learningRateFeeds, runStep, type StepGraph } from "./step-graphs.ts";

export type { TrainOptions } from "./setup.ts";

export interface TrainResult {
  status: "done" | "paused" | "cancelled";
  /** Optimizer steps done (including those before a resume). */
  step: number;
  totalSteps: number;
  /** Loss of every optimizer step from step 1 (resumed runs include the saved history). */
  losses: number[];
  /** Fixed-batch evaluation losses (TrainOptions.evalEvery), step 0 = before training. */
  evalLosses: { step: number; loss: number }[];
  loraPath?: string;
  statePath?: string;
  outputDir: string;
}

export async function train(config: TrainConfig, options: TrainOptions = {}): Promise<TrainResult> {
  const emit = (e: TrainEvent) => options.onEvent?.(e);
  const run = await setupRun(config, options, emit);
  try {
    return await loop(run, options, emit);
  } finally {
    await run.release();
  }
}

async function loop(
  run: RunSetup,
  options: TrainOptions,
  emit: (e: TrainEvent) => void,
): Promise<TrainResult> {
  const { config, plan, state, losses } = run;
  const k = config.gradient_accumulation_steps;
  const total = plan.totalSteps;
  // kohya: unet_lr / text_encoder_lr fall back to learning_rate; the schedule shapes both groups alike.
  const lrAt = (base: number, step: number) =>
    learningRateAt(config.lr_scheduler, base, step, {
      warmupSteps: config.lr_warmup_steps,
      totalSteps: total,
      numCycles: config.lr_scheduler_num_cycles,
    });
  const unetLrAt = (step: number) => lrAt(config.unet_lr ?? config.learning_rate, step);
  const teLrAt = (step: number) =>
    config.train_text_encoder ? lrAt(config.text_encoder_lr ?? config.learning_rate, step) : undefined;
  const scaleFeeds: Record<string, HostTensor> = {};
  for (const m of run.modules) {
    scaleFeeds[m.info.scaleInput] = {
      dtype: "float32",
      shape: [],
      data: Float32Array.of(m.alpha / m.info.rank),
    };
  }
  const evalLosses: { step: number; loss: number }[] = [];
  const evalEvery = options.evalEvery ?? 0;
  const evaluator =
    evalEvery > 0
      ? await FixedBatchEvaluator.create(run.base, config, plan, run.batchContext, run.modules, run.session)
      : undefined;
  if (evaluator) run.addCleanup(() => evaluator.release());
  const evaluate = async (step: number) => {
    const loss = await (evaluator as FixedBatchEvaluator).loss(state);
    evalLosses.push({ step, loss });
    return loss;
  };

  let step = run.startStep;
  let epoch = run.dataOrder.getState().epoch;
  let lastSaved: string | undefined = run.resumedFrom;
  let lastLora: string | undefined;
  let savedAtStep = run.resumedFrom === undefined ? -1 : step;
  const save = async (final: boolean) => {
    const name = final
      ? `${config.output_name}.safetensors`
      : `${config.output_name}-step${String(step).padStart(8, "0")}.safetensors`;
    const loraPath = join(config.output_dir, name);
    const now = Date.now() / 1000;
    const metadata = {
      ...checkpointMetadata(run.metadata, { steps: step, epoch: epoch + 1, finishedAt: now }),
      ...modelspecMetadata({
        title: config.output_name,
        resolution: config.resolution,
        timestamp: now,
        clipSkip: config.clip_skip,
      }),
    };
    await saveLora(loraPath, run.modules, state, metadata, config.save_precision, run.family);
    await saveTrainState(run.statePath, state, losses, {
      version: 1,
      step,
      microStep: step * k,
      dataOrder: savedOrder,
      seed: config.seed,
      sessionId: run.sessionId,
      trainingStartedAt: run.trainingStartedAt,
      fingerprint: run.fingerprint,
    });
    run.logs.flush();
    await writeLossCurvePng(
      join(config.output_dir, "loss-curve.png"),
      losses.map((loss, i) => ({ step: i + 1, loss })),
      { title: `${config.output_name}: loss` },
    ).catch((err: Error) =>
      emit({ type: "log", level: "warn", message: `loss curve not written: ${err.message}` }),
    );
    lastSaved = run.statePath;
    lastLora = loraPath;
    savedAtStep = step;
    emit({ type: "saved", step, loraPath, statePath: run.statePath });
  };

  // Prefetch: the next micro-step's feeds are prepared while the current step runs in the worker. The data order
  // position right after taking a batch is kept with it, so a save records where the NEXT batch starts.
  let savedOrder = run.dataOrder.getState();
  type Prepared = {
    prepared: PreparedBatch;
    graph: Promise<StepGraph>;
    orderAfter: typeof savedOrder;
    epoch: number;
  };
  const prepare = async (micro: number): Promise<Prepared> => {
    const { epoch: e, batch } = run.dataOrder.next();
    const orderAfter = run.dataOrder.getState();
    const graph = run.graphs.get(batch.bucket, batch.items.length);
    return { prepared: await prepareBatch(run.batchContext, batch, micro), graph, orderAfter, epoch: e };
  };

  if (evalEvery > 0 && step === 0) await evaluate(0);
  if (step === 0) await run.maybeSample(0);
  let pending: Promise<Prepared> | undefined = step < total ? prepare(step * k) : undefined;
  const times: number[] = [];
  let epochLosses: number[] = [];
  let status: TrainResult["status"] = "done";
  let overflowSkips = 0;
  while (step < total) {
    const started = performance.now();
    const lr = unetLrAt(step);
    const lrTextEncoder = teLrAt(step);
    let lossSum = 0;
    let bad = false;
    let overflowed = false;
    for (let j = 0; j < k; j++) {
      const micro = step * k + j;
      const current = await (pending as Promise<Prepared>);
      const graph = await current.graph;
      const running = runStep(
        graph,
        {
          ...current.prepared.feeds,
          ...scaleFeeds,
          ...learningRateFeeds(graph.info, lr, lrTextEncoder ?? 0),
        },
        state,
        true,
      );
      const isLast = step + 1 === total && j === k - 1;
      pending = isLast ? undefined : prepare(micro + 1);
      // A failed prefetch must not go unhandled while the step runs; it is awaited (and thrown) next turn.
      pending?.catch(() => {});
      const out = await running;
      const loss = (out.loss.data as Float32Array)[0];
      if ((out.nonfinite.data as Uint8Array)[0] !== 0 || !Number.isFinite(loss)) bad = true;
      // fp16 with dynamic loss scaling: a step whose gradients overflowed is skipped and the scale halved.
      if (out.overflow !== undefined && (out.overflow.data as Uint8Array)[0] !== 0) overflowed = true;
      lossSum += loss;
      savedOrder = current.orderAfter;
      if (current.epoch !== epoch) {
        if (epochLosses.length > 0) run.logs.epochAverage(epoch + 1, mean(epochLosses));
        epochLosses = [];
        epoch = current.epoch;
      }
    }
    step++;
    const loss = lossSum / k;
    if (bad) {
      losses.push(loss);
      const err = new NonFiniteLossError(
        step,
        loss,
        lastSaved === undefined ? undefined : (lastLora ?? lastSaved),
      );
      emit({ type: "error", message: err.message, step });
      run.logs.metrics({ step, epoch: epoch + 1, loss, lr_unet: lr, lr_textencoder: lrTextEncoder });
      run.logs.flush();
      throw err;
    }
    if (overflowed) {
      overflowSkips++;
      // The first few are the loss scale settling from 65536 (as torch's GradScaler); then every 10th.
      if (overflowSkips <= 3 || overflowSkips % 10 === 0)
        emit({
          type: "log",
          level: overflowSkips <= 3 ? "info" : "warn",
          message: `step ${step}: fp16 gradients overflowed, update skipped and loss scale halved (${overflowSkips} so far)`,
        });
    }
    losses.push(loss);
    epochLosses.push(loss);
    times.push(performance.now() - started);
    const window = Math.max(1, Math.min(plan.stepsPerEpoch, losses.length));
    const lossAverage = mean(losses.slice(-window));
    const recent = times.length > 1 ? times.slice(1).slice(-20) : times;
    const itPerSec = 1000 / mean(recent);
    const evalLoss = evalEvery > 0 && step % evalEvery === 0 ? await evaluate(step) : undefined;
    run.logs.step(step, {
      [KOHYA_TAGS.lossCurrent]: loss,
      [KOHYA_TAGS.lossAverage]: lossAverage,
      [KOHYA_TAGS.lrUnet]: lr,
      ...(lrTextEncoder === undefined ? {} : { [KOHYA_TAGS.lrTextEncoder]: lrTextEncoder }),
    });
    run.logs.metrics({
      step,
      epoch: epoch + 1,
      loss,
      loss_average: lossAverage,
      lr_unet: lr,
      lr_textencoder: lrTextEncoder,
      eval_loss: evalLoss,
      fp16_overflow_skips: overflowSkips > 0 ? overflowSkips : undefined,
    });
    emit({
      type: "step",
      step,
      totalSteps: total,
      epoch: epoch + 1,
      loss,
      lossAverage,
      lr,
      lrTextEncoder,
      itPerSec,
      etaSeconds: (total - step) / itPerSec,
      evalLoss,
    });
    if (step === total) break;
    if (config.save_steps > 0 && step % config.save_steps === 0) await save(false);
    await run.maybeSample(step);
    const control = options.control?.() ?? (options.stopAfterStep === step ? "pause" : undefined);
    if (control === "pause") {
      if (savedAtStep !== step) await save(false);
      status = "paused";
      break;
    }
    if (control === "cancel") {
      status = "cancelled";
      break;
    }
  }
  if (status === "done") {
    if (epochLosses.length > 0) run.logs.epochAverage(epoch + 1, mean(epochLosses));
    await save(true);
    await run.maybeSample(step, true);
  }
  // A prefetch still in flight (pause/cancel) must finish before the sessions are released.
  await pending?.catch(() => {});
  const health = trainingHealth(losses);
  for (const h of health)
    emit({
      type: "log",
      level: h.kind === "falling" || h.kind === "too-short" ? "info" : "warn",
      message: `training health: ${h.message}`,
    });
  emit({ type: "done", status, step, loraPath: lastLora, health });
  return {
    status,
    step,
    totalSteps: total,
    losses,
    evalLosses,
    loraPath: lastLora,
    statePath: lastSaved,
    outputDir: config.output_dir,
  };
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}
