/**
 * Multipart uploads with busboy: files are buffered up to the per-file limit (an upload over it is refused
 * with 413, never truncated silently) and handed to `save` one at a time.
 */

import busboy from "busboy";
import type { Request } from "express";
import { DatasetError, type UploadLimits } from "../datasets/datasets.ts";

export async function receiveFiles<T>(
  req: Request,
  limits: UploadLimits,
  save: (fileName: string, data: Buffer) => Promise<T>,
): Promise<T[]> {
  const type = req.headers["content-type"] ?? "";
  if (!type.startsWith("multipart/form-data"))
    throw new DatasetError(415, "send images as multipart/form-data");
  return new Promise<T[]>((resolve, reject) => {
    const bb = busboy({
      headers: req.headers,
      preservePath: true,
      limits: { fileSize: limits.maxFileBytes, files: limits.maxFiles, fields: 20 },
    });
    const saved: Promise<T>[] = [];
    let failure: Error | null = null;
    bb.on("file", (_field, stream, info) => {
      const name = info.filename ?? "unnamed";
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("limit", () => {
        failure ??= new DatasetError(413, `${name}: larger than ${limits.maxFileBytes} bytes`);
      });
      stream.on("close", () => {
        if (failure === null) saved.push(save(name, Buffer.concat(chunks)));
      });
    });
    bb.on("filesLimit", () => {
      failure ??= new DatasetError(413, `more than ${limits.maxFiles} files in one upload`);
    });
    bb.on("error", (err: Error) => reject(new DatasetError(400, `multipart: ${err.message}`)));
    bb.on("close", () => {
      if (failure !== null) {
        // Files already accepted stay; the caller learns which one broke the limit.
        Promise.allSettled(saved).then(() => reject(failure));
        return;
      }
      Promise.all(saved).then(resolve, reject);
    });
    req.pipe(bb);
  });
}
