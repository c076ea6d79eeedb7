/**
 * Hot-loading a LoRA a training job saved: the file is copied (atomically: temp file in the same folder +
 * rename, so the WebUI never lists a half-written LoRA) into the Lora folder's hot-load subfolder, with the
 * WebUI's sidecars next to it: `<stem>.preview.png` (the last sample grid, when the run renders samples) and
 * `<stem>.json`, the user metadata A1111 reads for the card (`activation text`, `preferred weight`, ...).
 * The caller then tells the service (ctx.loraWritten), which asks the WebUI to refresh its LoRA list.
 */
import { copyFile, mkdir, readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { atomicWriteFile, openSafetensors, withAtomicPath } from "@lora-studio/prompt-lora";

export const DEFAULT_LORA_SUBFOLDER = "lora-studio";

export interface HotLoadSettings {
  /** Absolute folder inside the Lora folder. */
  dir: string;
  /** Hot-load every saved LoRA (intermediate `-stepN` saves too), or only the final one. */
  every: boolean;
  activationText: string;
  preferredWeight: number;
  /** Shown on the card ("trained by lora-studio from ..."). */
  description: string;
}

export const stemOf = (file: string) => basename(file).replace(/\.safetensors$/i, "");

/** A1111's "sd version" values, from the kohya metadata the trainer writes (ss_v2, ss_base_model_version). */
async function sdVersion(loraPath: string): Promise<string> {
  const f = await openSafetensors(loraPath);
  try {
    const m = f.metadata;
    if (m.ss_base_model_version?.startsWith("sdxl")) return "SDXL";
    if (m.ss_v2 === "True" || m.ss_base_model_version?.startsWith("sd_v2")) return "SD2";
    return "SD1";
  } finally {
    await f.close();
  }
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  try {
    const v = JSON.parse(await readFile(path, "utf8")) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

async function copyAtomic(src: string, dest: string): Promise<void> {
  await withAtomicPath(dest, (tmp) => copyFile(src, tmp));
}

/**
 * Copies `loraPath` into settings.dir with its sidecars; returns the LoRA's new path. Keys a user added to
 * an existing `<stem>.json` (notes, negative text, ...) are kept; ours are refreshed.
 */
export async function installLora(
  loraPath: string,
  settings: HotLoadSettings,
  previewPng: string | undefined,
): Promise<string> {
  await mkdir(settings.dir, { recursive: true });
  const stem = stemOf(loraPath);
  const dest = join(settings.dir, `${stem}.safetensors`);
  if (previewPng !== undefined) await installPreview(dest, previewPng);
  const jsonPath = join(settings.dir, `${stem}.json`);
  const userMetadata = {
    description: settings.description,
    "sd version": await sdVersion(loraPath),
    "activation text": settings.activationText,
    "preferred weight": settings.preferredWeight,
    "negative text": "",
    notes: "",
  };
  const merged = { ...userMetadata, ...(await readJson(jsonPath)), ...pick(userMetadata) };
  await atomicWriteFile(jsonPath, `${JSON.stringify(merged, null, 4)}\n`);
  // The LoRA last: when the WebUI can see it, its card's sidecars are already there.
  await copyAtomic(loraPath, dest);
  return dest;
}

/** The keys we own in `<stem>.json` (the others are the user's). */
function pick(m: Record<string, unknown>): Record<string, unknown> {
  const { description, "sd version": v, "activation text": a, "preferred weight": w } = m;
  return { description, "sd version": v, "activation text": a, "preferred weight": w };
}

/** `<stem>.preview.png` next to the LoRA `dest` (A1111's preview naming). */
async function installPreview(dest: string, previewPng: string): Promise<string> {
  const preview = join(dirname(dest), `${stemOf(dest)}.preview.png`);
  await copyAtomic(previewPng, preview);
  return preview;
}

/**
 * The activation text of a run: the trigger tag(s) its captions start with. The leading `max(1, keep_tokens)`
 * comma-separated tags that most captions share (at least half of them) are the trigger words the LoRA
 * learnt; without such a shared start (or without captions) the output name is the best hint.
 */
export function activationTextFrom(captions: string[], keepTokens: number, outputName: string): string {
  const n = Math.max(1, keepTokens);
  const counts = new Map<string, number>();
  let captioned = 0;
  for (const c of captions) {
    const tags = c
      .split(",")
      .map((t) => t.trim())
      .filter((t) => t !== "");
    if (tags.length === 0) continue;
    captioned++;
    const lead = tags.slice(0, n).join(", ");
    counts.set(lead, (counts.get(lead) ?? 0) + 1);
  }
  let best: [string, number] | undefined;
  for (const e of counts) if (best === undefined || e[1] > best[1]) best = e;
  return best !== undefined && best[1] * 2 >= captioned ? best[0] : outputName;
}
