/**
 * What a save writes:
 *  - the LoRA in kohya's layout (prompt-lora's writeAdapter: `lora_unet_<path>.lora_down.weight`, `.lora_up.weight`,
 *    `.alpha`, and `lora_te_<path>.*` for a trained text encoder) in save_precision, with the ss_* / modelspec.* metadata of trainer-data's output module and
 *    sshs_model_hash (computed over exactly the tensor list writeAdapter lays out);
 *  - the training state: every state tensor of the step graph (LoRA parameters, optimizer moments, counters), the
 *    per-step loss history, and a JSON record (step, micro-step, data-order position, seed, run identity). All
 *    randomness derives from (seed, micro-step), so this is everything a resume needs to continue to the same
 *    losses.
 * Both files are written atomically (temp file + rename): a kill at any moment leaves the previous files intact.
 */

import type { HostTensor, LoraModuleInfo } from "@lora-studio/engine";
import {
  type Adapter,
  type AdapterModule,
  fromFloat32,
  kohyaName,
  openSafetensors,
  type DType as StDType,
  type TensorToWrite,
  writeAdapter,
  writeSafetensors,
} from "@lora-studio/prompt-lora";
import type { DataOrderState } from "../dataset/order.ts";
import { withSshsHashes } from "../output/hashes.ts";

export type SavePrecision = "float" | "fp16" | "bf16";
const DTYPE_OF: Record<SavePrecision, "F32" | "F16" | "BF16"> = { float: "F32", fp16: "F16", bf16: "BF16" };

export interface SavedModule {
  /** "unet" (lora_unet_*) or "te" (the text encoder with train_text_encoder, lora_te_*). */
  component: "unet" | "te";
  info: LoraModuleInfo;
  alpha: number;
  layer: "linear" | "conv";
}

/** Writes the LoRA (kohya format) from the current state; returns the metadata written. */
export async function saveLora(
  path: string,
  modules: readonly SavedModule[],
  state: ReadonlyMap<string, HostTensor>,
  metadata: Record<string, string>,
  precision: SavePrecision,
  family: "sd1" | "sd2",
): Promise<Record<string, string>> {
  const dtype = DTYPE_OF[precision];
  const adapterModules: AdapterModule[] = modules.map((m) => {
    const down = state.get(m.info.downState);
    const up = state.get(m.info.upState);
    if (!down || !up) throw new Error(`training state has no ${m.info.downState} / ${m.info.upState}`);
    return {
      component: m.component,
      path: m.info.path,
      kind: "lora",
      layer: m.layer,
      // Insertion order down, up: writeAdapter writes tensors in this order, then the alpha.
      tensors: {
        down: { shape: [...m.info.downShape], data: down.data as Float32Array },
        up: { shape: [...m.info.upShape], data: up.data as Float32Array },
      },
      alpha: m.alpha,
    };
  });
  // The same tensor list writeAdapter lays out (names, order, dtype), for the data-section hash.
  const layout: TensorToWrite[] = adapterModules.flatMap((m) => {
    const base = kohyaName(m.component, m.path);
    return [
      {
        name: `${base}.lora_down.weight`,
        dtype,
        shape: m.tensors.down.shape,
        data: fromFloat32(m.tensors.down.data, dtype),
      },
      {
        name: `${base}.lora_up.weight`,
        dtype,
        shape: m.tensors.up.shape,
        data: fromFloat32(m.tensors.up.data, dtype),
      },
      { name: `${base}.alpha`, dtype, shape: [], data: fromFloat32(Float32Array.of(m.alpha ?? 0), dtype) },
    ];
  });
  const full = await withSshsHashes(layout, metadata);
  const adapter: Adapter = {
    format: "kohya",
    family,
    modules: adapterModules,
    metadata: full,
    unknownKeys: [],
  };
  await writeAdapter(path, adapter, { format: "kohya", dtype });
  return full;
}

export interface TrainStateRecord {
  version: 1;
  /** Optimizer steps done. */
  step: number;
  /** Micro-steps done (= step x gradient_accumulation_steps at a save). */
  microStep: number;
  dataOrder: DataOrderState;
  seed: number;
  sessionId: number;
  trainingStartedAt: number;
  /** Hash of the settings that decide the losses; a resume with other settings is refused. */
  fingerprint: string;
}

const RECORD_KEY = "lora_studio.train_state";

const ST_DTYPE: Partial<Record<string, StDType>> = { float32: "F32", int64: "I64" };

export async function saveTrainState(
  path: string,
  state: ReadonlyMap<string, HostTensor>,
  losses: readonly number[],
  record: TrainStateRecord,
): Promise<void> {
  const tensors: TensorToWrite[] = [...state].map(([name, t]) => {
    const dtype = ST_DTYPE[t.dtype];
    if (!dtype) throw new Error(`state ${name}: cannot save dtype ${t.dtype}`);
    return { name: `state.${name}`, dtype, shape: [...t.shape], data: t.data };
  });
  tensors.push({
    name: "history.loss",
    dtype: "F64",
    shape: [losses.length],
    data: Float64Array.from(losses),
  });
  await writeSafetensors(path, tensors, { [RECORD_KEY]: JSON.stringify(record) });
}

export class ResumeError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "ResumeError";
  }
}

export async function loadTrainState(
  path: string,
): Promise<{ state: Map<string, HostTensor>; losses: number[]; record: TrainStateRecord }> {
  const file = await openSafetensors(path).catch((err: Error) => {
    throw new ResumeError(path, `cannot open the training state: ${err.message}`);
  });
  try {
    const raw = file.metadata[RECORD_KEY];
    if (raw === undefined)
      throw new ResumeError(path, `not a training-state file (no ${RECORD_KEY} metadata)`);
    const record = JSON.parse(raw) as TrainStateRecord;
    if (record.version !== 1) throw new ResumeError(path, `unsupported state version ${record.version}`);
    const state = new Map<string, HostTensor>();
    let losses: number[] = [];
    for (const info of file.tensors.values()) {
      const bytes = await file.readRaw(info.name);
      const copy = new Uint8Array(bytes.byteLength);
      copy.set(bytes);
      if (info.name === "history.loss") losses = Array.from(new Float64Array(copy.buffer));
      else if (info.name.startsWith("state.")) {
        const name = info.name.slice("state.".length);
        const data = info.dtype === "I64" ? new BigInt64Array(copy.buffer) : new Float32Array(copy.buffer);
        state.set(name, { dtype: info.dtype === "I64" ? "int64" : "float32", shape: [...info.shape], data });
      }
    }
    return { state, losses, record };
  } finally {
    await file.close();
  }
}

/** Refuses a saved state whose tensor names, shapes or dtypes differ from what this model/config needs. */
export function checkStateMatches(
  file: string,
  fresh: Map<string, HostTensor>,
  saved: Map<string, HostTensor>,
): void {
  const problems: string[] = [];
  for (const [name, t] of fresh) {
    const s = saved.get(name);
    if (!s) problems.push(`missing ${name}`);
    else if (s.shape.join(",") !== t.shape.join(",") || s.dtype !== t.dtype)
      problems.push(`${name}: saved ${s.dtype}[${s.shape}], needed ${t.dtype}[${t.shape}]`);
  }
  for (const name of saved.keys()) if (!fresh.has(name)) problems.push(`unexpected ${name}`);
  if (problems.length > 0) {
    throw new ResumeError(
      file,
      `the saved state does not fit this model/config: ${problems.slice(0, 5).join("; ")}`,
    );
  }
}
