import { chmod, copyFile, mkdir, open, realpath, stat } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { AdapterModule, ModelFamily } from "../adapters/types.ts";
import { diffusersCheckpointTarget, originalCheckpointTarget } from "../architecture/index.ts";
import { openSafetensors, type SafetensorsFile } from "../safetensors/index.ts";
import type { TensorInfo } from "../safetensors/types.ts";
import { withAtomicPath } from "../util/atomic.ts";
import { WorkerCrashError, WorkerPool } from "../util/worker-pool.ts";
import { atomicFolder, exists, listFiles } from "./bake-files.ts";
import { MergeError } from "./errors.ts";
import { type Patch, patchedTensor } from "./patch.ts";
import { mergeWorkerEntry, reviveMergeError } from "./pool.ts";
import { multiplierFor, stackAdapters } from "./stack.ts";
import type { ProgressCallback, StackEntry } from "./types.ts";

export interface BakeOptions {
  /** Base checkpoint: a .safetensors file (original layout) or a diffusers folder. */
  base: string;
  /** New checkpoint (file or folder, same layout as the base). */
  output: string;
  adapters: StackEntry[];
  /** Default: "diffusers" when base is a folder, else "original". */
  layout?: "original" | "diffusers";
  /** Model family when the adapters do not say (family "unknown"). */
  family?: ModelFamily;
  /** Replace an existing output (never the base). */
  overwrite?: boolean;
  onProgress?: ProgressCallback;
  /** Worker threads computing the patched tensors (default: cores - 2, at most 4; so none on 2 cores). */
  workers?: number;
}

export interface BakeReport {
  /** Tensors that received a delta. */
  bakedTensors: string[];
  /** Modules whose target weight the checkpoint lacks ("component:path -> key"); nothing was applied for them. */
  unmatchedModules: string[];
  copiedTensors: number;
}

export async function bakeCheckpoint(opts: BakeOptions): Promise<BakeReport> {
  const layout = opts.layout ?? ((await stat(opts.base)).isDirectory() ? "diffusers" : "original");
  await refuseBaseAsOutput(opts.base, opts.output);
  const { modules, family } = collectModules(opts);
  const report: BakeReport = { bakedTensors: [], unmatchedModules: [], copiedTensors: 0 };

  if (layout === "original") {
    if (!opts.overwrite && (await exists(opts.output))) {
      throw new MergeError(
        "OUTPUT_EXISTS",
        "output exists (pass overwrite to replace it)",
        undefined,
        opts.output,
      );
    }
    const patches = new Map<string, Patch[]>();
    for (const p of modules) {
      const t = originalCheckpointTarget(family, p.module.component, p.module.path);
      addPatch(patches, t.key, { ...p, rows: t.rows });
    }
    const file = await openSafetensors(opts.base);
    try {
      noteUnmatched(file, patches, report);
      const total = totalBytes(file);
      await withPatchRunner(opts, report, patches.size, (compute, lanes) =>
        bakeFile(
          file,
          opts.output,
          patches,
          report,
          (done, label) => opts.onProgress?.(done, total, label),
          compute,
          lanes,
        ),
      );
    } finally {
      await file.close();
    }
    return report;
  }

  // Diffusers folder: group patches by component file.
  const byFile = new Map<string, Map<string, Patch[]>>();
  for (const p of modules) {
    let t: { file: string; key: string };
    try {
      t = diffusersCheckpointTarget(family, p.module.component, p.module.path);
    } catch {
      report.unmatchedModules.push(`${p.module.component}:${p.module.path}`);
      continue;
    }
    const m = byFile.get(t.file) ?? new Map<string, Patch[]>();
    addPatch(m, t.key, p);
    byFile.set(t.file, m);
  }
  const files = await listFiles(opts.base);
  for (const f of byFile.keys()) {
    if (!files.includes(f)) {
      for (const list of byFile.get(f)!.values())
        for (const p of list) report.unmatchedModules.push(`${p.module.component}:${p.module.path} -> ${f}`);
      byFile.delete(f);
    }
  }
  const sizes = await Promise.all(files.map(async (f) => (await stat(join(opts.base, f))).size));
  const total = sizes.reduce((a, b) => a + b, 0);
  let before = 0;
  let targets = 0;
  for (const m of byFile.values()) targets += m.size;
  await withPatchRunner(opts, report, targets, (compute, lanes) =>
    atomicFolder(opts.output, opts.overwrite === true, async (tmp) => {
      for (let i = 0; i < files.length; i++) {
        const f = files[i];
        const dest = join(tmp, f);
        await mkdir(dirname(dest), { recursive: true });
        const patches = byFile.get(f);
        if (patches) {
          const file = await openSafetensors(join(opts.base, f));
          try {
            noteUnmatched(file, patches, report);
            const offset = before;
            await bakeFile(
              file,
              dest,
              patches,
              report,
              (done, label) => opts.onProgress?.(offset + done, total, `${f}: ${label}`),
              compute,
              lanes,
            );
          } finally {
            await file.close();
          }
        } else {
          await copyFile(join(opts.base, f), dest);
        }
        before += sizes[i];
        opts.onProgress?.(before, total, f);
      }
    }),
  );
  return report;
}

/**
 * Workers for the patches by default: none on machines with 2 cores or fewer. The kernel copy of the file
 * keeps one core busy, and measured on the 2-core target (2026-11-22) patching on this thread beside it beat a
 * 2-worker pool (bench/bake-stack.ts, 13 interleaved rounds at load 1-2.5: 0.93-1.50x vs 1.25-1.76x the copy
 * time, 1.8-3.5 vs 2.9-4.7 s CPU per bake). The pool's threads only compete with the copy and cost ~0.3 s CPU each to start.
 */
function defaultBakeWorkers(): number {
  return Math.max(0, Math.min(4, availableParallelism() - 2));
}

/** Runs `bake` with a worker pool for the patches (closed afterwards), or in-process with workers: 0. */
async function withPatchRunner<R>(
  opts: BakeOptions,
  report: BakeReport,
  tensors: number,
  bake: (compute: PatchRunner, lanes: number) => Promise<R>,
): Promise<R> {
  const workers = Math.min(opts.workers ?? defaultBakeWorkers(), tensors);
  if (workers < 1) return bake(patchRunner(undefined), 1);
  const pool = new WorkerPool(mergeWorkerEntry(), workers, reviveMergeError);
  try {
    // One lane more than workers, so a worker never idles while its lane writes.
    return await bake(patchRunner(pool), workers + 1);
  } catch (err) {
    // Workers that cannot run here: bake again in this thread (the failed attempt's temp output is gone).
    if (err instanceof WorkerCrashError) {
      report.bakedTensors.length = 0;
      report.copiedTensors = 0;
      return bake(patchRunner(undefined), 1);
    }
    throw err;
  } finally {
    await pool.close();
  }
}

/** Stacks the non-DoRA modules exactly (scale 1); DoRA modules stay per adapter (they need W). */
function collectModules(opts: BakeOptions): { modules: Patch[]; family: Exclude<ModelFamily, "unknown"> } {
  const plainEntries: StackEntry[] = [];
  const dora: Patch[] = [];
  for (const e of opts.adapters) {
    const withDora = e.adapter.modules.filter((m) => m.doraScale);
    for (const m of withDora) dora.push({ module: m, doraMultiplier: multiplierFor(e, m.component) });
    plainEntries.push({
      ...e,
      adapter: { ...e.adapter, modules: e.adapter.modules.filter((m) => !m.doraScale) },
    });
  }
  const stacked = stackAdapters(plainEntries);
  const family = stacked.family !== "unknown" ? stacked.family : opts.family;
  if (!family || family === "unknown") {
    throw new MergeError(
      "UNKNOWN_FAMILY",
      "the adapters do not say which model family they target: pass family",
    );
  }
  return { modules: [...stacked.modules.map((module) => ({ module })), ...dora], family };
}

function addPatch(map: Map<string, Patch[]>, key: string, p: Patch): void {
  const list = map.get(key) ?? [];
  list.push(p);
  map.set(key, list);
}

function noteUnmatched(file: SafetensorsFile, patches: Map<string, Patch[]>, report: BakeReport): void {
  for (const [key, list] of patches) {
    if (file.tensors.has(key)) continue;
    for (const p of list) report.unmatchedModules.push(`${p.module.component}:${p.module.path} -> ${key}`);
    patches.delete(key);
  }
}

function totalBytes(file: SafetensorsFile): number {
  let n = 0;
  for (const t of file.tensors.values()) n += t.byteLength;
  return n;
}

/** Patched tensors computed while the kernel copies the file wait in memory up to this many bytes. */
const PENDING_BYTES = 256 << 20;

/** Computes patched tensors: in a worker pool when there is one, else in this thread. */
type PatchRunner = (file: SafetensorsFile, info: TensorInfo, list: Patch[]) => Promise<Uint8Array>;

function patchRunner(pool: WorkerPool | undefined): PatchRunner {
  if (!pool) return patchedTensor;
  return (file, info, patches) =>
    pool.run<Uint8Array>("patchTensor", { path: file.path, info, patches: patches.map(compactPatch) });
}

/** The patch with tensors that own their buffers, so posting it to a worker copies no unrelated bytes. */
function compactPatch(p: Patch): Patch {
  const tensors: AdapterModule["tensors"] = {};
  for (const [name, t] of Object.entries(p.module.tensors)) {
    if (!t) continue;
    const owns = t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength;
    tensors[name] = owns ? t : { shape: t.shape, data: t.data.slice() };
  }
  return { ...p, module: { ...p.module, tensors } };
}

/**
 * Writes `file` plus patches to `output`. A bake keeps every tensor's dtype and shape, so the output has the
 * base's exact header and layout: the file is copied by the kernel (fs.copyFile: copy_file_range, or a reflink
 * where the filesystem has them), no byte of an untargeted tensor passes through JS, and each targeted tensor is
 * then overwritten in place at its own offset. Patched tensors are computed while the copy runs, several at a
 * time on the worker pool (bounded by PENDING_BYTES), and written as they finish once the copy is done.
 * Temp file + fsync + rename via withAtomicPath.
 */
async function bakeFile(
  file: SafetensorsFile,
  output: string,
  patches: Map<string, Patch[]>,
  report: BakeReport,
  progress: (doneBytes: number, label: string) => void,
  compute: PatchRunner,
  lanes: number,
): Promise<void> {
  const targeted = [...file.tensors.values()].filter((info) => patches.has(info.name));
  const untargetedBytes = totalBytes(file) - targeted.reduce((n, t) => n + t.byteLength, 0);
  const mode = (await stat(file.path)).mode & 0o777;
  await withAtomicPath(output, async (tmp) => {
    // The copy runs in libuv's thread pool; the handle for the in-place writes opens once it is done.
    let done = untargetedBytes;
    const ready = copyFile(file.path, tmp).then(async () => {
      await chmod(tmp, mode | 0o200); // the base may be read-only; the copy must take our writes
      report.copiedTensors += file.tensors.size - targeted.length;
      progress(done, "copy");
      return open(tmp, "r+");
    });
    ready.catch(() => {}); // surfaced by the awaits below
    let pendingBytes = 0;
    let wake: (() => void) | undefined;
    const put = async (info: TensorInfo, bytes: Uint8Array) => {
      if (bytes.byteLength !== info.byteLength) {
        throw new MergeError(
          "SHAPE_MISMATCH",
          `patched tensor has ${bytes.byteLength} bytes, expected ${info.byteLength}`,
          info.name,
          file.path,
        );
      }
      const handle = await ready;
      for (let at = 0; at < bytes.byteLength; ) {
        const { bytesWritten } = await handle.write(bytes, at, bytes.byteLength - at, info.fileOffset + at);
        at += bytesWritten;
      }
      report.bakedTensors.push(info.name);
      done += info.byteLength;
      progress(done, info.name);
    };
    let copied = false;
    ready.then(
      () => {
        copied = true;
      },
      () => {},
    );
    const held: Promise<void>[] = [];
    let next = 0;
    // Each lane takes the next tensor and computes it (on a worker each, with a pool). Before the copy is done
    // the result is held (its write waits for the copy) and the lane goes on, while the held bytes stay under
    // PENDING_BYTES; afterwards it writes each result before taking the next.
    const lane = async () => {
      while (next < targeted.length) {
        const info = targeted[next++];
        while (pendingBytes > 0 && pendingBytes + info.byteLength > PENDING_BYTES) {
          await new Promise<void>((resolve) => {
            const prev = wake;
            wake = () => {
              prev?.();
              resolve();
            };
          });
        }
        pendingBytes += info.byteLength;
        const release = () => {
          pendingBytes -= info.byteLength;
          const w = wake;
          wake = undefined;
          w?.();
        };
        let write: Promise<void>;
        try {
          const bytes = await compute(file, info, patches.get(info.name)!);
          write = put(info, bytes).finally(release);
        } catch (err) {
          release();
          throw err;
        }
        if (copied) await write;
        else {
          write.catch(() => {}); // surfaced by Promise.all(held) below
          held.push(write);
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.max(1, lanes) }, lane));
      await Promise.all(held);
      await ready;
    } finally {
      await Promise.allSettled(held);
      await (await ready.catch(() => undefined))?.close();
    }
  });
}

async function refuseBaseAsOutput(base: string, output: string): Promise<void> {
  const b = await realpath(base);
  const o = await realpath(output).catch(() => resolve(output));
  if (b === o || o.startsWith(`${b}/`)) {
    throw new MergeError(
      "OUTPUT_IS_BASE",
      `output ${output} is (or is inside) the base checkpoint; bake writes a new one`,
      undefined,
      base,
    );
  }
}
