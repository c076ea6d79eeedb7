/**
 * auto-label: captions every picture of a dataset folder with an image-to-text captioner (captioner.ts), a
 * WD14-style tagger (tagger.ts) or both ("caption, tag1, tag2") and writes them to metadata.csv or sidecar
 * files, adding the user's prefix/suffix tags (the "style keywords" step).
 *
 * Before any inference each picture's current caption is classified (manifest.ts): missing and auto-label's
 * own captions are (re)written, a person's captions are kept unless `overwrite`; kept pictures are not even
 * run through the model. In CSV mode a picture without a row is judged by its sidecar (captionExtension), since
 * that is what the trainer reads for it and a new row would hide it. Unreadable pictures are listed and skipped. Captions and the manifest are flushed
 * after every batch, so an interrupted run keeps what it did. `dryRun` computes everything and writes nothing.
 */
import { basename, isAbsolute, join, resolve } from "node:path";
import { discoverImages, type FoundImage } from "../dataset/discover.ts";
import { type CaptionStore, CsvStore, SidecarStore } from "./caption-store.ts";
import { type Caption, Captioner, type CaptionerOptions } from "./captioner.ts";
import { maxNewTokensOf } from "./generate.ts";
import { type CaptionState, captionHash, captionState, readManifest, writeManifest } from "./manifest.ts";
import { loadProcessedRgb, loadSquareRgb } from "./preprocess.ts";
import { type TaggerOptions, WdTagger } from "./tagger.ts";
import {
  composeCaption,
  DEFAULT_TAG_OPTIONS,
  type ScoredTag,
  selectTags,
  splitTags,
  type TagSelectOptions,
} from "./tags.ts";

export interface AutoLabelOptions {
  input: string;
  /** Tagger folder (model.onnx + selected_tags.csv). At least one of model and captioner. */
  model?: string;
  /** Captioner folder (Hugging Face optimum ONNX layout, see captioner.ts). */
  captioner?: string;
  captionerOptions?: CaptionerOptions;
  format: "csv" | "txt";
  /** The CSV to write (format csv). Default: <input>/metadata.csv. */
  output?: string;
  captionExtension?: string;
  prefix?: string;
  suffix?: string;
  overwrite?: boolean;
  dryRun?: boolean;
  tags?: Partial<TagSelectOptions>;
  tagger?: TaggerOptions;
}

export type ImageAction =
  | "written" // no caption before
  | "replaced" // auto-label's own earlier caption
  | "overwritten" // a person's caption, replaced because of --overwrite
  | "kept" // a person's caption, left alone
  | "unchanged" // auto-label's caption, and the new one is the same
  | "failed";

export interface ImageResult {
  image: string;
  location: string;
  action: ImageAction;
  caption?: string;
  previous?: string;
  tags?: ScoredTag[];
  /** The captioner's sentence (before tags, prefix and suffix). */
  sentence?: string;
  error?: string;
}

export interface AutoLabelReport {
  input: string;
  target: string;
  format: "csv" | "txt";
  dryRun: boolean;
  model?: {
    path: string;
    size: number;
    layout: string;
    batch: number;
    tags: number;
    provider: string;
    sigmoidApplied?: boolean;
  };
  captioner?: {
    path: string;
    decoder: string;
    decoderKind: "plain" | "merged";
    kvCache: boolean;
    modelType: string;
    width: number;
    height: number;
    numBeams: number;
    maxNewTokens: number;
    batch: number;
    provider: string;
  };
  images: ImageResult[];
  counts: Record<ImageAction, number>;
  skippedFiles: { path: string; reason: string }[];
}

export type AutoLabelEvent =
  | { type: "start"; total: number; toLabel: number }
  | { type: "progress"; done: number; total: number }
  | { type: "warning"; message: string };

const ACTIONS: ImageAction[] = ["written", "replaced", "overwritten", "kept", "unchanged", "failed"];

export async function autoLabel(
  opts: AutoLabelOptions,
  onEvent: (e: AutoLabelEvent) => void = () => {},
): Promise<AutoLabelReport> {
  if (opts.model === undefined && opts.captioner === undefined)
    throw new Error("auto-label needs a tagger (model) or a captioner folder, or both");
  const input = resolve(opts.input);
  const tagOpts: TagSelectOptions = { ...DEFAULT_TAG_OPTIONS, ...withoutUndefined(opts.tags ?? {}) };
  const prefix = splitTags(opts.prefix);
  const suffix = splitTags(opts.suffix);
  const discovery = await discoverImages(input, 1);
  const images = discovery.images;
  const sidecars = new SidecarStore(input, opts.captionExtension ?? ".txt");
  const store: CaptionStore =
    opts.format === "csv" ? await CsvStore.open(resolveOutput(input, opts.output), input, images) : sidecars;
  const manifest = await readManifest(input);

  // Classify first: a person's captions are never sent through the model unless they may be replaced.
  const results = new Map<string, ImageResult>();
  const states = new Map<string, CaptionState>();
  const todo: FoundImage[] = [];
  for (const image of images) {
    let location = store.locationKey(image);
    let previous = await store.current(image);
    // The trainer reads a sidecar for pictures the CSV does not list; a CSV row would hide it, so in CSV
    // mode that sidecar is the picture's current caption.
    if (previous === undefined && sidecars !== store) {
      location = sidecars.locationKey(image);
      previous = await sidecars.current(image);
    }
    const state = captionState(previous, manifest.captions[location]);
    states.set(image.path, state);
    results.set(image.path, {
      image: image.relPath,
      location: store.describe(image),
      action: "kept",
      previous,
    });
    if (state !== "human" || opts.overwrite) todo.push(image);
  }
  onEvent({ type: "start", total: images.length, toLabel: todo.length });

  const warn = (message: string) => onEvent({ type: "warning", message });
  const models = await loadModels(opts, warn);
  const { tagger, captioner } = models;
  const source = [
    captioner && `captioner:${basename(resolve(opts.captioner!))}`,
    tagger && `wd14-tagger:${basename(resolve(opts.model!))}`,
  ]
    .filter(Boolean)
    .join("+");
  try {
    const batch = Math.min(tagger?.info.batch ?? Infinity, captioner?.info.batch ?? Infinity);
    let done = 0;
    for (let i = 0; i < todo.length; i += batch) {
      const group = todo.slice(i, i + batch);
      const tagPixels: Uint8Array[] = [];
      const capPixels: Uint8Array[] = [];
      const ok: FoundImage[] = [];
      for (const image of group) {
        try {
          const t = tagger && (await loadSquareRgb(image.path, tagger.info.size));
          const c = captioner && (await loadProcessedRgb(image.path, captioner.info.config.image));
          if (t) tagPixels.push(t);
          if (c) capPixels.push(c);
          ok.push(image);
        } catch (err) {
          const r = results.get(image.path)!;
          r.action = "failed";
          r.error = (err as Error).message;
          warn(`skipped ${r.error}`);
        }
      }
      let scores: Float32Array[] = [];
      let sentences: Caption[] = [];
      try {
        if (tagger && ok.length > 0) scores = await tagger.predict(tagPixels);
        if (captioner && ok.length > 0) sentences = await captioner.caption(capPixels);
      } catch (err) {
        // A model failing on one batch (e.g. a provider running out of memory) fails those pictures only.
        for (const image of ok) {
          const r = results.get(image.path)!;
          r.action = "failed";
          r.error = `${image.relPath}: ${(err as Error).message}`;
        }
        warn(`batch of ${ok.length} failed: ${(err as Error).message}`);
        ok.length = 0;
      }
      for (const [n, image] of ok.entries()) {
        const tags = tagger ? selectTags(scores[n], tagger.info.tags, tagOpts) : [];
        const sentence = captioner ? sentences[n].text : undefined;
        const caption = composeCaption(
          [...(sentence ? [sentence] : []), ...tags.map((t) => t.text)],
          prefix,
          suffix,
        );
        const r = results.get(image.path)!;
        if (tagger) r.tags = tags;
        if (captioner) r.sentence = sentence;
        r.caption = caption;
        const state = states.get(image.path)!;
        const same = r.previous !== undefined && captionHash(r.previous) === captionHash(caption);
        r.action =
          state === "missing"
            ? "written"
            : state === "human"
              ? "overwritten"
              : same
                ? "unchanged"
                : "replaced";
        if (opts.dryRun || r.action === "unchanged") continue;
        await store.set(image, caption);
        manifest.captions[store.locationKey(image)] = {
          sha256: captionHash(caption),
          source,
          writtenAt: new Date().toISOString(),
        };
      }
      if (!opts.dryRun) {
        await store.flush();
        await writeManifest(input, manifest);
      }
      done += group.length;
      onEvent({ type: "progress", done, total: todo.length });
    }
  } finally {
    await tagger?.release();
    await captioner?.release();
  }

  const list = images.map((image) => results.get(image.path)!);
  const counts = Object.fromEntries(ACTIONS.map((a) => [a, 0])) as Record<ImageAction, number>;
  for (const r of list) counts[r.action]++;
  return {
    input,
    target: store instanceof CsvStore ? store.csvPath : `sidecar files (${opts.captionExtension ?? ".txt"})`,
    format: opts.format,
    dryRun: opts.dryRun ?? false,
    model: tagger && {
      path: tagger.info.modelPath,
      size: tagger.info.size,
      layout: tagger.info.layout,
      batch: tagger.info.batch,
      tags: tagger.info.tags.length,
      provider: tagger.info.provider,
      sigmoidApplied: tagger.appliesSigmoid,
    },
    captioner: captioner && {
      path: captioner.info.encoderPath,
      decoder: captioner.info.decoderPath,
      decoderKind: captioner.info.decoderKind,
      kvCache: captioner.info.kvCache,
      modelType: captioner.info.modelType,
      width: captioner.info.config.image.width,
      height: captioner.info.config.image.height,
      numBeams: captioner.info.generation.numBeams,
      maxNewTokens: maxNewTokensOf(captioner.info.generation),
      batch: captioner.info.batch,
      provider: captioner.info.provider,
    },
    images: list,
    counts,
    skippedFiles: discovery.skipped,
  };
}

/** Loads the requested models; the first one is released again when the second fails to load. */
async function loadModels(
  opts: AutoLabelOptions,
  warn: (message: string) => void,
): Promise<{ tagger?: WdTagger; captioner?: Captioner }> {
  const tagger =
    opts.model === undefined
      ? undefined
      : await WdTagger.load(resolve(opts.model), {
          ...opts.tagger,
          onMessage: opts.tagger?.onMessage ?? warn,
        });
  try {
    const captioner =
      opts.captioner === undefined
        ? undefined
        : await Captioner.load(resolve(opts.captioner), {
            ...opts.captionerOptions,
            onMessage: opts.captionerOptions?.onMessage ?? warn,
          });
    return { tagger, captioner };
  } catch (err) {
    await tagger?.release();
    throw err;
  }
}

function resolveOutput(input: string, output: string | undefined): string {
  if (output === undefined) return join(input, "metadata.csv");
  return isAbsolute(output) ? output : resolve(output);
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
