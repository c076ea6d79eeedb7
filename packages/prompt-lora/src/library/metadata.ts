/**
 * What a LoRA file says about itself, and what sits next to it:
 *  - `__metadata__` of the file: kohya's `ss_*` keys and the SAI model spec's `modelspec.*` keys, where
 *    several values are JSON serialized into a string (ss_tag_frequency, ss_dataset_dirs, ss_datasets,
 *    ss_bucket_info, ...): those are decoded so a caller gets objects, not escaped text;
 *  - the base-model family from that metadata (A1111's NetworkOnDisk.detect_version reads
 *    ss_base_model_version and ss_v2; modelspec.architecture is the model spec's equivalent);
 *  - the user metadata sidecar `<stem>.json` written by A1111's "edit metadata" dialog;
 *  - the preview image A1111's extra-networks page shows (find_preview).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ModelFamily } from "../adapters/types.ts";

/** Metadata values that look like JSON objects or arrays are parsed; everything else stays a string. */
export function decodeMetadata(metadata: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(metadata)) {
    out[key] = isTrainingKey(key) ? decodeValue(value) : value;
  }
  return out;
}

function isTrainingKey(key: string): boolean {
  return key.startsWith("ss_") || key.startsWith("modelspec.");
}

function decodeValue(value: string): unknown {
  const t = value.trimStart();
  if (!(t.startsWith("{") || t.startsWith("["))) return value;
  try {
    return JSON.parse(value);
  } catch {
    // Some trainers write Python reprs ("{'a': 1}"), which are not JSON: keep the text as it is.
    return value;
  }
}

export type FamilySource = "ss_base_model_version" | "ss_v2" | "modelspec.architecture" | "keys" | "none";

/**
 * Family from the metadata with the key it came from (for display), or null when the metadata does not
 * say. Same prefixes as adapters/family.ts, which the header summary applies before looking at shapes.
 */
export function familyFromLoraMetadata(
  metadata: Record<string, string>,
): { family: ModelFamily; source: FamilySource } | null {
  const version = (metadata.ss_base_model_version ?? "").toLowerCase();
  if (version.startsWith("sdxl")) return { family: "sdxl", source: "ss_base_model_version" };
  if (version.startsWith("sd_v2") || version.startsWith("sd_2"))
    return { family: "sd2", source: "ss_base_model_version" };
  if (version.startsWith("sd_v1") || version.startsWith("sd_1"))
    return { family: "sd1", source: "ss_base_model_version" };
  const arch = (metadata["modelspec.architecture"] ?? "").toLowerCase();
  if (arch.startsWith("stable-diffusion-xl")) return { family: "sdxl", source: "modelspec.architecture" };
  if (arch.startsWith("stable-diffusion-v2")) return { family: "sd2", source: "modelspec.architecture" };
  if (arch.startsWith("stable-diffusion-v1")) return { family: "sd1", source: "modelspec.architecture" };
  if (metadata.ss_v2 === "True") return { family: "sd2", source: "ss_v2" };
  return null;
}

/** The keys A1111's user-metadata editor writes into `<stem>.json`, plus everything else kept raw. */
export interface UserMetadata {
  description?: string;
  notes?: string;
  /** "SD1" | "SD2" | "SDXL" | "Unknown" in A1111's editor. */
  sdVersion?: string;
  activationText?: string;
  preferredWeight?: number;
  negativeText?: string;
  /** The whole file as parsed. */
  raw: Record<string, unknown>;
}

export interface SidecarResult {
  userMetadata: UserMetadata | null;
  /** Why the sidecar could not be used (invalid JSON, not an object), or null. */
  error: string | null;
}

export async function readUserMetadata(
  folder: string,
  stem: string,
  files: Set<string>,
): Promise<SidecarResult> {
  const name = `${stem}.json`;
  if (!files.has(name)) return { userMetadata: null, error: null };
  const path = join(folder, name);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    return { userMetadata: null, error: `${path}: ${(err as Error).message}` };
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return { userMetadata: null, error: `${path}: not a JSON object` };
  }
  const r = raw as Record<string, unknown>;
  const text = (k: string): string | undefined => (typeof r[k] === "string" ? (r[k] as string) : undefined);
  const user: UserMetadata = { raw: r };
  const set = <K extends keyof UserMetadata>(k: K, v: UserMetadata[K] | undefined) => {
    if (v !== undefined) user[k] = v;
  };
  set("description", text("description"));
  set("notes", text("notes"));
  set("sdVersion", text("sd version"));
  set("activationText", text("activation text"));
  set("negativeText", text("negative text"));
  const weight = r["preferred weight"];
  // The editor stores a number; hand-edited files sometimes hold a numeric string.
  if (typeof weight === "number") user.preferredWeight = weight;
  else if (typeof weight === "string" && weight.trim() !== "" && Number.isFinite(Number(weight))) {
    user.preferredWeight = Number(weight);
  }
  return { userMetadata: user, error: null };
}

const PREVIEW_EXTENSIONS = ["png", "jpg", "jpeg", "webp", "gif"];

/** A1111's find_preview order: for each extension, `<stem>.<ext>` then `<stem>.preview.<ext>`. */
export function findPreview(folder: string, stem: string, files: Set<string>): string | null {
  for (const ext of PREVIEW_EXTENSIONS) {
    for (const name of [`${stem}.${ext}`, `${stem}.preview.${ext}`]) {
      if (files.has(name)) return join(folder, name);
    }
  }
  return null;
}
