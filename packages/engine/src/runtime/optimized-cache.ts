/**
 * Optimized-model cache for CPU sessions. At graphOptimizationLevel "all", ORT's NchwcTransformer rewrites every
 * Conv into its blocked-layout kernel and reorders the conv weights into new initializers. On the full SD1.5 UNet
 * that is ~7 of the ~8.4 s a session takes to create on an idle 2-core machine (forward graph; the training step:
 * ~11 of ~20 s), and it is repaid at every training start, sample round and `pnpm generate` (docs/benchmarks.md).
 * Turning the transformer off is no answer: the LoRA training step then runs 3.4x slower and outputs change in the
 * last bits. So the first session saves the graph as ORT optimized it (optimizedModelFilePath), and later sessions
 * for the same graph load that file with optimizations disabled: same kernels, same weights, bit-identical outputs
 * (checked on the full UNet and in test/runtime-optimized-cache.test.ts).
 *
 * ORT writes every large initializer of the saved model into one new data file: for the UNet 3.3 GiB, of which
 * 1 GiB are the original weights unchanged. We point unchanged tensors (same name, same bytes) back at the fp32
 * weight-cache file they came from and store only new tensors (reordered weights), one file per tensor named by
 * its SHA-256 in `ort-opt-blobs/`, so graphs of other shapes or the training step share them (~2.2 GiB per UNet).
 *
 * Scope: graphs whose external weights all live in fp32 weight-cache files (models/loader/fp32-cache.ts), whose
 * folder is ours to write; ORT requires external data to resolve inside the .onnx's folder, so the cached model
 * sits next to them. CPU provider, level "all" only (the other levels cost ~1 s). Opt out with the session option
 * `optimizedModelCache: false` or LORA_STUDIO_ORT_CACHE=0.
 *
 * Validity: the file name is a SHA-256 over the graph (encoded with content hashes of in-memory tensors), the
 * weight files' size/mtime/inode, ORT's version, the CPU (the blocked layout depends on its vector width) and the
 * optimization options. The manifest (written last, the commit point) lists the blobs with their sizes and a
 * sampled checksum, checked at each use; anything wrong means the entry is removed and the session is created
 * the normal way. Files appear only by atomic rename, so concurrent writers are safe.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { basename, dirname, join } from "node:path";
import ort from "onnxruntime-node";
import type { ExternalTensor, Graph, Value } from "../graph/ir.ts";
import { isExternal } from "../graph/ir.ts";
import { encodeModel } from "../onnx/encode.ts";
import { rewriteExternalData } from "../onnx/external-rewrite.ts";
import type { ModelFile } from "../onnx/model-file.ts";
import { INLINE_LIMIT_BYTES } from "../onnx/model-file.ts";
import { bytesText, type MessageSink, sizeLevel } from "./messages.ts";
import { pidAlive } from "./pid.ts";
import type { SessionOptions } from "./session.ts";

const FORMAT = 1;
const WEIGHT_SUFFIX = ".f32.safetensors";
const PREFIX = "ort-opt-";
const BLOBS = "ort-opt-blobs";
/** Tensors below this stay inside the saved proto: ORT's shape inference must read small constants (Split sizes). */
const MIN_EXTERNAL_BYTES = 65536;
const SAMPLE = 4096;
/** Unreferenced blobs younger than this may belong to a store in progress in another process. */
const BLOB_GRACE_MS = 10 * 60_000;

interface Manifest {
  format: number;
  key: string;
  weights: { file: string; size: string; mtimeNs: string; ino: string }[];
  blobs: { file: string; bytes: number; sample: string }[];
}

export interface OptimizedModelPlan {
  /** Whether a stored optimized model is used (false: this session stores one). */
  hit: boolean;
  /** Creates the session through `create(path, options)`, storing or using the cache; never worse than no cache. */
  create<T>(create: (path: string, options: SessionOptions) => Promise<T>): Promise<T>;
}

export function optimizedCacheDisabledByEnv(): boolean {
  return /^(0|off|false|no)$/i.test(process.env.LORA_STUDIO_ORT_CACHE ?? "");
}

let cpuId: string | undefined;
/** Model name and feature flags: NCHWc block sizes and kernels follow AVX2/AVX-512. */
function cpuIdentity(): string {
  if (cpuId) return cpuId;
  let info = "";
  try {
    const text = readFileSync("/proc/cpuinfo", "utf8");
    const line = (k: string) => new RegExp(`^${k}\\s*:(.*)$`, "m").exec(text)?.[1]?.trim() ?? "";
    info = `${line("model name")}|${line("flags") || line("Features")}`;
  } catch {
    info = cpus()[0]?.model ?? "";
  }
  cpuId = `${process.arch}|${info}`;
  return cpuId;
}

function weightIdentity(path: string): Manifest["weights"][number] {
  const st = statSync(path, { bigint: true });
  return { file: basename(path), size: String(st.size), mtimeNs: String(st.mtimeNs), ino: String(st.ino) };
}

/** SHA-256 of the graph as encoded, in-memory tensors replaced by their content hash, plus everything else. */
function cacheKey(graph: Graph, weights: Manifest["weights"], opts: SessionOptions): string {
  const proto = encodeModel(graph, {
    placement: (v: Value) => {
      const t = v.tensor!;
      if (isExternal(t))
        return { kind: "external", location: basename(t.path), offset: t.offset, length: t.byteLength };
      if (v.kind === "constant" || t.data.byteLength < INLINE_LIMIT_BYTES) return { kind: "inline" };
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      return {
        kind: "external",
        location: createHash("sha256").update(bytes).digest("hex"),
        offset: 0,
        length: 0,
      };
    },
  });
  const rest = JSON.stringify({
    format: FORMAT,
    ort: ort.env.versions,
    cpu: cpuIdentity(),
    weights,
    level: opts.graphOptimizationLevel ?? "all",
    disabled: opts.disabledOptimizers ?? [],
    entries: opts.configEntries ?? {},
  });
  return createHash("sha256").update(proto).update(rest).digest("hex").slice(0, 32);
}

async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    if (bytesRead !== length) throw new Error(`${path}: short read at ${offset}`);
    return buf;
  } finally {
    await fh.close();
  }
}

function sampleOf(head: Buffer, tail: Buffer): string {
  return createHash("sha256").update(head).update(tail).digest("hex").slice(0, 16);
}

async function blobSample(path: string, bytes: number): Promise<string> {
  const n = Math.min(SAMPLE, bytes);
  return sampleOf(await readRange(path, 0, n), await readRange(path, bytes - n, n));
}

/** Why the stored entry cannot be used, or undefined. */
async function problemWith(dir: string, m: Manifest, key: string): Promise<string | undefined> {
  if (m.format !== FORMAT || m.key !== key) return "different key";
  if (!existsSync(join(dir, `${PREFIX}${key}.onnx`))) return "model file missing";
  for (const b of m.blobs) {
    const path = join(dir, b.file);
    const st = await stat(path).catch(() => undefined);
    if (!st || st.size !== b.bytes) return `${b.file} missing or resized`;
    if ((await blobSample(path, b.bytes)) !== b.sample) return `${b.file} checksum mismatch`;
  }
  return undefined;
}

/**
 * Points the unchanged initializers of ORT's saved model back at the weight files and moves the new ones into
 * content-addressed blobs; then commits model file and manifest. Throws on anything unexpected (caller warns).
 */
async function store(
  dir: string,
  key: string,
  graph: Graph,
  weights: Manifest["weights"],
  savedModel: string,
  savedData: string,
): Promise<{ blobBytes: number; reused: number }> {
  const original = new Map<string, ExternalTensor>();
  for (const v of graph.initializers) if (v.tensor && isExternal(v.tensor)) original.set(v.name, v.tensor);
  const blobs = new Map<string, Manifest["blobs"][number]>();
  let reused = 0;
  let blobBytes = 0;
  await mkdir(join(dir, BLOBS), { recursive: true });
  const model = await rewriteExternalData(await readFile(savedModel), async (ref) => {
    if (ref.location !== basename(savedData)) throw new Error(`unexpected external file ${ref.location}`);
    const bytes = await readRange(savedData, ref.offset, ref.length);
    const orig = original.get(ref.name);
    if (orig && orig.byteLength === ref.length) {
      if (bytes.equals(await readRange(orig.path, orig.offset, orig.byteLength))) {
        reused += ref.length;
        return { location: basename(orig.path), offset: orig.offset, length: orig.byteLength };
      }
    }
    const file = `${BLOBS}/${createHash("sha256").update(bytes).digest("hex")}.bin`;
    const path = join(dir, file);
    // An existing blob is trusted only byte for byte: a damaged one (why we may be rebuilding) is replaced.
    const existing = await readFile(path).catch(() => undefined);
    if (!existing?.equals(bytes)) await writeAtomic(path, bytes);
    const n = Math.min(SAMPLE, bytes.length);
    if (!blobs.has(file)) blobBytes += ref.length;
    blobs.set(file, {
      file,
      bytes: ref.length,
      sample: sampleOf(bytes.subarray(0, n), bytes.subarray(bytes.length - n)),
    });
    return { location: file, offset: 0, length: ref.length };
  });
  // A reference we could not rewrite (subgraph or sparse initializer) would point at a file we delete.
  if (model.includes(Buffer.from(basename(savedData))))
    throw new Error("the saved model has other references");
  await writeAtomic(join(dir, `${PREFIX}${key}.onnx`), model);
  const manifest: Manifest = { format: FORMAT, key, weights, blobs: [...blobs.values()] };
  await writeAtomic(join(dir, `${PREFIX}${key}.json`), JSON.stringify(manifest));
  return { blobBytes, reused };
}

/**
 * Removes entries whose weight files are gone or changed (the fp32 cache evicted or rebuilt them) and blobs no
 * entry references any more; leaves temp files of live writers and young blobs alone. Returns the bytes the
 * remaining entries hold (models, manifests, referenced blobs once each), which the fp32 cache counts in its cap.
 */
export async function trimOptimizedModels(dir: string): Promise<number> {
  const used = new Set<string>();
  let bytes = 0;
  const sizeOf = async (path: string) => (await stat(path).catch(() => undefined))?.size ?? 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const dead = /\.tmp-(\d+)-[0-9a-f]+/.exec(name);
    if (name.startsWith(PREFIX) && dead && !pidAlive(Number(dead[1])))
      await rm(join(dir, name), { force: true });
    if (!name.startsWith(PREFIX) || !name.endsWith(".json")) continue;
    const m = await readFile(join(dir, name), "utf8")
      .then((t) => JSON.parse(t) as Manifest)
      .catch(() => undefined);
    const stale =
      !m ||
      m.weights.some((w) => {
        const now = existsSync(join(dir, w.file)) ? weightIdentity(join(dir, w.file)) : undefined;
        return now?.size !== w.size || now.mtimeNs !== w.mtimeNs || now.ino !== w.ino;
      });
    const model = join(dir, name.replace(/\.json$/, ".onnx"));
    if (stale) {
      await rm(join(dir, name), { force: true });
      await rm(model, { force: true });
      continue;
    }
    bytes += (await sizeOf(join(dir, name))) + (await sizeOf(model));
    for (const b of m.blobs) used.add(b.file);
  }
  for (const name of await readdir(join(dir, BLOBS)).catch(() => [] as string[])) {
    const file = `${BLOBS}/${name}`;
    const st = await stat(join(dir, file)).catch(() => undefined);
    if (!st) continue;
    if (used.has(file)) bytes += st.size;
    else if (Date.now() - st.mtimeMs > BLOB_GRACE_MS) await rm(join(dir, file), { force: true });
  }
  return bytes;
}

/**
 * How to create the CPU session for `graph` (already written to `file`): from a stored optimized model, or the
 * normal way while saving one. Undefined when the cache does not apply (see the header).
 */
export async function planOptimizedModel(
  graph: Graph,
  file: ModelFile,
  opts: SessionOptions,
  say: MessageSink,
): Promise<OptimizedModelPlan | undefined> {
  if (opts.optimizedModelCache === false || optimizedCacheDisabledByEnv()) return undefined;
  if ((opts.graphOptimizationLevel ?? "all") !== "all" || opts.optimizedModelFilePath || opts.profiling)
    return undefined;
  if (file.strategy !== "weights-dir") return undefined;
  const paths = new Set<string>();
  for (const v of graph.initializers) if (v.tensor && isExternal(v.tensor)) paths.add(v.tensor.path);
  if (paths.size === 0 || [...paths].some((p) => !p.endsWith(WEIGHT_SUFFIX))) return undefined;
  const dir = dirname(file.modelPath);
  let key: string;
  let weights: Manifest["weights"];
  try {
    weights = [...paths].sort().map(weightIdentity);
    key = cacheKey(graph, weights, opts);
  } catch {
    return undefined;
  }
  const modelPath = join(dir, `${PREFIX}${key}.onnx`);
  const manifestPath = join(dir, `${PREFIX}${key}.json`);
  const manifest = await readFile(manifestPath, "utf8")
    .then((t) => JSON.parse(t) as Manifest)
    .catch(() => undefined);
  const problem = manifest ? await problemWith(dir, manifest, key) : "missing";
  const drop = async () => {
    await rm(manifestPath, { force: true });
    await rm(modelPath, { force: true });
  };
  if (!problem) {
    return {
      hit: true,
      async create(create) {
        try {
          return await create(modelPath, { ...opts, graphOptimizationLevel: "disabled" });
        } catch (e) {
          say(
            `lora-studio: optimized-model cache: ${modelPath} failed to load (${(e as Error).message}); removed`,
          );
          await drop();
          return create(file.modelPath, opts);
        }
      },
    };
  }
  if (problem !== "missing") await drop();
  return {
    hit: false,
    async create(create) {
      const tmp = `${PREFIX}${key}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
      const savedModel = join(dir, `${tmp}.onnx`);
      const savedData = join(dir, `${tmp}.data`);
      const saving: SessionOptions = {
        ...opts,
        optimizedModelFilePath: savedModel,
        configEntries: {
          ...opts.configEntries,
          "session.optimized_model_external_initializers_file_name": basename(savedData),
          "session.optimized_model_external_initializers_min_size_in_bytes": String(MIN_EXTERNAL_BYTES),
        },
      };
      let session: Awaited<ReturnType<typeof create>>;
      try {
        session = await create(file.modelPath, saving);
      } catch {
        // Saving can fail where creation alone would not (disk full): never let the cache cost the session.
        await rm(savedModel, { force: true });
        await rm(savedData, { force: true });
        return create(file.modelPath, opts);
      }
      const t = performance.now();
      try {
        const { blobBytes, reused } = await store(dir, key, graph, weights, savedModel, savedData);
        say(
          `lora-studio: optimized-model cache: stored ${modelPath} (${bytesText(blobBytes)} of new ` +
            `(reordered) weights, ${bytesText(reused)} shared with the weight cache) in ` +
            `${((performance.now() - t) / 1000).toFixed(1)} s; later sessions of this graph skip ORT's optimizer. ` +
            "Turn off with LORA_STUDIO_ORT_CACHE=0.",
          sizeLevel(blobBytes + reused),
        );
        await trimOptimizedModels(dir);
      } catch (e) {
        say(`lora-studio: optimized-model cache: not stored (${(e as Error).message})`);
        await drop();
      } finally {
        await rm(savedModel, { force: true });
        await rm(savedData, { force: true });
      }
      return session;
    },
  };
}
