/**
 * SdModel: one opened checkpoint with its tokenizer, noise schedule and a cache of inference sessions.
 *
 * Graphs are static-shape, so a session exists per (component, batch, size, text length, LoRA capacity,
 * weights). Each is created once, on first use, and reused: by default inside a worker thread (WorkerSession),
 * so a host's event loop stays responsive during the multi-second UNet calls. LoRA stacks reach the UNet and
 * text encoder as graph inputs (adapter-inputs.ts); `bake()` instead builds separate sessions on patched weights.
 */
import { existsSync } from "node:fs";
import { basename, dirname, extname, join } from "node:path";
import type { Adapter, ModuleSpec } from "@lora-studio/prompt-lora";
import { hashFile } from "@lora-studio/prompt-lora";
import type { Graph } from "../graph/ir.ts";
import { buildClipTextGraph } from "../models/clip-text.ts";
import { type Checkpoint, type OpenCheckpointOptions, openCheckpoint } from "../models/loader/checkpoint.ts";
import { fp32CacheForProvider } from "../models/loader/fp32-cache.ts";
import { architectureFor } from "../models/loader/original-keys.ts";
import { kohyaLoraTargets } from "../models/lora-targets.ts";
import { buildUNetGraph } from "../models/unet/unet.ts";
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from "../models/vae/autoencoder-kl.ts";
import type { ComputeDType, WeightSource } from "../nn/module.ts";
import type { MessageSink } from "../runtime/messages.ts";
import { resolveExecutionProvider } from "../runtime/provider-probe.ts";
import type { ExecutionProviderChoice } from "../runtime/providers.ts";
import { Session } from "../runtime/session.ts";
import { WorkerSession } from "../runtime/worker-session.ts";
import {
  createNoiseSchedule,
  type NoiseSchedule,
  readScheduleConfig,
  SD_SCHEDULE,
} from "../schedulers/noise-schedule.ts";
import { ClipTokenizer } from "../tokenizer/clip-bpe.ts";
import { capacityKey, type GraphComponent, growCapacity, specsByPath } from "./adapter-inputs.ts";
import { bakedWeights } from "./baked-weights.ts";

export interface SdModelOptions {
  /** Checkpoint: a single .safetensors file (original layout) or a diffusers folder. */
  model: string;
  /** Tokenizer folder (vocab.json + merges.txt); default: the diffusers model's tokenizer/. */
  tokenizer?: string;
  checkpoint?: OpenCheckpointOptions;
  executionProvider?: ExecutionProviderChoice;
  intraOpThreads?: number;
  /** Run sessions in worker threads (default true). */
  worker?: boolean;
  /** Session messages (provider fallback, weight copies). Default: console.warn. */
  onMessage?: MessageSink;
  /**
   * Arithmetic precision of the text encoder and UNet ("float16" halves activation memory on GPUs; norms and
   * softmax stay fp32). The VAE always runs in fp32: its decoder overflows fp16 on real checkpoints. Default fp32.
   */
  computeDType?: ComputeDType;
}

export type Component = "text_encoder" | "unet" | "vae_encoder" | "vae_decoder";

export interface SessionShape {
  batch: number;
  /** Latent (UNet, decoder) or image (encoder) height/width; unused for the text encoder. */
  height?: number;
  width?: number;
  /** Text length (77 x chunks) for the UNet's encoder_hidden_states. */
  seqLen?: number;
  /** Text encoder only: A1111's "Clip skip" (1 = last layer; 2 = penultimate layer, then final_layer_norm). */
  clipSkip?: number;
}

/** Which weights a session's LoRA modules use: adapter inputs (with a capacity) or a baked stack. */
export type WeightMode =
  | { kind: "adapters"; capacity?: ReadonlyMap<string, number> }
  | { kind: "baked"; id: number; stack: Adapter };

/** A session of either kind (both run, and release their resources). */
export type ModelSession = Session | WorkerSession;

export class PipelineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PipelineError";
  }
}

export class SdModel {
  readonly modules: readonly ModuleSpec[];
  private readonly sessions = new Map<string, Promise<ModelSession>>();
  /** Current rank capacity of the adapter-input graphs (grows, never shrinks). */
  private readonly capacity = new Map<GraphComponent, ReadonlyMap<string, number> | undefined>();
  private readonly defaults: Record<GraphComponent, ReadonlyMap<string, number>>;
  private hash: Promise<string | undefined> | undefined;
  /** Sessions created so far (for benchmarks and tests: switching stacks must not add any). */
  sessionsCreated = 0;

  private constructor(
    readonly options: SdModelOptions,
    readonly checkpoint: Checkpoint,
    private readonly tok: ClipTokenizer | undefined,
    readonly schedule: NoiseSchedule,
  ) {
    const sd2 = checkpoint.family.startsWith("sd2");
    this.modules = architectureFor(
      checkpoint.unet,
      checkpoint.textEncoder,
      sd2 ? "cond_stage_model.model." : "cond_stage_model.transformer.",
      sd2 ? "open-clip" : "hf-clip",
    ).modules;
    this.defaults = {
      unet: kohyaLoraTargets(this.modules, "unet", { rank: 8 }).ranks,
      te: kohyaLoraTargets(this.modules, "te", { rank: 8 }).ranks,
    };
  }

  static async open(requested: SdModelOptions): Promise<SdModel> {
    // "auto" is settled before any graph exists: the graphs differ by provider (see provider-probe.ts).
    const executionProvider = await resolveExecutionProvider(
      requested.executionProvider ?? "cpu",
      requested.onMessage,
    );
    const options: SdModelOptions = { ...requested, executionProvider };
    // 16-bit checkpoints: a float32 weight cache on the CPU, the 16-bit weights in place on GPU providers.
    const fp32Cache = fp32CacheForProvider(options.executionProvider, options.onMessage);
    const ck = await openCheckpoint(options.model, { fp32Cache, ...options.checkpoint });
    try {
      const tokDir = options.tokenizer ?? findTokenizerDir(ck.path, ck.layout === "diffusers");
      const tokenizer = tokDir ? await ClipTokenizer.fromDirectory(tokDir) : undefined;
      const schedPath = join(ck.path, "scheduler", "scheduler_config.json");
      const config =
        ck.layout === "diffusers" && existsSync(schedPath)
          ? await readScheduleConfig(schedPath)
          : SD_SCHEDULE;
      const prediction = ck.unet.prediction_type;
      return new SdModel(
        options,
        ck,
        tokenizer,
        createNoiseSchedule({ ...config, predictionType: prediction }),
      );
    } catch (e) {
      await ck.close();
      throw e;
    }
  }

  /** The CLIP tokenizer (a single-file checkpoint has none: pass `tokenizer` to open()). */
  get tokenizer(): ClipTokenizer {
    if (!this.tok) {
      throw new PipelineError(
        `${this.checkpoint.path}: a single-file checkpoint carries no tokenizer; pass the CLIP tokenizer folder (vocab.json + merges.txt)`,
      );
    }
    return this.tok;
  }

  /** A1111's "Model" infotext value: the checkpoint file name without extension (or the folder name). */
  get modelName(): string {
    const p = this.checkpoint.path;
    return this.checkpoint.layout === "diffusers" ? basename(p) : basename(p, extname(p));
  }

  /**
   * A1111's "Model hash" (AutoV2: first 10 hex of the file's SHA-256), computed once (streams the file).
   * Undefined for diffusers folders, which the WebUI does not hash.
   */
  modelHash(): Promise<string | undefined> {
    this.hash ??=
      this.checkpoint.layout === "single-file"
        ? hashFile(this.checkpoint.path, null).then((h) => h.autoV2)
        : Promise.resolve(undefined);
    return this.hash;
  }

  get latentChannels(): number {
    return this.checkpoint.vae.latent_channels;
  }

  get scalingFactor(): number {
    return this.checkpoint.vae.scaling_factor;
  }

  get textWidth(): number {
    return this.checkpoint.textEncoder.hidden_size;
  }

  specs(component: GraphComponent): Map<string, ModuleSpec> {
    return specsByPath(this.modules, component);
  }

  /**
   * The adapter-input capacity that fits `stack` (null = no LoRA): unchanged when the current graphs already
   * fit it, so switching between stacks that fit costs no rebuild.
   */
  capacityFor(component: GraphComponent, stack: Adapter | null): ReadonlyMap<string, number> | undefined {
    const cur = this.capacity.get(component);
    const next = growCapacity(cur, stack, component, this.specs(component), this.defaults[component]);
    if (next !== cur) this.capacity.set(component, next);
    return next;
  }

  private weightsFor(component: GraphComponent | "vae", mode: WeightMode): WeightSource {
    const w = this.checkpoint.weights;
    const base = component === "te" ? w.textEncoder : component === "unet" ? w.unet : w.vae;
    if (mode.kind === "baked" && component !== "vae") return bakedWeights(base, mode.stack, component);
    return base;
  }

  private build(component: Component, shape: SessionShape, mode: WeightMode): Graph {
    const ck = this.checkpoint;
    const adapters =
      mode.kind === "adapters" && mode.capacity && mode.capacity.size > 0 ? mode.capacity : undefined;
    switch (component) {
      case "text_encoder":
        return buildClipTextGraph(ck.textEncoder, this.weightsFor("te", mode), {
          batch: shape.batch,
          clipSkip: shape.clipSkip,
          lora: adapters && { component: "te", ranks: adapters },
          computeDType: this.options.computeDType,
        }).graph;
      case "unet":
        return buildUNetGraph(ck.unet, this.weightsFor("unet", mode), {
          batch: shape.batch,
          height: need(shape.height, "height"),
          width: need(shape.width, "width"),
          seqLen: shape.seqLen ?? 77,
          lora: adapters && { component: "unet", ranks: adapters },
          computeDType: this.options.computeDType,
        }).graph;
      case "vae_decoder":
        return buildVaeDecoderGraph(ck.vae, ck.weights.vae, {
          batch: shape.batch,
          height: need(shape.height, "height"),
          width: need(shape.width, "width"),
        }).graph;
      case "vae_encoder":
        return buildVaeEncoderGraph(ck.vae, ck.weights.vae, {
          batch: shape.batch,
          height: need(shape.height, "height"),
          width: need(shape.width, "width"),
        }).graph;
    }
  }

  /** The cached session for a component, shape and weight mode (created on first use). */
  session(
    component: Component,
    shape: SessionShape,
    mode: WeightMode = { kind: "adapters" },
  ): Promise<ModelSession> {
    const m = mode.kind === "adapters" ? `a:${capacityKey(mode.capacity)}` : `b:${mode.id}`;
    const skip = component === "text_encoder" && (shape.clipSkip ?? 1) > 1 ? `|skip${shape.clipSkip}` : "";
    const key = `${component}|${shape.batch}|${shape.height ?? 0}x${shape.width ?? 0}|${shape.seqLen ?? 0}${skip}|${m}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = this.create(this.build(component, shape, mode));
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  private async create(graph: Graph): Promise<ModelSession> {
    const o = {
      executionProvider: this.options.executionProvider ?? "cpu",
      intraOpThreads: this.options.intraOpThreads,
      onMessage: this.options.onMessage,
    };
    this.sessionsCreated++;
    return this.options.worker === false ? Session.create(graph, o) : WorkerSession.create(graph, o);
  }

  /** Releases the sessions whose key contains `marker` (e.g. a previous bake's "b:3"). */
  async releaseMatching(marker: string): Promise<void> {
    const keys = [...this.sessions.keys()].filter((k) => k.endsWith(marker));
    for (const k of keys) {
      const s = this.sessions.get(k);
      this.sessions.delete(k);
      await (await s?.catch(() => undefined))?.release();
    }
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s.catch(() => undefined))?.release();
    await this.checkpoint.close();
  }
}

/**
 * Where a checkpoint's CLIP tokenizer files are: the diffusers folder itself, else (a single file carries none)
 * $LORA_STUDIO_CLIP_TOKENIZER, then `tokenizer/` or `clip-tokenizer/` next to the file (the trainer's order,
 * so a model the trainer opens also opens here, e.g. the demo base). Undefined when none is found.
 */
export function findTokenizerDir(modelPath: string, diffusers: boolean): string | undefined {
  if (diffusers) return modelPath;
  const candidates = [
    process.env.LORA_STUDIO_CLIP_TOKENIZER,
    join(dirname(modelPath), "tokenizer"),
    join(dirname(modelPath), "clip-tokenizer"),
  ];
  for (const c of candidates) {
    if (!c) continue;
    if (existsSync(join(c, "vocab.json")) || existsSync(join(c, "tokenizer", "vocab.json"))) return c;
  }
  return undefined;
}

function need(v: number | undefined, what: string): number {
  if (v === undefined) throw new PipelineError(`session shape lacks ${what}`);
  return v;
}
