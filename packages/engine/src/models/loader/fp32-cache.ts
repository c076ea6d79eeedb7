/**
 * fp32 weight cache. On the CPU provider an fp16/bf16 checkpoint referenced in place needs a Cast per weight, and
 * ORT constant-folds those casts into float32 copies on its heap: a full SD1.5 UNet session then holds ~6 GB and
 * takes 30-190 s to create, again for every session. Instead each component's tensors are converted once into a
 * float32 safetensors file (fp32-cache-file.ts) that graphs reference as external data, which ORT memory-maps:
 * no casts, no heap copies, and every later session (UNet for training and for sampling, text encoder, VAE)
 * starts from the page cache.
 *
 * Identity: a cache file is named after the checkpoint's real path and the component, and records the
 * checkpoint's size, mtime (ns) and inode; any difference means rebuild. This reads no weight data (hashing
 * 2-7 GB would cost more than the cache saves on every start), and every way a file gets replaced or edited
 * (save, copy over, rename over, touch) changes mtime or inode. The cache file itself is checked at each load:
 * header and tensor list, then a sampled checksum (first/last 4 KiB of every tensor); `verify: "full"` checks a
 * CRC-32 of all of it. A bad file is rebuilt, never used.
 *
 * Concurrency: files appear only by atomic rename, and two writers produce identical bytes, so racing writers
 * cannot corrupt anything. To avoid converting twice, loads in one process share one build, and processes take a
 * `<file>.lock` (waiters re-check the file; a lock whose process is gone is removed).
 *
 * Size: after a build the folder is trimmed to `maxBytes` (default 20 GiB), least recently used first (each use
 * sets the file's atime), counting ORT's optimized models stored beside the weights (../../runtime/
 * optimized-cache.ts), which go with their weight file; the log line states the file and folder sizes. Temp
 * files left by killed builds are removed.
 */
import { createHash } from "node:crypto";
import { existsSync, statSync, utimesSync } from "node:fs";
import { mkdir, open, readdir, readFile, realpath, rm, stat } from "node:fs/promises";
import { homedir, hostname } from "node:os";
import { basename, extname, join } from "node:path";
import { openSafetensors, type SafetensorsFile } from "@lora-studio/prompt-lora";
import { consoleSink, bytesText as gib, type MessageSink, sizeLevel } from "../../runtime/messages.ts";
import { trimOptimizedModels } from "../../runtime/optimized-cache.ts";
import { pidAlive } from "../../runtime/pid.ts";
import { isGpuProvider } from "../../runtime/providers.ts";
import { CheckpointError } from "./errors.ts";
import { cachePlan, cacheProblem, f32Bytes, hasHalfTensors, writeCacheFile } from "./fp32-cache-file.ts";

export interface Fp32CacheOptions {
  /** Cache folder. Default: $LORA_STUDIO_WEIGHT_CACHE, else $LORA_STUDIO_CACHE_DIR/weights, else
   * $XDG_CACHE_HOME/lora-studio/weights, else ~/.cache/lora-studio/weights. */
  dir?: string;
  /** Folder size cap in bytes, least recently used files removed first (default 20 GiB; Infinity: no cap). */
  maxBytes?: number;
  /** "sample" (default): header + sampled checksum at each load; "full": also a CRC-32 of the whole file. */
  verify?: "sample" | "full";
  /** Build and eviction notes. Default: console.warn. */
  onMessage?: MessageSink;
}

/** An open cache file as FileWeights uses it. */
export interface Fp32CacheFile {
  file: SafetensorsFile;
  /** Records a use (LRU order); cheap, call freely. */
  markUsed(): void;
}

/** What the cache did for one component. */
export interface Fp32CacheEntry {
  component: string;
  /** The checkpoint file the tensors come from. */
  source: string;
  /** The float32 file graphs reference. */
  path: string;
  bytes: number;
  /** Converted now (false: an existing file was reused). */
  built: boolean;
  /** Why it was (re)built: "missing", or what was wrong with the old file. */
  reason?: string;
  /** Time spent converting (0 when reused). */
  buildMs: number;
}

export const DEFAULT_MAX_BYTES = 20 * 2 ** 30;
const SUFFIX = ".f32.safetensors";
const LOCK_POLL_MS = 200;
/** A waiter builds anyway after this long; the atomic rename keeps that safe. */
const LOCK_GIVE_UP_MS = 30 * 60_000;

export function defaultWeightCacheDir(): string {
  const env = process.env;
  if (env.LORA_STUDIO_WEIGHT_CACHE) return env.LORA_STUDIO_WEIGHT_CACHE;
  if (env.LORA_STUDIO_CACHE_DIR) return join(env.LORA_STUDIO_CACHE_DIR, "weights");
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "lora-studio", "weights");
}

/** LORA_STUDIO_FP32_CACHE=0 (or off/false/no) turns the cache off where no option says otherwise. */
export function fp32CacheDisabledByEnv(): boolean {
  return /^(0|off|false|no)$/i.test(process.env.LORA_STUDIO_FP32_CACHE ?? "");
}

/**
 * The `fp32Cache` checkpoint option for an execution provider: on for "cpu" and "auto" (auto ends on the CPU
 * wherever no GPU runtime is installed, and float32 weights are right on every provider), off for GPU providers,
 * whose fp16 kernels want the 16-bit weights as they are, and off wherever LORA_STUDIO_FP32_CACHE=0.
 */
export function fp32CacheForProvider(
  provider: string | undefined,
  onMessage?: MessageSink,
): false | Fp32CacheOptions {
  if (isGpuProvider(provider)) return false;
  if (fp32CacheDisabledByEnv()) return false;
  return onMessage ? { onMessage } : {};
}

type BuildResult = Omit<Fp32CacheEntry, "component" | "source" | "path">;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Builds in flight in this process, by cache path: concurrent loads share one. */
const inflight = new Map<string, Promise<BuildResult>>();
/** Cache files open in this process (never evicted by it). */
const inUse = new Map<string, number>();

/** Identity fields recorded in the cache file; any change in the checkpoint file changes one of them. */
async function sourceIdentity(path: string, prefix: string): Promise<Record<string, string>> {
  const real = await realpath(path);
  const st = statSync(real, { bigint: true });
  return {
    source_path: real,
    source_prefix: prefix,
    source_size: String(st.size),
    source_mtime_ns: String(st.mtimeNs),
    source_ino: String(st.ino),
  };
}

/** Why the file at `path` cannot be used, or undefined when it can. */
async function problemWith(
  path: string,
  plan: ReturnType<typeof cachePlan>,
  identity: Record<string, string>,
  verify: "sample" | "full",
): Promise<string | undefined> {
  if (!existsSync(path)) return "missing";
  let file: SafetensorsFile;
  try {
    file = await openSafetensors(path);
  } catch (e) {
    return `unreadable (${(e as Error).message})`;
  }
  try {
    return await cacheProblem(file, plan, identity, verify);
  } catch (e) {
    return `unreadable (${(e as Error).message})`;
  } finally {
    await file.close();
  }
}

/** A lock or temp file whose writer, on this host, no longer runs. */
async function staleLock(lock: string): Promise<boolean> {
  try {
    const owner = JSON.parse(await readFile(lock, "utf8")) as { pid: number; host: string };
    return owner.host === hostname() && !pidAlive(owner.pid);
  } catch {
    // Unreadable or half-written: stale once it is a minute old.
    const st = await stat(lock).catch(() => undefined);
    return st !== undefined && Date.now() - st.mtimeMs > 60_000;
  }
}

/** Runs `build` holding `<path>.lock`; while another process holds it, waits until `ready()` or the lock goes. */
async function withBuildLock<T>(
  path: string,
  ready: () => Promise<T | undefined>,
  build: () => Promise<T>,
): Promise<T> {
  const lock = `${path}.lock`;
  const start = Date.now();
  let owned = false;
  while (!owned && Date.now() - start < LOCK_GIVE_UP_MS) {
    try {
      const fh = await open(lock, "wx");
      await fh.writeFile(JSON.stringify({ pid: process.pid, host: hostname() }));
      await fh.close();
      owned = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      if (await staleLock(lock)) {
        await rm(lock, { force: true });
        continue;
      }
      await sleep(LOCK_POLL_MS);
      if (!existsSync(lock)) {
        const done = await ready();
        if (done !== undefined) return done;
      }
    }
  }
  try {
    const done = await ready();
    return done !== undefined ? done : await build();
  } finally {
    if (owned) await rm(lock, { force: true });
  }
}

/** The checkpoint path a cache file was made from, or undefined when its header cannot be read. */
async function recordedSource(path: string): Promise<string | undefined> {
  try {
    const f = await openSafetensors(path);
    await f.close();
    return f.metadata.source_path;
  } catch {
    return undefined;
  }
}

/**
 * Trims the folder to `maxBytes`, least recently used (atime) first, never touching files open in this process
 * or `keep`. Also removes temp files of dead builds and caches of checkpoints that no longer exist (temporary
 * or deleted models), since nothing could ever use them again. Returns the folder's cache bytes afterwards.
 */
async function enforceCap(dir: string, maxBytes: number, keep: string, say: MessageSink): Promise<number> {
  const files: { path: string; size: number; atimeMs: number }[] = [];
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const temp = /\.tmp-(\d+)-[0-9a-f]+$/.exec(name);
    if (temp && name.includes(SUFFIX)) {
      if (!pidAlive(Number(temp[1]))) await rm(path, { force: true });
      continue;
    }
    if (!name.endsWith(SUFFIX) || name.startsWith(".")) continue;
    const st = await stat(path).catch(() => undefined);
    if (!st) continue;
    const src = path === keep || inUse.has(path) ? undefined : await recordedSource(path);
    if (src !== undefined && !existsSync(src)) {
      await rm(path, { force: true });
      continue;
    }
    files.push({ path, size: st.size, atimeMs: st.atimeMs });
  }
  // ORT's optimized models beside the weights (runtime/optimized-cache.ts) count too; evicting a weight file
  // makes its optimized models stale, and trimming removes them with the blobs nothing else references.
  let weights = files.reduce((n, f) => n + f.size, 0);
  let optimized = await trimOptimizedModels(dir);
  files.sort((a, b) => a.atimeMs - b.atimeMs);
  for (const f of files) {
    if (weights + optimized <= maxBytes) break;
    if (f.path === keep || inUse.has(f.path)) continue;
    await rm(f.path, { force: true });
    weights -= f.size;
    const before = optimized;
    optimized = await trimOptimizedModels(dir);
    const alsoOptimized = before > optimized ? ` and ${gib(before - optimized)} of its optimized models` : "";
    say(
      `lora-studio: fp32 weight cache: removed ${f.path} (${gib(f.size)}, least recently used)${alsoOptimized} to stay under ${gib(maxBytes)}`,
      "info",
    );
  }
  return weights + optimized;
}

/**
 * Marks a use for the LRU order by setting atime (mtime kept to well under a millisecond, since utimes takes
 * seconds as a double; mtime and inode show whether a file was rewritten). Also called while graphs are built from the file (at most once a minute), so a checkpoint
 * held open for hours is not the least recently used entry when another process trims the folder.
 */
function usageMarker(path: string): () => void {
  let last = 0;
  return () => {
    const now = Date.now();
    if (now - last < 60_000) return;
    last = now;
    try {
      utimesSync(path, now / 1000, statSync(path).mtimeMs / 1000);
    } catch {
      // best effort: LRU order only
    }
  };
}

/**
 * The float32 cache of the tensors under `prefix` in `source`, built or reused; undefined when that part of the
 * checkpoint has no 16-bit tensors (float32 weights are referenced in place). The returned file stays open (and
 * safe from this process's evictions) until `release()`.
 */
export async function openFp32Cache(
  source: SafetensorsFile,
  prefix: string,
  component: string,
  options: Fp32CacheOptions = {},
): Promise<(Fp32CacheFile & { entry: Fp32CacheEntry; release(): Promise<void> }) | undefined> {
  const plan = cachePlan(source, prefix);
  if (!hasHalfTensors(plan)) return undefined;
  const say = options.onMessage ?? consoleSink;
  const verify = options.verify ?? "sample";
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const dir = options.dir ?? defaultWeightCacheDir();
  const identity = await sourceIdentity(source.path, prefix);
  const key = createHash("sha256").update(`${identity.source_path}\0${prefix}`).digest("hex").slice(0, 16);
  const stem = basename(source.path, extname(source.path));
  const path = join(dir, `${stem}.${component}.${key}${SUFFIX}`);

  const ensure = async (): Promise<BuildResult> => {
    await mkdir(dir, { recursive: true });
    const first = await problemWith(path, plan, identity, verify);
    if (!first) return { built: false, bytes: (await stat(path)).size, buildMs: 0 };
    // Another process may finish the same build while we wait for its lock.
    const reuse = async (): Promise<BuildResult | undefined> =>
      (await problemWith(path, plan, identity, verify))
        ? undefined
        : { built: false, bytes: (await stat(path)).size, buildMs: 0 };
    const result = await withBuildLock(path, reuse, async (): Promise<BuildResult> => {
      const t = performance.now();
      // Said first, since a full SD1.5 UNet takes about a minute to convert on 2 cores (docs/benchmarks.md).
      say(
        `lora-studio: fp32 weight cache: converting ${component} of ${source.path} to float32 ` +
          `(${first === "missing" ? "first use" : `rebuild: ${first}`}; once per checkpoint)…`,
        sizeLevel(plan.reduce((n, t) => n + f32Bytes(t), 0)),
      );
      const bytes = await writeCacheFile(path, source, plan, identity);
      const after = await sourceIdentity(source.path, prefix);
      if (after.source_mtime_ns !== identity.source_mtime_ns || after.source_size !== identity.source_size) {
        await rm(path, { force: true });
        throw new CheckpointError(
          "BAD_CONFIG",
          source.path,
          "the file changed while its fp32 cache was written",
        );
      }
      return { built: true, bytes, buildMs: performance.now() - t, reason: first };
    });
    if (!result.built) return result;
    const total = await enforceCap(dir, maxBytes, path, say);
    say(
      `lora-studio: fp32 weight cache: converted ${component} of ${source.path} (${plan.length} tensors, ` +
        `${first === "missing" ? "first use" : `rebuilt: ${first}`}) into ${path}: ${gib(result.bytes)} in ` +
        `${(result.buildMs / 1000).toFixed(1)} s; folder ${dir} holds ${gib(total)} (cap ${Number.isFinite(maxBytes) ? gib(maxBytes) : "none"}). ` +
        "Turn off with LORA_STUDIO_FP32_CACHE=0 or the fp32Cache: false checkpoint option.",
      sizeLevel(result.bytes),
    );
    return result;
  };

  let job = inflight.get(path);
  if (!job) {
    job = ensure().finally(() => inflight.delete(path));
    inflight.set(path, job);
  }
  const result = await job;
  const file = await openSafetensors(path);
  // Replaced between the check and this open (another process's rebuild for a changed checkpoint): refuse.
  const problem = await cacheProblem(file, plan, identity, "sample").catch((e: Error) => e.message);
  if (problem) {
    await file.close();
    throw new CheckpointError(
      "BAD_CONFIG",
      path,
      `fp32 weight cache changed under us: ${problem}; load again`,
    );
  }
  const markUsed = usageMarker(path);
  markUsed();
  inUse.set(path, (inUse.get(path) ?? 0) + 1);
  let released = false;
  return {
    file,
    markUsed,
    entry: { component, source: source.path, path, ...result },
    async release() {
      if (released) return;
      released = true;
      const n = (inUse.get(path) ?? 1) - 1;
      if (n <= 0) inUse.delete(path);
      else inUse.set(path, n);
      await file.close();
    },
  };
}
