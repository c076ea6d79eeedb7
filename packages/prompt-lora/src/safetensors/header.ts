/**
 * Parsing and validation of a safetensors header (the JSON between the 8-byte length and the data area).
 *
 * The checks follow the reference Rust crate: the header is UTF-8 JSON describing an object, each tensor has a
 * known dtype, a shape of non-negative integers whose element count times the dtype size equals its byte range,
 * and the byte ranges, sorted, tile the data area exactly (no overlap, no hole, nothing past the end, nothing
 * left over). We are stricter in two places: duplicate keys are an error (JSON.parse silently keeps the last
 * one, so a file could show one tensor to us and another to a different reader), and `__metadata__` values must
 * be strings.
 */
import { dtypeByteSize, isDType } from "./dtypes.ts";
import { SafetensorsError } from "./errors.ts";
import type { TensorInfo } from "./types.ts";

/** Same limit as the reference implementation: a larger header is treated as hostile. */
export const MAX_HEADER_BYTES = 100_000_000;

export const METADATA_KEY = "__metadata__";

export interface ParsedHeader {
  metadata: Record<string, string>;
  /** In the order the keys appear in the header text. */
  tensors: Map<string, TensorInfo>;
}

/**
 * Validates the header bytes of `file` and lays the tensors out in a data area of `dataByteLength` bytes
 * starting at absolute file offset `dataStart`.
 */
export function parseHeader(
  bytes: Uint8Array,
  dataStart: number,
  dataByteLength: number,
  file: string,
): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (cause) {
    throw new SafetensorsError("INVALID_UTF8", file, "header is not valid UTF-8", undefined, { cause });
  }
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new SafetensorsError("INVALID_JSON", file, `header is not valid JSON (${detail})`, undefined, {
      cause,
    });
  }
  if (!isPlainObject(root)) {
    throw new SafetensorsError(
      "HEADER_NOT_OBJECT",
      file,
      `header must be a JSON object, got ${describe(root)}`,
    );
  }
  const keyOrder = topLevelKeysRejectingDuplicates(text, file);

  const metadata = parseMetadata(root[METADATA_KEY], file);
  const tensors = new Map<string, TensorInfo>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const name of keyOrder) {
    if (name === METADATA_KEY) continue;
    const { info, begin, end } = parseTensorInfo(name, root[name], dataStart, file);
    tensors.set(name, info);
    ranges.push({ name, begin, end });
  }
  checkTiling(ranges, dataByteLength, file);
  return { metadata, tensors };
}

function parseMetadata(value: unknown, file: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isPlainObject(value)) {
    throw new SafetensorsError(
      "INVALID_METADATA",
      file,
      `must be an object of strings, got ${describe(value)}`,
      METADATA_KEY,
    );
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw new SafetensorsError(
        "INVALID_METADATA",
        file,
        `value of "${k}" must be a string, got ${describe(v)}`,
        METADATA_KEY,
      );
    }
  }
  // fromEntries defines own properties, so even a "__proto__" entry stays plain data.
  return Object.fromEntries(Object.entries(value as Record<string, string>));
}

function parseTensorInfo(
  name: string,
  value: unknown,
  dataStart: number,
  file: string,
): { info: TensorInfo; begin: number; end: number } {
  if (!isPlainObject(value)) {
    throw new SafetensorsError(
      "INVALID_TENSOR_INFO",
      file,
      `tensor entry must be an object, got ${describe(value)}`,
      name,
    );
  }
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== "string") {
    throw new SafetensorsError(
      "INVALID_TENSOR_INFO",
      file,
      `"dtype" must be a string, got ${describe(dtype)}`,
      name,
    );
  }
  if (!isDType(dtype)) throw new SafetensorsError("UNKNOWN_DTYPE", file, `unknown dtype "${dtype}"`, name);
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw new SafetensorsError(
      "INVALID_SHAPE",
      file,
      `"shape" must be an array of non-negative integers, got ${describe(shape)}`,
      name,
    );
  }
  let count = 1;
  for (const d of shape as number[]) {
    count *= d;
    if (!Number.isSafeInteger(count)) {
      throw new SafetensorsError(
        "INVALID_SHAPE",
        file,
        `shape [${shape.join(", ")}] has too many elements`,
        name,
      );
    }
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
    throw new SafetensorsError(
      "INVALID_OFFSETS",
      file,
      `"data_offsets" must be two non-negative integers, got ${describe(offsets)}`,
      name,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) {
    throw new SafetensorsError(
      "INVALID_OFFSETS",
      file,
      `data_offsets [${begin}, ${end}] end before they begin`,
      name,
    );
  }
  const size = dtypeByteSize(dtype);
  const expected = count * size;
  if (!Number.isSafeInteger(expected) || expected !== end - begin) {
    throw new SafetensorsError(
      "SIZE_MISMATCH",
      file,
      `shape [${shape.join(", ")}] of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      name,
    );
  }
  const info: TensorInfo = {
    name,
    dtype,
    shape: [...(shape as number[])],
    fileOffset: dataStart + begin,
    byteLength: end - begin,
  };
  return { info, begin, end };
}

/** Byte ranges sorted by start must follow each other exactly from 0 to the end of the data area. */
function checkTiling(
  ranges: { name: string; begin: number; end: number }[],
  dataByteLength: number,
  file: string,
) {
  const sorted = [...ranges].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: string | undefined;
  for (const r of sorted) {
    if (r.begin < cursor) {
      throw new SafetensorsError(
        "OVERLAPPING_TENSORS",
        file,
        `data_offsets [${r.begin}, ${r.end}] overlap tensor "${previous}" which ends at ${cursor}`,
        r.name,
      );
    }
    if (r.begin > cursor) {
      throw new SafetensorsError(
        "HOLE_IN_DATA",
        file,
        `data starts at ${r.begin} but the previous tensor ends at ${cursor}: ${r.begin - cursor} bytes belong to no tensor`,
        r.name,
      );
    }
    if (r.end > dataByteLength) {
      throw new SafetensorsError(
        "OUT_OF_BOUNDS",
        file,
        `data_offsets [${r.begin}, ${r.end}] run past the data area of ${dataByteLength} bytes (file truncated?)`,
        r.name,
      );
    }
    cursor = r.end;
    previous = r.name;
  }
  if (cursor !== dataByteLength) {
    throw new SafetensorsError(
      "INCOMPLETE_DATA",
      file,
      `tensors cover ${cursor} bytes but the data area has ${dataByteLength}: ${dataByteLength - cursor} trailing bytes belong to no tensor`,
    );
  }
}

/**
 * Top-level keys of a JSON text that JSON.parse already accepted, in text order (JSON.parse reorders
 * integer-like keys), failing on a key repeated in any object. Iterative, so deep nesting cannot overflow.
 */
export function topLevelKeysRejectingDuplicates(text: string, file: string): string[] {
  const keys: string[] = [];
  const stack: (Set<string> | null)[] = []; // Set for an object's keys, null for an array
  let expectKey = false;
  let currentTopKey: string | undefined;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
      i++;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
      i++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      i++;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
      i++;
    } else if (c === 0x3a /* : */) {
      expectKey = false;
      i++;
    } else if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      i++;
      while (text.charCodeAt(i) !== 0x22) {
        if (text.charCodeAt(i) === 0x5c /* \ */) {
          escaped = true;
          i++;
        }
        i++;
      }
      i++;
      if (!expectKey) continue;
      const key: string = escaped ? JSON.parse(text.slice(start, i)) : text.slice(start + 1, i - 1);
      const owner = stack[stack.length - 1]!;
      if (owner.has(key)) {
        const where = stack.length === 1 ? "at the top level" : `inside "${currentTopKey}"`;
        const errorKey = stack.length === 1 ? key : currentTopKey;
        throw new SafetensorsError(
          "DUPLICATE_KEY",
          file,
          `key "${key}" appears more than once ${where}`,
          errorKey,
        );
      }
      owner.add(key);
      if (stack.length === 1) {
        keys.push(key);
        currentTopKey = key;
      }
      expectKey = false;
    } else {
      i++; // whitespace, or a character of a number / true / false / null
    }
  }
  return keys;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isNonNegativeInteger(v: unknown): boolean {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function describe(v: unknown): string {
  const json = JSON.stringify(v);
  if (json === undefined) return String(v);
  return json.length > 60 ? `${json.slice(0, 57)}...` : json;
}
