/**
 * sharp, loaded from the trainer's dependencies (it is not a dependency of this package yet): the tests use
 * it as an independent encoder of real PNG/JPEG/WebP files. Typed by the few calls the tests make.
 */
import { createRequire } from "node:module";

export interface SharpChain {
  png(): SharpChain;
  jpeg(): SharpChain;
  toFormat(format: "png" | "jpeg" | "webp", options?: Record<string, unknown>): SharpChain;
  withMetadata(options: Record<string, unknown>): SharpChain;
  toBuffer(): Promise<Buffer>;
}

type SharpInput =
  | Buffer
  | { create: { width: number; height: number; channels: 3 | 4; background: Record<string, number> } };

export const sharp = createRequire(new URL("../../../trainer/package.json", import.meta.url))("sharp") as (
  input: SharpInput,
  options?: { raw: { width: number; height: number; channels: 3 | 4 } },
) => SharpChain;
