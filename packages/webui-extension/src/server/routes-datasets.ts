/** /api/datasets: dataset folders, image upload and serving, captions, dataset-check and auto-label jobs. */
import { Router } from "express";
import { type Datasets, DEFAULT_UPLOAD_LIMITS, type UploadLimits } from "../datasets/datasets.ts";
import type { JobQueue } from "../jobs/queue.ts";
import type { Thumbnails } from "./thumbnails.ts";
import { receiveFiles } from "./upload.ts";

export function datasetRoutes(
  datasets: Datasets,
  queue: JobQueue,
  thumbnails: Thumbnails,
  limits: UploadLimits = DEFAULT_UPLOAD_LIMITS,
): Router {
  const r = Router();
  r.get("/", async (_req, res) => {
    res.json({ datasets: await datasets.list() });
  });
  r.post("/", async (req, res) => {
    res.status(201).json({ name: await datasets.create(req.body?.name) });
  });
  r.get("/:name/images", async (req, res) => {
    res.json({ images: await datasets.images(req.params.name) });
  });
  // The picture itself, or with ?thumb=256 a small WebP for the grid (thumbnails.ts).
  r.get("/:name/images/:file", async (req, res) => {
    await thumbnails.send(req, res, await datasets.image(req.params.name, req.params.file));
  });
  r.post("/:name/images", async (req, res) => {
    await datasets.folder(req.params.name);
    const saved = await receiveFiles(req, limits, (file, data) =>
      datasets.saveUpload(req.params.name, file, data, limits),
    );
    res.status(201).json({ images: saved });
  });
  r.put("/:name/captions/:file", async (req, res) => {
    res.json({ savedTo: await datasets.setCaption(req.params.name, req.params.file, req.body?.caption) });
  });
  r.post("/:name/check", async (req, res) => {
    res.status(202).json(await queue.submit("dataset-check", { ...req.body, dataset: req.params.name }));
  });
  r.post("/:name/auto-label", async (req, res) => {
    res.status(202).json(await queue.submit("auto-label", { ...req.body, dataset: req.params.name }));
  });
  return r;
}
