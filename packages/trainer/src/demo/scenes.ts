/**
 * The demo's synthetic pictures as SVG text plus the caption that describes them, each a pure function of a
 * seeded generator (so a seed always gives the same picture and caption):
 * - generic scenes for the base model: one flat-coloured shape on a plain background
 *   ("a red circle on a blue background");
 * - ink-wash scenes for the LoRA: grey/black brush work (mountain ridges, bamboo, a brush circle, a moon) on
 *   rice-paper beige ("inkwash style, mountains and moon").
 * The caption lists exactly what was drawn; tests check the pixels against it.
 */
import type { Rng } from "../dataset/rng.ts";

export interface Scene {
  svg: string;
  caption: string;
}

/** The generic palette: name -> sRGB hex. Colours far apart so that captions are visibly different. */
export const GENERIC_COLORS: Readonly<Record<string, string>> = {
  red: "#d62828",
  green: "#2a9d3f",
  blue: "#1d4ed8",
  yellow: "#f2cc0c",
  orange: "#f07818",
  purple: "#7b2cbf",
  white: "#f8f8f8",
  black: "#141414",
  grey: "#808080",
  beige: "#e8dcc0",
};

export const GENERIC_SHAPES = ["circle", "square", "triangle"] as const;
export type GenericShape = (typeof GENERIC_SHAPES)[number];

/** Rice-paper background and the ink tones of the ink-wash set. */
export const PAPER = "#eee4cc";
const INK = ["#161616", "#2e2e2e", "#4a4a4a", "#6e6e6e"];

export const INKWASH_SUBJECTS = ["mountains", "bamboo", "circle"] as const;
export type InkwashSubject = (typeof INKWASH_SUBJECTS)[number];

const f1 = (x: number) => x.toFixed(1);
const article = (word: string) => (/^[aeiou]/.test(word) ? "an" : "a");

function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(items.length)];
}

function range(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng.next();
}

function svgDocument(size: number, body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 64 64">${body}</svg>`;
}

export interface GenericSceneInfo extends Scene {
  shape: GenericShape;
  color: string;
  background: string;
}

/** One shape of one palette colour on a background of another, covering roughly 15-35% of the picture. */
export function genericScene(rng: Rng, size = 64): GenericSceneInfo {
  const names = Object.keys(GENERIC_COLORS);
  const color = pick(rng, names);
  let background = pick(rng, names);
  while (background === color) background = pick(rng, names);
  const shape = pick(rng, GENERIC_SHAPES);
  const r = range(rng, 14, 20);
  const cx = range(rng, r + 2, 62 - r);
  const cy = range(rng, r + 2, 62 - r);
  const fill = GENERIC_COLORS[color];
  let el: string;
  if (shape === "circle") el = `<circle cx="${f1(cx)}" cy="${f1(cy)}" r="${f1(r)}" fill="${fill}"/>`;
  else if (shape === "square") {
    const s = r * 1.6;
    el = `<rect x="${f1(cx - s / 2)}" y="${f1(cy - s / 2)}" width="${f1(s)}" height="${f1(s)}" fill="${fill}"/>`;
  } else {
    const pts = [0, 1, 2].map((k) => {
      const a = -Math.PI / 2 + (k * 2 * Math.PI) / 3;
      return `${f1(cx + r * 1.1 * Math.cos(a))},${f1(cy + r * 1.1 * Math.sin(a) + r * 0.15)}`;
    });
    el = `<polygon points="${pts.join(" ")}" fill="${fill}"/>`;
  }
  const body = `<rect width="64" height="64" fill="${GENERIC_COLORS[background]}"/>${el}`;
  return {
    svg: svgDocument(size, body),
    caption: `${article(color)} ${color} ${shape} on ${article(background)} ${background} background`,
    shape,
    color,
    background,
  };
}

/** Layered ridges: 2-3 filled mountain silhouettes, the far ones paler (the wash), the near one darkest. */
function mountains(rng: Rng): string {
  const layers = 2 + rng.int(2);
  let out = "";
  for (let l = 0; l < layers; l++) {
    const base = 40 + l * 8 + range(rng, -3, 3);
    const peaks = 2 + rng.int(2);
    let d = `M0,64 L0,${f1(base)}`;
    for (let p = 0; p < peaks; p++) {
      const x0 = (p * 64) / peaks;
      const w = 64 / peaks;
      d += ` Q${f1(x0 + w * 0.25)},${f1(base - range(rng, 10, 26))} ${f1(x0 + w * 0.5)},${f1(base - range(rng, 14, 28))}`;
      d += ` Q${f1(x0 + w * 0.8)},${f1(base - range(rng, 0, 10))} ${f1(x0 + w)},${f1(base + range(rng, -2, 2))}`;
    }
    d += " L64,64 Z";
    const opacity = 0.45 + (0.5 * l) / (layers - 1 || 1);
    out += `<path d="${d}" fill="${INK[Math.max(0, 2 - l)]}" fill-opacity="${opacity.toFixed(2)}" filter="url(#wash)"/>`;
  }
  return out;
}

/** 2-3 bamboo stalks (segmented strokes with joints) and a few leaf strokes. */
function bamboo(rng: Rng): string {
  const stalks = 2 + rng.int(2);
  let out = "";
  for (let s = 0; s < stalks; s++) {
    const x = range(rng, 10, 54);
    const w = range(rng, 2.5, 4);
    const tone = pick(rng, INK.slice(0, 3));
    for (let y = 64; y > 4; y -= range(rng, 11, 16)) {
      const top = Math.max(2, y - range(rng, 10, 14));
      out += `<line x1="${f1(x)}" y1="${f1(y - 1)}" x2="${f1(x + range(rng, -1, 1))}" y2="${f1(top + 1)}" stroke="${tone}" stroke-width="${f1(w)}" stroke-linecap="round"/>`;
      if (rng.next() < 0.5) {
        const dir = rng.next() < 0.5 ? -1 : 1;
        const lx = x + dir * range(rng, 7, 12);
        const ly = top + range(rng, -4, 6);
        out += `<path d="M${f1(x)},${f1(top + 2)} Q${f1((x + lx) / 2)},${f1(ly - 3)} ${f1(lx)},${f1(ly)}" stroke="${tone}" stroke-width="1.8" fill="none" stroke-linecap="round"/>`;
      }
    }
  }
  return out;
}

/** An ensō: an open brush circle, thick and dark. */
function brushCircle(rng: Rng): string {
  const cx = range(rng, 26, 38);
  const cy = range(rng, 26, 38);
  const r = range(rng, 16, 22);
  const start = range(rng, 0, 2 * Math.PI);
  const sweep = range(rng, 1.6, 1.85) * Math.PI;
  const pt = (a: number) => `${f1(cx + r * Math.cos(a))},${f1(cy + r * Math.sin(a))}`;
  return `<path d="M${pt(start)} A${f1(r)},${f1(r)} 0 1 1 ${pt(start + sweep)}" stroke="${INK[0]}" stroke-width="${f1(range(rng, 4, 6))}" fill="none" stroke-linecap="round" filter="url(#wash)"/>`;
}

/** A pale moon disc in the upper part of the picture (paper-coloured with an ink rim). */
function moon(rng: Rng): string {
  const cx = range(rng, 12, 52);
  const cy = range(rng, 9, 18);
  const r = range(rng, 5, 8);
  return `<circle cx="${f1(cx)}" cy="${f1(cy)}" r="${f1(r)}" fill="#fbf6e8" stroke="${INK[2]}" stroke-width="1.2"/>`;
}

/** Paper fibres: faint short strokes, so the beige is not perfectly flat. */
function paper(rng: Rng): string {
  let out = `<rect width="64" height="64" fill="${PAPER}"/>`;
  for (let i = 0; i < 14; i++) {
    const x = range(rng, 0, 64);
    const y = range(rng, 0, 64);
    out += `<line x1="${f1(x)}" y1="${f1(y)}" x2="${f1(x + range(rng, -6, 6))}" y2="${f1(y + range(rng, -2, 2))}" stroke="#cdbf9f" stroke-opacity="0.35" stroke-width="0.6"/>`;
  }
  return out;
}

export interface InkwashSceneInfo extends Scene {
  subject: InkwashSubject;
  moon: boolean;
}

/** One ink-wash picture: a subject, sometimes with a moon (never with the brush circle, which is a moon-like form). */
export function inkwashScene(rng: Rng, size = 64): InkwashSceneInfo {
  const subject = pick(rng, INKWASH_SUBJECTS);
  const withMoon = subject !== "circle" && rng.next() < 0.5;
  const defs =
    '<defs><filter id="wash" x="-10%" y="-10%" width="120%" height="120%"><feGaussianBlur stdDeviation="0.7"/></filter></defs>';
  let body = defs + paper(rng);
  if (withMoon) body += moon(rng);
  body += subject === "mountains" ? mountains(rng) : subject === "bamboo" ? bamboo(rng) : brushCircle(rng);
  const words = { mountains: "mountains", bamboo: "bamboo", circle: "a brush circle" }[subject];
  return {
    svg: svgDocument(size, body),
    caption: `inkwash style, ${words}${withMoon ? " and moon" : ""}`,
    subject,
    moon: withMoon,
  };
}

/** Every caption either scene kind can produce (the demo tokenizer's training text), in a fixed order. */
export function demoCaptionCorpus(): string[] {
  const out: string[] = [];
  const names = Object.keys(GENERIC_COLORS);
  for (const c of names)
    for (const s of GENERIC_SHAPES)
      for (const bg of names)
        if (bg !== c) out.push(`${article(c)} ${c} ${s} on ${article(bg)} ${bg} background`);
  for (const subject of ["mountains", "bamboo", "a brush circle"])
    for (const moonToo of [false, true])
      if (!(moonToo && subject === "a brush circle"))
        out.push(`inkwash style, ${subject}${moonToo ? " and moon" : ""}`);
  return out;
}
