/**
 * /api/generate (txt2img as a "txt2img" job) and /api/outputs (the generated PNGs).
 *
 *   POST /api/generate          { prompt, negative_prompt, steps, cfg_scale, sampler, seed, width, height,
 *                                 batch_size, clip_skip, base_model? } -> 202 with the queued job; progress,
 *                                 "image" and "result" events follow on the websocket like any job's.
 *   GET  /api/generate/options  samplers, defaults, limits, the default base model and whether it is loaded.
 *   GET  /api/outputs/<path>    a PNG under <data>/outputs/, path checked to stay inside (no .., symlinks out).
 *
 * Memory: the cached model (generate/model-cache.ts) is released when a training job starts, and when the
 * service stops.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { SAMPLER_NAMES } from "@lora-studio/engine";
import { Router } from "express";
import { modelCache } from "../generate/model-cache.ts";
import { TXT2IMG_KIND, TXT2IMG_LIMITS } from "../generate/params.ts";
import { defaultBaseModel } from "../jobs/kinds/txt2img.ts";
import type { JobQueue } from "../jobs/queue.ts";
import type { JobRecord } from "../jobs/store.ts";
import type { JobEnvironment } from "../jobs/types.ts";
import { PathError, resolveInside } from "../library/safe-path.ts";

/** Kinds that need the memory the cached txt2img model holds. */
const MEMORY_HUNGRY_KINDS = new Set(["train"]);

export interface GenerateService {
  generate: Router;
  outputs: Router;
  /** Frees the cached model (call when the service stops). */
  close(): Promise<void>;
}

export function generateRoutes(
  queue: JobQueue,
  env: JobEnvironment,
  options: { baseModel?: string } = {},
): GenerateService {
  const base = () => options.baseModel ?? defaultBaseModel();
  const outputsRoot = join(env.dataDir, "outputs");
  const onJob = (job: JobRecord | undefined) => {
    if (job !== undefined && job.state === "running" && MEMORY_HUNGRY_KINDS.has(job.kind))
      void modelCache.release();
  };
  queue.events.on("job", onJob);

  const generate = Router();
  generate.get("/options", (_req, res) => {
    res.json({
      samplers: SAMPLER_NAMES,
      defaults: {
        steps: 20,
        cfg_scale: 7,
        sampler: "Euler a",
        seed: -1,
        width: 512,
        height: 512,
        batch_size: 1,
        clip_skip: 1,
      },
      limits: TXT2IMG_LIMITS,
      baseModel: base(),
      baseModelExists: existsSync(base()),
      loadedBase: modelCache.base,
    });
  });
  generate.post("/", async (req, res) => {
    const body = req.body ?? {};
    const params =
      typeof body === "object" && !Array.isArray(body) && body.base_model === undefined
        ? { ...body, base_model: base() }
        : body;
    res.status(202).json(await queue.submit(TXT2IMG_KIND, params));
  });

  const outputs = Router();
  outputs.get("/*file", async (req, res) => {
    const segments = (req.params as { file?: string[] }).file ?? [];
    const rel = segments.join("/");
    if (!/\.png$/i.test(rel)) throw new PathError(rel, "only PNG images are served");
    await mkdir(outputsRoot, { recursive: true });
    const abs = await resolveInside(outputsRoot, rel, "path");
    res.set("Cache-Control", "no-cache");
    res.sendFile(abs, { dotfiles: "deny" });
  });

  return {
    generate,
    outputs,
    close: async () => {
      queue.events.off("job", onJob);
      await modelCache.release();
    },
  };
}
