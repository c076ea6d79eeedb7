/**
 * The Train form's ETA, from a measured step time, best source first:
 *  1. "measured": the newest `train-estimate` job of this service for the same model and step shape (the
 *     trainer's `--dry-run` measurement: estimateStep times real steps of the step graph);
 *  2. "history": the speed (last it/s) that earlier training jobs with the same model and step shape reached,
 *     the median over all of them ("estimated from N previous runs");
 *  3. "rough": training jobs on the same model at another step shape, scaled by pixels x batch x accumulation
 *     (steps cost roughly in proportion to the latent pixels they process) — said to be rough.
 * The live plan is refreshed on every form change, so it never measures by itself (a measurement costs a model
 * load and a step graph build); the form has a button that queues the measurement.
 */
import type { TrainConfig } from "@lora-studio/trainer";
import type { JobStore } from "../jobs/store.ts";

export interface PlanEta {
  source: "measured" | "history" | "rough";
  secondsPerStep: number;
  etaSeconds: number;
  /** How many jobs the speed comes from. */
  runs: number;
  /** The newest job used. */
  jobId: string;
  /** One line for the form. */
  text: string;
}

/** Kept for the package's public API: the ETA of the newest matching source. */
export type HistoryEta = PlanEta;

/** The keys that decide how long one optimizer step takes. */
const SHAPE_KEYS = [
  "base_model",
  "resolution",
  "batch_size",
  "lora_rank",
  "gradient_accumulation_steps",
  "gradient_checkpointing",
  "execution_provider",
  "mixed_precision",
  "train_text_encoder",
] as const;

type Shape = Record<string, unknown>;

const sameShape = (a: Shape, b: Shape) =>
  SHAPE_KEYS.every((k) => JSON.stringify(a[k]) === JSON.stringify(b[k]));

/** Latent pixels x batch x accumulation: what a step's cost scales with. */
function work(c: Shape): number {
  const [w, h] = (c.resolution as [number, number] | undefined) ?? [512, 512];
  return w * h * Number(c.batch_size ?? 1) * Number(c.gradient_accumulation_steps ?? 1);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function describe(seconds: number): string {
  return seconds >= 1 ? `${seconds.toFixed(2)} s/step` : `${(1 / seconds).toFixed(2)} steps/s`;
}

export function etaFromHistory(store: JobStore, config: TrainConfig, steps: number): PlanEta | null {
  const want = config as unknown as Shape;
  const jobs = store.list().reverse();
  const configOf = (params: unknown) => (params as { config?: Shape } | null)?.config;

  for (const job of jobs) {
    const c = configOf(job.params);
    const measured = Number((job.result as { secondsPerStep?: number } | null)?.secondsPerStep);
    if (job.kind !== "train-estimate" || job.state !== "done" || c === undefined || !sameShape(c, want))
      continue;
    if (!(measured > 0)) continue;
    return {
      source: "measured",
      secondsPerStep: measured,
      etaSeconds: steps * measured,
      runs: 1,
      jobId: job.id,
      text: `measured by a dry-run step: ${describe(measured)}`,
    };
  }

  const speeds: Array<{ jobId: string; config: Shape; secondsPerStep: number }> = [];
  for (const job of jobs) {
    const c = configOf(job.params);
    if (job.kind !== "train" || c === undefined || c.base_model !== config.base_model) continue;
    const itPerSec = Number(
      (store.lastEvent(job.id, "metric")?.data as { itPerSec?: number } | null)?.itPerSec,
    );
    if (itPerSec > 0 && Number.isFinite(itPerSec))
      speeds.push({ jobId: job.id, config: c, secondsPerStep: 1 / itPerSec });
  }
  const same = speeds.filter((s) => sameShape(s.config, want));
  if (same.length > 0) {
    const s = median(same.map((x) => x.secondsPerStep));
    return {
      source: "history",
      secondsPerStep: s,
      etaSeconds: steps * s,
      runs: same.length,
      jobId: same[0].jobId,
      text: `estimated from ${same.length} previous run${same.length === 1 ? "" : "s"}: ${describe(s)}`,
    };
  }
  if (speeds.length > 0) {
    const s = median(speeds.map((x) => (x.secondsPerStep * work(want)) / work(x.config)));
    return {
      source: "rough",
      secondsPerStep: s,
      etaSeconds: steps * s,
      runs: speeds.length,
      jobId: speeds[0].jobId,
      text: `rough estimate, scaled from ${speeds.length} run${speeds.length === 1 ? "" : "s"} of this model at another size`,
    };
  }
  return null;
}
