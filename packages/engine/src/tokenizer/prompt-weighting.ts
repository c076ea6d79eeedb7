// AUTOMATIC1111's prompt emphasis syntax (modules/prompt_parser.py, parse_prompt_attention), reproduced step
// for step so that weights come out bit-identical (the multiplications happen in the same order on doubles):
//   (text)       weight x 1.1          [text]      weight / 1.1 (i.e. x (1 / 1.1))
//   (text:1.3)   weight x 1.3          \( \) \[ \] \\   literal characters; a lone "\" is dropped
//   BREAK        (upper case, a whole word) ends the current 75-token chunk (see chunking.ts)
// Brackets left open at the end apply to everything after them; a closing bracket with nothing open is
// literal text; ":1.2)" with no "(" open is literal text. Runs of equal weight are merged at the end.
// Python's regex classes are Unicode-aware where JavaScript's are not, so `\s`, `\d` and `\b` are spelled out.

import { PY_WHITESPACE_CLASS } from "./text-cleaning.ts";

/** One run of prompt text and its multiplier. A BREAK marker is { text: "BREAK", weight: -1 }, as in A1111. */
export interface WeightedText {
  text: string;
  weight: number;
}

export class PromptSyntaxError extends Error {
  readonly prompt: string;
  constructor(prompt: string, message: string) {
    super(message);
    this.name = "PromptSyntaxError";
    this.prompt = prompt;
  }
}

const WS = `[${PY_WHITESPACE_CLASS}]`;
// Same alternatives, same order as A1111's re_attention.
const ATTENTION_RE = new RegExp(
  [
    "\\\\\\(",
    "\\\\\\)",
    "\\\\\\[",
    "\\\\\\]",
    "\\\\\\\\",
    "\\\\",
    "\\(",
    "\\[",
    `:${WS}*([+-]?[.\\p{Nd}]+)${WS}*\\)`,
    "\\)",
    "\\]",
    "[^\\\\()[\\]:]+",
    ":",
  ].join("|"),
  "gu",
);
// Python's \b: a word character is alphanumeric (Unicode letters and numbers) or "_".
const BREAK_RE = new RegExp(`${WS}*(?<![\\p{L}\\p{N}_])BREAK(?![\\p{L}\\p{N}_])${WS}*`, "u");
const DECIMAL_DIGIT = /\p{Nd}/u;

const ROUND_MULTIPLIER = 1.1;
const SQUARE_MULTIPLIER = 1 / 1.1;

/** Python's float() of a `[+-]?[.\d]+` string: Unicode decimal digits count (their runs start at 0). */
function parsePythonFloat(text: string, prompt: string): number {
  let ascii = "";
  for (const ch of text) {
    if (ch === "." || ch === "+" || ch === "-" || (ch >= "0" && ch <= "9")) {
      ascii += ch;
      continue;
    }
    let zero = ch.codePointAt(0)!;
    while (DECIMAL_DIGIT.test(String.fromCodePoint(zero - 1))) zero--;
    ascii += String((ch.codePointAt(0)! - zero) % 10);
  }
  const value = Number(ascii);
  if (ascii === "" || Number.isNaN(value)) {
    // A1111 raises ValueError here (float("1.2.3")); say which part of the prompt is at fault instead.
    throw new PromptSyntaxError(prompt, `invalid emphasis weight ${JSON.stringify(text)} in prompt`);
  }
  return value;
}

/** A1111's parse_prompt_attention: the prompt as runs of text with their emphasis multipliers. */
export function parsePromptAttention(prompt: string): WeightedText[] {
  const res: WeightedText[] = [];
  const roundBrackets: number[] = [];
  const squareBrackets: number[] = [];
  const multiplyRange = (start: number, multiplier: number) => {
    for (let p = start; p < res.length; p++) res[p].weight *= multiplier;
  };

  for (const m of prompt.matchAll(ATTENTION_RE)) {
    const text = m[0];
    const weight = m[1];
    if (text.startsWith("\\")) {
      res.push({ text: text.slice(1), weight: 1.0 });
    } else if (text === "(") {
      roundBrackets.push(res.length);
    } else if (text === "[") {
      squareBrackets.push(res.length);
    } else if (weight !== undefined && roundBrackets.length > 0) {
      multiplyRange(roundBrackets.pop()!, parsePythonFloat(weight, prompt));
    } else if (text === ")" && roundBrackets.length > 0) {
      multiplyRange(roundBrackets.pop()!, ROUND_MULTIPLIER);
    } else if (text === "]" && squareBrackets.length > 0) {
      multiplyRange(squareBrackets.pop()!, SQUARE_MULTIPLIER);
    } else {
      text.split(BREAK_RE).forEach((part, i) => {
        if (i > 0) res.push({ text: "BREAK", weight: -1 });
        res.push({ text: part, weight: 1.0 });
      });
    }
  }
  for (const pos of roundBrackets) multiplyRange(pos, ROUND_MULTIPLIER);
  for (const pos of squareBrackets) multiplyRange(pos, SQUARE_MULTIPLIER);

  if (res.length === 0) res.push({ text: "", weight: 1.0 });

  let i = 0;
  while (i + 1 < res.length) {
    if (res[i].weight === res[i + 1].weight) {
      res[i].text += res[i + 1].text;
      res.splice(i + 1, 1);
    } else {
      i++;
    }
  }
  return res;
}

/** True for the marker parsePromptAttention emits for a top-level BREAK. */
export function isBreakMarker(run: WeightedText): boolean {
  return run.text === "BREAK" && run.weight === -1;
}
