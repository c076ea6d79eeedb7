/**
 * Writes a graph as an .onnx file that onnxruntime-node can load with its weights memory-mapped in place.
 *
 * Rules ORT 1.30 enforces for external data (measured, see /work/shared/docs/onnxruntime-node-facts.md):
 * - The model must be loaded from a *path*: a model loaded from a Buffer refuses external files unless the bytes
 *   are passed in `externalData`, which copies them (GBs of RAM for a checkpoint).
 * - `location` must resolve inside the directory of the .onnx file: absolute paths and `../x` are refused, and a
 *   symlink in that directory pointing elsewhere is resolved and refused too. A hard link in the model directory
 *   works (same filesystem only).
 * - `offset`/`length` may point anywhere inside the file, so a safetensors tensor is referenced as
 *   location = the file's bare name, offset = TensorInfo.fileOffset, length = TensorInfo.byteLength: the raw
 *   little-endian bytes are already ONNX's layout and nothing is converted or copied.
 * - The .onnx file may be deleted as soon as the session exists (the session keeps its mapping).
 *
 * Placement strategy, in order:
 * 1. All external tensors live in one directory that we can write to: the .onnx goes there (hidden, unique name,
 *    removed once the session exists). A directory without write permission bits counts as read-only even for root.
 * 2. Otherwise the .onnx goes to a private cache directory and each weight file gets a hard link in it.
 * 3. If a hard link fails (other filesystem, permissions), the weight file is copied there, with a warning,
 *    because a multi-GB copy is slow and uses disk.
 * In-memory initializers of 1 KiB or more (and never constants) are appended to a "<model>.data" file next to the
 * model (64-byte aligned), keeping the proto small; smaller ones and constants are inline raw_data.
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { access, copyFile, link, mkdir, mkdtemp, open, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import type { Graph, InlineTensor, Value } from "../graph/ir.ts";
import { isExternal } from "../graph/ir.ts";
import { encodeModel, type TensorPlacement } from "./encode.ts";

export const INLINE_LIMIT_BYTES = 1024;
const ALIGN = 64;

export interface ModelFileOptions {
  /** Where models go when the weights' directory cannot be used. Default: <os tmpdir>/lora-studio-onnx. */
  cacheDir?: string;
  /** Receives warnings (weight copies). Default: console.warn. */
  warn?: (message: string) => void;
}

export interface ModelFile {
  /** Path to pass to InferenceSession.create. */
  modelPath: string;
  /** "weights-dir" | "cache-links" | "cache-copies" | "standalone" (no external weights). */
  strategy: "weights-dir" | "cache-links" | "cache-copies" | "standalone";
  warnings: string[];
  /** Removes every file this call created (the model, data sidecar, links, copies). Safe once a session exists. */
  cleanup(): Promise<void>;
}

/**
 * Whether we may put the model file in `dir`. Root passes access(W_OK) everywhere, so for root a directory with no
 * write bit at all (e.g. a read-only fixtures or shared-models folder) also counts as read-only.
 */
async function writable(dir: string): Promise<boolean> {
  try {
    await access(dir, fsConstants.W_OK);
    if (process.getuid?.() === 0 && ((await stat(dir)).mode & 0o222) === 0) return false;
    return true;
  } catch {
    return false;
  }
}

/** Writes `parts` to `path` through a temp file in the same directory and a rename (atomic). */
async function writeAtomic(path: string, parts: Uint8Array[]): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  const fh = await open(tmp, "w");
  try {
    for (const p of parts) await fh.write(p);
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}

function inlineBytes(t: InlineTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Writes the .onnx (and sidecar data) following the rules above. */
export async function writeModelFile(graph: Graph, options: ModelFileOptions = {}): Promise<ModelFile> {
  const warn = options.warn ?? ((m: string) => console.warn(m));
  const warnings: string[] = [];
  const weightFiles = new Set<string>();
  for (const v of graph.initializers)
    if (v.tensor && isExternal(v.tensor)) weightFiles.add(resolve(v.tensor.path));
  const dirs = new Set([...weightFiles].map((f) => dirname(f)));

  if (weightFiles.size === 0) {
    const dir = await cacheSubdir(options.cacheDir);
    return emit(graph, dir, new Map(), "standalone", [dir], warnings);
  }
  const [onlyDir] = dirs;
  if (dirs.size === 1 && (await writable(onlyDir))) {
    const bare = new Map([...weightFiles].map((f) => [f, basename(f)]));
    try {
      return await emit(graph, onlyDir, bare, "weights-dir", [], warnings);
    } catch (e) {
      warnings.push(`cannot write the model next to the weights in ${onlyDir} (${(e as Error).message})`);
    }
  }
  const dir = await cacheSubdir(options.cacheDir);
  let strategy: ModelFile["strategy"] = "cache-links";
  const locationOf = new Map<string, string>();
  let i = 0;
  for (const f of weightFiles) {
    const name = `w${i++}-${basename(f)}`;
    const target = join(dir, name);
    try {
      await link(f, target);
    } catch (e) {
      strategy = "cache-copies";
      const size = (await stat(f)).size;
      const msg =
        `lora-studio: cannot hard-link ${f} into ${dir} (${(e as Error).message}); copying ` +
        `${(size / 2 ** 30).toFixed(2)} GiB instead. Put the model cache on the weights' filesystem ` +
        "(cacheDir option) or make the weights' directory writable to avoid the copy.";
      warnings.push(msg);
      warn(msg);
      await copyFile(f, target);
    }
    locationOf.set(f, name);
  }
  return emit(graph, dir, locationOf, strategy, [dir], warnings);
}

async function emit(
  graph: Graph,
  dir: string,
  locationOf: Map<string, string>,
  strategy: ModelFile["strategy"],
  createdDirs: string[],
  warnings: string[],
): Promise<ModelFile> {
  const stem = `.lora-studio-${process.pid}-${randomBytes(6).toString("hex")}`;
  const modelPath = join(dir, `${stem}.onnx`);
  const dataName = `${stem}.data`;
  const dataParts: Uint8Array[] = [];
  let dataLen = 0;
  const placement = (v: Value): TensorPlacement => {
    const t = v.tensor!;
    if (isExternal(t)) {
      return {
        kind: "external",
        location: locationOf.get(resolve(t.path))!,
        offset: t.offset,
        length: t.byteLength,
      };
    }
    const bytes = inlineBytes(t);
    if (v.kind === "constant" || bytes.byteLength < INLINE_LIMIT_BYTES) return { kind: "inline" };
    const pad = (ALIGN - (dataLen % ALIGN)) % ALIGN;
    if (pad > 0) dataParts.push(new Uint8Array(pad));
    const offset = dataLen + pad;
    dataParts.push(bytes);
    dataLen = offset + bytes.byteLength;
    return { kind: "external", location: dataName, offset, length: bytes.byteLength };
  };
  const proto = encodeModel(graph, { placement });
  const ownFiles: string[] = [];
  const cleanup = async () => {
    for (const f of ownFiles) await rm(f, { force: true });
    for (const d of createdDirs) await rm(d, { recursive: true, force: true });
  };
  try {
    if (dataParts.length > 0) {
      ownFiles.push(join(dir, dataName));
      await writeAtomic(join(dir, dataName), dataParts);
    }
    ownFiles.push(modelPath);
    await writeAtomic(modelPath, [proto]);
  } catch (e) {
    await cleanup();
    throw e;
  }
  let cleaned = false;
  return {
    modelPath,
    strategy,
    warnings,
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      await cleanup();
    },
  };
}

async function cacheSubdir(cacheDir?: string): Promise<string> {
  const root = cacheDir ?? join(tmpdir(), "lora-studio-onnx");
  await mkdir(root, { recursive: true });
  return mkdtemp(join(root, "m-"));
}
