/** /api/lora: the Lora folder (list, preview, user metadata, rename, move, delete/undo, merge/resize/convert). */
import { Router } from "express";
import type { JobQueue } from "../jobs/queue.ts";
import type { LoraLibrary } from "../library/library.ts";
import { PathError, resolveInside } from "../library/safe-path.ts";
import type { Thumbnails } from "./thumbnails.ts";

const PREVIEW_EXT = /\.(png|jpe?g|webp|gif)$/i;

export function libraryRoutes(
  library: LoraLibrary,
  queue: JobQueue,
  thumbnails: Thumbnails,
  onChanged: (why: string) => void,
): Router {
  const r = Router();
  r.get("/", async (_req, res) => {
    res.json(await library.list());
  });
  r.get("/preview", async (req, res) => {
    const rel = req.query.path;
    if (typeof rel !== "string" || !PREVIEW_EXT.test(rel))
      throw new PathError(String(rel), "not a preview image");
    await thumbnails.send(req, res, await resolveInside(library.loraDir, rel));
  });
  r.put("/user-metadata", async (req, res) => {
    res.json({ metadata: await library.writeUserMetadata(req.body?.path, req.body?.metadata) });
    onChanged("user-metadata");
  });
  r.post("/rename", async (req, res) => {
    res.json({ path: await library.rename(req.body?.path, req.body?.name) });
    onChanged("rename");
  });
  r.post("/move", async (req, res) => {
    res.json({ path: await library.move(req.body?.path, req.body?.folder) });
    onChanged("move");
  });
  r.post("/delete", async (req, res) => {
    const m = await library.delete(req.body?.path);
    res.json({ trashId: m.id, files: m.files.map((f) => f.rel) });
    onChanged("delete");
  });
  r.post("/undo-delete", async (req, res) => {
    res.json({ restored: await library.undoDelete(req.body?.trashId) });
    onChanged("undo-delete");
  });
  // merge, resize (one input + rank) and convert (one input, format/dtype) are one job kind.
  r.post("/merge", async (req, res) => {
    res.status(202).json(await queue.submit("lora-merge", req.body));
  });
  return r;
}
