/**
 * The `--dry-run` text: images found and skipped, captions, repeats, buckets, and the step arithmetic written
 * out ("12 images x 10 repeats = 120 samples / batch 2 = 60 steps per epoch x 10 epochs = 600 steps"), since
 * that arithmetic is what users of other trainers most often get wrong.
 */
import { relative } from "node:path";
import type { DataPlan } from "./plan.ts";

export interface PlanExtras {
  /** Measured or estimated seconds per optimizer step, for the time estimate. */
  secondsPerStep?: number;
  /** Estimated peak memory in bytes. */
  memoryBytes?: number;
}

export function formatPlan(plan: DataPlan, extras: PlanExtras = {}): string {
  const lines: string[] = [];
  const rel = (p: string) => relative(plan.dataDir, p) || p;
  lines.push(`data: ${plan.dataDir}`);
  lines.push(`images: ${plan.images.length} used, ${plan.skipped.length} skipped`);
  for (const s of plan.skipped) lines.push(`  skipped ${rel(s.path)}: ${s.reason}`);
  const c = plan.captions;
  const sources: string[] = [];
  if (c.csvPath !== undefined) sources.push(`${c.fromCsv} from ${rel(c.csvPath)}`);
  sources.push(`${c.fromSidecar} from "${c.captionExtension}" files`);
  sources.push(`${c.missing.length} without caption`);
  lines.push(`captions: ${sources.join(", ")}`);
  for (const w of plan.warnings) lines.push(`  warning: ${w}`);
  lines.push("repeats:");
  for (const s of plan.subsets)
    lines.push(
      `  ${s.name}: ${s.imageCount} images x ${s.repeats} repeats = ${s.imageCount * s.repeats} samples`,
    );
  lines.push("buckets (width x height):");
  for (const b of plan.buckets) {
    lines.push(
      `  ${b.bucket[0]}x${b.bucket[1]}: ${plural(b.images, "image")}, ${b.samples} samples / batch ${plan.batchSize} = ${b.batches} batches (rounded up)`,
    );
  }
  lines.push("steps:");
  lines.push(`  ${stepSentence(plan)}`);
  if (plan.limitedBy === "max_train_steps") {
    lines.push(
      `  max_train_steps ${plan.totalSteps} decides the length: ${plan.totalSteps} / ${plan.stepsPerEpoch} steps per epoch = ${plan.epochs} epochs (rounded up; epochs setting not used)`,
    );
  }
  if (extras.secondsPerStep !== undefined) {
    lines.push(
      `estimated time: ${formatDuration(plan.totalSteps * extras.secondsPerStep)} (${extras.secondsPerStep.toFixed(2)} s/step)`,
    );
  }
  if (extras.memoryBytes !== undefined)
    lines.push(`estimated memory: ${(extras.memoryBytes / 2 ** 30).toFixed(2)} GiB`);
  return lines.join("\n");
}

/** "12 images x 10 repeats = 120 samples / batch 2 = 60 steps per epoch x 10 epochs = 600 steps". */
export function stepSentence(plan: DataPlan): string {
  const imageCount = plan.images.length;
  const repeatSet = new Set(plan.subsets.map((s) => s.repeats));
  const samples =
    repeatSet.size === 1
      ? `${imageCount} images x ${[...repeatSet][0]} repeats = ${plan.samplesPerEpoch} samples`
      : `${imageCount} images (${plan.subsets.map((s) => `${s.imageCount} x ${s.repeats}`).join(" + ")} repeats) = ${plan.samplesPerEpoch} samples`;
  const perBucket = plan.buckets.length > 1 ? " per bucket, rounded up" : "";
  const batches =
    plan.gradientAccumulation > 1
      ? `/ batch ${plan.batchSize}${perBucket} = ${plan.batchesPerEpoch} batches / gradient accumulation ${plan.gradientAccumulation} = ${plan.stepsPerEpoch} steps per epoch`
      : `/ batch ${plan.batchSize}${perBucket} = ${plan.stepsPerEpoch} steps per epoch`;
  const total =
    plan.limitedBy === "epochs"
      ? ` x ${plan.epochs} epochs = ${plan.totalSteps} steps`
      : `; stopping at max_train_steps = ${plan.totalSteps} steps`;
  return `${samples} ${batches}${total}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s % 60} s` : `${s} s`;
}
