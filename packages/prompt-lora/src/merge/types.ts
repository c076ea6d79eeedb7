/** Types shared by the merge operations. */
import type { Adapter } from "../adapters/types.ts";

/** Called as work advances; the CLI draws a progress bar from it. `label` names the current item. */
export type ProgressCallback = (done: number, total: number, label: string) => void;

/** One adapter of a stack with the multipliers of its prompt token (`<lora:name:te:unet:dyn>`). */
export interface StackEntry {
  adapter: Adapter;
  /** Multiplier of text-encoder modules (default 1). */
  te?: number;
  /** Multiplier of UNet modules (default: te). */
  unet?: number;
  /** Keep only the first `dyn` ranks of each LoRA module (DyLoRA). */
  dyn?: number | null;
}
