/** Config errors that name the file, the key path and the line/column, plus "did you mean" for typos. */

export interface ConfigIssue {
  /** Dotted key path, e.g. "lora_rank" or "target_modules[1]"; "" for the whole document. */
  keyPath: string;
  message: string;
  /** 1-based position of the offending key or value in the file, when known. */
  line?: number;
  column?: number;
}

export class ConfigError extends Error {
  readonly file: string;
  readonly issues: ConfigIssue[];

  constructor(file: string, issues: ConfigIssue[]) {
    super(issues.map((i) => formatIssue(file, i)).join("\n"));
    this.name = "ConfigError";
    this.file = file;
    this.issues = issues;
  }
}

export function formatIssue(file: string, issue: ConfigIssue): string {
  const where = issue.line === undefined ? file : `${file}:${issue.line}:${issue.column ?? 1}`;
  return issue.keyPath === "" ? `${where}: ${issue.message}` : `${where}: ${issue.keyPath}: ${issue.message}`;
}

/** Levenshtein distance (insert/delete/substitute, each cost 1). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * The closest known name, if it is close enough to be a plausible typo: at most a third of the word's length
 * (min 1, max 4) edits, ignoring case and "-" vs "_".
 */
export function suggest(word: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replaceAll("-", "_");
  const w = norm(word);
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(w, norm(k));
    if (d < bestDistance) {
      bestDistance = d;
      best = k;
    }
  }
  const limit = Math.min(4, Math.max(1, Math.floor(w.length / 3)));
  return bestDistance <= limit ? best : undefined;
}
