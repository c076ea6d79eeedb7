/**
 * Bake a stack of adapters into a base checkpoint: W' = W + sum of deltas, written as a new checkpoint.
 *
 * Streaming, copy-then-patch: every tensor keeps its dtype and shape, so the output has the base's header and
 * layout byte for byte (`__metadata__` included). The file is copied by the kernel (untargeted tensors never
 * decoded, never through JS), and each targeted tensor is read from the base (positional reads), decoded to
 * float32, given its delta (computed in float32 from the stacked factors on the SIMD kernel), re-encoded in its
 * own dtype and written at its own offset: one tensor decoded at a time, whatever the checkpoint size.
 *
 * Layouts: "original" (single file, keys from architecture/originalCheckpointTarget, fused OpenCLIP in_proj rows
 * included) or "diffusers" (a folder: each component's safetensors file is baked, every other file copied).
 * Output is atomic (temp file or folder, then rename); the base is never written, and output == base is refused.
 */
import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, open, readdir, realpath, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { moduleDelta } from "../adapters/delta.ts";
import type { AdapterModule, ModelFamily } from "../adapters/types.ts";
import { diffusersCheckpointTarget, originalCheckpointTarget } from "../architecture/index.ts";
import { matmul, matrix } from "../math/matrix.ts";
import { fromFloat32, isFloatDType, openSafetensors, type SafetensorsFile } from "../safetensors/index.ts";
import type { TensorInfo } from "../safetensors/types.ts";
import { withAtomicPath } from "../util/atomic.ts";
import { MergeError } from "./errors.ts";
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
}

export interface BakeReport {
  /** Tensors that received a delta. */
  bakedTensors: string[];
  /** Modules whose target weight the checkpoint lacks ("component:path -> key"); nothing was applied for them. */
  unmatchedModules: string[];
  copiedTensors: number;
}

/** One delta to add to a checkpoint tensor (a row slice of it for fused tensors). */
interface Patch {
  module: AdapterModule;
  rows?: [number, number];
  /** DoRA modules: applied one adapter at a time from the base weight, with this multiplier. */
  doraMultiplier?: number;
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
      await bakeFile(file, opts.output, patches, report, (done, label) =>
        opts.onProgress?.(done, total, label),
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
  await atomicFolder(opts.output, opts.overwrite === true, async (tmp) => {
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
          await bakeFile(file, dest, patches, report, (done, label) =>
            opts.onProgress?.(offset + done, total, `${f}: ${label}`),
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
  });
  return report;
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

/**
 * Writes `file` plus patches to `output`. A bake keeps every tensor's dtype and shape, so the output has the
 * base's exact header and layout: the file is copied by the kernel (fs.copyFile: copy_file_range, or a reflink
 * where the filesystem has them), no byte of an untargeted tensor passes through JS, and each targeted tensor is
 * then overwritten in place at its own offset. Patched tensors are computed while the copy runs (bounded by
 * PENDING_BYTES), one tensor decoded at a time. Temp file + fsync + rename via withAtomicPath.
 */
async function bakeFile(
  file: SafetensorsFile,
  output: string,
  patches: Map<string, Patch[]>,
  report: BakeReport,
  progress: (doneBytes: number, label: string) => void,
): Promise<void> {
  const targeted = [...file.tensors.values()].filter((info) => patches.has(info.name));
  const untargetedBytes = totalBytes(file) - targeted.reduce((n, t) => n + t.byteLength, 0);
  const mode = (await stat(file.path)).mode & 0o777;
  await withAtomicPath(output, async (tmp) => {
    let copied = false;
    const copy = copyFile(file.path, tmp).then(() => {
      copied = true;
    });
    copy.catch(() => {}); // surfaced by the await below
    const pending: { info: TensorInfo; bytes: Uint8Array }[] = [];
    let pendingBytes = 0;
    let next = 0;
    while (next < targeted.length && !copied && pendingBytes + targeted[next].byteLength <= PENDING_BYTES) {
      const info = targeted[next++];
      pending.push({ info, bytes: await patchedTensor(file, info, patches.get(info.name)!) });
      pendingBytes += info.byteLength;
    }
    await copy;
    await chmod(tmp, mode | 0o200); // the base may be read-only; the copy must take our writes
    report.copiedTensors += file.tensors.size - targeted.length;
    let done = untargetedBytes;
    progress(done, "copy");
    const handle = await open(tmp, "r+");
    try {
      const put = async (info: TensorInfo, bytes: Uint8Array) => {
        if (bytes.byteLength !== info.byteLength) {
          throw new MergeError(
            "SHAPE_MISMATCH",
            `patched tensor has ${bytes.byteLength} bytes, expected ${info.byteLength}`,
            info.name,
            file.path,
          );
        }
        for (let at = 0; at < bytes.byteLength; ) {
          const { bytesWritten } = await handle.write(bytes, at, bytes.byteLength - at, info.fileOffset + at);
          at += bytesWritten;
        }
        report.bakedTensors.push(info.name);
        done += info.byteLength;
        progress(done, info.name);
      };
      for (const p of pending.splice(0)) await put(p.info, p.bytes);
      for (; next < targeted.length; next++) {
        const info = targeted[next];
        await put(info, await patchedTensor(file, info, patches.get(info.name)!));
      }
    } finally {
      await handle.close();
    }
  });
}

async function patchedTensor(file: SafetensorsFile, info: TensorInfo, list: Patch[]): Promise<Uint8Array> {
  if (!isFloatDType(info.dtype)) {
    throw new MergeError(
      "SHAPE_MISMATCH",
      `tensor has dtype ${info.dtype}; only float weights can be baked`,
      info.name,
      file.path,
    );
  }
  const w = await file.readFloat32(info.name);
  const original = list.some((p) => p.doraMultiplier !== undefined) ? Float32Array.from(w) : w;
  const rowLength = info.shape.length > 0 ? w.length / info.shape[0] : w.length;
  for (const p of list) {
    const [r0, r1] = p.rows ?? [0, info.shape[0] ?? 1];
    const start = r0 * rowLength;
    const length = (r1 - r0) * rowLength;
    const key = `${p.module.component}:${p.module.path}`;
    let delta: Float32Array;
    if (p.doraMultiplier !== undefined) {
      const base = {
        shape: [r1 - r0, ...info.shape.slice(1)],
        data: original.subarray(start, start + length),
      };
      delta = moduleDelta(p.module, p.doraMultiplier, base).data;
    } else {
      delta = stackedDelta(p.module);
    }
    if (delta.length !== length) {
      throw new MergeError(
        "SHAPE_MISMATCH",
        `module ${key} has a delta of ${delta.length} values, the weight${p.rows ? ` rows ${r0}..${r1}` : ""} [${info.shape}] has ${length}`,
        info.name,
        file.path,
      );
    }
    for (let i = 0; i < length; i++) w[start + i] += delta[i];
  }
  return fromFloat32(w, info.dtype);
}

/** Delta of a stacked module (scale already 1): up @ down on the SIMD kernel, or the full diff. */
function stackedDelta(m: AdapterModule): Float32Array {
  if (m.kind === "lora" && !m.tensors.mid && m.alpha === m.tensors.down.shape[0]) {
    const down = m.tensors.down;
    const up = m.tensors.up;
    const r = down.shape[0];
    const inner = down.data.length / Math.max(r, 1);
    if (r === 0) return new Float32Array(up.shape[0] * inner);
    return matmul(matrix(up.shape[0], r, up.data), matrix(r, inner, down.data)).data;
  }
  return moduleDelta(m, 1).data;
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

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Every file under `dir`, relative, sorted (symlinks followed). */
async function listFiles(dir: string, sub = ""): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(dir, sub), { withFileTypes: true })) {
    const rel = sub ? `${sub}/${entry.name}` : entry.name;
    const st = await stat(join(dir, rel));
    if (st.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else out.push(rel);
  }
  return out.sort();
}

/** Builds a folder under a temporary sibling name, then renames it into place (replacing only with overwrite). */
async function atomicFolder(
  path: string,
  overwrite: boolean,
  build: (tmp: string) => Promise<void>,
): Promise<void> {
  const tag = `${process.pid}-${randomBytes(6).toString("hex")}`;
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${tag}`);
  const present = await exists(path);
  if (present && !overwrite) {
    throw new MergeError("OUTPUT_EXISTS", "output exists (pass overwrite to replace it)", undefined, path);
  }
  try {
    await mkdir(tmp, { recursive: false });
    await build(tmp);
    if (present) {
      const old = join(dirname(path), `.${basename(path)}.old-${tag}`);
      await rename(path, old);
      await rename(tmp, path);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(tmp, path);
    }
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}
