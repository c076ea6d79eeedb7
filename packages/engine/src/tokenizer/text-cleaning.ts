// Text cleaning applied before CLIP's byte-level BPE, matching HF transformers' CLIPTokenizer with ftfy
// installed (the configuration the reference fixtures and every normal SD install use):
//   text = whitespace_clean(ftfy.fix_text(text)).lower()
// Written by hand: there is no ftfy for JavaScript. What is reproduced of ftfy 6's default fix_text, in its
// order and repeated until the text stops changing:
//   unescape_html ("auto": skipped for a line once a '<' has been seen, i.e. text that looks like HTML),
//   fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes, fix_line_breaks,
//   fix_surrogates, remove_terminal_escapes, remove_control_chars, NFC normalization.
// Not reproduced: fix_encoding (mojibake repair, e.g. "cafÃ©" -> "café"), which needs ftfy's statistical
// badness model. Correctly encoded text - anything typed or pasted into a prompt box - is unaffected by it.
// Python's `\s` (str.isspace) differs from JavaScript's `\s` (e.g. U+001C..U+001F, U+0085, U+FEFF), so the
// whitespace class is spelled out.

import { unescapeHtml, windows1252C1 } from "./html-entities.ts";

/** Exactly the characters Python's str.isspace() accepts, for use inside a regex character class. */
export const PY_WHITESPACE_CLASS =
  "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

const WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE_CLASS}]+`, "gu");
const EDGE_WHITESPACE = new RegExp(`^[${PY_WHITESPACE_CLASS}]+|[${PY_WHITESPACE_CLASS}]+$`, "gu");

/** HF's whitespace_clean: every whitespace run becomes one space, then the ends are stripped. */
export function whitespaceClean(text: string): string {
  return text.replace(WHITESPACE_RUN, " ").replace(EDGE_WHITESPACE, "");
}

const C1_CONTROLS = /[\x80-\x9f]/g;
const LIGATURES: Record<string, string> = {
  "\u0132": "IJ",
  "\u0133": "ij",
  "\ufb00": "ff",
  "\ufb01": "fi",
  "\ufb02": "fl",
  "\ufb03": "ffi",
  "\ufb04": "ffl",
  "\ufb05": "\u017ft",
  "\ufb06": "st",
};
const LIGATURE_RE = /[\u0132\u0133\ufb00-\ufb06]/g;
// Halfwidth/fullwidth forms block; ftfy maps each to its NFKC form when that differs, plus U+3000 -> space.
const WIDTH_RE = /[\u3000\uff01-\uffef]/g;
const SINGLE_QUOTES = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTES = /[\u201c-\u201f]/g;
const LINE_BREAKS = /\r\n|[\r\u2028\u2029\x85]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: removing ESC sequences is the point
const TERMINAL_ESCAPE = /\x1b\[[0-9;]*[a-zA-Z]/g;
// ftfy 6's CONTROL_CHARS: C0 controls except \t \n \x0c \r, DEL, deprecated format characters, BOM,
// interlinear annotation marks. (Tag characters stay: emoji subdivision flags are made of them.)
const CONTROL_CHARS =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
  /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;

function fixCharacterWidth(ch: string): string {
  return ch === "\u3000" ? " " : ch.normalize("NFKC");
}

/** One pass of ftfy's fixers (after the optional HTML unescape), in ftfy's order. */
function fixOnce(text: string, decodeEntities: boolean): string {
  let t = decodeEntities ? unescapeHtml(text) : text;
  t = t.replace(C1_CONTROLS, (c) => windows1252C1(c.charCodeAt(0)));
  t = t.replace(LIGATURE_RE, (c) => LIGATURES[c]);
  t = t.replace(WIDTH_RE, fixCharacterWidth);
  t = t.replace(SINGLE_QUOTES, "'").replace(DOUBLE_QUOTES, '"');
  t = t.replace(LINE_BREAKS, "\n");
  t = t.replace(LONE_SURROGATE, "\ufffd");
  t = t.replace(TERMINAL_ESCAPE, "");
  t = t.replace(CONTROL_CHARS, "");
  return t.normalize("NFC");
}

/** ftfy.fix_text subset (see the header): line by line, each line fixed until stable. */
export function fixText(text: string): string {
  let decodeEntities = true;
  let out = "";
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    const end = nl === -1 ? text.length : nl + 1;
    let segment = text.slice(pos, end);
    // ftfy's "auto" mode: a '<' suggests real HTML, whose entities must stay; it stays off for later lines.
    if (decodeEntities && segment.includes("<")) decodeEntities = false;
    for (;;) {
      const fixed = fixOnce(segment, decodeEntities);
      if (fixed === segment) break;
      segment = fixed;
    }
    out += segment;
    pos = end;
  }
  return out;
}

export type CleanTextMode = "ftfy" | "whitespace";

/**
 * The full pre-BPE normalization of one text segment: "ftfy" = fixText + whitespace_clean + lower (HF with
 * ftfy, the default); "whitespace" = whitespace_clean + lower only (for callers that already cleaned).
 */
export function cleanText(text: string, mode: CleanTextMode = "ftfy"): string {
  const fixed = mode === "ftfy" ? fixText(text) : text;
  return whitespaceClean(fixed).toLowerCase();
}
