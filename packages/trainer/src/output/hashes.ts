/**
 * sshs_model_hash / sshs_legacy_hash, the hashes kohya precomputes into a LoRA's metadata
 * (train_util.precalculate_safetensors_hashes) so sd-webui-additional-networks and the WebUI need not hash the
 * file when indexing it:
 *  - sshs_model_hash: SHA-256 (64 hex) of everything after the 8 + N byte header, i.e. the tensor data section
 *    (addnet_hash_safetensors). It does not depend on metadata, and equals what A1111 computes from the file
 *    we write, because our writer lays the data out in the order given, unpadded.
 *  - sshs_legacy_hash: first 8 hex of SHA-256 of the 64 KiB at offset 1 MiB of the file serialized with only
 *    the ss_* metadata (addnet_hash_legacy). The header bytes are ours (our writer's own encoder), so for LoRAs
 *    whose header differs from Python safetensors' spelling this can differ from what kohya would write; for
 *    files under 1 MiB it is the hash of nothing ("e3b0c442") either way.
 */
import { createHash } from "node:crypto";
import { encodeSafetensorsHeader, type TensorToWrite } from "@lora-studio/prompt-lora";

export interface SshsHashes {
  sshs_model_hash: string;
  sshs_legacy_hash: string;
}

const LEGACY_OFFSET = 0x100000;
const LEGACY_LENGTH = 0x10000;

export async function sshsHashes(
  tensors: readonly TensorToWrite[],
  metadata: Record<string, string>,
): Promise<SshsHashes> {
  const model = createHash("sha256");
  const legacy = createHash("sha256");
  const ssOnly = Object.fromEntries(Object.entries(metadata).filter(([k]) => k.startsWith("ss_")));
  const header = encodeSafetensorsHeader([...tensors], ssOnly);
  let position = 0;
  const feedLegacy = (bytes: Uint8Array) => {
    const start = Math.max(LEGACY_OFFSET, position);
    const end = Math.min(LEGACY_OFFSET + LEGACY_LENGTH, position + bytes.length);
    if (end > start) legacy.update(bytes.subarray(start - position, end - position));
    position += bytes.length;
  };
  feedLegacy(header);
  for (const t of tensors) {
    const view = typeof t.data === "function" ? await t.data() : t.data;
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    model.update(bytes);
    feedLegacy(bytes);
  }
  return { sshs_model_hash: model.digest("hex"), sshs_legacy_hash: legacy.digest("hex").slice(0, 8) };
}

/** Metadata plus the two hashes, ready for writeSafetensors. */
export async function withSshsHashes(
  tensors: readonly TensorToWrite[],
  metadata: Record<string, string>,
): Promise<Record<string, string>> {
  return { ...metadata, ...(await sshsHashes(tensors, metadata)) };
}
