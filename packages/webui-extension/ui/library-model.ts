/**
 * What the Library tab shows about a LoRA, as plain functions of the service's list entry (no DOM, so they are
 * tested in node): the search filter, the training facts kohya-style trainers store in `ss_*` / `modelspec.*`,
 * and the dataset's most frequent tags (`ss_tag_frequency`, the "what words did it learn" a user looks for).
 */

export interface LoraCard {
  name: string;
  alias: string;
  path: string;
  folder: string;
  family: string;
  ranks: number[];
  moduleCount: number;
  size: number;
  shortHash: string | null;
  supported: boolean;
  reason: string | null;
  preview: string | null;
  token: string;
  /** `__metadata__` with JSON-valued strings decoded (prompt-lora's decodeMetadata). */
  metadata: Record<string, unknown>;
  userMetadata: { raw: Record<string, unknown> } | null;
}

export interface LibraryFilter {
  /** Words that must all appear (case-insensitive) in the name, alias, folder, activation text or tags. */
  query: string;
  /** "" for every family, else sd1 / sd2 / sdxl. */
  family: string;
}

/** Tag -> count summed over the dataset folders of `ss_tag_frequency` ({ "10_dir": { tag: n } }). */
export function tagCounts(metadata: Record<string, unknown>): Map<string, number> {
  const counts = new Map<string, number>();
  const freq = metadata.ss_tag_frequency;
  if (!freq || typeof freq !== "object") return counts;
  for (const dir of Object.values(freq as Record<string, unknown>)) {
    if (!dir || typeof dir !== "object") continue;
    for (const [tag, n] of Object.entries(dir as Record<string, unknown>)) {
      const t = tag.trim();
      if (t === "" || typeof n !== "number" || !Number.isFinite(n)) continue;
      counts.set(t, (counts.get(t) ?? 0) + n);
    }
  }
  return counts;
}

/** The `n` most frequent tags, ties by name, as [tag, count]. */
export function topTags(metadata: Record<string, unknown>, n: number): [string, number][] {
  return [...tagCounts(metadata)].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, n);
}

function text(v: unknown): string | undefined {
  if (v === undefined || v === null || v === "" || v === "None") return undefined;
  return typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined;
}

/** A date from modelspec.date (ISO) or ss_training_started_at (Unix seconds), as YYYY-MM-DD. */
function trainedOn(metadata: Record<string, unknown>): string | undefined {
  const iso = text(metadata["modelspec.date"]);
  if (iso && /^\d{4}-\d{2}-\d{2}/.test(iso)) return iso.slice(0, 10);
  const started = Number(text(metadata.ss_training_started_at));
  if (Number.isFinite(started) && started > 0) return new Date(started * 1000).toISOString().slice(0, 10);
  return undefined;
}

/** Training facts worth a glance, in the order a user reads them; absent keys are left out. */
export function trainingFacts(metadata: Record<string, unknown>): [string, string][] {
  const facts: [string, string | undefined][] = [
    ["title", text(metadata["modelspec.title"]) ?? text(metadata.ss_output_name)],
    ["base model", text(metadata.ss_sd_model_name) ?? text(metadata.ss_base_model_version)],
    ["architecture", text(metadata["modelspec.architecture"])],
    ["network", text(metadata.ss_network_module)],
    [
      "dim / alpha",
      text(metadata.ss_network_dim) &&
        `${text(metadata.ss_network_dim)} / ${text(metadata.ss_network_alpha) ?? "?"}`,
    ],
    ["resolution", text(metadata.ss_resolution) ?? text(metadata["modelspec.resolution"])],
    ["steps", text(metadata.ss_steps)],
    ["epochs", text(metadata.ss_epoch)],
    ["images", text(metadata.ss_num_train_images)],
    ["learning rate", text(metadata.ss_learning_rate)],
    ["trained", trainedOn(metadata)],
  ];
  return facts.filter((f): f is [string, string] => f[1] !== undefined);
}

/** Whether a card passes the filter: every query word in its searchable text, and the family if one is set. */
export function matchesFilter(card: LoraCard, filter: LibraryFilter): boolean {
  if (filter.family !== "" && card.family !== filter.family) return false;
  const words = filter.query.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const activation = card.userMetadata?.raw["activation text"];
  const haystack = [
    card.name,
    card.alias,
    card.folder,
    typeof activation === "string" ? activation : "",
    ...tagCounts(card.metadata).keys(),
  ]
    .join("\n")
    .toLowerCase();
  return words.every((w) => haystack.includes(w));
}

/** What the merge button does with this selection: one file and no rank converts, one with a rank resizes. */
export function mergeAction(selected: number, rank: number | null): "Convert" | "Resize" | "Merge" {
  if (selected === 1) return rank === null ? "Convert" : "Resize";
  return "Merge";
}

/** The multiplier a selected LoRA starts with in the merge panel: its `preferred weight`, else 1. */
export function startingWeight(card: LoraCard): number {
  const w = Number(card.userMetadata?.raw["preferred weight"]);
  return Number.isFinite(w) && w !== 0 ? w : 1;
}
