/**
 * One static-shape training-step graph per (bucket, batch size), built on first use and kept for the run, each
 * in its own session: in a worker thread by default (WorkerSession), so the main thread prepares the next batch
 * (noise, timesteps, text embeddings) while the UNet step runs. All graphs share one training state (LoRA
 * parameters, optimizer moments, counters): state names and shapes do not depend on the image size.
 * With train_text_encoder each graph is the joint text-encoder + UNet step: captions go in as token ids.
 */

import {
  buildJointLoraTrainStep,
  buildLoraTrainStep,
  type HostTensor,
  type JointLoraTrainStep,
  type LoraTrainStep,
  type OptimizerConfig,
  Session,
  type SessionOptions,
  TEXT_ENCODER_GROUP,
  WorkerSession,
} from "@lora-studio/engine";
import type { Size } from "../dataset/buckets.ts";
import type { BaseModel } from "./base-model.ts";

export interface StepGraphOptions {
  ranks: ReadonlyMap<string, number>;
  optimizer: OptimizerConfig;
  maxGradNorm?: number;
  accumulationSteps: number;
  gradientCheckpointing: boolean;
  session: SessionOptions;
  /** Run steps in a worker thread (default true). */
  worker: boolean;
  /** "float16": mixed precision (fp16 UNet compute, dynamic loss scaling) for GPU providers; default float32. */
  computeDType?: "float32" | "float16";
  /**
   * train_text_encoder: the step graphs take token ids and run the text encoder with its own LoRA
   * (buildJointLoraTrainStep, learning-rate inputs lr.unet / lr.te) instead of taking cached embeddings.
   */
  textEncoder?: { ranks: ReadonlyMap<string, number>; clipSkip: number };
}

type AnySession = Session | WorkerSession;

export interface StepGraph {
  /** A UNet-only step, or the joint text-encoder + UNet step (with `teModules`). */
  info: LoraTrainStep | JointLoraTrainStep;
  session: AnySession;
  bucket: Size;
  batch: number;
}

export class StepGraphs {
  private readonly graphs = new Map<string, Promise<StepGraph>>();
  /** Built-graph count, for logs ("graphs built once per bucket"). */
  built = 0;

  constructor(
    private readonly base: BaseModel,
    private readonly o: StepGraphOptions,
  ) {}

  /** The step graph for pictures of `bucket` (pixels, [width, height]) in batches of `batch`. */
  get(bucket: Size, batch: number): Promise<StepGraph> {
    const key = `${bucket[0]}x${bucket[1]}x${batch}`;
    let g = this.graphs.get(key);
    if (!g) {
      g = this.build(bucket, batch);
      this.graphs.set(key, g);
    }
    return g;
  }

  private async build(bucket: Size, batch: number): Promise<StepGraph> {
    const f = this.base.vaeFactor;
    const ck = this.base.checkpoint;
    const options = {
      batch,
      height: bucket[1] / f,
      width: bucket[0] / f,
      ranks: this.o.ranks,
      optimizer: this.o.optimizer,
      maxGradNorm: this.o.maxGradNorm,
      accumulationSteps: this.o.accumulationSteps,
      gradientCheckpointing: this.o.gradientCheckpointing,
      computeDType: this.o.computeDType,
    };
    const te = this.o.textEncoder;
    const info = te
      ? buildJointLoraTrainStep(ck.unet, ck.weights.unet, {
          ...options,
          textEncoder: {
            config: ck.textEncoder,
            weights: ck.weights.textEncoder,
            ranks: te.ranks,
            clipSkip: te.clipSkip,
          },
        })
      : buildLoraTrainStep(ck.unet, ck.weights.unet, options);
    const opts: SessionOptions = {
      ...this.o.session,
      disabledOptimizers: [...(this.o.session.disabledOptimizers ?? []), ...info.disabledOptimizers],
    };
    const session = this.o.worker
      ? await WorkerSession.create(info.graph, opts)
      : await Session.create(info.graph, opts);
    this.built++;
    return { info, session, bucket, batch };
  }

  async release(): Promise<void> {
    const all = await Promise.allSettled(this.graphs.values());
    this.graphs.clear();
    for (const r of all) if (r.status === "fulfilled") await r.value.session.release();
  }
}

/**
 * Runs one micro-step on `graph` with the shared `state` (state name -> tensor). With `commit`, the state's
 * buffers move to the worker and the updated ones replace them; without (evaluation), the state is copied and
 * left as it was. Returns the non-state outputs (loss, grad_norm, nonfinite, ...).
 */
export async function runStep(
  graph: StepGraph,
  feeds: Record<string, HostTensor>,
  state: Map<string, HostTensor>,
  commit: boolean,
): Promise<Record<string, HostTensor>> {
  const all: Record<string, HostTensor> = { ...feeds };
  for (const [name, t] of state) all[`state_in.${name}`] = t;
  const transfer = commit ? [...state.keys()].map((n) => `state_in.${n}`) : [];
  const wanted = commit ? undefined : ["loss"];
  const out =
    graph.session instanceof WorkerSession
      ? await graph.session.run(all, wanted, { transfer })
      : await graph.session.run(all, wanted);
  const rest: Record<string, HostTensor> = {};
  for (const [name, t] of Object.entries(out)) {
    if (name.startsWith("state_out.")) {
      if (commit) state.set(name.slice("state_out.".length), t);
    } else rest[name] = t;
  }
  return rest;
}

/** The text-encoder LoRA modules of a step graph (none for a UNet-only step). */
export function teModulesOf(info: StepGraph["info"]): JointLoraTrainStep["teModules"] {
  return "teModules" in info ? info.teModules : [];
}

/**
 * The learning-rate feeds of a step: `lr` for a UNet-only graph, `lr.unet` / `lr.te` for the joint one (each
 * parameter group follows the same schedule from its own base rate, as kohya's per-group scheduler does).
 */
export function learningRateFeeds(
  info: StepGraph["info"],
  unetLr: number,
  textEncoderLr: number,
): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  for (const [group, input] of Object.entries(info.step.lrInputs)) {
    const lr = group === TEXT_ENCODER_GROUP ? textEncoderLr : unetLr;
    out[input] = { dtype: "float32", shape: [], data: Float32Array.of(lr) };
  }
  return out;
}
