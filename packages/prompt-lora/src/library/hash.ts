/**
 * The hashes A1111 shows for model files, computed in one streaming pass (the file is never in memory):
 *  - sha256: SHA-256 of the whole file (modules/hashes.py calculate_sha256). Its first 10 hex digits are
 *    the "AutoV2" checkpoint hash (sd_models.py: shorthash = sha256[0:10]); its first 12 are what the Lora
 *    extension shows for a .pt/.ckpt LoRA.
 *  - addnet: SHA-256 of the bytes after the 8 + N byte safetensors header (hashes.py addnet_hash_safetensors,
 *    from kohya's sd-scripts), so editing metadata does not change it; the Lora extension's shorthash (and
 *    Civitai's "AutoV3") is its first 12 hex digits.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export interface FileHashes {
  /** Full-file SHA-256, 64 hex. */
  sha256: string;
  /** First 10 hex of sha256: A1111's checkpoint hash ("AutoV2"). */
  autoV2: string;
  /** SHA-256 of the data after the safetensors header, 64 hex; null for files that are not safetensors. */
  addnet: string | null;
  /** First 12 hex of addnet ("AutoV3"); null for files that are not safetensors. */
  addnetShort: string | null;
}

/**
 * Hashes `path` in one pass. `dataStart` (8 + N) is where the safetensors data begins; pass null for files
 * of other formats. Bytes before it go to the full-file hash only.
 */
export async function hashFile(path: string, dataStart: number | null): Promise<FileHashes> {
  const full = createHash("sha256");
  const data = dataStart === null ? null : createHash("sha256");
  let position = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    full.update(chunk);
    if (data !== null && dataStart !== null) {
      const end = position + chunk.length;
      if (end > dataStart) data.update(position >= dataStart ? chunk : chunk.subarray(dataStart - position));
    }
    position += chunk.length;
  }
  const sha256 = full.digest("hex");
  const addnet = data === null ? null : data.digest("hex");
  return {
    sha256,
    autoV2: sha256.slice(0, 10),
    addnet,
    addnetShort: addnet === null ? null : addnet.slice(0, 12),
  };
}
