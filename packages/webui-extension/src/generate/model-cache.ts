/**
 * The opened base model and its txt2img pipeline, kept between txt2img jobs: opening a checkpoint and creating
 * the inference sessions is the slow part (seconds to a minute on SD1.5), a generation with warm sessions is
 * only the sampling. One base at a time (a second base replaces the first: two SD1.5 models would double the
 * memory), and one generation at a time (the pipeline's LoRA state is per call). The sessions run in the
 * engine's worker threads, so the service's event loop stays free while they compute.
 *
 * release() frees everything; the service calls it when a training job starts (the trainer needs the memory)
 * and when it stops. The next txt2img job opens the model again.
 */
import { messageShown, SdModel, Txt2ImgPipeline } from "@lora-studio/engine";

interface Loaded {
  key: string;
  model: SdModel;
  pipe: Txt2ImgPipeline;
}

export interface UseInfo {
  /** True when the model was opened for this call (its sessions are then created during it). */
  opened: boolean;
}

export class ModelCache {
  private loaded: Loaded | null = null;
  private lock: Promise<unknown> = Promise.resolve();
  private log: (message: string) => void = () => {};

  /** The base model currently open, or null. */
  get base(): string | null {
    return this.loaded?.model.options.model ?? null;
  }

  /** Sessions created by the open model so far (a warm second request adds none). */
  get sessionsCreated(): number {
    return this.loaded?.model.sessionsCreated ?? 0;
  }

  /** Runs calls one after another, each after the previous one settled. */
  private serial<T>(body: () => Promise<T>): Promise<T> {
    const run = this.lock.then(body);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Runs `fn` with the pipeline of `base` (opening it, and closing another base, when needed). */
  use<T>(
    base: string,
    tokenizerDir: string | undefined,
    log: (message: string) => void,
    fn: (pipe: Txt2ImgPipeline, info: UseInfo) => Promise<T>,
  ): Promise<T> {
    return this.serial(async () => {
      this.log = log;
      const key = `${base}\0${tokenizerDir ?? ""}`;
      let opened = false;
      if (this.loaded?.key !== key) {
        await this.closeLoaded();
        const model = await SdModel.open({
          model: base,
          tokenizer: tokenizerDir,
          onMessage: (m, level) => {
            if (messageShown(level)) this.log(m);
          },
        });
        this.loaded = { key, model, pipe: new Txt2ImgPipeline(model) };
        opened = true;
      }
      try {
        return await fn(this.loaded.pipe, { opened });
      } finally {
        this.log = () => {};
      }
    });
  }

  private async closeLoaded(): Promise<void> {
    const l = this.loaded;
    this.loaded = null;
    await l?.model.close();
  }

  /** Frees the model and its sessions once the generation in progress (if any) has finished. */
  release(): Promise<void> {
    return this.serial(() => this.closeLoaded());
  }
}

/** The service process's cache (txt2img jobs run in the service's thread: see jobs/in-service.ts). */
export const modelCache = new ModelCache();
