/**
 * "lora-merge": stack one or more LoRAs of the Lora folder with multipliers (exact, prompt-lora's
 * stackAdapters), optionally compress to a rank (compressAdapter: this is "resize"), and write the result as
 * kohya or PEFT safetensors in a chosen dtype (with one input and no rank: "convert"). The output lands in the
 * Lora folder with a `<stem>.json` user-metadata sidecar in the WebUI's shape, so it is hot-loaded.
 */
import { access, mkdir, readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { StackEntry } from "@lora-studio/prompt-lora";
import {
  atomicWriteFile,
  compressAdapter,
  readAdapter,
  stackAdapters,
  writeAdapter,
} from "@lora-studio/prompt-lora";
import { PathError, resolveInside, toRelative } from "../../library/safe-path.ts";
import { type JobContext, type JobEnvironment, type JobKind, JobParamsError } from "../types.ts";

export interface LoraMergeParams {
  inputs: Array<{ path: string; te: number; unet: number }>;
  /** Absolute output path ending in .safetensors. */
  output: string;
  rank: number | null;
  format: "kohya" | "peft";
  dtype: "F32" | "F16" | "BF16";
  loraDir: string;
}

const num = (v: unknown, name: string, fallback: number): number => {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v))
    throw new JobParamsError("lora-merge", `${name} must be a number`);
  return v;
};

async function prepare(raw: unknown, env: JobEnvironment): Promise<LoraMergeParams> {
  const p = (raw ?? {}) as Record<string, unknown>;
  if (!Array.isArray(p.inputs) || p.inputs.length === 0) {
    throw new JobParamsError("lora-merge", "inputs must be a non-empty list of { path, te?, unet? }");
  }
  const inputs: LoraMergeParams["inputs"] = [];
  for (const [i, item] of (p.inputs as unknown[]).entries()) {
    const it = (item ?? {}) as Record<string, unknown>;
    const abs = await resolveInside(env.loraDir, it.path, `inputs[${i}].path`);
    if (!abs.toLowerCase().endsWith(".safetensors")) {
      throw new JobParamsError(
        "lora-merge",
        `inputs[${i}].path: ${String(it.path)} is not a .safetensors file`,
      );
    }
    await access(abs).catch(() => {
      throw new JobParamsError(
        "lora-merge",
        `inputs[${i}].path: ${String(it.path)} does not exist in the Lora folder`,
      );
    });
    const te = num(it.te, `inputs[${i}].te`, 1);
    inputs.push({ path: abs, te, unet: num(it.unet, `inputs[${i}].unet`, te) });
  }
  if (typeof p.output !== "string" || p.output.trim() === "") {
    throw new JobParamsError("lora-merge", "output must be a name like 'merged' or 'subfolder/merged'");
  }
  const outRel = p.output.endsWith(".safetensors") ? p.output : `${p.output}.safetensors`;
  const output = await resolveInside(env.loraDir, outRel, "output");
  const exists = await access(output).then(
    () => true,
    () => false,
  );
  if (exists && p.overwrite !== true) {
    throw new JobParamsError(
      "lora-merge",
      `output ${outRel} already exists (pass overwrite: true to replace it)`,
    );
  }
  const rank = p.rank === undefined || p.rank === null ? null : num(p.rank, "rank", 0);
  if (rank !== null && (!Number.isInteger(rank) || rank < 1)) {
    throw new JobParamsError("lora-merge", `rank must be a positive integer, got ${rank}`);
  }
  const format = p.format ?? "kohya";
  if (format !== "kohya" && format !== "peft")
    throw new JobParamsError("lora-merge", "format must be kohya or peft");
  const dtype = p.dtype ?? "F16";
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16") {
    throw new JobParamsError("lora-merge", "dtype must be F32, F16 or BF16");
  }
  return { inputs, output, rank, format, dtype, loraDir: env.loraDir };
}

/** The `activation text` of an input's `<stem>.json`, if it has one. */
async function activationText(loraPath: string): Promise<string | null> {
  const json = join(dirname(loraPath), `${basename(loraPath).replace(/\.safetensors$/i, "")}.json`);
  try {
    const v = JSON.parse(await readFile(json, "utf8")) as Record<string, unknown>;
    return typeof v["activation text"] === "string" && v["activation text"] !== ""
      ? v["activation text"]
      : null;
  } catch {
    return null;
  }
}

const SD_VERSION: Record<string, string> = { sd1: "SD1", sd2: "SD2", sdxl: "SDXL" };

async function run(ctx: JobContext) {
  const p = ctx.params as LoraMergeParams;
  // Re-checked in the worker: the folder may have changed between queueing and running.
  for (const input of p.inputs) {
    if ((await resolveInside(p.loraDir, toRelative(p.loraDir, input.path))) !== input.path) {
      throw new PathError(input.path, "moved outside the Lora folder");
    }
  }
  const entries: StackEntry[] = [];
  const total = p.inputs.length + 2;
  for (const [i, input] of p.inputs.entries()) {
    if (ctx.stopRequested() === "cancel") throw new Error("cancelled");
    ctx.progress(i, total, `reading ${basename(input.path)}`);
    entries.push({ adapter: await readAdapter(input.path), te: input.te, unet: input.unet });
  }
  ctx.progress(p.inputs.length, total, "stacking");
  let adapter = stackAdapters(entries);
  let report: unknown = null;
  if (p.rank !== null) {
    ctx.log(`compressing ${adapter.modules.length} modules to rank ${p.rank}`);
    const compressed = compressAdapter(adapter, p.rank);
    adapter = compressed.adapter;
    report = { totalRelativeError: compressed.report.totalRelativeError };
    ctx.log(`relative error ${compressed.report.totalRelativeError.toExponential(3)}`);
  }
  if (ctx.stopRequested() === "cancel") throw new Error("cancelled");
  const stem = basename(p.output).replace(/\.safetensors$/i, "");
  adapter.metadata = { ...adapter.metadata, ss_output_name: stem };
  ctx.progress(p.inputs.length + 1, total, `writing ${basename(p.output)}`);
  await mkdir(dirname(p.output), { recursive: true });
  await writeAdapter(p.output, adapter, { format: p.format, dtype: p.dtype });
  const texts = (await Promise.all(p.inputs.map((i) => activationText(i.path)))).filter((t) => t !== null);
  const userMetadata = {
    description: `lora-studio: ${p.inputs.map((i) => `${toRelative(p.loraDir, i.path)} (te ${i.te}, unet ${i.unet})`).join(" + ")}${p.rank === null ? "" : `, rank ${p.rank}`}`,
    "sd version": SD_VERSION[adapter.family] ?? "Unknown",
    "activation text": texts.join(", "),
    "preferred weight": 1,
    notes: "",
  };
  await atomicWriteFile(
    join(dirname(p.output), `${stem}.json`),
    `${JSON.stringify(userMetadata, null, 4)}\n`,
  );
  ctx.progress(total, total, "done");
  return {
    result: {
      output: toRelative(p.loraDir, p.output),
      modules: adapter.modules.length,
      family: adapter.family,
      report,
    },
    loraFiles: [p.output],
  };
}

/** The output and its `<stem>.json`, next to other people's LoRAs. */
const writesTo = (params: unknown) => {
  const p = params as LoraMergeParams;
  const stem = basename(p.output).replace(/\.safetensors$/i, "");
  return [{ dir: dirname(p.output), recursive: false, namePrefixes: [stem] }];
};

export const kind: JobKind = { name: "lora-merge", resumable: false, writesTo, prepare, run };
