/**
 * A WD14-style tagger (SmilingWolf's wd-v1-4-* / wd-*-tagger-v3, or anything shaped like them) on
 * onnxruntime-node through the engine's Session: a folder with `model.onnx` and `selected_tags.csv`.
 *
 * The model's contract is read from the file, not assumed: the image input (the one float input of rank 4),
 * its layout (NHWC [N,H,W,3] as the SmilingWolf exports, or NCHW [N,3,H,W]), its size, and whether its batch
 * dimension is free (then `batchSize` images go per run) or fixed (batches of that size, the last one padded).
 * The SmilingWolf exports end in a sigmoid; if a model gives scores outside [0, 1] they are logits and the
 * sigmoid is applied here (`probabilities: "auto"`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ExecutionProviderChoice } from "@lora-studio/engine";
import { Session } from "@lora-studio/engine";
import { fixedDim, formatDims, type OnnxValueInfo, readOnnxSignature } from "./onnx-signature.ts";
import { type ChannelOrder, packBatch, type TensorLayout } from "./preprocess.ts";
import { readSelectedTags, type TagInfo } from "./tags.ts";

export class TaggerModelError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = "TaggerModelError";
  }
}

export interface TaggerOptions {
  /** Images per run when the model's batch dimension is free. Default 4. */
  batchSize?: number;
  /** Used only when the model's image size is not fixed in the file. Default 448. */
  fallbackSize?: number;
  channelOrder?: ChannelOrder;
  /** "auto": apply a sigmoid when the model's scores leave [0, 1]. */
  probabilities?: "auto" | "model" | "sigmoid";
  executionProvider?: ExecutionProviderChoice;
  threads?: number;
  onMessage?: (message: string) => void;
}

export interface TaggerInfo {
  modelPath: string;
  tagsPath: string;
  inputName: string;
  outputName: string;
  layout: TensorLayout;
  size: number;
  /** Images per run. */
  batch: number;
  batchFixed: boolean;
  tags: TagInfo[];
  provider: string;
}

export class WdTagger {
  private sigmoidNeeded: boolean | undefined;

  private constructor(
    readonly info: TaggerInfo,
    private readonly session: Session,
    private readonly channelOrder: ChannelOrder,
    probabilities: "auto" | "model" | "sigmoid",
  ) {
    this.sigmoidNeeded = probabilities === "auto" ? undefined : probabilities === "sigmoid";
  }

  /** Whether scores were passed through a sigmoid here (known after the first batch in "auto" mode). */
  get appliesSigmoid(): boolean | undefined {
    return this.sigmoidNeeded;
  }

  static async load(dir: string, opts: TaggerOptions = {}): Promise<WdTagger> {
    const modelPath = join(dir, "model.onnx");
    const tagsPath = join(dir, "selected_tags.csv");
    for (const p of [modelPath, tagsPath]) {
      if (!existsSync(p))
        throw new TaggerModelError(p, "not found (a tagger folder holds model.onnx and selected_tags.csv)");
    }
    const tags = await readSelectedTags(tagsPath);
    const sig = await readOnnxSignature(modelPath);
    const session = await Session.create(modelPath, {
      executionProvider: opts.executionProvider ?? "cpu",
      intraOpThreads: opts.threads,
      onMessage: opts.onMessage,
    });
    try {
      // Old IR versions list initializers among the inputs; the session's names are the real feeds.
      const feeds = sig.inputs.filter((v) => session.inputNames.includes(v.name));
      const image = feeds.find((v) => v.elemType === "float" && v.dims.length === 4);
      if (!image || feeds.length !== 1) {
        const listed = feeds.map((v) => `${v.name} ${v.elemType}${formatDims(v.dims)}`).join(", ");
        throw new TaggerModelError(
          modelPath,
          `expected one float image input of rank 4, found: ${listed || "none"}`,
        );
      }
      const { layout, size } = imageGeometry(image, opts.fallbackSize ?? 448, modelPath);
      const fixedBatch = fixedDim(image.dims[0]);
      const output = sig.outputs.find((v) => v.name === session.outputNames[0]);
      const outputCount = output ? fixedDim(output.dims[output.dims.length - 1]) : undefined;
      if (outputCount !== undefined && outputCount !== tags.length) {
        throw new TaggerModelError(
          modelPath,
          `the model scores ${outputCount} tags but ${tagsPath} lists ${tags.length}: they must come from the same release`,
        );
      }
      const info: TaggerInfo = {
        modelPath,
        tagsPath,
        inputName: image.name,
        outputName: session.outputNames[0],
        layout,
        size,
        batch: fixedBatch ?? Math.max(1, opts.batchSize ?? 4),
        batchFixed: fixedBatch !== undefined,
        tags,
        provider: session.provider,
      };
      return new WdTagger(info, session, opts.channelOrder ?? "bgr", opts.probabilities ?? "auto");
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /** Scores (0..1, one per tag) for up to `info.batch` square RGB pictures of `info.size`. */
  async predict(images: readonly Uint8Array[]): Promise<Float32Array[]> {
    const { size, layout, batch, batchFixed, inputName, outputName, tags } = this.info;
    const rows = batchFixed ? batch : images.length;
    const data = packBatch(images, size, rows, layout, this.channelOrder);
    const shape = layout === "NHWC" ? [rows, size, size, 3] : [rows, 3, size, size];
    const out = (await this.session.run({ [inputName]: { dtype: "float32", shape, data } }, [outputName]))[
      outputName
    ];
    if (!(out.data instanceof Float32Array) || out.shape.length !== 2 || out.shape[0] !== rows) {
      throw new TaggerModelError(
        this.info.modelPath,
        `output "${outputName}" is ${out.dtype}[${out.shape}], expected float32[${rows}, ${tags.length}]`,
      );
    }
    if (out.shape[1] !== tags.length) {
      throw new TaggerModelError(
        this.info.modelPath,
        `the model scores ${out.shape[1]} tags, the tag list has ${tags.length}`,
      );
    }
    const scores = out.data;
    if (this.sigmoidNeeded === undefined) this.sigmoidNeeded = scores.some((v) => v < 0 || v > 1);
    if (this.sigmoidNeeded)
      for (let i = 0; i < scores.length; i++) scores[i] = 1 / (1 + Math.exp(-scores[i]));
    const t = tags.length;
    return images.map((_, n) => scores.slice(n * t, (n + 1) * t));
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function imageGeometry(
  v: OnnxValueInfo,
  fallback: number,
  file: string,
): { layout: TensorLayout; size: number } {
  const d = v.dims.map(fixedDim);
  const layout: TensorLayout | undefined = d[3] === 3 ? "NHWC" : d[1] === 3 ? "NCHW" : undefined;
  if (!layout) {
    throw new TaggerModelError(
      file,
      `input "${v.name}" ${formatDims(v.dims)} is neither [N,H,W,3] nor [N,3,H,W]`,
    );
  }
  const [h, w] = layout === "NHWC" ? [d[1], d[2]] : [d[2], d[3]];
  if (h !== undefined && w !== undefined && h !== w) {
    throw new TaggerModelError(file, `input "${v.name}" ${formatDims(v.dims)} is not square`);
  }
  return { layout, size: h ?? w ?? fallback };
}
