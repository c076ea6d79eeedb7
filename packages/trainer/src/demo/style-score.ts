/**
 * An objective check of the demo's before/after pictures: how close a rendered picture's colour statistics are
 * to those of the ink-wash training pictures. The style is simple to measure: cream rice paper (a large share of
 * pixels near the paper colour, a bright background), dark grey ink (a dark stroke tone), and almost no colour
 * (low saturation). A picture's distance to the training set is the sum of the absolute differences of these
 * statistics (each in [0, 1]) from the training pictures' means. Measured: unseen ink-wash pictures score up to
 * ~0.6 against the whole set (mountains carry far more ink than circles, hence the per-caption references of
 * scorePrompts), generic flat-colour pictures about 3x more on average; the shipped demo's before row 1.2-1.6.
 */
import { PAPER } from "./scenes.ts";

export interface StyleStats {
  /** Share of pixels within 40/255 (RGB distance) of the paper colour. */
  paper: number;
  /** Share of pixels darker than 40% luminance (ink). */
  ink: number;
  /** Mean HSV saturation. */
  saturation: number;
  /** 80th percentile of luminance (the paper's brightness), in [0, 1]. */
  background: number;
  /** 5th percentile of luminance (the strokes' darkness), in [0, 1]. */
  stroke: number;
}

export const STYLE_KEYS = ["paper", "ink", "saturation", "background", "stroke"] as const;

const paperRgb = [1, 3, 5].map((i) => Number.parseInt(PAPER.slice(i, i + 2), 16));

/** Statistics of an 8-bit RGB picture (interleaved, 3 bytes a pixel). */
export function styleStats(rgb: Uint8Array): StyleStats {
  const n = rgb.length / 3;
  const lum = new Float64Array(n);
  let paper = 0;
  let ink = 0;
  let saturation = 0;
  for (let i = 0; i < n; i++) {
    const r = rgb[3 * i];
    const g = rgb[3 * i + 1];
    const b = rgb[3 * i + 2];
    lum[i] = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
    if (Math.hypot(r - paperRgb[0], g - paperRgb[1], b - paperRgb[2]) < 40) paper++;
    if (lum[i] < 0.4) ink++;
    const max = Math.max(r, g, b);
    saturation += max === 0 ? 0 : (max - Math.min(r, g, b)) / max;
  }
  lum.sort();
  const at = (q: number) => lum[Math.min(n - 1, Math.floor(q * n))];
  return {
    paper: paper / n,
    ink: ink / n,
    saturation: saturation / n,
    background: at(0.8),
    stroke: at(0.05),
  };
}

export function meanStats(all: StyleStats[]): StyleStats {
  if (all.length === 0) throw new Error("meanStats: no pictures");
  const out: StyleStats = { paper: 0, ink: 0, saturation: 0, background: 0, stroke: 0 };
  for (const s of all) for (const k of STYLE_KEYS) out[k] += s[k] / all.length;
  return out;
}

/** Sum over the statistics of |picture - reference|: 0 = the reference's statistics exactly. */
export function styleDistance(s: StyleStats, reference: StyleStats): number {
  return STYLE_KEYS.reduce((a, k) => a + Math.abs(s[k] - reference[k]), 0);
}

export interface PromptScore {
  prompt: string;
  /** How many training pictures the reference statistics come from (those captioned with the prompt, else all). */
  references: number;
  before: number;
  after: number;
}

/**
 * Per prompt, the distance of the before and after pictures to the mean statistics of the training pictures
 * captioned exactly with that prompt (all training pictures when none is).
 */
export function scorePrompts(
  prompts: readonly string[],
  before: readonly Uint8Array[],
  after: readonly Uint8Array[],
  training: readonly { caption: string; rgb: Uint8Array }[],
): PromptScore[] {
  const all = training.map((t) => ({ caption: t.caption, stats: styleStats(t.rgb) }));
  return prompts.map((prompt, i) => {
    const same = all.filter((t) => t.caption === prompt);
    const refs = same.length > 0 ? same : all;
    const reference = meanStats(refs.map((t) => t.stats));
    return {
      prompt,
      references: refs.length,
      before: styleDistance(styleStats(before[i]), reference),
      after: styleDistance(styleStats(after[i]), reference),
    };
  });
}

/** The scores as an aligned text table for the console. */
export function formatScores(scores: readonly PromptScore[]): string {
  const width = Math.max(6, ...scores.map((s) => s.prompt.length));
  const lines = [
    `${"prompt".padEnd(width)}  before  after   (distance to the training pictures' colours; 0 = same)`,
  ];
  for (const s of scores)
    lines.push(
      `${s.prompt.padEnd(width)}  ${s.before.toFixed(3).padStart(6)}  ${s.after.toFixed(3).padStart(6)}`,
    );
  return lines.join("\n");
}

export interface StyleVerdict {
  /** True when every prompt with the style's trigger word came out closer to the training pictures. */
  improved: boolean;
  /** The prompts with the trigger word that did not (after >= before). */
  notCloser: string[];
  /** Mean distance of the trigger-word prompts before and after. */
  meanBefore: number;
  meanAfter: number;
  line: string;
}

/**
 * Whether the LoRA moved the style prompts (those containing `trigger`) towards the training pictures: all of
 * them must score lower after than before. Prompts without the trigger word are not judged (a style LoRA may
 * or may not leave them alone).
 */
export function styleVerdict(scores: readonly PromptScore[], trigger: string): StyleVerdict {
  const style = scores.filter((s) => s.prompt.includes(trigger));
  if (style.length === 0) throw new Error(`styleVerdict: no prompt contains "${trigger}"`);
  const notCloser = style.filter((s) => !(s.after < s.before)).map((s) => s.prompt);
  const mean = (f: (s: PromptScore) => number) => style.reduce((a, s) => a + f(s), 0) / style.length;
  const meanBefore = mean((s) => s.before);
  const meanAfter = mean((s) => s.after);
  const figures = `mean distance ${meanBefore.toFixed(3)} -> ${meanAfter.toFixed(3)}`;
  const improved = notCloser.length === 0;
  const line = improved
    ? `verdict: the LoRA moved all ${style.length} "${trigger}" prompts closer to the training pictures (${figures})`
    : `verdict: NOT CONVINCING: ${notCloser.length} of ${style.length} "${trigger}" prompts got no closer to the ` +
      `training pictures (${notCloser.map((p) => `"${p}"`).join(", ")}; ${figures})`;
  return { improved, notCloser, meanBefore, meanAfter, line };
}
