/**
 * `pnpm engine eval`: runs one model component on named input tensors and writes its outputs, so anyone can
 * compare the engine with their own PyTorch install. Names (stable, documented in --help):
 *   text_encoder  in: input_ids [B, 77]                                   out: out [B, 77, D], pooler_output [B, D]
 *   unet          in: sample [B, 4, h, w], timestep [B], encoder_hidden_states [B, S, D]   out: out
 *   vae_encoder   in: sample [B, 3, H, W] in [-1, 1]                      out: mean, logvar, out (= mean)
 *   vae_decoder   in: latents [B, 4, h, w] (already divided by the scaling factor)        out: out [B, 3, H, W]
 * `--lora FILE[:te[:unet]]` (repeatable) stacks LoRAs fed as adapter inputs. `--loss-grad` (unet, one --lora,
 * plus a `noise` input): also writes `loss` = mean((out - noise)^2) and the gradient of each LoRA tensor of the
 * file under its kohya name (`<lora_unet_...>.lora_down.weight` / `.lora_up.weight`).
 */

import type { TensorToWrite } from "@lora-studio/prompt-lora";
import {
  type Adapter,
  kohyaName,
  openSafetensors,
  readAdapter,
  stackAdapters,
  writeSafetensors,
} from "@lora-studio/prompt-lora";
import { Command, Option } from "commander";
import { grad } from "../autodiff/grad.ts";
import { mul, reduceMean, sub } from "../graph/ops/index.ts";
import { buildUNetGraph } from "../models/unet/unet.ts";
import { adapterFeeds } from "../pipeline/adapter-inputs.ts";
import { type Component, PipelineError, SdModel } from "../pipeline/sd-model.ts";
import { consoleSink } from "../runtime/messages.ts";
import { Session } from "../runtime/session.ts";
import type { HostTensor } from "../runtime/tensor.ts";
import { intOption, reportFailure } from "./options.ts";

const INPUTS: Record<Component, string[]> = {
  text_encoder: ["input_ids"],
  unet: ["sample", "timestep", "encoder_hidden_states"],
  vae_encoder: ["sample"],
  vae_decoder: ["latents"],
};

interface EvalFlags {
  model: string;
  component: Component;
  inputs: string;
  out: string;
  lora: string[];
  lossGrad?: boolean;
  textEncoderHeads?: number;
}

/** `FILE[:te[:unet]]` (a Windows drive letter "C:\..." stays part of the path). */
export function parseLoraArg(arg: string): { path: string; te: number; unet?: number } {
  const m = /^(.*?)(?::(-?[\d.eE+-]+))?(?::(-?[\d.eE+-]+))?$/.exec(arg);
  const path = m?.[1] ?? arg;
  const te = m?.[2] === undefined ? 1 : Number(m[2]);
  const unet = m?.[3] === undefined ? undefined : Number(m[3]);
  if (!path || !Number.isFinite(te) || (unet !== undefined && !Number.isFinite(unet)))
    throw new PipelineError(`--lora ${arg}: expected FILE[:te[:unet]] with numeric multipliers`);
  return { path, te, unet };
}

async function readInputs(path: string): Promise<Map<string, HostTensor>> {
  const file = await openSafetensors(path);
  try {
    const out = new Map<string, HostTensor>();
    for (const info of file.tensors.values()) {
      const shape = [...info.shape];
      if (info.dtype === "I64" || info.dtype === "I32") {
        const raw = await file.readRaw(info.name);
        const ints =
          info.dtype === "I64"
            ? new BigInt64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))
            : BigInt64Array.from(
                new Int32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)),
                (v) => BigInt(v),
              );
        out.set(info.name, { dtype: "int64", shape, data: ints });
      } else {
        out.set(info.name, { dtype: "float32", shape, data: await file.readFloat32(info.name) });
      }
    }
    return out;
  } finally {
    await file.close();
  }
}

function need(inputs: Map<string, HostTensor>, name: string, file: string): HostTensor {
  const t = inputs.get(name);
  if (!t)
    throw new PipelineError(
      `${file}: missing input tensor "${name}" (has: ${[...inputs.keys()].join(", ")})`,
    );
  return t;
}

/** The feed of `name` in the dtype the graphs take (ids int64, everything else float32). */
function asFeed(t: HostTensor, name: string): HostTensor {
  if (name === "input_ids") {
    if (t.dtype === "int64") return t;
    return {
      dtype: "int64",
      shape: t.shape,
      data: BigInt64Array.from(t.data as Float32Array, (v) => BigInt(Math.round(v))),
    };
  }
  if (t.dtype === "float32") return t;
  return {
    dtype: "float32",
    shape: t.shape,
    data: Float32Array.from(t.data as BigInt64Array, (v) => Number(v)),
  };
}

const toWrite = (name: string, t: HostTensor): TensorToWrite => ({
  name,
  dtype: "F32",
  shape: t.shape,
  data: new Uint8Array(
    (t.data as Float32Array).buffer,
    (t.data as Float32Array).byteOffset,
    (t.data as Float32Array).byteLength,
  ),
});

async function lossGrad(
  model: SdModel,
  adapter: Adapter,
  mult: number,
  feeds: Record<string, HostTensor>,
): Promise<TensorToWrite[]> {
  const modules = adapter.modules.filter((m) => m.component === "unet");
  for (const m of modules) {
    if (m.kind !== "lora" || m.tensors.mid)
      throw new PipelineError(
        `--loss-grad: ${m.path} is ${m.kind}; only plain LoRA modules have down/up gradients`,
      );
  }
  const [batch, , h, w] = feeds.sample.shape;
  const ranks = new Map(modules.map((m) => [m.path, m.tensors.down.shape[0]]));
  const ck = model.checkpoint;
  const { ctx } = buildUNetGraph(ck.unet, ck.weights.unet, {
    batch,
    height: h,
    width: w,
    seqLen: feeds.encoder_hidden_states.shape[1],
    lora: { component: "unet", ranks },
  });
  const b = ctx.b;
  const out = b.outputs.find((v) => v.name === "out") as (typeof b.outputs)[number];
  const noise = b.input("noise", "float32", [...out.shape]);
  const d = sub(out, noise);
  const loss = reduceMean(mul(d, d), undefined, false);
  b.output(loss, "loss");
  const wrt = ctx.loraInputs.flatMap((l) => [l.down, l.up]);
  const grads = grad(b, loss, wrt);
  const names: string[] = [];
  ctx.loraInputs.forEach((l, i) => {
    const base = kohyaName("unet", l.path);
    for (const [k, suffix] of [
      [0, "lora_down.weight"],
      [1, "lora_up.weight"],
    ] as const) {
      names.push(`${base}.${suffix}`);
      b.output(grads[2 * i + k], `grad.${base}.${suffix}`);
    }
  });
  const session = await Session.create(b.build(), {
    executionProvider: "cpu",
    onMessage: consoleSink,
  });
  try {
    const byPath = new Map(modules.map((m) => [m.path, m]));
    const loraFeeds: Record<string, HostTensor> = {};
    for (const l of ctx.loraInputs) {
      const m = byPath.get(l.path) as (typeof modules)[number];
      const r = m.tensors.down.shape[0];
      loraFeeds[l.down.name] = { dtype: "float32", shape: [...l.down.shape], data: m.tensors.down.data };
      loraFeeds[l.up.name] = { dtype: "float32", shape: [...l.up.shape], data: m.tensors.up.data };
      loraFeeds[l.scale.name] = {
        dtype: "float32",
        shape: [],
        data: Float32Array.of(((m.alpha ?? r) / r) * mult),
      };
    }
    const res = await session.run({ ...feeds, ...loraFeeds });
    return [toWrite("loss", res.loss), ...names.map((n) => toWrite(n, res[`grad.${n}`]))];
  } finally {
    await session.release();
  }
}

export async function runEval(f: EvalFlags): Promise<string[]> {
  if (!(f.component in INPUTS))
    throw new PipelineError(`--component must be one of ${Object.keys(INPUTS).join(", ")}`);
  const model = await SdModel.open({
    model: f.model,
    worker: false,
    checkpoint: f.textEncoderHeads ? { textEncoderHeads: f.textEncoderHeads } : undefined,
    onMessage: consoleSink,
  });
  try {
    const inputs = await readInputs(f.inputs);
    const feeds: Record<string, HostTensor> = {};
    for (const n of INPUTS[f.component]) feeds[n] = asFeed(need(inputs, n, f.inputs), n);
    const loras = f.lora.map(parseLoraArg);
    const entries = await Promise.all(
      loras.map(async (l) => ({ adapter: await readAdapter(l.path), te: l.te, unet: l.unet })),
    );
    if (entries.length > 0 && f.component.startsWith("vae"))
      throw new PipelineError("LoRAs apply to text_encoder and unet only");
    const written: TensorToWrite[] = [];
    if (f.lossGrad) {
      if (f.component !== "unet" || entries.length !== 1)
        throw new PipelineError("--loss-grad needs --component unet and exactly one --lora");
      feeds.noise = asFeed(need(inputs, "noise", f.inputs), "noise");
      written.push(...(await lossGrad(model, entries[0].adapter, entries[0].unet ?? entries[0].te, feeds)));
      delete feeds.noise;
    }
    const stack = entries.length > 0 ? stackAdapters(entries) : null;
    const comp = f.component === "unet" ? "unet" : "te";
    const capacity =
      f.component === "unet" || f.component === "text_encoder" ? model.capacityFor(comp, stack) : undefined;
    const extra = capacity && capacity.size > 0 ? adapterFeeds(stack, comp, capacity, model.specs(comp)) : {};
    const s0 = feeds[INPUTS[f.component][0]].shape;
    const shape =
      f.component === "text_encoder"
        ? { batch: s0[0] }
        : { batch: s0[0], height: s0[2], width: s0[3], seqLen: feeds.encoder_hidden_states?.shape[1] };
    const session = await model.session(f.component, shape, { kind: "adapters", capacity });
    const res = await session.run({ ...feeds, ...extra });
    for (const [name, t] of Object.entries(res)) written.push(toWrite(name, t));
    if (f.component === "vae_encoder") written.push(toWrite("out", res.mean));
    await writeSafetensors(f.out, written, { producer: "lora-studio engine eval", component: f.component });
    return written.map((t) => t.name);
  } finally {
    await model.close();
  }
}

export function evalCommand(): Command {
  return new Command("eval")
    .description(
      "run one model component on named input tensors and write its outputs (compare with PyTorch)",
    )
    .requiredOption("--model <path>", "single .safetensors checkpoint or diffusers folder")
    .addOption(
      new Option("--component <name>", "component to run").choices(Object.keys(INPUTS)).makeOptionMandatory(),
    )
    .requiredOption("--inputs <file>", "safetensors with the inputs (see below)")
    .requiredOption("--out <file>", "safetensors to write the outputs to")
    .option(
      "--lora <file[:te[:unet]]>",
      "LoRA to apply (repeatable; stacked)",
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      "--loss-grad",
      "unet + one --lora + input `noise`: also write loss and the LoRA gradients (kohya names)",
    )
    .option(
      "--text-encoder-heads <n>",
      "text-encoder heads for single files off the 64-wide-head convention",
      intOption("--text-encoder-heads", 1),
    )
    .addHelpText(
      "after",
      `
Inputs / outputs by component:
  text_encoder  input_ids [B,77]                                     -> out [B,77,D], pooler_output [B,D]
  unet          sample [B,4,h,w], timestep [B], encoder_hidden_states [B,S,D] -> out [B,4,h,w]
  vae_encoder   sample [B,3,H,W] in [-1,1]                           -> mean, logvar, out (= mean)
  vae_decoder   latents [B,4,h,w] (divided by the scaling factor)    -> out [B,3,H,W]
With --loss-grad (unet): input noise [B,4,h,w] -> loss = mean((out - noise)^2) and, per LoRA tensor,
  <kohya name>.lora_down.weight / .lora_up.weight (gradients of loss w.r.t. the file's tensors).`,
    )
    .action(async (flags: EvalFlags) => {
      try {
        const names = await runEval(flags);
        process.stdout.write(`${flags.out}: ${names.join(", ")}\n`);
      } catch (err) {
        reportFailure(err, false);
      }
    });
}
