/**
 * A training job's config, resolved the way the service runs it: the text is the trainer's YAML (JSON is
 * YAML too), validated by the trainer's own parseConfig (the code `pnpm train` uses). Relative paths
 * resolve against the service's datasets folder, so `train_data_dir: my-dataset` names an uploaded dataset;
 * output_dir (relative, or anywhere inside the datasets folder, where outputs would mix with pictures) is
 * placed in the job's own run folder `<data>/runs/<run id>/`, so two jobs never share an output folder.
 */
import { randomBytes } from "node:crypto";
import { isAbsolute, join, relative } from "node:path";
import type { TrainConfig } from "@lora-studio/trainer";
import { ConfigError, parseConfig } from "@lora-studio/trainer";

/** The name the config text is reported under (errors read `webui-config.yaml:3:1: ...`). */
export const CONFIG_NAME = "webui-config.yaml";

export function runsDir(dataDir: string): string {
  return join(dataDir, "runs");
}

/** `20261122-011500-my_style-a1b2c3`: sortable by start time, readable, unique. */
export function newRunId(outputName: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  return `${stamp}-${outputName.replace(/[^\w.-]+/g, "_").slice(0, 60)}-${randomBytes(3).toString("hex")}`;
}

/** The client's config (YAML/JSON text or an object of the trainer's keys) as text. */
export function configText(config: unknown): string {
  if (typeof config === "string") return config;
  if (typeof config === "object" && config !== null && !Array.isArray(config)) return JSON.stringify(config);
  throw new ConfigError(CONFIG_NAME, [
    { keyPath: "", message: "config must be YAML text or an object of the trainer's keys" },
  ]);
}

/**
 * Parses and resolves `text` for a job whose run folder is `runDir`. Throws the trainer's ConfigError
 * (every issue with its key path and line:column) when the config is not valid.
 */
export function resolveJobConfig(text: string, datasetsDir: string, runDir: string): TrainConfig {
  const config = parseConfig(text, join(datasetsDir, CONFIG_NAME));
  const rel = relative(datasetsDir, config.output_dir);
  const insideDatasets = rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
  return insideDatasets ? { ...config, output_dir: join(runDir, rel) } : config;
}
