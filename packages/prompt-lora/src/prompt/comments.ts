/**
 * A1111's "Comments" script (on by default, option `enable_prompt_comments`) runs before extra networks
 * are parsed: it replaces every `#...` up to the end of the line by a newline, so a `<lora:...>` inside a
 * comment is never applied. This module does the same two substitutions while keeping, for every character
 * of the result, its index in the original text, so errors can point at the column the user typed.
 */

export interface MappedText {
  text: string;
  /** origin[i] = index in the original text of text[i]; origin[text.length] = original length. */
  origin: number[];
}

export function identityMapped(text: string): MappedText {
  const origin = new Array<number>(text.length + 1);
  for (let i = 0; i <= text.length; i++) origin[i] = i;
  return { text, origin };
}

/** `re.sub(pattern, replacement, text)` that carries the origin map along (pattern must not match ""). */
export function replaceMapped(src: MappedText, pattern: RegExp, replacement: string): MappedText {
  const re = new RegExp(pattern.source, pattern.flags.includes("g") ? pattern.flags : `${pattern.flags}g`);
  let text = "";
  const origin: number[] = [];
  let last = 0;
  for (const m of src.text.matchAll(re)) {
    const start = m.index;
    text += src.text.slice(last, start);
    for (let i = last; i < start; i++) origin.push(src.origin[i]);
    text += replacement;
    for (let i = 0; i < replacement.length; i++) origin.push(src.origin[start]);
    last = start + m[0].length;
  }
  text += src.text.slice(last);
  for (let i = last; i <= src.text.length; i++) origin.push(src.origin[i]);
  return { text, origin };
}

// Same patterns as A1111's strip_comments: a whole-line comment first, then a comment after text. Without
// the `m` flag `^` and `$` anchor at the ends of the whole text, as in Python without re.MULTILINE.
const WHOLE_LINE_COMMENT = /(^|\n)#[^\n]*(\n|$)/g;
const TRAILING_COMMENT = /#[^\n]*(\n|$)/g;

export function stripComments(src: MappedText): MappedText {
  return replaceMapped(replaceMapped(src, WHOLE_LINE_COMMENT, "\n"), TRAILING_COMMENT, "\n");
}
