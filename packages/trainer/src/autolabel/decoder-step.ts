/**
 * One decoding step of an optimum-layout captioner decoder: builds the feeds for a batch of rows (sequences)
 * and returns each row's next-token logits.
 *
 * Feeds, by name (anything else is an error naming the file): `input_ids` (or `decoder_input_ids`),
 * `encoder_hidden_states`, optional `encoder_attention_mask` / `attention_mask` / `decoder_attention_mask` (all
 * ones), and for merged decoders `use_cache_branch` + `past_key_values.*` [batch, heads, past, head_dim].
 *
 * KV cache (merged decoders): each `past_key_values.X` is fed the `present.X` output of the step that produced
 * the row's prefix. generate() knows nothing of caches; rows are matched to their parent by content (picture +
 * token prefix), which also covers beam search re-ordering and rows leaving the batch. A row whose parent is
 * unknown (the first step) makes the whole call run without the cache: `use_cache_branch = false`, empty past
 * tensors and the full prefix — exactly what a plain `decoder_model.onnx` computes.
 */
import type { HostTensor } from "@lora-studio/engine";
import { CaptionerModelError } from "./captioner-config.ts";
import type { DecodeRow } from "./generate.ts";
import { fixedDim, formatDims, type OnnxValueInfo } from "./onnx-signature.ts";

export interface RunsSessions {
  readonly outputNames: readonly string[];
  run(feeds: Record<string, HostTensor>, outputs?: readonly string[]): Promise<Record<string, HostTensor>>;
}

type IntType = "int64" | "int32";

export interface DecoderFeeds {
  ids: { name: string; type: IntType };
  states: string;
  encoderMask?: { name: string; type: IntType };
  decoderMask?: { name: string; type: IntType };
  useCacheBranch?: string;
  /** Past inputs and the present outputs that feed them. */
  past: { name: string; present: string; heads: number; headDim: number }[];
}

const describe = (vs: readonly OnnxValueInfo[]) =>
  vs.map((v) => `${v.name} ${v.elemType}${formatDims(v.dims)}`).join(", ") || "none";

/** Reads the decoder's contract from its declared inputs (those the session really takes). */
export function decoderFeeds(
  file: string,
  inputs: OnnxValueInfo[],
  outputNames: readonly string[],
): DecoderFeeds {
  const intType = (v: OnnxValueInfo): IntType => {
    if (v.elemType === "int64" || v.elemType === "int32") return v.elemType;
    throw new CaptionerModelError(file, `input ${v.name} is ${v.elemType}, expected int64 or int32`);
  };
  const byName = new Map(inputs.map((v) => [v.name, v]));
  const ids = byName.get("input_ids") ?? byName.get("decoder_input_ids");
  const states = byName.get("encoder_hidden_states");
  if (!ids || !states) {
    throw new CaptionerModelError(
      file,
      `expected inputs input_ids and encoder_hidden_states, found: ${describe(inputs)}`,
    );
  }
  if (!outputNames.includes("logits"))
    throw new CaptionerModelError(file, `no "logits" output (outputs: ${outputNames.join(", ")})`);
  const feeds: DecoderFeeds = { ids: { name: ids.name, type: intType(ids) }, states: states.name, past: [] };
  for (const v of inputs) {
    if (v === ids || v === states) continue;
    if (v.name === "encoder_attention_mask") feeds.encoderMask = { name: v.name, type: intType(v) };
    else if (v.name === "attention_mask" || v.name === "decoder_attention_mask")
      feeds.decoderMask = { name: v.name, type: intType(v) };
    else if (v.name === "use_cache_branch") feeds.useCacheBranch = v.name;
    else if (v.name.startsWith("past_key_values.")) {
      const heads = fixedDim(v.dims[1] ?? { param: undefined });
      const headDim = fixedDim(v.dims[3] ?? { param: undefined });
      if (v.elemType !== "float" || v.dims.length !== 4 || heads === undefined || headDim === undefined) {
        throw new CaptionerModelError(
          file,
          `past input ${v.name} ${v.elemType}${formatDims(v.dims)}: expected float[batch, heads, past, head_dim] with fixed heads and head_dim`,
        );
      }
      const present = `present.${v.name.slice("past_key_values.".length)}`;
      if (!outputNames.includes(present))
        throw new CaptionerModelError(file, `past input ${v.name} has no matching output ${present}`);
      feeds.past.push({ name: v.name, present, heads, headDim });
    } else {
      throw new CaptionerModelError(file, `unexpected decoder input ${v.name} (inputs: ${describe(inputs)})`);
    }
  }
  if (feeds.past.length > 0 && feeds.useCacheBranch === undefined)
    throw new CaptionerModelError(
      file,
      "past_key_values inputs without use_cache_branch: a decoder_with_past model is not supported; use decoder_model_merged.onnx or decoder_model.onnx",
    );
  return feeds;
}

/** The encoder output of a batch of pictures: [pictures, sequence, hidden]. */
export interface EncoderStates {
  tensor: HostTensor;
  seq: number;
  hidden: number;
}

interface CachedRow {
  /** Per past input: this row's present tensor [heads, len, head_dim], flat (len: the decoder length for
   * self-attention, the encoder length for the cross-attention entries seq2seq decoders also cache). */
  present: { data: Float32Array; len: number }[];
  /** Token count of the row these tensors belong to. */
  length: number;
}

/** Runs decoding steps for one batch of pictures; holds the KV cache between steps. */
export class DecoderStep {
  private cache = new Map<string, CachedRow>();

  constructor(
    private readonly session: RunsSessions,
    private readonly feeds: DecoderFeeds,
    private readonly file: string,
    private readonly enc: EncoderStates,
    private readonly useCache: boolean,
  ) {}

  async next(rows: DecodeRow[]): Promise<Float32Array[]> {
    const f = this.feeds;
    const n = rows.length;
    const full = rows[0].ids.length;
    const parents =
      this.useCache && f.past.length > 0
        ? rows.map((r) => this.cache.get(key(r.source, r.ids.slice(0, -1))))
        : [];
    const cached = parents.length === n && parents.every((p) => p !== undefined && p.length === full - 1);
    const len = cached ? 1 : full;
    const { tensor, seq, hidden } = this.enc;
    const per = seq * hidden;
    const states = new (tensor.data.constructor as Float32ArrayConstructor)(n * per);
    for (const [i, r] of rows.entries())
      states.set((tensor.data as Float32Array).subarray(r.source * per, (r.source + 1) * per), i * per);
    const feeds: Record<string, HostTensor> = {
      [f.ids.name]: intTensor(
        f.ids.type,
        [n, len],
        rows.flatMap((r) => r.ids.slice(r.ids.length - len)),
      ),
      [f.states]: { dtype: tensor.dtype, shape: [n, seq, hidden], data: states },
    };
    if (f.encoderMask) feeds[f.encoderMask.name] = intTensor(f.encoderMask.type, [n, seq], ones(n * seq));
    if (f.decoderMask) feeds[f.decoderMask.name] = intTensor(f.decoderMask.type, [n, full], ones(n * full));
    if (f.useCacheBranch)
      feeds[f.useCacheBranch] = { dtype: "bool", shape: [1], data: Uint8Array.of(cached ? 1 : 0) };
    f.past.forEach((p, k) => {
      const pastLen = cached ? parents[0]!.present[k].len : 0;
      const size = p.heads * pastLen * p.headDim;
      const data = new Float32Array(n * size);
      if (cached) for (const [i, parent] of parents.entries()) data.set(parent!.present[k].data, i * size);
      feeds[p.name] = { dtype: "float32", shape: [n, p.heads, pastLen, p.headDim], data };
    });
    const wanted = ["logits", ...(this.useCache ? f.past.map((p) => p.present) : [])];
    const out = await this.session.run(feeds, wanted);
    const logits = out.logits;
    if (
      !(logits.data instanceof Float32Array) ||
      logits.shape.length !== 3 ||
      logits.shape[0] !== n ||
      logits.shape[1] !== len
    ) {
      throw new CaptionerModelError(
        this.file,
        `logits are ${logits.dtype}[${logits.shape}], expected float32[${n}, ${len}, vocabulary]`,
      );
    }
    if (this.useCache && f.past.length > 0) this.remember(rows, out, full);
    const v = logits.shape[2];
    return rows.map(
      (_, i) => logits.data.subarray((i * len + len - 1) * v, (i * len + len) * v) as Float32Array,
    );
  }

  /** Keeps this step's present tensors, per row, for the rows of the next step. */
  private remember(rows: DecodeRow[], out: Record<string, HostTensor>, full: number): void {
    const next = new Map<string, CachedRow>();
    const n = rows.length;
    const per = this.feeds.past.map((p) => {
      const t = out[p.present];
      const s = t?.shape ?? [];
      if (
        !(t?.data instanceof Float32Array) ||
        s.length !== 4 ||
        s[0] !== n ||
        s[1] !== p.heads ||
        s[3] !== p.headDim
      ) {
        throw new CaptionerModelError(
          this.file,
          `${p.present} is ${t?.dtype}[${s}], expected float32[${n}, ${p.heads}, length, ${p.headDim}]`,
        );
      }
      return { data: t.data, len: s[2], size: p.heads * s[2] * p.headDim };
    });
    rows.forEach((r, i) => {
      next.set(key(r.source, r.ids), {
        present: per.map(({ data, len, size }) => ({ data: data.slice(i * size, (i + 1) * size), len })),
        length: full,
      });
    });
    this.cache = next;
  }
}

const key = (source: number, ids: readonly number[]) => `${source}:${ids.join(",")}`;

function intTensor(type: IntType, shape: number[], values: readonly number[] | Int32Array): HostTensor {
  if (type === "int32") return { dtype: "int32", shape, data: Int32Array.from(values) };
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]);
  return { dtype: "int64", shape, data };
}

function ones(n: number): Int32Array {
  return new Int32Array(n).fill(1);
}
