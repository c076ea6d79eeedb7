/**
 * The cleanup after a cancelled job. A cancel terminates the job's worker at once; every file the jobs write
 * goes through prompt-lora's atomic writer (a hidden temp sibling `.<name>.tmp-<pid>-<12 hex>`, then a rename),
 * so a write in flight leaves no partial file under its final name, only its temp sibling. Those temp files
 * carry the pid of the process that made them: a worker_thread shares this process's pid, so the sweep takes
 * only this process's temp files, in the places the job's kind says it writes to.
 */
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { WritePlace } from "./types.ts";

/** prompt-lora's tempPathFor() naming: `.<final name>.tmp-<pid>-<12 hex digits>`. */
const TEMP_NAME = /^\.(.+)\.tmp-(\d+)-[0-9a-f]{12}$/;

/** The final name and pid of an atomic writer's temp file, or null for any other name. */
export function parseTempName(name: string): { finalName: string; pid: number } | null {
  const m = TEMP_NAME.exec(name);
  return m === null ? null : { finalName: m[1], pid: Number(m[2]) };
}

/** Removes this process's temp files in `places`; returns the paths removed. Missing folders are skipped. */
export async function removeTempFiles(places: readonly WritePlace[], pid: number): Promise<string[]> {
  const removed: string[] = [];
  const sweep = async (dir: string, place: WritePlace): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        if (place.recursive) await sweep(path, place);
        continue;
      }
      const t = parseTempName(e.name);
      if (t === null || t.pid !== pid) continue;
      if (place.namePrefixes !== undefined && !place.namePrefixes.some((p) => t.finalName.startsWith(p)))
        continue;
      await rm(path, { force: true });
      removed.push(path);
    }
  };
  for (const place of places) await sweep(place.dir, place);
  return removed;
}
