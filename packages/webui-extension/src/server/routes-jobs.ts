/** /api/jobs and /api/train: job list/create/pause/resume/cancel, event history, the trainer's config schema. */
import { Router } from "express";
import { JobQueue } from "../jobs/queue.ts";
import { planTrainConfig, trainSchema, validateTrainConfig } from "./train-schema.ts";

export const TRAIN_KIND = "train";

export function trainingEngineAvailable(): boolean {
  return JobQueue.kinds().includes(TRAIN_KIND);
}

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
  r.post("/", async (req, res) => {
    const kind = req.body?.kind;
    if (kind === TRAIN_KIND && !trainingEngineAvailable()) {
      return void res.status(501).json({
        error:
          "the training engine is not available yet in this build: the config was not run (validate it with /api/train/validate)",
      });
    }
    res.status(202).json(await queue.submit(String(kind), req.body?.params));
  });
  r.post("/:id/pause", async (req, res) => {
    res.json(await queue.pause(req.params.id));
  });
  r.post("/:id/resume", (req, res) => {
    res.json(queue.resume(req.params.id));
  });
  r.post("/:id/cancel", (req, res) => {
    res.json(queue.cancel(req.params.id));
  });
  return r;
}

export function trainRoutes(datasetsDir: string): Router {
  const r = Router();
  r.get("/schema", (_req, res) => {
    res.json({ ...trainSchema(), engineAvailable: trainingEngineAvailable(), datasetsDir });
  });
  r.post("/validate", (req, res) => {
    if (typeof req.body?.yaml !== "string")
      return void res.status(400).json({ error: "send { yaml: string }" });
    res.json(validateTrainConfig(req.body.yaml));
  });
  r.post("/plan", async (req, res) => {
    if (typeof req.body?.yaml !== "string")
      return void res.status(400).json({ error: "send { yaml: string }" });
    res.json(await planTrainConfig(req.body.yaml));
  });
  return r;
}
