/**
 * Shared by the pipeline tests: a private copy of the tiny model. Sessions place their .onnx file next to the
 * weights they reference, so tests run on a temp copy and never write into ../shared.
 */
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TINY } from "./models.helpers.ts";

export interface TinyCopy {
  dir: string;
  diffusers: string;
  single: string;
  remove(): void;
}

export function copyTinyModel(prefix = "pipeline-"): TinyCopy {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cpSync(`${TINY}diffusers`, join(dir, "tiny-sd1"), { recursive: true });
  cpSync(`${TINY}tiny-sd1.safetensors`, join(dir, "tiny-sd1.safetensors"));
  return {
    dir,
    diffusers: join(dir, "tiny-sd1"),
    single: join(dir, "tiny-sd1.safetensors"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
