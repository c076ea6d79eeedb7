/**
 * "library-index": reads and hashes every LoRA of the Lora folder into the library cache (the header,
 * adapter summary and A1111 hashes that a listing needs), so that the Library tab of a large folder lists
 * at once afterwards. Hashing a few hundred GB takes a while, so the job is resumable: after each file the
 * list of files done is its checkpoint; on pause (or a service restart) it stops between two files and
 * continues later with the files not done yet.
 */
import { stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { analyzeFile, LibraryCache, LORA_EXTENSIONS, walkFolder } from "@lora-studio/prompt-lora";
import { toRelative } from "../../library/safe-path.ts";
import type { JobContext, JobEnvironment, JobKind, JobOutcome } from "../types.ts";

interface Params {
  loraDir: string;
  cacheDir: string;
}

interface Checkpoint {
  /** Files (relative to the Lora folder) already indexed. */
  done: string[];
}

/** How many files between two cache writes (a checkpoint is saved after every file regardless). */
const SAVE_EVERY = 25;

async function prepare(_raw: unknown, env: JobEnvironment): Promise<Params> {
  return { loraDir: env.loraDir, cacheDir: join(env.dataDir, "cache") };
}

async function run(ctx: JobContext): Promise<JobOutcome> {
  const p = ctx.params as Params;
  const resumed = (ctx.checkpoint as Checkpoint | null)?.done ?? [];
  const done = new Set(resumed);
  const walked = await walkFolder(p.loraDir);
  const files = walked.folders
    .flatMap((f) =>
      f.files.filter((n) => LORA_EXTENSIONS.includes(extname(n).toLowerCase())).map((n) => join(f.path, n)),
    )
    .sort();
  if (resumed.length > 0) ctx.log(`resuming: ${resumed.length} of ${files.length} files were indexed before`);
  const cache = await LibraryCache.open(p.cacheDir);
  let analyzed = 0;
  let unreadable = 0;
  for (const [i, file] of files.entries()) {
    const rel = toRelative(p.loraDir, file);
    if (done.has(rel)) continue;
    if (ctx.stopRequested() !== null) {
      await cache.save();
      ctx.saveCheckpoint({ done: [...done] } satisfies Checkpoint);
      if (ctx.stopRequested() === "pause") return { paused: true };
      throw new Error("cancelled");
    }
    try {
      const st = await stat(file);
      if (cache.get(file, st.size, st.mtimeMs) === undefined) {
        cache.set(file, st.size, st.mtimeMs, await analyzeFile(file, extname(file).toLowerCase()));
        analyzed++;
      }
    } catch (err) {
      unreadable++;
      ctx.log(`${rel}: ${(err as Error).message}`, "warn");
    }
    done.add(rel);
    ctx.saveCheckpoint({ done: [...done] } satisfies Checkpoint);
    ctx.progress(i + 1, files.length, rel);
    if (analyzed % SAVE_EVERY === 0) await cache.save();
  }
  await cache.save();
  return { result: { files: files.length, analyzed, resumedFrom: resumed.length, unreadable } };
}

export const kind: JobKind = {
  name: "library-index",
  resumable: true,
  writesTo: (params) => [{ dir: (params as Params).cacheDir, recursive: true }],
  prepare,
  run,
};
