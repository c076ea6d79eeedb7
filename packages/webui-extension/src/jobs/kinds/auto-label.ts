/**
 * "auto-label": the trainer's autoLabel (a WD14-style tagger: model.onnx + selected_tags.csv) over one dataset
 * of this service, in a child process (ONNX Runtime; a cancel kills it at once). Captions go where the dataset
 * keeps them, the same place the caption editor writes: its metadata.csv when it has one, else `.txt` sidecars.
 * autoLabel itself keeps a person's captions (edited in the grid, or never written by auto-label) unless
 * `overwrite` is true, and records its own in the dataset's `.lora-studio/autolabel.json`.
 *
 * The tagger folder is one the service was started with (`--tagger DIR`, by folder name or path), or an absolute
 * folder path in the request. Progress: one `progress` event per batch (batch_size, default 1: one per image).
 */
import { access } from "node:fs/promises";
import { basename, isAbsolute, join, resolve } from "node:path";
import { autoLabel } from "@lora-studio/trainer";
import { checkName, resolveInside } from "../../library/safe-path.ts";
import { type JobContext, type JobEnvironment, type JobKind, JobParamsError } from "../types.ts";

export interface AutoLabelParams {
  dataset: string;
  dir: string;
  /** The tagger folder; absent when only a captioner labels. */
  model?: string;
  /** An image-to-text captioner folder (the trainer's captioner: a sentence before the tags). */
  captioner?: string;
  format: "csv" | "txt";
  generalThreshold: number;
  characterThreshold: number;
  prefix: string;
  suffix: string;
  overwrite: boolean;
  batchSize: number;
}

const fail = (message: string): never => {
  throw new JobParamsError("auto-label", message);
};

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

function probability(v: unknown, name: string, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !(v >= 0 && v <= 1)) fail(`${name} must be a number between 0 and 1`);
  return v as number;
}

function text(v: unknown, name: string): string {
  if (v === undefined || v === null) return "";
  if (typeof v !== "string" || v.length > 1000) fail(`${name} must be a string of at most 1000 characters`);
  return (v as string).trim();
}

/** A configured tagger by folder name or path; else an absolute folder path; checked for its two files. */
async function taggerFolder(
  requested: unknown,
  configured: readonly string[],
  captioner: boolean,
): Promise<string | undefined> {
  let dir: string | undefined;
  if (requested === undefined || requested === null || requested === "") {
    if (configured.length === 0 && captioner) return undefined;
    if (configured.length === 0)
      fail(
        "no tagger model: start the service with --tagger DIR (a folder with model.onnx and selected_tags.csv) or send model: <absolute folder path>",
      );
    dir = configured[0];
  } else if (typeof requested !== "string") fail("model must be a folder name or an absolute path");
  else {
    dir = configured.find((c) => c === requested || basename(c) === requested);
    if (dir === undefined) {
      if (!isAbsolute(requested))
        fail(
          `model ${requested} is not one of this service's taggers (${configured.map((c) => basename(c)).join(", ") || "none configured"}) nor an absolute path`,
        );
      dir = resolve(requested);
    }
  }
  const folder = dir as string;
  for (const file of ["model.onnx", "selected_tags.csv"])
    if (!(await exists(join(folder, file))))
      fail(`${join(folder, file)} not found: a tagger folder holds model.onnx and selected_tags.csv`);
  return folder;
}

async function prepare(raw: unknown, env: JobEnvironment): Promise<AutoLabelParams> {
  const p = (raw ?? {}) as Record<string, unknown>;
  const dataset = checkName(p.dataset, "dataset");
  const dir = await resolveInside(env.datasetsDir, dataset, "dataset");
  if (!(await exists(dir))) fail(`no dataset ${dataset}`);
  if (p.overwrite !== undefined && typeof p.overwrite !== "boolean") fail("overwrite must be true or false");
  const batch = p.batch_size ?? 1;
  if (typeof batch !== "number" || !Number.isInteger(batch) || batch < 1 || batch > 64)
    fail("batch_size must be an integer from 1 to 64");
  let captioner: string | undefined;
  if (p.captioner !== undefined && p.captioner !== null && p.captioner !== "") {
    if (typeof p.captioner !== "string" || !isAbsolute(p.captioner))
      fail("captioner must be the absolute path of a captioner folder");
    captioner = resolve(p.captioner as string);
    if (!(await exists(join(captioner, "config.json"))))
      fail(`${captioner} has no config.json: not a captioner folder`);
  }
  return {
    dataset,
    dir,
    model: await taggerFolder(p.model, env.taggerDirs ?? [], captioner !== undefined),
    captioner,
    // The same place the caption editor reads and writes (datasets/datasets.ts).
    format: (await exists(join(dir, "metadata.csv"))) ? "csv" : "txt",
    generalThreshold: probability(p.threshold, "threshold", 0.35),
    characterThreshold: probability(p.character_threshold, "character_threshold", 0.85),
    prefix: text(p.prefix, "prefix"),
    suffix: text(p.suffix, "suffix"),
    overwrite: p.overwrite === true,
    batchSize: batch as number,
  };
}

async function run(ctx: JobContext) {
  const p = ctx.params as AutoLabelParams;
  const models = [p.captioner, p.model].filter((m) => m !== undefined).map((m) => basename(m));
  ctx.log(
    `labelling ${p.dataset} with ${models.join(" + ")} (${p.format === "csv" ? "metadata.csv" : ".txt sidecars"})`,
  );
  const report = await autoLabel(
    {
      input: p.dir,
      model: p.model,
      ...(p.captioner === undefined
        ? {}
        : { captioner: p.captioner, captionerOptions: { batchSize: p.batchSize } }),
      format: p.format,
      prefix: p.prefix,
      suffix: p.suffix,
      overwrite: p.overwrite,
      tags: { generalThreshold: p.generalThreshold, characterThreshold: p.characterThreshold },
      tagger: { batchSize: p.batchSize },
    },
    (e) => {
      if (e.type === "start") {
        ctx.log(
          `${e.total} pictures, ${e.toLabel} to label (${e.total - e.toLabel} keep a person's caption)`,
        );
        ctx.progress(0, e.toLabel, "loading the tagger");
      } else if (e.type === "progress") ctx.progress(e.done, e.total, `${e.done}/${e.total} labelled`);
      else ctx.log(e.message, "warn");
    },
  );
  const c = report.counts;
  ctx.log(
    `written ${c.written}, replaced ${c.replaced}, overwritten ${c.overwritten}, kept ${c.kept}, unchanged ${c.unchanged}, failed ${c.failed}`,
  );
  return {
    result: {
      dataset: p.dataset,
      counts: report.counts,
      images: report.images.map((im) => ({
        image: im.image,
        action: im.action,
        caption: im.caption ?? im.previous ?? "",
        error: im.error,
      })),
      models,
    },
  };
}

/** Captions and the manifest, inside the dataset folder. */
const writesTo = (params: unknown) => [{ dir: (params as AutoLabelParams).dir, recursive: true }];

export const kind: JobKind = { name: "auto-label", resumable: false, writesTo, prepare, run };
