/**
 * txt2img as the WebUI / diffusers run it:
 *   prompt -> A1111 emphasis + 75-token chunks -> text encoder per chunk -> emphasis -> chunks concatenated
 *   (negative prompt padded with empty chunks to the same count) -> denoising loop with classifier-free guidance
 *   on the UNet batch [uncond x B, cond x B] -> latents / scaling_factor -> VAE decoder -> clamp(x / 2 + 0.5).
 *
 * LoRA: `setLoras(stack)` turns a stacked adapter into input tensors of the SAME text-encoder and UNet sessions
 * (adapter-inputs.ts): switching stacks creates no session unless a stack outgrows the graphs' rank capacity.
 * `setLoras(stack, "baked")` builds separate sessions on patched weights instead (the WebUI way, for comparison).
 */
import type { Adapter } from "@lora-studio/prompt-lora";
import { vaeScaleFactor } from "../models/vae/autoencoder-kl.ts";
import type { HostTensor } from "../runtime/tensor.ts";
import { denoise, guideBatchedOutput } from "../schedulers/denoise.ts";
import { createSampler, isSamplerName } from "../schedulers/samplers/index.ts";
import { SAMPLER_NAMES } from "../schedulers/samplers/types.ts";
import { PerImageNoise } from "../schedulers/torch-rng.ts";
import { applyEmphasis, type EmphasisMode, padChunks, tokenizePromptChunks } from "../tokenizer/chunking.ts";
import { adapterFeeds, type GraphComponent } from "./adapter-inputs.ts";
import { PipelineError, type SdModel, type WeightMode } from "./sd-model.ts";

export interface Txt2ImgOptions {
  /** Prompt text with A1111 emphasis syntax (LoRA tokens already removed: see lorasFromPrompt). */
  prompt: string;
  negative?: string;
  steps?: number;
  cfg?: number;
  /** WebUI sampler name ("Euler a", "Euler", "DDIM", "DPM++ 2M", "DPM++ 2M Karras", "PNDM"). */
  sampler?: string;
  /** Image i uses seed + i (WebUI CPU RNG: one torch CPU generator per image). */
  seed?: number;
  width?: number;
  height?: number;
  batch?: number;
  /** Unit-variance initial noise [batch, 4, h, w] instead of the seed's (ancestral noise still from seed). */
  initLatents?: Float32Array;
  emphasis?: EmphasisMode;
  /**
   * A1111's "Clip skip" (CLIP_stop_at_last_layers): 1 (default) = the text encoder's last layer; n > 1 = the
   * output of layer -n, then final_layer_norm (sd_hijack_clip encode_with_transformers). Both prompts use it.
   */
  clipSkip?: number;
  /** false: stop at the final latents (diffusers' output_type="latent"); images/decoded are then empty. */
  decode?: boolean;
  /** Called after each sampler step with the latents (diffusers' callback view). */
  onStep?: (index: number, total: number, latents: Float32Array) => void | Promise<void>;
}

export interface Txt2ImgResult {
  /** [batch, height, width, 3], float32 in [0, 1]. */
  images: Float32Array;
  /** VAE output before clamping, [batch, 3, height, width]. */
  decoded: Float32Array;
  /** Final latents [batch, 4, h, w] (before division by the scaling factor). */
  latents: Float32Array;
  seeds: number[];
  width: number;
  height: number;
  batch: number;
  sampler: string;
  steps: number;
  cfg: number;
  clipSkip: number;
  timesteps: number[];
  /** Milliseconds per phase. */
  timings: { text: number; denoise: number; decode: number };
}

export type LoraMode = "adapters" | "baked";

const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: "float32", shape, data });

/** Clip skip must name a layer of the text encoder: 1..layers (A1111's slider goes to 12 for SD1's 12). */
function checkClipSkip(clipSkip: number, layers: number): void {
  if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > layers)
    throw new PipelineError(
      `clip skip must be an integer in 1..${layers} (this text encoder's layers), got ${clipSkip}`,
    );
}

export class Txt2ImgPipeline {
  private mode: Record<GraphComponent, WeightMode> = { te: { kind: "adapters" }, unet: { kind: "adapters" } };
  private feeds: Record<GraphComponent, Record<string, HostTensor>> = { te: {}, unet: {} };
  private bakeId = 0;

  constructor(readonly model: SdModel) {}

  /**
   * Applies a stacked adapter (null = none) to the following generations. "adapters": new input tensors for
   * the existing sessions; "baked": patched-weight sessions (previous baked sessions are released).
   */
  async setLoras(stack: Adapter | null, mode: LoraMode = "adapters"): Promise<void> {
    const previousBake = this.mode.unet.kind === "baked" ? this.mode.unet.id : undefined;
    if (mode === "baked" && stack && stack.modules.length > 0) {
      const id = ++this.bakeId;
      this.mode = { te: { kind: "baked", id, stack }, unet: { kind: "baked", id, stack } };
      this.feeds = { te: {}, unet: {} };
    } else {
      const next = { ...this.mode };
      const feeds = { te: {}, unet: {} } as Record<GraphComponent, Record<string, HostTensor>>;
      for (const c of ["te", "unet"] as const) {
        // Plain baked mode with no stack runs the unpatched model: the adapter graphs fed zeros, or plain ones.
        const capacity = this.model.capacityFor(c, mode === "adapters" ? stack : null);
        next[c] = { kind: "adapters", capacity };
        if (capacity && capacity.size > 0)
          feeds[c] = adapterFeeds(mode === "adapters" ? stack : null, c, capacity, this.model.specs(c));
      }
      this.mode = next;
      this.feeds = feeds;
    }
    if (previousBake !== undefined) await this.model.releaseMatching(`b:${previousBake}`);
  }

  /** Creates (or finds) every session a generation of this shape needs; returns once they are ready. */
  async prepare(o: {
    width: number;
    height: number;
    batch: number;
    chunks?: number;
    clipSkip?: number;
  }): Promise<void> {
    const f = vaeScaleFactor(this.model.checkpoint.vae);
    await Promise.all([
      this.model.session("text_encoder", { batch: 1, clipSkip: o.clipSkip }, this.mode.te),
      this.model.session(
        "unet",
        { batch: 2 * o.batch, height: o.height / f, width: o.width / f, seqLen: 77 * (o.chunks ?? 1) },
        this.mode.unet,
      ),
      this.model.session("vae_decoder", { batch: 1, height: o.height / f, width: o.width / f }),
    ]);
  }

  /** Text-encoder output of one 77-id chunk, [77, D]. */
  private async encodeChunk(ids: number[], clipSkip: number): Promise<Float32Array> {
    const te = await this.model.session("text_encoder", { batch: 1, clipSkip }, this.mode.te);
    const input: HostTensor = {
      dtype: "int64",
      shape: [1, ids.length],
      data: BigInt64Array.from(ids, (v) => BigInt(v)),
    };
    // With clip skip the graph stops before the last layers, so their LoRA inputs are not part of it.
    const lora = clipSkip > 1 ? pick(this.feeds.te, te.inputNames) : this.feeds.te;
    const out = await te.run({ input_ids: input, ...lora }, ["out"]);
    return out.out.data as Float32Array;
  }

  /**
   * Conditioning of several prompts as A1111 builds it: chunks of 75 tokens, each encoded on its own with the
   * emphasis multipliers applied, concatenated; every prompt padded with empty chunks to the longest one.
   * Returns one [chunks * 77, D] array per prompt and the common sequence length.
   */
  async encodePrompts(
    prompts: string[],
    emphasis: EmphasisMode = "original",
    clipSkip = 1,
  ): Promise<{ embeddings: Float32Array[]; seqLen: number }> {
    checkClipSkip(clipSkip, this.model.checkpoint.textEncoder.num_hidden_layers);
    const tok = this.model.tokenizer;
    const chunked = prompts.map((p) => tokenizePromptChunks(tok, p, { emphasis }).chunks);
    const count = Math.max(...chunked.map((c) => c.length));
    const dim = this.model.textWidth;
    const embeddings: Float32Array[] = [];
    for (const chunks of chunked) {
      const all = padChunks(tok, chunks, count);
      const z = new Float32Array(count * 77 * dim);
      for (let i = 0; i < all.length; i++) {
        const raw = await this.encodeChunk(all[i].ids, clipSkip);
        z.set(applyEmphasis(raw, all[i].weights, { dim, mode: emphasis }), i * 77 * dim);
      }
      embeddings.push(z);
    }
    return { embeddings, seqLen: count * 77 };
  }

  /**
   * What image sides must be multiples of: the UNet halves the latent at each down block but the last and
   * concatenates the skip connections on the way up, so the latent sides must divide evenly
   * (VAE factor x 2^downsamplings: 64 for SD1.5, 32 for the tiny and demo models).
   */
  get sizeMultiple(): number {
    return (
      vaeScaleFactor(this.model.checkpoint.vae) *
      2 ** (this.model.checkpoint.unet.block_out_channels.length - 1)
    );
  }

  /** Throws a PipelineError for a bad size / batch / step count / sampler; returns the VAE's size factor. */
  private checkOptions(o: Omit<Txt2ImgOptions, "prompt">): number {
    const factor = vaeScaleFactor(this.model.checkpoint.vae);
    const downs = this.model.checkpoint.unet.block_out_channels.length - 1;
    const multiple = this.sizeMultiple;
    for (const [what, v] of [
      ["width", o.width ?? 512],
      ["height", o.height ?? 512],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0 || v % multiple !== 0)
        throw new PipelineError(
          `${what} must be a positive multiple of ${multiple} for this model (VAE factor ${factor} x 2^${downs} UNet downsamplings), got ${v}`,
        );
    }
    for (const [what, v] of [
      ["batch", o.batch ?? 1],
      ["steps", o.steps ?? 20],
    ] as const) {
      if (!Number.isInteger(v) || v < 1)
        throw new PipelineError(`${what} must be a positive integer, got ${v}`);
    }
    checkClipSkip(o.clipSkip ?? 1, this.model.checkpoint.textEncoder.num_hidden_layers);
    if (!isSamplerName(o.sampler ?? "Euler a"))
      throw new PipelineError(`unknown sampler "${o.sampler}"; known: ${SAMPLER_NAMES.join(", ")}`);
    return factor;
  }

  /** Runs the whole pipeline. */
  async generate(o: Txt2ImgOptions): Promise<Txt2ImgResult> {
    this.checkOptions(o);
    const t0 = performance.now();
    const text = await this.encodePrompts([o.negative ?? "", o.prompt], o.emphasis, o.clipSkip);
    const t1 = performance.now();
    return this.generateFromEmbeddings(o, text.embeddings[1], text.embeddings[0], text.seqLen, t1 - t0);
  }

  /** The denoising loop and decode from given conditioning ([seqLen, D] each; parity tests feed recorded ones). */
  async generateFromEmbeddings(
    o: Omit<Txt2ImgOptions, "prompt"> & { prompt?: string },
    cond: Float32Array,
    uncond: Float32Array,
    seqLen: number,
    textMs = 0,
  ): Promise<Txt2ImgResult> {
    const width = o.width ?? 512;
    const height = o.height ?? 512;
    const batch = o.batch ?? 1;
    const steps = o.steps ?? 20;
    const cfg = o.cfg ?? 7;
    const samplerName = o.sampler ?? "Euler a";
    const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
    const factor = this.checkOptions(o);
    const h = height / factor;
    const w = width / factor;
    const c = this.model.latentChannels;
    const per = c * h * w;
    const seeds = Array.from({ length: batch }, (_, i) => seed + i);
    const rng = new PerImageNoise(seeds);
    let init: Float32Array;
    if (o.initLatents) {
      if (o.initLatents.length !== batch * per)
        throw new PipelineError(
          `initial latents hold ${o.initLatents.length} values; [${batch}, ${c}, ${h}, ${w}] needs ${batch * per}`,
        );
      init = o.initLatents;
    } else {
      init = rng.randn(batch * per);
    }
    const dim = this.model.textWidth;
    if (cond.length !== seqLen * dim || uncond.length !== seqLen * dim)
      throw new PipelineError(`conditioning must be [${seqLen}, ${dim}] for both prompts`);
    // Batch [uncond x B, cond x B], as diffusers' torch.cat([negative, positive]).
    const context = new Float32Array(2 * batch * seqLen * dim);
    for (let i = 0; i < batch; i++) {
      context.set(uncond, i * seqLen * dim);
      context.set(cond, (batch + i) * seqLen * dim);
    }
    const sampler = createSampler(samplerName, { schedule: this.model.schedule, steps, noise: rng });
    const unet = await this.model.session(
      "unet",
      { batch: 2 * batch, height: h, width: w, seqLen },
      this.mode.unet,
    );
    const contextT = f32([2 * batch, seqLen, dim], context);
    const total = sampler.timesteps.length;
    const t1 = performance.now();
    const latents = await denoise({
      sampler,
      latents: init,
      predict: async (x, t) => {
        const sample = new Float32Array(2 * x.length);
        sample.set(x, 0);
        sample.set(x, x.length);
        const out = await unet.run(
          {
            sample: f32([2 * batch, c, h, w], sample),
            timestep: f32([2 * batch], new Float32Array(2 * batch).fill(t)),
            encoder_hidden_states: contextT,
            ...this.feeds.unet,
          },
          ["out"],
        );
        return guideBatchedOutput(out.out.data as Float32Array, cfg);
      },
      onStep: (i, l) => o.onStep?.(i, total, l),
    });
    const t2 = performance.now();
    const { decoded, images } =
      o.decode === false
        ? { decoded: new Float32Array(0), images: new Float32Array(0) }
        : await this.decode(latents, batch, h, w);
    return {
      images,
      decoded,
      latents,
      seeds,
      width,
      height,
      batch,
      sampler: samplerName,
      steps,
      cfg,
      clipSkip: o.clipSkip ?? 1,
      timesteps: [...sampler.timesteps],
      timings: { text: textMs, denoise: t2 - t1, decode: performance.now() - t2 },
    };
  }

  /** VAE-decodes latents image by image: raw NCHW output and clamp(x / 2 + 0.5) as NHWC. */
  async decode(
    latents: Float32Array,
    batch: number,
    h: number,
    w: number,
  ): Promise<{ decoded: Float32Array; images: Float32Array }> {
    const c = this.model.latentChannels;
    const per = c * h * w;
    const vae = await this.model.session("vae_decoder", { batch: 1, height: h, width: w });
    const sf = this.model.scalingFactor;
    let decoded = new Float32Array(0);
    let images = new Float32Array(0);
    for (let i = 0; i < batch; i++) {
      // float32 division, as diffusers' `latents / scaling_factor`.
      const z = latents.slice(i * per, (i + 1) * per).map((v) => Math.fround(v / Math.fround(sf)));
      const out = (await vae.run({ latents: f32([1, c, h, w], z) }, ["out"])).out;
      const [, ch, H, W] = out.shape;
      const img = out.data as Float32Array;
      if (i === 0) {
        decoded = new Float32Array(batch * ch * H * W);
        images = new Float32Array(batch * H * W * ch);
      }
      decoded.set(img, i * ch * H * W);
      const base = i * H * W * ch;
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++)
          for (let k = 0; k < ch; k++) {
            const v = Math.fround(Math.fround(img[(k * H + y) * W + x] / 2) + 0.5);
            images[base + (y * W + x) * ch + k] = Math.min(Math.max(v, 0), 1);
          }
    }
    return { decoded, images };
  }
}

function pick(feeds: Record<string, HostTensor>, names: readonly string[]): Record<string, HostTensor> {
  return Object.fromEntries(names.filter((n) => n in feeds).map((n) => [n, feeds[n]]));
}
