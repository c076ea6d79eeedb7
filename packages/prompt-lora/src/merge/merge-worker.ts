/**
 * Worker entry of the merge pool (util/worker-pool.ts): per-module compression and per-tensor bake patches.
 * Checkpoints are opened here by path (kept open for the worker's life, one handle per file), so tensor data
 * is read in the worker and only the finished bytes are transferred back.
 */
import { openSafetensors, type SafetensorsFile } from "../safetensors/index.ts";
import type { TensorInfo } from "../safetensors/types.ts";
import { serveTasks } from "../util/worker-pool.ts";
import { type CompressModuleArgs, compressModuleTask } from "./compress.ts";
import { type Patch, patchedTensor } from "./patch.ts";

const files = new Map<string, Promise<SafetensorsFile>>();

function fileAt(path: string): Promise<SafetensorsFile> {
  let f = files.get(path);
  if (!f) {
    f = openSafetensors(path);
    files.set(path, f);
    f.catch(() => files.delete(path));
  }
  return f;
}

serveTasks({
  compressModule: (args: CompressModuleArgs) => {
    const result = compressModuleTask(args);
    const t = result.module.tensors;
    const buffers = new Set([t.down.data.buffer, t.up.data.buffer] as ArrayBuffer[]);
    return { result, transfer: [...buffers] };
  },
  patchTensor: async (args: { path: string; info: TensorInfo; patches: Patch[] }) => {
    const bytes = await patchedTensor(await fileAt(args.path), args.info, args.patches);
    return { result: bytes, transfer: [bytes.buffer as ArrayBuffer] };
  },
  closeFiles: async () => {
    const open = [...files.values()];
    files.clear();
    for (const f of open) await (await f).close();
    return { result: null };
  },
});
