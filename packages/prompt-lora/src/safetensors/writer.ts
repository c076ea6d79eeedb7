/**
 * Streaming safetensors writer: the header is computed from shapes and dtypes alone, then tensors are written
 * one after another in the order given, each `data` function called only when its turn comes, so at most one
 * tensor needs to be in memory. The file appears under its final name only once complete (temp file + fsync +
 * rename), and a failure at any point leaves no file behind and any previous file intact.
 */
import { type FileHandle, open } from "node:fs/promises";
import { withAtomicPath } from "../util/atomic.ts";
import { dtypeByteSize, isDType } from "./dtypes.ts";
import { SafetensorsError } from "./errors.ts";
import { MAX_HEADER_BYTES, METADATA_KEY } from "./header.ts";
import type { TensorToWrite } from "./types.ts";

/** Small tensors are gathered into writes of this size; LoRA files hold thousands of tiny tensors. */
const WRITE_BUFFER_BYTES = 4 << 20;
/** Largest single write(2) we issue. */
const MAX_WRITE_CHUNK = 1 << 30;

interface PlannedTensor {
  tensor: TensorToWrite;
  byteLength: number;
}

export async function writeSafetensors(
  path: string,
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  const plan = planTensors(path, tensors);
  const header = encodeHeader(path, plan, metadata);
  await withAtomicPath(path, async (tmpPath) => {
    const handle = await open(tmpPath, "wx");
    try {
      const out = new BufferedWriter(handle);
      await out.write(header);
      for (const { tensor, byteLength } of plan) {
        const data = typeof tensor.data === "function" ? await tensor.data() : tensor.data;
        await out.write(bytesOf(path, tensor, data, byteLength));
      }
      await out.flush();
    } finally {
      await handle.close();
    }
  });
}

/**
 * The exact header bytes (length prefix + padded JSON) `writeSafetensors` writes for these tensors, for callers
 * that must hash or size a file before it exists (kohya's sshs_* hashes).
 */
export function encodeSafetensorsHeader(
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
  path = "<memory>",
): Uint8Array {
  return encodeHeader(path, planTensors(path, tensors), metadata);
}

function planTensors(path: string, tensors: TensorToWrite[]): PlannedTensor[] {
  const seen = new Set<string>();
  return tensors.map((tensor) => {
    const { name, dtype, shape } = tensor;
    if (typeof name !== "string")
      throw new SafetensorsError("INVALID_TENSOR", path, "tensor name must be a string");
    if (name === METADATA_KEY) {
      throw new SafetensorsError(
        "INVALID_TENSOR",
        path,
        `"${METADATA_KEY}" is reserved and cannot name a tensor`,
        name,
      );
    }
    if (seen.has(name)) throw new SafetensorsError("DUPLICATE_KEY", path, "two tensors have this name", name);
    seen.add(name);
    if (!isDType(dtype))
      throw new SafetensorsError("UNKNOWN_DTYPE", path, `unknown dtype "${String(dtype)}"`, name);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(
        "INVALID_SHAPE",
        path,
        `shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`,
        name,
      );
    }
    const byteLength = shape.reduce((n, d) => n * d, 1) * dtypeByteSize(dtype);
    if (!Number.isSafeInteger(byteLength)) {
      throw new SafetensorsError("INVALID_SHAPE", path, `shape [${shape.join(", ")}] is too large`, name);
    }
    return { tensor, byteLength };
  });
}

/** Length prefix + JSON header padded with spaces so the data area starts at a multiple of 8. */
function encodeHeader(
  path: string,
  plan: PlannedTensor[],
  metadata: Record<string, string> | undefined,
): Uint8Array {
  // Built entry by entry: JSON.stringify of one object would move integer-like tensor names to the front.
  const entries: string[] = [];
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new SafetensorsError(
          "INVALID_METADATA",
          path,
          `value of "${k}" must be a string, got ${typeof v}`,
          METADATA_KEY,
        );
      }
    }
    entries.push(`${JSON.stringify(METADATA_KEY)}:${jsonObject(Object.entries(metadata))}`);
  }
  let offset = 0;
  for (const { tensor, byteLength } of plan) {
    const info = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + byteLength] };
    entries.push(`${JSON.stringify(tensor.name)}:${JSON.stringify(info)}`);
    offset += byteLength;
  }
  const json = new TextEncoder().encode(`{${entries.join(",")}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) {
    throw new SafetensorsError(
      "HEADER_TOO_LARGE",
      path,
      `header would be ${padded} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers enforce`,
    );
  }
  const out = new Uint8Array(8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length);
  return out;
}

function jsonObject(entries: [string, string][]): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`;
}

function bytesOf(path: string, tensor: TensorToWrite, data: unknown, byteLength: number): Uint8Array {
  if (!ArrayBuffer.isView(data)) {
    throw new SafetensorsError(
      "INVALID_TENSOR",
      path,
      "data must be a typed array or a DataView",
      tensor.name,
    );
  }
  if (data.byteLength !== byteLength) {
    throw new SafetensorsError(
      "INVALID_TENSOR",
      path,
      `shape [${tensor.shape.join(", ")}] of ${tensor.dtype} needs ${byteLength} bytes, data has ${data.byteLength}`,
      tensor.name,
    );
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Coalesces small writes; large ones go straight to the file. */
class BufferedWriter {
  readonly #handle: FileHandle;
  readonly #buffer = Buffer.allocUnsafeSlow(WRITE_BUFFER_BYTES);
  #used = 0;

  constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#used + bytes.byteLength <= WRITE_BUFFER_BYTES) {
      this.#buffer.set(bytes, this.#used);
      this.#used += bytes.byteLength;
      return;
    }
    await this.flush();
    if (bytes.byteLength < WRITE_BUFFER_BYTES / 2) {
      this.#buffer.set(bytes, 0);
      this.#used = bytes.byteLength;
    } else {
      await this.#writeAll(bytes);
    }
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    await this.#writeAll(this.#buffer.subarray(0, this.#used));
    this.#used = 0;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await this.#handle.write(
        bytes,
        done,
        Math.min(bytes.byteLength - done, MAX_WRITE_CHUNK),
      );
      done += bytesWritten;
    }
  }
}
