/** Adapters: every common LoRA/LyCORIS file layout in, one normalized Adapter, kohya and PEFT out. */
export { moduleBiasDelta, moduleDelta, rawDelta, truncateRank } from "./delta.ts";
export { AdapterError, type AdapterErrorCode } from "./errors.ts";
export { detectFamily, familyFromMetadata } from "./family.ts";
export { parseAdapter, readAdapter, type TensorMap } from "./parse.ts";
export { type AdapterSummary, summarizeAdapterFile } from "./summary.ts";
export type { Adapter, AdapterModule, Component, ModelFamily, Tensor } from "./types.ts";
export { type WriteAdapterOptions, writeAdapter } from "./write.ts";
