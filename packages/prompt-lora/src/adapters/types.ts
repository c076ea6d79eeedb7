/**
 * The one normalized in-memory adapter every file layout is read into and written from.
 * Contract shared by adapters/ (formats), merge/ (stack, compress, bake, extract), library/ and the CLI.
 * All tensor data is float32 in memory, whatever the file's dtype.
 */

export type ModelFamily = "sd1" | "sd2" | "sdxl" | "unknown";

/** Which network a module lives in. SD1/SD2 have one text encoder ("te"); SDXL has "te1" and "te2". */
export type Component = "unet" | "te" | "te1" | "te2";

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

/**
 * One adapted module.
 * - lora: down [r, in] | [r, in, kh, kw]; up [out, r] | [out, r, 1, 1]; optional mid [r, r, kh, kw] (CP);
 *   scale = alpha / r (alpha absent: 1.0).
 * - loha: hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b, optional hada_t1, hada_t2; scale = alpha / rank(w1_b rows).
 * - lokr: lokr_w1 | (lokr_w1_a, lokr_w1_b), lokr_w2 | (lokr_w2_a, lokr_w2_b), optional lokr_t2.
 * - full: diff (the whole delta), optional diff_b (bias delta).
 * `dora_scale`, when present, is applied as LyCORIS / A1111 do.
 */
export interface AdapterModule {
  component: Component;
  /** Module path inside its component, diffusers naming: "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
   *  "text_model.encoder.layers.0.self_attn.q_proj". */
  path: string;
  kind: "lora" | "loha" | "lokr" | "full";
  /** Layer the adapter targets: a Linear, or a Conv2d (any kernel size). */
  layer: "linear" | "conv";
  tensors: Record<string, Tensor>;
  alpha?: number;
  doraScale?: Tensor;
  /** Shape of the target weight when the tensors store it flattened (LoHa/LoKr on a k x k conv without Tucker
   *  cores: factors are [out, in*kh*kw]). Added by the adapters module; absent means "as the tensors imply". */
  targetShape?: number[];
}

export interface Adapter {
  /** Where it was read from, for messages. */
  source?: string;
  format: "kohya" | "peft" | "diffusers" | "lycoris";
  family: ModelFamily;
  modules: AdapterModule[];
  /** `__metadata__` of the file, kept as strings. */
  metadata: Record<string, string>;
  /** Keys that could not be mapped onto a module: never silently dropped. */
  unknownKeys: string[];
}
