/** Public API of @lora-studio/webui-extension: the service, job runner, Lora library management and the WebUI bridge. */

export { listWebuiLoras, refreshLoras, WebuiBridgeError, type WebuiLora } from "./bridge/webui.ts";
export { buildExtension, bundleUi, commitExtension } from "./build-extension.ts";
export {
  DatasetError,
  type DatasetImage,
  Datasets,
  DEFAULT_UPLOAD_LIMITS,
  type UploadLimits,
} from "./datasets/datasets.ts";
export { type ImageHeader, readImageHeader } from "./datasets/image-header.ts";
export { JOB_KIND_MODULES, loadJobKind } from "./jobs/kinds/index.ts";
export type { TrainJobParams } from "./jobs/kinds/train.ts";
export { parseTempName, removeTempFiles } from "./jobs/leftovers.ts";
export { JobError, JobQueue, type QueueOptions } from "./jobs/queue.ts";
export { FINAL_STATES, type JobEvent, type JobRecord, type JobState, JobStore } from "./jobs/store.ts";
export {
  type JobContext,
  type JobEnvironment,
  type JobKind,
  type JobOutcome,
  JobParamsError,
  type StopReason,
} from "./jobs/types.ts";
export {
  LibraryError,
  type LoraCard,
  LoraLibrary,
  loraToken,
  USER_METADATA_KEYS,
} from "./library/library.ts";
export { checkName, checkRelativeText, PathError, resolveInside } from "./library/safe-path.ts";
export { OriginPolicy } from "./server/origin.ts";
export { type ServeOptions, type Service, serve } from "./server/serve.ts";
export { loadOrCreateToken, tokenFromHeaders, tokenMatches } from "./server/token.ts";
export { EventHub } from "./server/ws.ts";
export { etaFromHistory, type HistoryEta, type PlanEta } from "./training/eta.ts";
export {
  activationTextFrom,
  DEFAULT_LORA_SUBFOLDER,
  type HotLoadSettings,
  installLora,
} from "./training/hot-load.ts";
export { CONFIG_NAME, configText, newRunId, resolveJobConfig, runsDir } from "./training/job-config.ts";
