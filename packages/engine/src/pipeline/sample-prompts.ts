/**
 * kohya sd-scripts' sample-prompt files (train_util line_to_prompt_dict), so a trainer config can point at the
 * same file it used with kohya:
 *   one prompt per line; empty lines and lines starting with `#` are skipped;
 *   options follow the prompt as ` --x value`: --n negative, --w width, --h height, --d seed, --s steps
 *   (clamped to 1..1000), --l cfg scale, --ss sampler. The line is split on " --"; every piece (the prompt piece
 *   too, as kohya does) is matched against the option patterns, case-insensitively; unknown options are ignored.
 * kohya's sampler names (ddim, euler_a, k_euler, dpmsolver++, ...) map to the WebUI names the pipeline uses;
 * WebUI names are accepted as well.
 */
import { readFile } from "node:fs/promises";
import { isSamplerName } from "../schedulers/samplers/index.ts";
import type { SamplerName } from "../schedulers/samplers/types.ts";

export interface SamplePrompt {
  /** 1-based line number in the file. */
  line: number;
  prompt: string;
  negative?: string;
  width?: number;
  height?: number;
  seed?: number;
  steps?: number;
  cfg?: number;
  sampler?: SamplerName;
}

export class SamplePromptError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super(`${file}:${line}: ${message}`);
    this.name = "SamplePromptError";
  }
}

/** kohya sample_sampler values -> WebUI sampler names (those this engine implements). */
export const KOHYA_SAMPLERS: Record<string, SamplerName> = {
  ddim: "DDIM",
  pndm: "PNDM",
  euler: "Euler",
  k_euler: "Euler",
  euler_a: "Euler a",
  k_euler_a: "Euler a",
  "dpmsolver++": "DPM++ 2M",
  dpmsolver: "DPM++ 2M",
};

export function samplerFromKohya(name: string, file = "<prompt>", line = 0): SamplerName {
  const trimmed = name.trim();
  if (isSamplerName(trimmed)) return trimmed;
  const s = KOHYA_SAMPLERS[trimmed.toLowerCase()];
  if (!s) {
    throw new SamplePromptError(
      file,
      line,
      `sampler "${trimmed}" is not supported; use one of ${Object.keys(KOHYA_SAMPLERS).join(", ")} or a WebUI name`,
    );
  }
  return s;
}

const OPTIONS: [RegExp, (p: SamplePrompt, v: string, file: string, line: number) => void][] = [
  [
    /^w (\d+)/i,
    (p, v) => {
      p.width = Number(v);
    },
  ],
  [
    /^h (\d+)/i,
    (p, v) => {
      p.height = Number(v);
    },
  ],
  [
    /^d (\d+)/i,
    (p, v) => {
      p.seed = Number(v);
    },
  ],
  [
    /^s (\d+)/i,
    (p, v) => {
      p.steps = Math.max(1, Math.min(1000, Number(v)));
    },
  ],
  [
    /^l ([\d.]+)/i,
    (p, v, f, l) => {
      const x = Number(v);
      if (!Number.isFinite(x)) throw new SamplePromptError(f, l, `--l ${v} is not a number`);
      p.cfg = x;
    },
  ],
  [
    /^n (.+)/i,
    (p, v) => {
      p.negative = v;
    },
  ],
  [
    /^ss (.+)/i,
    (p, v, f, l) => {
      p.sampler = samplerFromKohya(v, f, l);
    },
  ],
];

/** Parses one prompt line (already known not to be empty or a comment). */
export function parseSamplePromptLine(text: string, line = 1, file = "<prompt>"): SamplePrompt {
  const pieces = text.split(" --");
  const p: SamplePrompt = { line, prompt: pieces[0] };
  for (const piece of pieces) {
    for (const [re, apply] of OPTIONS) {
      const m = re.exec(piece);
      if (m) {
        apply(p, m[1], file, line);
        break;
      }
    }
  }
  return p;
}

/** Every prompt of a sample-prompt text (kohya .txt format). */
export function parseSamplePrompts(text: string, file = "<prompts>"): SamplePrompt[] {
  const out: SamplePrompt[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line.length === 0 || line.startsWith("#")) return;
    out.push(parseSamplePromptLine(line, i + 1, file));
  });
  return out;
}

export async function readSamplePrompts(path: string): Promise<SamplePrompt[]> {
  return parseSamplePrompts(await readFile(path, "utf8"), path);
}
