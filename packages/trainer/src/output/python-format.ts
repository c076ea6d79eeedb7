/**
 * kohya writes every metadata value through Python's str() (and nested values through json.dumps), and tools
 * that read LoRA metadata parse those exact spellings ("True", "None", "1e-05", "(512, 512)",
 * '{"a": 1}'). These helpers reproduce them.
 */

/** Python's repr/str of a float: shortest round-trip digits, exponent form below 1e-4 or from 1e16, ".0" for integral values. */
export function pyFloat(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, expStr] = x.toExponential().split("e");
  const exp = Number(expStr);
  if (exp < -4 || exp >= 16) {
    const sign = exp < 0 ? "-" : "+";
    return `${mantissa}e${sign}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  const digits = mantissa.replace("-", "").replace(".", "");
  const negative = x < 0 ? "-" : "";
  let s: string;
  if (exp >= 0) {
    const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
    const frac = digits.slice(exp + 1);
    s = `${intPart}.${frac === "" ? "0" : frac}`;
  } else {
    s = `0.${"0".repeat(-exp - 1)}${digits}`;
  }
  return negative + s;
}

export function pyBool(b: boolean | undefined): string {
  return b ? "True" : "False";
}

/** str(value) for an optional value, "None" when absent. */
export function pyOptional<T>(v: T | undefined | null, format: (v: T) => string): string {
  return v === undefined || v === null ? "None" : format(v);
}

export function pyInt(n: number): string {
  return String(Math.trunc(n));
}

/** json.dumps with Python's default separators (", " and ": ") and ensure_ascii escaping. */
export function pyJsonDumps(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
    return Number.isInteger(value) && !Object.is(value, -0) ? String(value) : pyFloat(value);
  }
  if (typeof value === "string") {
    return JSON.stringify(value).replace(
      /[\u007f-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    );
  }
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(", ")}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
  return `{${entries.map(([k, v]) => `${pyJsonDumps(k)}: ${pyJsonDumps(v)}`).join(", ")}}`;
}
