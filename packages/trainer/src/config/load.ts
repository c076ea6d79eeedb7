/**
 * loadConfig(path): reads a YAML training config, validates it, and resolves it. Every problem is reported at
 * once, each with the file, the key path and the line/column of the key or value (taken from the YAML node
 * ranges), and unknown keys get a "did you mean" suggestion. Relative paths resolve against the config file's
 * folder, so a config works the same from any working directory.
 */
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import type { z } from "zod";
import { ConfigError, type ConfigIssue, suggest } from "./errors.ts";
import { CONFIG_KEYS, configSchema, type RawConfig, type TrainConfig } from "./schema.ts";

export async function loadConfig(path: string): Promise<TrainConfig> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, [
      { keyPath: "", message: `cannot read the config: ${(err as Error).message}` },
    ]);
  }
  return parseConfig(text, file);
}

/** Parses config text as if it were the file `file` (used for position info and relative paths). */
export function parseConfig(text: string, file: string): TrainConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const position = (offset: number) => lineCounter.linePos(offset);
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => {
        const { line, col } = position(e.pos[0]);
        return { keyPath: "", message: `YAML syntax: ${e.message.split("\n")[0]}`, line, column: col };
      }),
    );
  }
  const data: unknown = doc.toJS() ?? {};
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ConfigError(file, [
      { keyPath: "", message: "the config must be a mapping of key: value lines" },
    ]);
  }
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) {
    throw new ConfigError(file, toIssues(parsed.error.issues, data, doc.contents, position));
  }
  const issues = crossFieldIssues(parsed.data);
  if (issues.length > 0) {
    throw new ConfigError(
      file,
      issues.map((i) => ({ ...i, ...locate(doc.contents, [i.keyPath], position, "value") })),
    );
  }
  return resolveConfig(parsed.data, file);
}

/** Makes paths absolute (relative to the config's folder) and fills in the derived defaults. */
export function resolveConfig(raw: RawConfig, configFile?: string): TrainConfig {
  const base = configFile === undefined ? process.cwd() : dirname(configFile);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  let samplePrompts: string[] = [];
  if (Array.isArray(raw.sample_prompts)) samplePrompts = raw.sample_prompts;
  else if (typeof raw.sample_prompts === "string")
    samplePrompts = readPromptFile(abs(raw.sample_prompts), configFile);
  return {
    ...raw,
    train_data_dir: abs(raw.train_data_dir),
    metadata_path: raw.metadata_path === undefined ? undefined : abs(raw.metadata_path),
    base_model: abs(raw.base_model),
    output_dir: abs(raw.output_dir),
    resume: raw.resume === undefined ? undefined : abs(raw.resume),
    lora_alpha: raw.lora_alpha ?? raw.lora_rank,
    conv_alpha: raw.conv_rank === undefined ? undefined : (raw.conv_alpha ?? raw.conv_rank),
    sample_prompts: samplePrompts,
    config_path: configFile,
  };
}

/** One prompt per line; blank lines and "#" comments skipped (kohya's prompt-file convention). */
function readPromptFile(path: string, configFile: string | undefined): string[] {
  try {
    return readFileSync(path, "utf8")
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
  } catch (err) {
    throw new ConfigError(configFile ?? path, [
      {
        keyPath: "sample_prompts",
        message: `cannot read the prompt file ${path}: ${(err as Error).message}`,
      },
    ]);
  }
}

function crossFieldIssues(c: RawConfig): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  if (c.min_bucket_reso > c.max_bucket_reso) {
    out.push({
      keyPath: "min_bucket_reso",
      message: `${c.min_bucket_reso} is above max_bucket_reso ${c.max_bucket_reso}`,
    });
  }
  if (c.enable_bucket && Math.max(...c.resolution) > c.max_bucket_reso) {
    out.push({
      keyPath: "max_bucket_reso",
      message: `must be at least the resolution's larger side (${Math.max(...c.resolution)})`,
    });
  }
  // Only the VAE's factor 8 is checked here; the model-specific factor (8 x 2^UNet downsamplings: 64 for SD1,
  // 32 for the tiny test model) is checked by the trainer once the model is loaded.
  if (c.resolution.some((r) => r % 8 !== 0)) {
    out.push({
      keyPath: "resolution",
      message: "both sides must be multiples of 8 (the VAE downsamples by 8)",
    });
  }
  if (c.bucket_reso_steps % 8 !== 0) {
    out.push({ keyPath: "bucket_reso_steps", message: "must be a multiple of 8 (the VAE downsamples by 8)" });
  }
  for (const key of ["min_bucket_reso", "max_bucket_reso"] as const) {
    if (c[key] % c.bucket_reso_steps !== 0) {
      out.push({ keyPath: key, message: `must be a multiple of bucket_reso_steps (${c.bucket_reso_steps})` });
    }
  }
  if (c.conv_alpha !== undefined && c.conv_rank === undefined) {
    out.push({
      keyPath: "conv_alpha",
      message: "set conv_rank too (conv_alpha only applies to LoCon conv layers)",
    });
  }
  if (c.text_encoder_lr !== undefined && !c.train_text_encoder) {
    out.push({ keyPath: "text_encoder_lr", message: "is set but train_text_encoder is false" });
  }
  return out;
}

type Position = (offset: number) => { line: number; col: number };

function toIssues(
  zodIssues: z.core.$ZodIssue[],
  data: unknown,
  root: unknown,
  position: Position,
): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of zodIssues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const hint = suggest(key, CONFIG_KEYS);
        const path = [...issue.path, key];
        out.push({
          keyPath: keyPathString(path),
          message: `unknown key${hint === undefined ? "" : ` (did you mean "${hint}"?)`}`,
          ...locate(root, path, position, "key"),
        });
      }
      continue;
    }
    let message = issue.message;
    if (issue.code === "invalid_value") {
      const given = valueAt(data, issue.path);
      const options = issue.values.filter((v): v is string => typeof v === "string");
      const hint = typeof given === "string" ? suggest(given, options) : undefined;
      if (hint !== undefined) message += ` (did you mean "${hint}"?)`;
    }
    out.push({ keyPath: keyPathString(issue.path), message, ...locate(root, issue.path, position, "value") });
  }
  return out.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v = data;
  for (const p of path)
    v = typeof v === "object" && v !== null ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

function keyPathString(path: readonly PropertyKey[]): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s === "" ? String(p) : `.${String(p)}`;
  return s;
}

/** Finds the node at `path` and returns the 1-based line/column of its key or value. */
function locate(
  root: unknown,
  path: readonly PropertyKey[],
  position: Position,
  want: "key" | "value",
): { line?: number; column?: number } {
  let node = root as Node | null | undefined;
  let range: [number, number, number] | null | undefined = node?.range;
  for (let i = 0; i < path.length && node; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      const keyNode = pair.key as Node;
      const valueNode = pair.value as Node | null;
      range = last && want === "key" ? keyNode.range : (valueNode?.range ?? keyNode.range);
      node = valueNode;
    } else if (isSeq(node) && typeof seg === "number") {
      const item = node.items[seg] as Node | undefined;
      if (!item) break;
      range = item.range;
      node = item;
    } else break;
  }
  if (!range) return {};
  const { line, col } = position(range[0]);
  return { line, column: col };
}
