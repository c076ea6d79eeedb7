/**
 * Sample images while training (sample_prompts + sample_every_n_steps), through the engine's txt2img pipeline
 * and kohya's sample-prompt syntax (`a cat --n blurry --w 512 --h 512 --d 42 --s 20 --l 7`): the LoRA being
 * trained is fed to the pipeline's adapter-input graphs (text-encoder modules, with train_text_encoder, to its
 * text-encoder graph), so one set of sessions serves every sample round. A round
 * runs before the first step (the "before" picture, as kohya's sample_at_first) and every N steps, and writes one
 * grid PNG per round: <output_dir>/samples/<output_name>-step<8 digits>.png.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { OpenCheckpointOptions } from "@lora-studio/engine";
import {
  type HostTensor,
  parseSamplePromptLine,
  renderSamples,
  type SamplePrompt,
  SdModel,
  Txt2ImgPipeline,
} from "@lora-studio/engine";
import type { Adapter } from "@lora-studio/prompt-lora";
import type { TrainConfig } from "../config/schema.ts";
import type { SavedModule } from "./checkpoint.ts";

export class SampleRenderer {
  private pipe: Promise<Txt2ImgPipeline> | undefined;
  readonly prompts: SamplePrompt[];

  constructor(
    private readonly config: TrainConfig,
    private readonly modules: readonly SavedModule[],
    private readonly family: "sd1" | "sd2",
    private readonly tokenizerDir: string | undefined,
    /** The loader options the trainer opened the base with (e.g. head counts a tiny single file cannot state). */
    private readonly checkpointOptions?: OpenCheckpointOptions,
  ) {
    this.prompts = config.sample_prompts.map((p, i) => parseSamplePromptLine(p, i + 1, "sample_prompts"));
  }

  /** Renders every prompt with the LoRA in `state`; returns the grid's path. */
  async render(step: number, state: ReadonlyMap<string, HostTensor>): Promise<string> {
    this.pipe ??= SdModel.open({
      model: this.config.base_model,
      tokenizer: this.tokenizerDir,
      checkpoint: this.checkpointOptions,
      executionProvider: this.config.execution_provider,
      intraOpThreads: this.config.threads,
      worker: false,
      onMessage: () => {},
    }).then((m) => new Txt2ImgPipeline(m));
    const pipe = await this.pipe;
    const gridPath = join(
      this.config.output_dir,
      "samples",
      `${this.config.output_name}-step${String(step).padStart(8, "0")}.png`,
    );
    mkdirSync(join(this.config.output_dir, "samples"), { recursive: true });
    await renderSamples(pipe, this.prompts, {
      adapter: this.adapter(state),
      defaults: {
        width: this.config.resolution[0],
        height: this.config.resolution[1],
        seed: this.config.seed,
        steps: 20,
        cfg: 7,
        sampler: "DDIM",
        clipSkip: this.config.clip_skip,
      },
      gridPath,
    });
    return gridPath;
  }

  private adapter(state: ReadonlyMap<string, HostTensor>): Adapter {
    return {
      format: "kohya",
      family: this.family,
      metadata: {},
      unknownKeys: [],
      modules: this.modules.map((m) => ({
        component: m.component,
        path: m.info.path,
        kind: "lora",
        layer: m.layer,
        alpha: m.alpha,
        tensors: {
          down: {
            shape: [...m.info.downShape],
            data: (state.get(m.info.downState)!.data as Float32Array).slice(),
          },
          up: { shape: [...m.info.upShape], data: (state.get(m.info.upState)!.data as Float32Array).slice() },
        },
      })),
    };
  }

  async release(): Promise<void> {
    if (this.pipe) await (await this.pipe).model.close();
  }
}
