/**
 * Number parsing with the exact grammar of Python's `float(str)` and `int(str)`, because A1111 converts
 * prompt-token arguments with those two built-ins: what they accept (surrounding whitespace, `1_000`,
 * `+.5`, `1e-1`, `08`) must be accepted here and what they reject must be rejected, not "fixed up" the way
 * JavaScript's `Number()` / `parseFloat()` would (they accept "", "0x10", "1.5abc" ...).
 * Deviation, on purpose: `inf` / `nan` are well-formed for Python but are rejected here with their own
 * message, since a non-finite multiplier only ever produces a black image and cannot be written as JSON.
 */

// Python's str.strip() with no argument removes Unicode whitespace; \s in a JS regex covers the same set
// for every character a prompt realistically contains.
const DIGITS = String.raw`\d(?:_?\d)*`;
const FLOAT_RE = new RegExp(
  String.raw`^[+-]?(?:(?:${DIGITS}(?:\.(?:${DIGITS})?)?|\.${DIGITS})(?:[eE][+-]?${DIGITS})?)$`,
);
const NON_FINITE_RE = /^[+-]?(?:inf|infinity|nan)$/i;
const INT_RE = new RegExp(`^[+-]?${DIGITS}$`);

export type NumberParse = { ok: true; value: number } | { ok: false; message: string };

/** Parses `text` the way Python's `float(text)` does; non-finite values are refused (see header). */
export function parsePythonFloat(text: string): NumberParse {
  const s = text.trim();
  if (FLOAT_RE.test(s)) {
    const value = Number(s.replaceAll("_", ""));
    if (!Number.isFinite(value)) return { ok: false, message: `"${text}" is out of range` };
    return { ok: true, value };
  }
  if (NON_FINITE_RE.test(s)) return { ok: false, message: `"${text}" is not a finite number` };
  return { ok: false, message: `"${text}" is not a number` };
}

/** Parses `text` the way Python's `int(text)` (base 10) does. */
export function parsePythonInt(text: string): NumberParse {
  const s = text.trim();
  if (!INT_RE.test(s)) return { ok: false, message: `"${text}" is not an integer` };
  const value = Number(s.replaceAll("_", ""));
  if (!Number.isSafeInteger(value)) return { ok: false, message: `"${text}" is too large` };
  return { ok: true, value };
}
