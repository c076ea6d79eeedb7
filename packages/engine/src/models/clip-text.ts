/**
 * transformers' CLIPTextModel (the SD text encoder): token + position embeddings, pre-LN encoder layers with a
 * causal mask and quick_gelu MLPs, final_layer_norm. Parameter names equal the transformers state-dict keys
 * ("text_model.encoder.layers.0.self_attn.q_proj.weight").
 *
 * Graph: input `input_ids` int64 [B, S]; outputs `out` [B, S, hidden] (final_layer_norm of the last layer, or of
 * layer -clipSkip with clip skip) and `pooler_output` [B, hidden] (final hidden state at the first occurrence of
 * the highest token id, i.e. the end-of-text token, as transformers does for eos_token_id 2 configs).
 */
import { checkpoint } from "../autodiff/marks.ts";
import { attr, GraphBuilder } from "../graph/builder.ts";
import type { Value } from "../graph/ir.ts";
import { add, cast, gather, gelu, reshape } from "../graph/ops/index.ts";
import { scaledDotProductAttention } from "../nn/attention.ts";
import { layerNorm, linear, quickGelu } from "../nn/layers.ts";
import {
  type BuiltGraph,
  type ComputeDType,
  type LoraTargets,
  ModuleContext,
  type WeightSource,
} from "../nn/module.ts";
import type { ClipTextConfig } from "./configs.ts";

export interface ClipTextGraphOptions {
  batch: number;
  /** Sequence length (77 for SD). */
  seqLen?: number;
  /** 1 = last layer (SD1 default); 2 = penultimate layer ("clip skip 2", SD2), then final_layer_norm. */
  clipSkip?: number;
  lora?: LoraTargets;
  /** Also output `hidden_states.<i>` (embeddings = 0, then each layer, before the final norm). */
  hiddenStates?: boolean;
  /** Dtype the layers compute in (default "float32"); "float16" for GPUs: outputs stay float32 (nn/module.ts). */
  computeDType?: ComputeDType;
}

/**
 * The additive causal mask [1, 1, S, S]: 0 on and below the diagonal, float32 min above (as transformers).
 * float32 in fp16 graphs too: attention adds it to float32 scores (nn/attention.ts).
 */
function causalMask(b: GraphBuilder, s: number): Value {
  const data = new Float32Array(s * s);
  const min = -3.4028234663852886e38;
  for (let i = 0; i < s; i++) for (let j = i + 1; j < s; j++) data[i * s + j] = min;
  return b.constant({ dtype: "float32", shape: [1, 1, s, s], data });
}

function encoderLayer(ctx: ModuleContext, x: Value, cfg: ClipTextConfig, mask: Value): Value {
  const b = ctx.b;
  const d = cfg.hidden_size;
  const eps = cfg.layer_norm_eps;
  let h = b.scope("layer_norm1", () => layerNorm(ctx, x, eps));
  h = b.scope("self_attn", () => {
    const q = b.scope("q_proj", () => linear(ctx, h, d, d));
    const k = b.scope("k_proj", () => linear(ctx, h, d, d));
    const v = b.scope("v_proj", () => linear(ctx, h, d, d));
    const o = scaledDotProductAttention(q, k, v, cfg.num_attention_heads, mask);
    return b.scope("out_proj", () => linear(ctx, o, d, d));
  });
  const mid = add(x, h);
  let m = b.scope("layer_norm2", () => layerNorm(ctx, mid, eps));
  m = b.scope("mlp", () => {
    const f1 = b.scope("fc1", () => linear(ctx, m, d, cfg.intermediate_size));
    // SD1's CLIP ViT-L uses quick_gelu; OpenCLIP towers (SD2) the exact erf GELU.
    const act = cfg.hidden_act === "quick_gelu" ? quickGelu(f1) : gelu(f1, "none");
    return b.scope("fc2", () => linear(ctx, act, cfg.intermediate_size, d));
  });
  return add(mid, m);
}

export interface ClipTextEncoderOptions {
  /** See ClipTextGraphOptions.clipSkip. */
  clipSkip?: number;
  /** Output `hidden_states.<i>` (see ClipTextGraphOptions.hiddenStates). */
  hiddenStates?: boolean;
  /** Mark each encoder layer as a checkpoint() segment (recomputed in the backward pass of a training graph). */
  gradientCheckpointing?: boolean;
}

/**
 * The text_model of CLIPTextModel on `ids` ([B, S] int64) inside `ctx`'s graph, returning the final_layer_norm
 * output [B, S, hidden] (in ctx's compute dtype: fp16 in an fp16 context) and adding no graph outputs (except hidden_states with that option), so a larger graph
 * (a joint text-encoder + UNet training step) can build the encoder into its own builder and LoRA context.
 */
export function clipTextEncoder(
  ctx: ModuleContext,
  ids: Value,
  cfg: ClipTextConfig,
  o: ClipTextEncoderOptions = {},
): Value {
  const b = ctx.b;
  const seq = ids.shape[1];
  const clipSkip = o.clipSkip ?? 1;
  if (clipSkip < 1 || clipSkip > cfg.num_hidden_layers)
    throw new Error(`clipSkip ${clipSkip} must be in 1..${cfg.num_hidden_layers}`);
  const d = cfg.hidden_size;
  return b.scope("text_model", () => {
    let x = b.scope("embeddings", () => {
      const tok = b.scope("token_embedding", () => ctx.param("weight", [cfg.vocab_size, d]));
      const pos = b.scope("position_embedding", () => ctx.param("weight", [cfg.max_position_embeddings, d]));
      const positions = Array.from({ length: seq }, (_, i) => i);
      return add(gather(tok, ids), gather(pos, positions));
    });
    const mask = causalMask(b, seq);
    const used = cfg.num_hidden_layers - (clipSkip - 1);
    if (o.hiddenStates) b.output(ctx.toFloat32(x), "hidden_states.0");
    for (let i = 0; i < used; i++) {
      const layer = () => b.scope(`encoder.layers.${i}`, () => encoderLayer(ctx, x, cfg, mask));
      x = o.gradientCheckpointing ? checkpoint(b, layer) : layer();
      if (o.hiddenStates) b.output(ctx.toFloat32(x), `hidden_states.${i + 1}`);
    }
    return b.scope("final_layer_norm", () => layerNorm(ctx, x, cfg.layer_norm_eps));
  });
}

export function buildClipTextGraph(
  cfg: ClipTextConfig,
  weights: WeightSource,
  o: ClipTextGraphOptions,
): BuiltGraph {
  const seq = o.seqLen ?? cfg.max_position_embeddings;
  const b = new GraphBuilder("clip_text_model");
  const ctx = new ModuleContext(b, weights, o.lora, o.computeDType);
  const ids = b.input("input_ids", "int64", [o.batch, seq]);
  const d = cfg.hidden_size;
  const out = ctx.toFloat32(
    clipTextEncoder(ctx, ids, cfg, { clipSkip: o.clipSkip, hiddenStates: o.hiddenStates }),
  );
  b.output(out, "out");
  // Pooled output at argmax(input_ids): ids < 2^24 are exact in float32, which ArgMax handles on every provider.
  const [eosPos] = b.addNode("ArgMax", [cast(ids, "float32")], { axis: attr.int(1), keepdims: attr.int(0) }, [
    { dtype: "int64", shape: [o.batch] },
  ]);
  const rowStart = b.constant(
    Array.from({ length: o.batch }, (_, i) => i * seq),
    "int64",
    [o.batch],
  );
  const pooled = gather(reshape(out, [o.batch * seq, d]), add(eosPos, rowStart));
  b.output(pooled, "pooler_output");
  return { graph: b.build(), ctx };
}
