/**
 * An image-to-text captioner in the ONNX layout Hugging Face optimum (and the Xenova / transformers.js
 * exports) write for encoder-decoder models such as nlpconnect/vit-gpt2-image-captioning, run on
 * onnxruntime-node through the engine's sessions:
 *
 *   config.json, preprocessor_config.json, tokenizer.json [, generation_config.json, tokenizer_config.json]
 *   onnx/encoder_model.onnx   pixel_values [N,3,H,W] -> last_hidden_state [N,E,D]
 *   onnx/decoder_model.onnx   input_ids [N,S], encoder_hidden_states [N,E,D] [, encoder_attention_mask [N,E],
 *                             attention_mask [N,S]] -> logits [N,S,V] (+ present.* outputs)
 *   (the .onnx files may also sit in the folder itself, as `optimum-cli export onnx` writes them)
 *
 * Decoder choice: `decoder_model_merged.onnx` when present (and `useCache`), fed its own `present.*` outputs
 * as `past_key_values.*` with `use_cache_branch = true`, so each step reads one new token (decoder-step.ts);
 * else `decoder_model.onnx`, which re-reads the whole prefix every step (for n tokens about n/2 times the
 * decoder work: fine for short captions, noticeable with beams). `decoder_with_past_model.onnx` is not used.
 *
 * The contract is read from the files (input/output names, element types, fixed dims) and a mismatch is an
 * error naming the file. Sessions run in a worker thread by default (`worker`), so a caller's event loop (the
 * CLI's progress bar, the WebUI's server) keeps running during the seconds a real model takes per picture.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ExecutionProviderChoice, HostTensor } from "@lora-studio/engine";
import { Session, WorkerSession } from "@lora-studio/engine";
import { type CaptionerConfig, CaptionerModelError, readCaptionerConfig } from "./captioner-config.ts";
import { type DecoderFeeds, DecoderStep, decoderFeeds } from "./decoder-step.ts";
import { DEFAULT_GENERATION, type GenerationOptions, generate } from "./generate.ts";
import { fixedDim, formatDims, type OnnxValueInfo, readOnnxSignature } from "./onnx-signature.ts";
import { packNormalized } from "./preprocess.ts";
import { TokenDecoder } from "./token-decoder.ts";

export interface CaptionerOptions {
  /** Overrides of the model's generation defaults (generation_config.json / config.json). */
  generation?: Partial<GenerationOptions>;
  /** Pictures per encoder run (and per decoding batch). Default 2. */
  batchSize?: number;
  executionProvider?: ExecutionProviderChoice;
  threads?: number;
  /** Prefer decoder_model_merged.onnx and feed it its KV cache (default true); false: plain decoder first. */
  useCache?: boolean;
  /** Run the sessions in a worker_thread (default true); false runs them on the calling thread. */
  worker?: boolean;
  onMessage?: (message: string) => void;
}

export interface CaptionerInfo {
  dir: string;
  encoderPath: string;
  decoderPath: string;
  decoderKind: "plain" | "merged";
  /** Whether decoding feeds the merged decoder its own present.* outputs (one new token per step). */
  kvCache: boolean;
  modelType: string;
  config: CaptionerConfig;
  generation: GenerationOptions;
  batch: number;
  provider: string;
}

export interface Caption {
  text: string;
  tokens: number[];
  score: number;
  /** False when decoding stopped at the length limit rather than at EOS. */
  finished: boolean;
}

interface AnySession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly provider: string;
  run(feeds: Record<string, HostTensor>, outputs?: readonly string[]): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}

const LAYOUT_HINT =
  "a captioner folder holds config.json, preprocessor_config.json, tokenizer.json and onnx/encoder_model.onnx + onnx/decoder_model.onnx (Hugging Face optimum layout)";

export class Captioner {
  private constructor(
    readonly info: CaptionerInfo,
    private readonly encoder: AnySession,
    private readonly decoder: AnySession,
    private readonly feeds: DecoderFeeds,
    private readonly useCache: boolean,
    readonly tokenizer: TokenDecoder,
  ) {}

  static async load(dir: string, opts: CaptionerOptions = {}): Promise<Captioner> {
    for (const f of ["config.json", "preprocessor_config.json", "tokenizer.json"]) {
      if (!existsSync(join(dir, f)))
        throw new CaptionerModelError(join(dir, f), `not found (${LAYOUT_HINT})`);
    }
    const encoderPath = findOnnx(dir, ["encoder_model.onnx"]);
    // The merged decoder can use the KV cache; the plain one re-reads the whole prefix every step.
    const useCache = opts.useCache !== false;
    const decoderPath = findOnnx(
      dir,
      useCache
        ? ["decoder_model_merged.onnx", "decoder_model.onnx"]
        : ["decoder_model.onnx", "decoder_model_merged.onnx"],
    );
    const config = await readCaptionerConfig(dir);
    const tokenizer = await TokenDecoder.load(join(dir, "tokenizer.json"));
    const [encSig, decSig] = await Promise.all([
      readOnnxSignature(encoderPath),
      readOnnxSignature(decoderPath),
    ]);

    const generation: GenerationOptions = {
      ...DEFAULT_GENERATION,
      ...config.generation,
      ...withoutUndefined(opts.generation ?? {}),
    };
    // An explicit max_new_tokens from the user wins over a max_length from the model (and vice versa).
    if (opts.generation?.maxLength !== undefined && opts.generation.maxNewTokens === undefined)
      delete generation.maxNewTokens;

    const create = (path: string): Promise<AnySession> => {
      const so = {
        executionProvider: opts.executionProvider ?? "cpu",
        intraOpThreads: opts.threads,
        onMessage: opts.onMessage,
      };
      return opts.worker === false ? Session.create(path, so) : WorkerSession.create(path, so);
    };
    const sessions: AnySession[] = [];
    try {
      const encoder = await create(encoderPath);
      sessions.push(encoder);
      checkEncoder(
        encoderPath,
        encSig.inputs.filter((v) => encoder.inputNames.includes(v.name)),
        encSig.outputs,
        config,
      );
      const decoder = await create(decoderPath);
      sessions.push(decoder);
      const feeds = decoderFeeds(
        decoderPath,
        decSig.inputs.filter((v) => decoder.inputNames.includes(v.name)),
        decoder.outputNames,
      );
      const info: CaptionerInfo = {
        dir,
        encoderPath,
        decoderPath,
        decoderKind: feeds.useCacheBranch !== undefined ? "merged" : "plain",
        kvCache: useCache && feeds.past.length > 0,
        modelType: config.modelType,
        config,
        generation,
        batch: Math.max(1, opts.batchSize ?? 2),
        provider: encoder.provider,
      };
      return new Captioner(info, encoder, decoder, feeds, useCache, tokenizer);
    } catch (err) {
      for (const s of sessions) await s.release();
      throw err;
    }
  }

  /** Captions for up to `info.batch` pictures prepared by loadProcessedRgb with `info.config.image`. */
  async caption(images: readonly Uint8Array[]): Promise<Caption[]> {
    if (images.length === 0) return [];
    const { image } = this.info.config;
    const pixels = packNormalized(images, image);
    const enc = (
      await this.encoder.run(
        {
          pixel_values: {
            dtype: "float32",
            shape: [images.length, 3, image.height, image.width],
            data: pixels,
          },
        },
        ["last_hidden_state"],
      )
    ).last_hidden_state;
    if (enc.shape.length !== 3 || enc.shape[0] !== images.length) {
      throw new CaptionerModelError(
        this.info.encoderPath,
        `last_hidden_state is [${enc.shape}], expected [${images.length}, sequence, hidden]`,
      );
    }
    const step = new DecoderStep(
      this.decoder,
      this.feeds,
      this.info.decoderPath,
      { tensor: enc, seq: enc.shape[1], hidden: enc.shape[2] },
      this.useCache,
    );
    const generated = await generate(images.length, this.info.config.ids, this.info.generation, (rows) =>
      step.next(rows),
    );
    return generated.map((g) => ({
      text: this.tokenizer.decode(g.tokens, { skipSpecialTokens: true }).trim(),
      tokens: g.tokens,
      score: g.score,
      finished: g.finished,
    }));
  }

  async release(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoder.release()]);
  }
}

function findOnnx(dir: string, names: string[]): string {
  for (const name of names)
    for (const sub of ["onnx", "."]) {
      const p = join(dir, sub, name);
      if (existsSync(p)) return p;
    }
  // Named by the plain file of the family (decoder_model.onnx, encoder_model.onnx), the alternatives listed.
  const [main, ...others] = [...names].sort((a, b) => a.length - b.length);
  const alt = others.length > 0 ? `, nor ${others.join(", ")}` : "";
  throw new CaptionerModelError(join(dir, "onnx", main), `not found${alt} (${LAYOUT_HINT})`);
}

const describe = (vs: readonly OnnxValueInfo[]) =>
  vs.map((v) => `${v.name} ${v.elemType}${formatDims(v.dims)}`).join(", ") || "none";

function checkEncoder(
  file: string,
  inputs: OnnxValueInfo[],
  outputs: OnnxValueInfo[],
  config: CaptionerConfig,
): void {
  const px = inputs.find((v) => v.name === "pixel_values");
  if (!px || inputs.length !== 1 || px.elemType !== "float" || px.dims.length !== 4) {
    throw new CaptionerModelError(
      file,
      `expected one input pixel_values float[N,3,H,W], found: ${describe(inputs)}`,
    );
  }
  const [, c, h, w] = px.dims.map(fixedDim);
  const { width, height } = config.image;
  if ((c !== undefined && c !== 3) || (h !== undefined && h !== height) || (w !== undefined && w !== width)) {
    throw new CaptionerModelError(
      file,
      `pixel_values is ${formatDims(px.dims)} but preprocessor_config.json gives 3x${height}x${width}`,
    );
  }
  if (!outputs.some((v) => v.name === "last_hidden_state"))
    throw new CaptionerModelError(file, `no last_hidden_state output (outputs: ${describe(outputs)})`);
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
