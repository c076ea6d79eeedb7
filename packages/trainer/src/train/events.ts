/** The events a training run reports (CLI progress bar, the webui service's job stream, tests). */
import type { HealthNote } from "../logging/health.ts";

export type TrainEvent =
  | { type: "log"; level: "info" | "warn"; message: string }
  | {
      type: "plan";
      text: string;
      totalSteps: number;
      stepsPerEpoch: number;
      epochs: number;
      startStep: number;
    }
  | {
      type: "step";
      step: number;
      totalSteps: number;
      epoch: number;
      loss: number;
      lossAverage: number;
      /** The UNet's learning rate (the only one without train_text_encoder). */
      lr: number;
      /** The text encoder's learning rate (train_text_encoder only). */
      lrTextEncoder?: number;
      itPerSec: number;
      etaSeconds: number;
      evalLoss?: number;
    }
  | { type: "saved"; step: number; loraPath: string; statePath: string }
  | { type: "sample"; step: number; path: string }
  | { type: "error"; message: string; step?: number }
  | {
      type: "done";
      status: "done" | "paused" | "cancelled";
      step: number;
      loraPath?: string;
      health: HealthNote[];
    };

export type TrainEventHandler = (event: TrainEvent) => void;

/** Raised when a step's loss or gradients are NaN/Inf; the run stops and the last saved checkpoint stays. */
export class NonFiniteLossError extends Error {
  constructor(
    readonly step: number,
    readonly loss: number,
    readonly lastCheckpoint: string | undefined,
  ) {
    super(
      `loss became ${loss} at step ${step}: training stopped. ` +
        (lastCheckpoint
          ? `The last good checkpoint is ${lastCheckpoint}. `
          : "No checkpoint was saved before this step. ") +
        "Try a lower learning_rate (e.g. 10x lower), mixed_precision: no (fp32), or lr_warmup_steps.",
    );
    this.name = "NonFiniteLossError";
  }
}
