/**
 * The plan's ETA without running the model: the speed (it/s) a finished or running training job of this
 * service reached with the same model and the same step shape (resolution, batch, rank, accumulation,
 * provider). The trainer's own `--dry-run` measures a step instead, which costs a model load and a step
 * graph build per plan; the form's live plan is refreshed on every change, so it uses this history and
 * says where the speed comes from (no matching run: no ETA).
 */
import type { TrainConfig } from "@lora-studio/trainer";
import type { JobStore } from "../jobs/store.ts";

export interface HistoryEta {
  secondsPerStep: number;
  etaSeconds: number;
  /** The job whose speed was used. */
  jobId: string;
}

const SHAPE_KEYS = [
  "base_model",
  "resolution",
  "batch_size",
  "lora_rank",
  "gradient_accumulation_steps",
  "gradient_checkpointing",
  "execution_provider",
] as const;

export function etaFromHistory(store: JobStore, config: TrainConfig, steps: number): HistoryEta | null {
  const same = (c: Record<string, unknown>) =>
    SHAPE_KEYS.every((k) => JSON.stringify(c[k]) === JSON.stringify(config[k]));
  for (const job of store.list().reverse()) {
    const c = (job.params as { config?: Record<string, unknown> } | null)?.config;
    if (job.kind !== "train" || c === undefined || !same(c)) continue;
    const itPerSec = Number(
      (store.lastEvent(job.id, "metric")?.data as { itPerSec?: number } | null)?.itPerSec,
    );
    if (!(itPerSec > 0) || !Number.isFinite(itPerSec)) continue;
    return { secondsPerStep: 1 / itPerSec, etaSeconds: steps / itPerSec, jobId: job.id };
  }
  return null;
}
