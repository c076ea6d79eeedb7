/** /api/jobs and /api/train: job list/create/pause/resume/cancel, event history, run files, the trainer's config schema. */
import { join } from "node:path";
import { Router } from "express";
import { contactSheetDir } from "../jobs/kinds/dataset-check.ts";
import { JobQueue } from "../jobs/queue.ts";
import type { JobStore } from "../jobs/store.ts";
import type { JobEnvironment } from "../jobs/types.ts";
import { PathError, resolveInside } from "../library/safe-path.ts";
import { planTrainConfig, trainSchema, validateTrainConfig } from "./train-schema.ts";

export const TRAIN_KIND = "train";

export function trainingEngineAvailable(): boolean {
  return JobQueue.kinds().includes(TRAIN_KIND);
}

/** Files of a training run a page may show (sample grids, the loss curve): pictures only. */
const RUN_FILE_TYPES = /\.(png|jpe?g|webp)$/i;

export function jobRoutes(queue: JobQueue): Router {
  const r = Router();
  r.get("/", (_req, res) => {
    res.json({ jobs: queue.store.list() });
  });
  r.get("/:id", (req, res) => {
    const job = queue.store.get(req.params.id);
    if (job === undefined) return void res.status(404).json({ error: `no job ${req.params.id}` });
    res.json(job);
  });
  r.get("/:id/events", (req, res) => {
    const since = Number(req.query.since ?? 0);
    res.json({ events: queue.store.eventsSince(req.params.id, Number.isFinite(since) ? since : 0) });
  });
  // A picture from a training job's output folder, named relative to it (as its sample events name them).
  r.get("/:id/files", async (req, res) => {
    const job = queue.store.get(req.params.id);
    const outputDir = (job?.params as { config?: { output_dir?: unknown } } | undefined)?.config?.output_dir;
    if (job === undefined || typeof outputDir !== "string")
      return void res.status(404).json({ error: `no training job ${req.params.id}` });
    const abs = await resolveInside(outputDir, req.query.path, "path");
    if (!RUN_FILE_TYPES.test(abs)) throw new PathError(String(req.query.path), "only pictures are served");
    res.set("Cache-Control", "no-cache");
    res.sendFile(abs, { dotfiles: "deny" });
  });
  // The contact sheet a finished dataset check wrote (every picture, flagged ones marked).
  r.get("/:id/contact-sheet", (req, res) => {
    const job = queue.store.get(req.params.id);
    const sheet = (job?.result as { contactSheet?: unknown } | null | undefined)?.contactSheet;
    if (job?.kind !== "dataset-check" || typeof sheet !== "string" || !/^[\w-]+\.png$/.test(sheet))
      return void res.status(404).json({ error: `no contact sheet for job ${req.params.id}` });
    res.set("Cache-Control", "no-cache");
    res.sendFile(join(contactSheetDir(queue.env.dataDir), sheet), { dotfiles: "deny" });
  });
  r.post("/", async (req, res) => {
    res.status(202).json(await queue.submit(String(req.body?.kind), req.body?.params));
  });
  r.post("/:id/pause", async (req, res) => {
    res.json(await queue.pause(req.params.id));
  });
  r.post("/:id/resume", (req, res) => {
    res.json(queue.resume(req.params.id));
  });
  r.post("/:id/cancel", async (req, res) => {
    res.json(await queue.cancel(req.params.id));
  });
  return r;
}

export function trainRoutes(env: JobEnvironment, store: JobStore): Router {
  const r = Router();
  r.get("/schema", (_req, res) => {
    res.json({
      ...trainSchema(),
      engineAvailable: trainingEngineAvailable(),
      datasetsDir: env.datasetsDir,
      loraSubfolder: env.loraSubfolder,
    });
  });
  r.post("/validate", (req, res) => {
    if (typeof req.body?.yaml !== "string")
      return void res.status(400).json({ error: "send { yaml: string }" });
    res.json(validateTrainConfig(req.body.yaml, env));
  });
  r.post("/plan", async (req, res) => {
    if (typeof req.body?.yaml !== "string")
      return void res.status(400).json({ error: "send { yaml: string }" });
    res.json(await planTrainConfig(req.body.yaml, env, store));
  });
  return r;
}
