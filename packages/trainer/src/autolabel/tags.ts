/**
 * The tag side of a WD14-style tagger: the label file (`selected_tags.csv`: tag_id,name,category,count, one row
 * per model output, in output order), choosing tags from the model's probabilities, and writing them the way
 * the WebUI prompt syntax needs them.
 *
 * Categories (Danbooru's numbering, as SmilingWolf's label files use it): 9 rating, 4 character, 0 general.
 * Other categories, when a label file has them, are treated as general tags.
 */
import { readFile } from "node:fs/promises";
import { parseCsv } from "../dataset/csv.ts";

export type TagCategory = "rating" | "character" | "general";

export interface TagInfo {
  name: string;
  category: TagCategory;
}

export class TagFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "TagFileError";
  }
}

export async function readSelectedTags(path: string): Promise<TagInfo[]> {
  const text = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
    throw new TagFileError(path, `cannot read the tag list (${e.code ?? e.message})`);
  });
  const rows = parseCsv(text, path);
  if (rows.length === 0) throw new TagFileError(path, "the tag list is empty");
  const header = rows[0].map((h) => h.trim().toLowerCase());
  const nameCol = header.indexOf("name");
  const catCol = header.indexOf("category");
  if (nameCol < 0 || catCol < 0) {
    throw new TagFileError(
      path,
      `expected a header with "name" and "category" columns, got "${rows[0].join(",")}"`,
    );
  }
  const tags: TagInfo[] = [];
  for (let i = 1; i < rows.length; i++) {
    const row = rows[i];
    if (row.length === 1 && row[0].trim() === "") continue;
    const name = row[nameCol]?.trim() ?? "";
    const code = Number(row[catCol]);
    if (name === "" || !Number.isInteger(code)) {
      throw new TagFileError(
        path,
        `row ${i + 1}: needs a name and an integer category, got "${row.join(",")}"`,
      );
    }
    tags.push({ name, category: code === 9 ? "rating" : code === 4 ? "character" : "general" });
  }
  return tags;
}

export interface TagFormatOptions {
  /** "long_hair" -> "long hair"; kaomoji such as "^_^" keep their underscores. Default true. */
  replaceUnderscores: boolean;
  /** "(" -> "\(" so the WebUI does not read the tag as attention weighting. Default true. */
  escapeParentheses: boolean;
}

export interface TagSelectOptions extends TagFormatOptions {
  generalThreshold: number;
  characterThreshold: number;
  /** Adds the most probable rating tag (general, sensitive, questionable, explicit) first. Default false. */
  includeRating: boolean;
  /** At most this many model tags per caption; the least probable general tags go first. */
  maxTags?: number;
  /** Tags never written, compared loosely (case, underscores/spaces and escapes ignored). */
  exclude: readonly string[];
}

export const DEFAULT_TAG_OPTIONS: TagSelectOptions = {
  generalThreshold: 0.35,
  characterThreshold: 0.85,
  includeRating: false,
  exclude: [],
  replaceUnderscores: true,
  escapeParentheses: true,
};

export interface ScoredTag {
  /** The label file's name, e.g. "hatsune_miku_(cosplay)". */
  name: string;
  /** As written into the caption, e.g. "hatsune miku \(cosplay\)". */
  text: string;
  category: TagCategory;
  score: number;
}

/**
 * Emoticon tags ("^_^", "o_o", "(o)_(o)", "||_||") are drawings made of characters: replacing their
 * underscore changes the face. Recognised by shape rather than a fixed list: an underscore and no two letters
 * in a row (every real word tag with an underscore has a word of two or more letters).
 */
export function isKaomoji(name: string): boolean {
  return name.includes("_") && !/\p{L}\p{L}/u.test(name);
}

export function formatTag(name: string, opts: TagFormatOptions): string {
  let text = name;
  if (opts.replaceUnderscores && !isKaomoji(name)) text = text.replaceAll("_", " ");
  if (opts.escapeParentheses) text = text.replace(/(?<!\\)([()])/g, "\\$1");
  return text;
}

/** The loose comparison form: lower case, underscores as spaces, escapes removed, single spaces. */
export function tagKey(tag: string): string {
  return tag
    .replace(/\\([()[\]])/g, "$1")
    .replaceAll("_", " ")
    .replace(/\s+/g, " ")
    .trim()
    .toLowerCase();
}

/**
 * Chooses the tags for one image: the top rating (if asked), characters at or above the character threshold,
 * general tags at or above the general threshold; characters before general tags, each group by falling
 * probability, so `maxTags` keeps the most useful ones.
 */
export function selectTags(
  probs: ArrayLike<number>,
  tags: readonly TagInfo[],
  opts: TagSelectOptions,
): ScoredTag[] {
  if (probs.length !== tags.length) {
    throw new Error(`the model gave ${probs.length} scores but the tag list has ${tags.length} tags`);
  }
  const excluded = new Set(opts.exclude.map(tagKey));
  const scored = (i: number): ScoredTag => ({
    name: tags[i].name,
    text: formatTag(tags[i].name, opts),
    category: tags[i].category,
    score: probs[i],
  });
  let bestRating = -1;
  const characters: ScoredTag[] = [];
  const general: ScoredTag[] = [];
  for (let i = 0; i < tags.length; i++) {
    const p = probs[i];
    const { category, name } = tags[i];
    if (excluded.has(tagKey(name))) continue;
    if (category === "rating") {
      if (bestRating < 0 || p > probs[bestRating]) bestRating = i;
    } else if (category === "character") {
      if (p >= opts.characterThreshold) characters.push(scored(i));
    } else if (p >= opts.generalThreshold) general.push(scored(i));
  }
  const byScore = (a: ScoredTag, b: ScoredTag) => b.score - a.score;
  const chosen = [
    ...(opts.includeRating && bestRating >= 0 ? [scored(bestRating)] : []),
    ...characters.sort(byScore),
    ...general.sort(byScore),
  ];
  return opts.maxTags !== undefined ? chosen.slice(0, Math.max(0, opts.maxTags)) : chosen;
}

/** Splits "a, b ,c" into tags, dropping empty ones. */
export function splitTags(text: string | undefined): string[] {
  return (text ?? "")
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
}

/**
 * The caption: prefix tags (e.g. the style trigger word), the model's tags, suffix tags, joined with ", ".
 * A model tag that repeats a prefix/suffix tag is written once, where the user put it.
 */
export function composeCaption(
  modelTags: readonly string[],
  prefix: readonly string[],
  suffix: readonly string[],
) {
  const fixed = new Set([...prefix, ...suffix].map(tagKey));
  const seen = new Set<string>();
  const middle = modelTags.filter((t) => {
    const k = tagKey(t);
    if (fixed.has(k) || seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  return [...prefix, ...middle, ...suffix].join(", ");
}
