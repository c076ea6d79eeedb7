/**
 * The fp32 weight cache file: a plain safetensors file holding one component's float tensors of a checkpoint
 * (16-bit ones converted exactly to float32, float32 ones copied), under the checkpoint's own tensor names.
 *
 * Written here rather than with prompt-lora's writeSafetensors because the cache needs three things that writer
 * does not do: tensors converted in bounded chunks (the largest SD tensor is 150 MB as float32), a data area that
 * starts on a 64-byte boundary with the 64-byte-multiple tensors first (so nearly every tensor ORT maps is
 * 64-byte aligned; safetensors allows no gaps between tensors), and checksums patched into the header once the
 * data is written. The header itself is prompt-lora's encoder (plus trailing spaces), so readers see a standard file.
 *
 * Checksums (hex, in `__metadata__`): `sample_sha256`, SHA-256 over the first and last 4 KiB of every tensor,
 * checked at every load (a few MB of reads); `data_crc32`, zlib's CRC-32 over the whole data area (it catches
 * accidental damage, which is all a local cache needs, at several times SHA-256's speed), checked with verify
 * "full".
 */
import { createHash } from "node:crypto";
import { type FileHandle, open } from "node:fs/promises";
import { crc32 } from "node:zlib";
import {
  bf16ToF32,
  encodeSafetensorsHeader,
  f16ToF32,
  type SafetensorsFile,
  type TensorInfo,
  withAtomicPath,
} from "@lora-studio/prompt-lora";

export const CACHE_FORMAT = "lora-studio-fp32-cache/1";
/** Elements converted per read: 8 MiB of fp16 in, 16 MiB of float32 out. */
const CHUNK_ELEMENTS = 4 << 20;
const SAMPLE_BYTES = 4096;
const ALIGN = 64;
/** Placeholders patched once the data is written (same length as the final hex values). */
const PLACEHOLDERS = { sample_sha256: "0".repeat(64), data_crc32: "0".repeat(8) } as const;

/** The source tensors a component's cache holds, in cache-file order (64-byte-multiple sizes first). */
/** A planned tensor's size once stored as float32. */
export function f32Bytes(t: TensorInfo): number {
  return t.dtype === "F32" ? t.byteLength : t.byteLength * 2;
}

export function cachePlan(source: SafetensorsFile, prefix: string): TensorInfo[] {
  const picked = [...source.tensors.values()].filter(
    (t) => t.name.startsWith(prefix) && (t.dtype === "F16" || t.dtype === "BF16" || t.dtype === "F32"),
  );
  const aligned = picked.filter((t) => f32Bytes(t) % ALIGN === 0);
  return [...aligned, ...picked.filter((t) => f32Bytes(t) % ALIGN !== 0)];
}

/** Whether a plan has anything to convert (an all-float32 component is used in place, no cache). */
export function hasHalfTensors(plan: readonly TensorInfo[]): boolean {
  return plan.some((t) => t.dtype !== "F32");
}

/** The standard header for `plan` as float32, padded with spaces so the data area starts on a 64-byte boundary. */
function cacheHeader(plan: readonly TensorInfo[], metadata: Record<string, string>): Uint8Array {
  const meta: Record<string, string> = { ...metadata, format: CACHE_FORMAT };
  Object.assign(meta, PLACEHOLDERS);
  const base = encodeSafetensorsHeader(
    plan.map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape, data: new Uint8Array(0) })),
    meta,
  );
  const total = Math.ceil(base.byteLength / ALIGN) * ALIGN;
  const out = new Uint8Array(total).fill(0x20);
  out.set(base);
  new DataView(out.buffer).setBigUint64(0, BigInt(total - 8), true);
  return out;
}

/** Byte position of metadata value `key` (a placeholder) inside the header. */
function valueOffset(header: Uint8Array, key: keyof typeof PLACEHOLDERS): number {
  const at = Buffer.from(header.buffer, header.byteOffset, header.byteLength).indexOf(
    `"${key}":"${PLACEHOLDERS[key]}"`,
  );
  if (at < 0) throw new Error(`fp32 cache header lacks the ${key} placeholder`);
  return at + key.length + 4;
}

async function readExactly(fh: FileHandle, into: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await fh.read(into, done, into.byteLength - done, position + done);
    if (bytesRead === 0) throw new Error(`${path}: ends at ${position + done}, inside a tensor`);
    done += bytesRead;
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, position + done);
    done += bytesWritten;
  }
}

/** Running CRC-32 of the data area. */
interface Crc {
  value: number;
}

/** 8 lower-case hex digits. */
const crcHex = (c: number) => (c >>> 0).toString(16).padStart(8, "0");

/** Streams one tensor into the cache in chunks; returns the position after it. */
async function convertTensor(
  src: FileHandle,
  srcPath: string,
  out: FileHandle,
  t: TensorInfo,
  position: number,
  crc: Crc,
  scratch: Uint8Array,
): Promise<number> {
  const inBytes = t.dtype === "F32" ? 4 : 2;
  const n = t.byteLength / inBytes;
  let pos = position;
  for (let i = 0; i < n; i += CHUNK_ELEMENTS) {
    const m = Math.min(CHUNK_ELEMENTS, n - i);
    const raw = scratch.subarray(0, m * inBytes);
    await readExactly(src, raw, t.fileOffset + i * inBytes, srcPath);
    let f32: Uint8Array = raw;
    if (t.dtype !== "F32") {
      const halves = new Uint16Array(raw.buffer, raw.byteOffset, m);
      const values = t.dtype === "F16" ? f16ToF32(halves) : bf16ToF32(halves);
      f32 = new Uint8Array(values.buffer);
    }
    crc.value = crc32(f32, crc.value);
    await writeAll(out, f32, pos);
    pos += f32.byteLength;
  }
  return pos;
}

/** SHA-256 over the first and last 4 KiB of each tensor (ranges in file order). */
export async function sampleHash(
  fh: FileHandle,
  tensors: readonly { fileOffset: number; byteLength: number }[],
  path: string,
): Promise<string> {
  const hash = createHash("sha256");
  const buf = new Uint8Array(SAMPLE_BYTES);
  for (const t of tensors) {
    const n = Math.min(SAMPLE_BYTES, t.byteLength);
    for (const at of [t.fileOffset, t.fileOffset + t.byteLength - n]) {
      const part = buf.subarray(0, n);
      await readExactly(fh, part, at, path);
      hash.update(part);
    }
  }
  return hash.digest("hex");
}

/**
 * Writes the cache for `plan` (tensors of `source`) to `path` atomically (temp file, fsync, rename): a reader
 * sees the previous file or the complete new one. Holds one chunk in memory at a time. Returns the file size.
 */
export async function writeCacheFile(
  path: string,
  source: SafetensorsFile,
  plan: readonly TensorInfo[],
  metadata: Record<string, string>,
): Promise<number> {
  const header = cacheHeader(plan, metadata);
  return withAtomicPath(path, async (tmp) => {
    const out = await open(tmp, "wx+");
    const src = await open(source.path, "r");
    try {
      await writeAll(out, header, 0);
      const crc: Crc = { value: 0 };
      // One scratch buffer of its own (never a pooled Buffer), so the Uint16Array views over it are aligned.
      const scratch = new Uint8Array(CHUNK_ELEMENTS * 4);
      let pos = header.byteLength;
      const written: { fileOffset: number; byteLength: number }[] = [];
      for (const t of plan) {
        const end = await convertTensor(src, source.path, out, t, pos, crc, scratch);
        written.push({ fileOffset: pos, byteLength: end - pos });
        pos = end;
      }
      const sums = { sample_sha256: await sampleHash(out, written, tmp), data_crc32: crcHex(crc.value) };
      for (const k of Object.keys(PLACEHOLDERS) as (keyof typeof PLACEHOLDERS)[]) {
        await writeAll(out, Buffer.from(sums[k], "ascii"), valueOffset(header, k));
      }
      return pos;
    } finally {
      await src.close();
      await out.close();
    }
  });
}

/**
 * Why an opened cache file cannot be trusted for `plan` and `metadata` (source identity), or undefined when it
 * can. The header was already validated by the safetensors reader (a truncated file fails there).
 */
export async function cacheProblem(
  file: SafetensorsFile,
  plan: readonly TensorInfo[],
  metadata: Record<string, string>,
  verify: "sample" | "full",
): Promise<string | undefined> {
  const meta = file.metadata;
  if (meta.format !== CACHE_FORMAT) return `format "${meta.format ?? "none"}" is not ${CACHE_FORMAT}`;
  for (const [k, v] of Object.entries(metadata)) {
    if (meta[k] !== v) return `the checkpoint changed (${k} was ${meta[k] ?? "unset"}, is now ${v})`;
  }
  if (file.tensors.size !== plan.length) return `holds ${file.tensors.size} tensors, expected ${plan.length}`;
  for (const t of plan) {
    const c = file.tensors.get(t.name);
    if (c?.dtype !== "F32" || c.shape.length !== t.shape.length || c.shape.some((d, i) => d !== t.shape[i]))
      return `tensor ${t.name} is missing or not float32 [${t.shape}]`;
  }
  const fh = await open(file.path, "r");
  try {
    const sample = await sampleHash(fh, [...file.tensors.values()], file.path);
    if (sample !== meta.sample_sha256) return "sampled data checksum mismatch (corrupt data)";
    if (verify === "full") {
      let crc = 0;
      const size = (await fh.stat()).size;
      const buf = new Uint8Array(16 << 20);
      for (let at = file.dataStart; at < size; at += buf.byteLength) {
        const part = buf.subarray(0, Math.min(buf.byteLength, size - at));
        await readExactly(fh, part, at, file.path);
        crc = crc32(part, crc);
      }
      if (crcHex(crc) !== meta.data_crc32) return "data checksum mismatch (corrupt data)";
    }
  } finally {
    await fh.close();
  }
  return undefined;
}
