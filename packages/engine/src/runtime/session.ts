/**
 * Session: an onnxruntime-node InferenceSession created from a Graph (or an .onnx path) with the provider,
 * threading, optimization and profiling choices the trainer needs. Graphs are written as .onnx files next to
 * their external weights (../onnx/model-file.ts) and the files are removed as soon as the session exists.
 *
 * `run` blocks the calling thread for the whole computation (onnxruntime-node runs synchronously inside its
 * promise), so servers should use WorkerSession (worker-session.ts), which runs this class in a worker_thread.
 */
import ort from "onnxruntime-node";
import type { Graph } from "../graph/ir.ts";
import { foldedWeightNodes, foldWarning } from "../onnx/fold-check.ts";
import { type ModelFile, writeModelFile } from "../onnx/model-file.ts";
import { consoleSink, type MessageSink } from "./messages.ts";
import { type OptimizedModelPlan, planOptimizedModel } from "./optimized-cache.ts";
import {
  type ConcreteProvider,
  candidates,
  type ExecutionProviderChoice,
  fallbackMessage,
  INSTALL_HINT,
  providerConfig,
  unavailableReason,
} from "./providers.ts";
import { fromOrt, type HostTensor, toOrt } from "./tensor.ts";

export interface SessionOptions {
  executionProvider?: ExecutionProviderChoice;
  /** GPU index for cuda/tensorrt. */
  deviceId?: number;
  intraOpThreads?: number;
  interOpThreads?: number;
  graphOptimizationLevel?: "disabled" | "basic" | "extended" | "all";
  /** Writes an ORT JSON profile (chrome trace) with this prefix; call endProfiling() to flush it. */
  profiling?: boolean | { filePrefix: string };
  /** ORT optimizer names to skip, e.g. ["CommonSubexpressionElimination"] so recomputed segments stay separate. */
  disabledOptimizers?: string[];
  /** Saves the graph as ORT optimized it (debugging: see what fusions/CSE did). */
  optimizedModelFilePath?: string;
  /** Raw ORT session config entries ("session.x": "1"), merged with the above. */
  configEntries?: Record<string, string>;
  /** Where .onnx files go when the weights' directory cannot be used. */
  cacheDir?: string;
  /** Receives provider fallback and weight-copy messages. Default: console.warn. */
  onMessage?: MessageSink;
  /** 0 verbose .. 4 fatal; default 3 (errors). */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /** Reuse ORT's optimized graph across sessions (CPU, level "all", fp32 weight-cache graphs; see
   * optimized-cache.ts). Default true; false (or LORA_STUDIO_ORT_CACHE=0) always optimizes anew. */
  optimizedModelCache?: boolean;
}

export class SessionCreateError extends Error {
  readonly failures: { provider: ConcreteProvider; error: string }[];
  constructor(message: string, failures: { provider: ConcreteProvider; error: string }[]) {
    super(message);
    this.name = "SessionCreateError";
    this.failures = failures;
  }
}

/** Raw config entries as ORT's `extra` object: "a.b": "v" becomes { a: { b: "v" } }. */
function extraFromEntries(entries: Record<string, string>): Record<string, unknown> {
  const extra: Record<string, Record<string, string>> = {};
  for (const [key, value] of Object.entries(entries)) {
    const dot = key.indexOf(".");
    if (dot < 0) throw new Error(`session config key "${key}" must look like "area.name"`);
    const area = key.slice(0, dot);
    extra[area] ??= {};
    extra[area][key.slice(dot + 1)] = value;
  }
  return extra;
}

export function ortSessionOptions(
  opts: SessionOptions,
  provider: ConcreteProvider,
): ort.InferenceSession.SessionOptions {
  const so: ort.InferenceSession.SessionOptions = {
    executionProviders: providerConfig(provider, opts.deviceId),
    graphOptimizationLevel: opts.graphOptimizationLevel ?? "all",
    logSeverityLevel: opts.logSeverityLevel ?? 3,
  };
  if (opts.intraOpThreads !== undefined) so.intraOpNumThreads = opts.intraOpThreads;
  if (opts.interOpThreads !== undefined) so.interOpNumThreads = opts.interOpThreads;
  if (opts.optimizedModelFilePath !== undefined) so.optimizedModelFilePath = opts.optimizedModelFilePath;
  if (opts.profiling) {
    so.enableProfiling = true;
    if (typeof opts.profiling === "object") so.profileFilePrefix = opts.profiling.filePrefix;
  }
  const entries: Record<string, string> = { ...opts.configEntries };
  if (opts.disabledOptimizers && opts.disabledOptimizers.length > 0) {
    entries["optimization.disable_specified_optimizers"] = opts.disabledOptimizers.join(",");
  }
  // ORT throws on `extra: undefined`: only set the key when there is something in it.
  if (Object.keys(entries).length > 0) so.extra = extraFromEntries(entries);
  return so;
}

/**
 * Writes the graph's .onnx (see ../onnx/model-file.ts) after reporting weights ORT would constant-fold into
 * heap copies (only relevant when ORT optimizes).
 */
export async function prepareModelFile(
  graph: Graph,
  opts: SessionOptions,
  say: MessageSink,
): Promise<ModelFile> {
  if (opts.graphOptimizationLevel !== "disabled") {
    const folded = foldWarning(foldedWeightNodes(graph));
    if (folded) say(folded);
  }
  return writeModelFile(graph, { cacheDir: opts.cacheDir, warn: say });
}

/** The optimized-model cache plan for a graph's CPU session (undefined: create it the normal way). */
export async function cpuPlan(
  model: Graph | string,
  file: ModelFile | undefined,
  opts: SessionOptions,
  say: MessageSink,
  provider: ConcreteProvider = opts.executionProvider === "auto" ? "cpu" : (opts.executionProvider ?? "cpu"),
): Promise<OptimizedModelPlan | undefined> {
  if (typeof model === "string" || !file || provider !== "cpu") return undefined;
  return planOptimizedModel(model, file, opts, say);
}

/**
 * Tries each provider the choice allows, in order (`auto`: cuda, webgpu, cpu), through `make`; the CPU try goes
 * through the optimized-model cache whether CPU was asked for or is where `auto` ended. Shared by Session and
 * WorkerSession so both fall back and report alike.
 */
export async function createWithProviders<T>(
  model: Graph | string,
  file: ModelFile | undefined,
  opts: SessionOptions,
  say: MessageSink,
  make: (path: string, options: SessionOptions, provider: ConcreteProvider) => Promise<T>,
): Promise<{ made: T; provider: ConcreteProvider; fallback: string | undefined }> {
  const path = typeof model === "string" ? model : file!.modelPath;
  const choice = opts.executionProvider ?? "cpu";
  const failures: { provider: ConcreteProvider; error: string }[] = [];
  for (const provider of candidates(choice)) {
    const missing = choice === "auto" ? unavailableReason(provider) : undefined;
    if (missing) {
      failures.push({ provider, error: missing });
      continue;
    }
    try {
      const plan = await cpuPlan(model, file, opts, say, provider);
      const tryOne = (p: string, o: SessionOptions) => make(p, o, provider);
      const made = plan ? await plan.create(tryOne) : await tryOne(path, opts);
      const fallback = failures.length > 0 ? fallbackMessage(failures, provider) : undefined;
      if (fallback) say(fallback);
      return { made, provider, fallback };
    } catch (e) {
      failures.push({ provider, error: (e as Error).message });
    }
  }
  const detail = failures
    .map(
      (f) =>
        `${f.provider}: ${f.error}${INSTALL_HINT[f.provider] ? `\n  (${INSTALL_HINT[f.provider]})` : ""}`,
    )
    .join("\n");
  throw new SessionCreateError(`could not create an ONNX Runtime session (${choice}):\n${detail}`, failures);
}

export class Session {
  readonly provider: ConcreteProvider;
  /** Fallback message when `auto` could not use a better provider, else undefined. */
  readonly fallback: string | undefined;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly ortSession: ort.InferenceSession;

  private constructor(s: ort.InferenceSession, provider: ConcreteProvider, fallback: string | undefined) {
    this.ortSession = s;
    this.provider = provider;
    this.fallback = fallback;
    this.inputNames = s.inputNames;
    this.outputNames = s.outputNames;
  }

  /** Creates a session from a Graph (written to a temporary .onnx next to its weights) or an .onnx path. */
  static async create(model: Graph | string, opts: SessionOptions = {}): Promise<Session> {
    const say = opts.onMessage ?? consoleSink;
    const file = typeof model === "string" ? undefined : await prepareModelFile(model, opts, say);
    try {
      const { made, provider, fallback } = await createWithProviders(
        model,
        file,
        opts,
        say,
        (p, o, provider) => ort.InferenceSession.create(p, ortSessionOptions(o, provider)),
      );
      return new Session(made, provider, fallback);
    } finally {
      await file?.cleanup();
    }
  }

  /** Runs the graph. Feeds are wrapped without copies; outputs are the arrays ORT allocated. */
  async run(
    feeds: Record<string, HostTensor>,
    outputNames?: readonly string[],
  ): Promise<Record<string, HostTensor>> {
    const missing = this.inputNames.filter((n) => !(n in feeds));
    if (missing.length > 0) throw new Error(`session.run: missing inputs ${missing.join(", ")}`);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      if (!this.inputNames.includes(name))
        throw new Error(`session.run: "${name}" is not an input of this graph`);
      ortFeeds[name] = toOrt(name, t);
    }
    const result = outputNames
      ? await this.ortSession.run(ortFeeds, [...outputNames])
      : await this.ortSession.run(ortFeeds);
    const out: Record<string, HostTensor> = {};
    for (const [name, v] of Object.entries(result)) out[name] = fromOrt(name, v as ort.Tensor);
    return out;
  }

  /** Stops profiling and writes the profile file (ORT names it <prefix>_<date>.json in the working directory). */
  endProfiling(): void {
    this.ortSession.endProfiling();
  }

  async release(): Promise<void> {
    await this.ortSession.release();
  }
}
