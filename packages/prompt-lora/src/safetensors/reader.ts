/**
 * Lazy safetensors reader: opens the file, validates the header, and reads each tensor on demand with
 * positional reads on one file descriptor, so a multi-gigabyte checkpoint is never in memory whole and
 * files over 2 GiB work (offsets are plain numbers, exact up to 2^53).
 *
 * Owned by this project rather than taken from npm: the package named `safetensors` there is a small
 * browser-only reader without validation or a writer.
 */
import { constants } from "node:buffer";
import { type FileHandle, open } from "node:fs/promises";
import { toFloat32 } from "./dtypes.ts";
import { SafetensorsError } from "./errors.ts";
import { MAX_HEADER_BYTES, parseHeader } from "./header.ts";
import type { DType, TensorInfo } from "./types.ts";

export interface SafetensorsFile {
  readonly path: string;
  /** N, the length of the JSON header in bytes. */
  readonly headerByteLength: number;
  /** 8 + N: where the data area starts. */
  readonly dataStart: number;
  readonly metadata: Record<string, string>;
  /** Every tensor, in the order of the header. */
  readonly tensors: Map<string, TensorInfo>;
  /** The tensor's bytes (little-endian), in a Buffer of its own at byteOffset 0, so typed views are aligned. */
  readRaw(name: string): Promise<Buffer>;
  /** The tensor as float32; every dtype is converted (float dtypes exactly or rounded, integers by value). */
  readFloat32(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

export interface Float32Tensor {
  dtype: DType;
  shape: number[];
  data: Float32Array;
}

/** Largest single read; the OS caps one read(2) a little under 2 GiB. */
const MAX_READ_CHUNK = 1 << 30;

export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (cause) {
    throw ioError(path, "cannot open", cause);
  }
  try {
    return await readLayout(handle, path);
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
}

/** Opens, reads every tensor as float32 and closes: for small files such as LoRAs. */
export async function readSafetensors(
  path: string,
): Promise<{ metadata: Record<string, string>; tensors: Map<string, Float32Tensor> }> {
  const file = await openSafetensors(path);
  try {
    const tensors = new Map<string, Float32Tensor>();
    for (const info of file.tensors.values()) {
      tensors.set(info.name, {
        dtype: info.dtype,
        shape: [...info.shape],
        data: await file.readFloat32(info.name),
      });
    }
    return { metadata: file.metadata, tensors };
  } finally {
    await file.close();
  }
}

async function readLayout(handle: FileHandle, path: string): Promise<SafetensorsFile> {
  let fileSize: number;
  try {
    fileSize = (await handle.stat()).size;
  } catch (cause) {
    throw ioError(path, "cannot stat", cause);
  }
  if (fileSize < 8) {
    throw new SafetensorsError(
      "HEADER_TOO_SMALL",
      path,
      `file has ${fileSize} bytes, fewer than the 8-byte header length`,
    );
  }
  const prefix = await readExactly(handle, path, 0, 8);
  const declared = prefix.readBigUInt64LE(0);
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(
      "HEADER_TOO_LARGE",
      path,
      `header length ${declared} exceeds the ${MAX_HEADER_BYTES}-byte limit`,
    );
  }
  const headerByteLength = Number(declared);
  if (headerByteLength > fileSize - 8) {
    throw new SafetensorsError(
      "INVALID_HEADER_LENGTH",
      path,
      `header length ${headerByteLength} is larger than the ${fileSize - 8} bytes after the length field (file truncated?)`,
    );
  }
  const dataStart = 8 + headerByteLength;
  const headerBytes = await readExactly(handle, path, 8, headerByteLength);
  const { metadata, tensors } = parseHeader(headerBytes, dataStart, fileSize - dataStart, path);
  return new LazySafetensorsFile(handle, path, headerByteLength, dataStart, metadata, tensors);
}

class LazySafetensorsFile implements SafetensorsFile {
  #handle: FileHandle | undefined;

  constructor(
    handle: FileHandle,
    readonly path: string,
    readonly headerByteLength: number,
    readonly dataStart: number,
    readonly metadata: Record<string, string>,
    readonly tensors: Map<string, TensorInfo>,
  ) {
    this.#handle = handle;
  }

  async readRaw(name: string): Promise<Buffer> {
    const info = this.#info(name);
    const handle = this.#handle;
    if (!handle) throw new SafetensorsError("CLOSED", this.path, "file is closed", name);
    if (info.byteLength > constants.MAX_LENGTH) {
      throw new SafetensorsError(
        "TENSOR_TOO_LARGE",
        this.path,
        `${info.byteLength} bytes exceed the largest Buffer this Node.js can allocate (${constants.MAX_LENGTH})`,
        name,
      );
    }
    return readExactly(handle, this.path, info.fileOffset, info.byteLength, name);
  }

  async readFloat32(name: string): Promise<Float32Array> {
    const info = this.#info(name);
    const raw = await this.readRaw(name);
    // readRaw's buffer is ours alone and aligned: an F32 tensor needs no copy.
    if (info.dtype === "F32") return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    return toFloat32(raw, info.dtype);
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }

  #info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError("TENSOR_NOT_FOUND", this.path, "no such tensor in the file", name);
    return info;
  }
}

/** Reads exactly `length` bytes at `position` into a fresh, unpooled Buffer; a short file is TRUNCATED. */
async function readExactly(
  handle: FileHandle,
  path: string,
  position: number,
  length: number,
  key?: string,
): Promise<Buffer> {
  const out = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(
        out,
        done,
        Math.min(length - done, MAX_READ_CHUNK),
        position + done,
      ));
    } catch (cause) {
      throw ioError(path, `read of ${length} bytes at offset ${position} failed`, cause, key);
    }
    if (bytesRead === 0) {
      throw new SafetensorsError(
        "TRUNCATED",
        path,
        `file ended after ${position + done} bytes while reading ${length} bytes at offset ${position}`,
        key,
      );
    }
    done += bytesRead;
  }
  return out;
}

function ioError(path: string, what: string, cause: unknown, key?: string): SafetensorsError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new SafetensorsError("IO_ERROR", path, `${what}: ${detail}`, key, { cause });
}
