/**
 * "dataset-check": the trainer's datasetCheck (resolution, blur, near-duplicates, aspect, caption problems)
 * over one dataset folder of this service, with its contact sheet written to the data folder.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { datasetCheck } from "@lora-studio/trainer";
import { checkName, resolveInside } from "../../library/safe-path.ts";
import { type JobContext, type JobEnvironment, type JobKind, JobParamsError } from "../types.ts";

/** Where contact sheets go, under the service's data folder (served by GET /api/jobs/:id/contact-sheet). */
export function contactSheetDir(dataDir: string): string {
  return join(dataDir, "checks");
}

interface DatasetCheckParams {
  dataset: string;
  dir: string;
  resolution: number;
  contactSheetDir: string;
}

async function prepare(raw: unknown, env: JobEnvironment): Promise<DatasetCheckParams> {
  const p = (raw ?? {}) as Record<string, unknown>;
  const dataset = checkName(p.dataset, "dataset");
  const dir = await resolveInside(env.datasetsDir, dataset, "dataset");
  const resolution = p.resolution ?? 512;
  if (typeof resolution !== "number" || !Number.isInteger(resolution) || resolution < 64) {
    throw new JobParamsError("dataset-check", "resolution must be an integer >= 64");
  }
  return { dataset, dir, resolution, contactSheetDir: contactSheetDir(env.dataDir) };
}

async function run(ctx: JobContext) {
  const p = ctx.params as DatasetCheckParams;
  await mkdir(p.contactSheetDir, { recursive: true });
  ctx.progress(0, 1, `checking ${p.dataset}`);
  const r = await datasetCheck(p.dir, {
    resolution: p.resolution,
    contactSheetPath: join(p.contactSheetDir, `${ctx.jobId}.png`),
  });
  const flagged = r.rows.filter((row) => row.flags.length > 0).length;
  ctx.log(`${r.rows.length} images, ${flagged} flagged`);
  ctx.progress(1, 1, "done");
  return {
    result: {
      dataset: p.dataset,
      rows: r.rows.map(({ path: _abs, ...row }) => row),
      contactSheet: r.contactSheetPath === null ? null : `${ctx.jobId}.png`,
    },
  };
}

export const kind: JobKind = {
  name: "dataset-check",
  resumable: false,
  writesTo: (params) => [{ dir: (params as DatasetCheckParams).contactSheetDir, recursive: false }],
  prepare,
  run,
};
