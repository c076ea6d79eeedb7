/**
 * Time and memory of one optimizer step, for `--dry-run`: the step graph of the largest bucket is built and run
 * a few times on the real model with synthetic inputs (zeros latents, random noise-like values); the median
 * step time and the process's peak RSS are reported. Without measuring (`measure: false`, or when the run
 * fails), memory is bounded from the graph: weights plus every intermediate tensor (an upper bound: ORT frees
 * and reuses buffers).
 */
import {
  DTYPE_BYTES,
  type Graph,
  type HostTensor,
  initialTrainState,
  kohyaLoraInit,
  numel,
  type OpenCheckpointOptions,
  type SessionOptions,
} from "@lora-studio/engine";
import type { TrainConfig } from "../config/schema.ts";
import type { DataPlan } from "../dataset/plan.ts";
import { openBaseModel } from "./base-model.ts";
import { DEFAULT_GRAPH_OPTIMIZATION, optimizerConfig, sessionOptions } from "./setup.ts";
import { learningRateFeeds, runStep, StepGraphs, teModulesOf } from "./step-graphs.ts";
import { textEncoderLoraRanks, trainingSummary, unetLoraRanks } from "./targets.ts";

export interface StepEstimate {
  secondsPerStep?: number;
  memoryBytes: number;
  /** "measured": timed steps and peak RSS; "graph bound": sizes from the graph only. */
  method: "measured" | "graph bound";
  bucket: [number, number];
  note?: string;
  /** What is trained: modules per component and their learning rates (trainingSummary). */
  training: string;
}

export function graphMemoryBound(graph: Graph): number {
  let bytes = 0;
  for (const v of graph.initializers) bytes += numel(v.shape) * DTYPE_BYTES[v.dtype];
  for (const n of graph.nodes) for (const o of n.outputs) bytes += numel(o.shape) * DTYPE_BYTES[o.dtype];
  return bytes;
}

export async function estimateStep(
  config: TrainConfig,
  plan: DataPlan,
  o: {
    measure?: boolean;
    steps?: number;
    tokenizerDir?: string;
    graphOptimization?: SessionOptions["graphOptimizationLevel"];
    /** Loader options for a checkpoint that cannot state them (prediction type, head counts), as training uses. */
    checkpointOptions?: OpenCheckpointOptions;
  } = {},
): Promise<StepEstimate> {
  const largest = [...plan.buckets].sort((a, b) => b.bucket[0] * b.bucket[1] - a.bucket[0] * a.bucket[1])[0];
  const bucket = largest.bucket;
  const base = await openBaseModel(config.base_model, {
    tokenizerDir: o.tokenizerDir,
    // A one-off measurement: building the fp32 cache would cost more than the measurement itself.
    checkpoint: { ...o.checkpointOptions, fp32Cache: false },
  });
  const teRanks = config.train_text_encoder
    ? textEncoderLoraRanks(base.architecture.modules, config)
    : undefined;
  const graphs = new StepGraphs(base, {
    textEncoder: teRanks && { ranks: teRanks, clipSkip: config.clip_skip },
    ranks: unetLoraRanks(base.architecture.modules, config),
    optimizer: optimizerConfig(config),
    maxGradNorm: 1,
    accumulationSteps: config.gradient_accumulation_steps,
    gradientCheckpointing: config.gradient_checkpointing,
    session: {
      ...sessionOptions(config, () => {}),
      graphOptimizationLevel: o.graphOptimization ?? DEFAULT_GRAPH_OPTIMIZATION,
    },
    worker: false,
  });
  try {
    const g = await graphs.get(bucket, config.batch_size);
    const teModules = teModulesOf(g.info);
    const training = trainingSummary(config, g.info.modules.length, teModules.length);
    const bound = graphMemoryBound(g.info.graph);
    if (o.measure === false) return { memoryBytes: bound, method: "graph bound", bucket, training };
    const state = initialTrainState(
      g.info.step,
      kohyaLoraInit([...g.info.modules, ...teModules], config.seed),
    );
    const feeds: Record<string, HostTensor> = learningRateFeeds(g.info, 1e-4, 1e-4);
    for (const name of g.session.inputNames) {
      if (name.endsWith(".scale")) feeds[name] = f32([], Float32Array.of(1));
    }
    const f = base.vaeFactor;
    const [n, c, h, w] = [config.batch_size, base.checkpoint.unet.in_channels, bucket[1] / f, bucket[0] / f];
    const ctx = base.checkpoint.unet.cross_attention_dim;
    feeds.sample = f32([n, c, h, w], pseudoRandom(n * c * h * w));
    feeds.target = f32([n, c, h, w], pseudoRandom(n * c * h * w));
    feeds.timestep = f32([n], new Float32Array(n).fill(500));
    if (teRanks) {
      // BOS, a few ordinary tokens, EOS, padding: the encoder's cost does not depend on the words.
      const row = [49406, 320, 1125, 539, 49407, ...new Array<number>(72).fill(49407)];
      const ids = BigInt64Array.from({ length: n * 77 }, (_, i) => BigInt(row[i % 77]));
      feeds.input_ids = { dtype: "int64", shape: [n, 77], data: ids };
    } else feeds.encoder_hidden_states = f32([n, 77, ctx], pseudoRandom(n * 77 * ctx));
    feeds.loss_weight = f32([n], new Float32Array(n).fill(1));
    const times: number[] = [];
    for (let i = 0; i < (o.steps ?? 3); i++) {
      const t0 = performance.now();
      await runStep(g, feeds, state, true);
      times.push((performance.now() - t0) / 1000);
    }
    const steady = times.length > 1 ? times.slice(1) : times;
    steady.sort((a, b) => a - b);
    const perMicro = steady[Math.floor(steady.length / 2)];
    return {
      secondsPerStep: perMicro * config.gradient_accumulation_steps,
      memoryBytes: process.resourceUsage().maxRSS * 1024,
      method: "measured",
      bucket,
      training,
    };
  } finally {
    await graphs.release();
    await base.checkpoint.close();
  }
}

function f32(shape: number[], data: Float32Array): HostTensor {
  return { dtype: "float32", shape, data };
}

/** Deterministic values in [-1, 1) (a measurement needs plausible magnitudes, not a particular sample). */
function pseudoRandom(n: number): Float32Array {
  const out = new Float32Array(n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = ((x >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}
