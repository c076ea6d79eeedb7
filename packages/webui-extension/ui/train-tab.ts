/**
 * Train tab: the trainer's config keys as a form (tutorial keys first, the rest folded under "Advanced"),
 * presets, validation by the trainer's own code on the service, a live plan (the trainer's dry-run plan,
 * refreshed as the form changes), the hot-load settings of the LoRA card, and Start, which queues a real
 * training job and opens it in the Runs tab.
 */
import { css, html, LitElement, nothing } from "lit";
import type { StudioApi } from "./api.ts";
import { shared } from "./styles.ts";

interface Schema {
  keys: string[];
  basic: string[];
  required: string[];
  defaults: Record<string, unknown>;
  choices: Record<string, string[]>;
  engineAvailable: boolean;
  /** Where this service keeps its datasets (absolute), to fill train_data_dir from a dataset name. */
  datasetsDir: string;
  /** The Lora subfolder training jobs write into unless the form says otherwise. */
  loraSubfolder: string;
}

interface Plan {
  ok: boolean;
  text?: string;
  message?: string;
  images?: number;
  repeats?: number;
  stepsPerEpoch?: number;
  epochs?: number;
  totalSteps?: number;
  activationText?: string;
  /** From a measured step (train-estimate job), earlier runs of this model and step shape, or a rough scaling. */
  eta?: { source: string; secondsPerStep: number; etaSeconds: number; runs: number; text: string } | null;
}

function duration(seconds: number): string {
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
    : s >= 60
      ? `${Math.floor(s / 60)} min ${s % 60} s`
      : `${s} s`;
}

const PLAN_DELAY_MS = 400;

/** Starting points from the LoRA guides: what differs between a style, a character and a craft pattern. */
export const PRESETS: Record<string, Record<string, unknown>> = {
  style: {
    lora_rank: 16,
    lora_alpha: 8,
    learning_rate: 1e-4,
    epochs: 10,
    repeats: 10,
    shuffle_caption: true,
  },
  character: {
    lora_rank: 32,
    lora_alpha: 16,
    learning_rate: 1e-4,
    epochs: 10,
    repeats: 10,
    keep_tokens: 1,
    shuffle_caption: true,
  },
  "craft pattern": {
    lora_rank: 8,
    lora_alpha: 4,
    learning_rate: 2e-4,
    epochs: 12,
    repeats: 8,
    flip_aug: true,
  },
};

export class TrainTab extends LitElement {
  static override properties = {
    api: { attribute: false },
    schema: { state: true },
    values: { state: true },
    result: { state: true },
    datasets: { state: true },
    dryRun: { state: true },
    preset: { state: true },
    hot: { state: true },
    loader: { state: true },
    measuring: { state: true },
  };
  /** The base model's loader options (the job's `model` parameter), for single files off the conventions. */
  declare loader: { prediction_type: string; text_encoder_heads: string; unet_heads: string };
  /** A step-time measurement in progress. */
  declare measuring: boolean;
  declare dryRun: Plan | null;
  declare preset: string;
  /** Hot-load settings (job parameters, not trainer keys). */
  declare hot: { subfolder: string; activation: string; weight: number; ortOpt: string };
  private planTimer: ReturnType<typeof setTimeout> | undefined;
  private planFor = "";
  declare api: StudioApi;
  declare schema: Schema | null;
  declare values: Record<string, unknown>;
  declare result: string;
  declare datasets: string[];

  constructor() {
    super();
    this.schema = null;
    this.values = {};
    this.result = "";
    this.datasets = [];
    this.dryRun = null;
    this.preset = "";
    this.hot = { subfolder: "", activation: "", weight: 1, ortOpt: "" };
    this.loader = { prediction_type: "", text_encoder_heads: "", unet_heads: "" };
    this.measuring = false;
  }

  static override styles = [
    shared,
    css`
      form { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 8px; }
      label { display: flex; flex-direction: column; font-size: 12px; }
      details { margin-top: 10px; }
      pre { white-space: pre-wrap; background: var(--ls-panel); padding: 8px; border-radius: 6px; }
      .plan { height: 150px; overflow: auto; margin: 8px 0 0; box-sizing: border-box; }
      .eta-row { margin-top: 8px; min-height: 30px; }
      .eta { font-weight: 600; }
      .plan .summary { font-weight: 600; min-height: 1.4em; }
      fieldset { border: 1px solid var(--ls-border); border-radius: 6px; margin-top: 10px; display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 8px; }
      button[aria-pressed="true"] { border-color: var(--ls-accent); }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    void this.api.get<Schema>("/api/train/schema").then((s) => {
      this.schema = s;
      this.values = { ...s.defaults };
      this.hot = { ...this.hot, subfolder: s.loraSubfolder };
    });
    void this.api.get<{ datasets: Array<{ name: string }> }>("/api/datasets").then((r) => {
      this.datasets = r.datasets.map((d) => d.name);
    });
  }

  private field(key: string) {
    const s = this.schema as Schema;
    const v = this.values[key];
    const set = (value: unknown) => {
      this.values = { ...this.values, [key]: value };
    };
    const choices = s.choices[key];
    let input: unknown;
    if (choices) {
      input = html`<select data-key=${key} @change=${(e: Event) => set((e.target as HTMLSelectElement).value)}>${choices.map((c) => html`<option ?selected=${c === v}>${c}</option>`)}</select>`;
    } else if (typeof s.defaults[key] === "boolean") {
      input = html`<input data-key=${key} type="checkbox" .checked=${Boolean(v)} @change=${(e: Event) => set((e.target as HTMLInputElement).checked)} />`;
    } else if (typeof s.defaults[key] === "number") {
      input = html`<input data-key=${key} type="number" step="any" .value=${v === undefined ? "" : String(v)} @change=${(e: Event) => set(Number((e.target as HTMLInputElement).value))} />`;
    } else {
      const text =
        v === undefined ? "" : Array.isArray(v) || typeof v === "object" ? JSON.stringify(v) : String(v);
      input = html`<input data-key=${key} .value=${text} @change=${(e: Event) => {
        const t = (e.target as HTMLInputElement).value;
        if (t === "") {
          const { [key]: _gone, ...rest } = this.values;
          this.values = rest;
          return;
        }
        try {
          set(
            t.startsWith("[") || t.startsWith("{")
              ? JSON.parse(t)
              : /^-?\d+(\.\d+)?(e-?\d+)?$/.test(t)
                ? Number(t)
                : t,
          );
        } catch {
          set(t);
        }
      }} />`;
    }
    return html`<label>${key}${s.required.includes(key) ? " *" : ""}${input}</label>`;
  }

  /** JSON is valid YAML 1.2, so the form's values go to the trainer's YAML parser as they are. */
  private configText(): string {
    return JSON.stringify(this.values, null, 2);
  }

  private async validate(): Promise<void> {
    const r = await this.api.send<{ ok: boolean; message?: string }>("POST", "/api/train/validate", {
      yaml: this.configText(),
    });
    this.result = r.ok ? "The config is valid for the trainer." : (r.message ?? "invalid");
  }

  /** The trainer's dry-run plan: images, repeats, buckets and the step arithmetic. */
  private async plan(): Promise<void> {
    const r = await this.api.send<{ ok: boolean; text?: string; message?: string }>(
      "POST",
      "/api/train/plan",
      {
        yaml: this.configText(),
      },
    );
    this.result = r.ok ? (r.text ?? "") : (r.message ?? "invalid");
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    clearTimeout(this.planTimer);
  }

  /** The live plan: the trainer's dry-run plan of the form, a moment after the last change. */
  override updated(changed: Map<string, unknown>): void {
    if (!changed.has("values") || this.schema === null) return;
    const text = this.configText();
    if (text === this.planFor) return;
    clearTimeout(this.planTimer);
    if (!this.values.train_data_dir || !this.values.base_model) {
      this.dryRun = null;
      return;
    }
    this.planTimer = setTimeout(() => void this.livePlan(text), PLAN_DELAY_MS);
  }

  private async livePlan(text: string): Promise<void> {
    this.planFor = text;
    try {
      const r = await this.api.send<Plan>("POST", "/api/train/plan", { yaml: text });
      if (text === this.configText()) this.dryRun = r;
    } catch (err) {
      this.dryRun = { ok: false, message: (err as Error).message };
    }
  }

  private usePreset(name: string): void {
    this.preset = name;
    this.values = { ...this.values, ...PRESETS[name] };
  }

  private useDataset(name: string): void {
    const dir = (this.schema as Schema).datasetsDir;
    if (name !== "") this.values = { ...this.values, train_data_dir: `${dir}/${name}` };
  }

  /** The job's `model` parameter from the loader fields (undefined when all are left to the loader). */
  private loaderOptions(): Record<string, unknown> | undefined {
    const l = this.loader;
    const out: Record<string, unknown> = {};
    if (l.prediction_type) out.prediction_type = l.prediction_type;
    if (l.text_encoder_heads) out.text_encoder_heads = Number(l.text_encoder_heads);
    if (l.unet_heads)
      out.unet_heads = l.unet_heads.includes(",")
        ? l.unet_heads.split(",").map((h) => Number(h.trim()))
        : Number(l.unet_heads);
    return Object.keys(out).length > 0 ? out : undefined;
  }

  /** Queues the trainer's dry-run step measurement; the plan's ETA uses it once it is done. */
  private async measure(): Promise<void> {
    this.measuring = true;
    try {
      const job = await this.api.send<{ id: string }>("POST", "/api/jobs", {
        kind: "train-estimate",
        params: {
          config: this.values,
          graph_optimization: this.hot.ortOpt || undefined,
          model: this.loaderOptions(),
        },
      });
      for (;;) {
        await new Promise((r) => setTimeout(r, 1000));
        const j = await this.api.get<{ state: string; error: string | null }>(`/api/jobs/${job.id}`);
        if (j.state === "done") break;
        if (["failed", "cancelled"].includes(j.state))
          throw new Error(`step measurement ${j.state}: ${j.error ?? ""}`);
      }
      await this.livePlan(this.configText());
    } catch (err) {
      this.result = (err as Error).message;
    } finally {
      this.measuring = false;
    }
  }

  private async start(): Promise<void> {
    try {
      const job = await this.api.send<{ id: string }>("POST", "/api/jobs", {
        kind: "train",
        params: {
          config: this.values,
          lora_subfolder: this.hot.subfolder || undefined,
          activation_text: this.hot.activation || undefined,
          preferred_weight: this.hot.weight,
          graph_optimization: this.hot.ortOpt || undefined,
          model: this.loaderOptions(),
        },
      });
      this.result = "Training job queued: see Runs.";
      this.dispatchEvent(
        new CustomEvent("ls-open-job", { detail: { id: job.id }, bubbles: true, composed: true }),
      );
    } catch (err) {
      this.result = (err as Error).message;
    }
  }

  private renderPlan() {
    const p = this.dryRun;
    const summary =
      p === null
        ? "Choose a dataset and a base model to see the plan."
        : p.ok
          ? `${p.images} image(s), ${p.repeats} samples per epoch -> ${p.stepsPerEpoch} steps x ${p.epochs} epochs = ${p.totalSteps} steps; activation text "${p.activationText}"`
          : "The config is not valid yet:";
    const eta = p?.ok
      ? p.eta
        ? `ETA ~${duration(p.eta.etaSeconds)} (${p.eta.text})`
        : "ETA: no measurement yet for this model and size"
      : "";
    return html`<div class="row eta-row"><span class="eta" data-source=${p?.eta?.source ?? "none"}>${eta}</span>
        <button class="measure" ?disabled=${!p?.ok || this.measuring} @click=${() => this.measure()}>${this.measuring ? "Measuring a step…" : "Measure step time"}</button></div>
      <pre class="plan" aria-live="polite" aria-label="plan"><div class="summary">${summary}</div>${p === null ? "" : p.ok ? p.text : p.message}</pre>`;
  }

  /** The base model's options: clip_skip (a trainer key) and the loader's options for odd single files. */
  private renderLoader() {
    const set = (k: keyof TrainTab["loader"], v: string) => {
      this.loader = { ...this.loader, [k]: v };
    };
    const s = this.schema as Schema;
    return html`<fieldset class="loader"><legend>Base model loader (single files off the SD conventions)</legend>
      ${s.keys.includes("clip_skip") ? this.field("clip_skip") : nothing}
      <label>prediction type<select data-loader="prediction_type" @change=${(e: Event) => set("prediction_type", (e.target as HTMLSelectElement).value)}>
        ${["", "epsilon", "v_prediction"].map((o) => html`<option .value=${o} ?selected=${o === this.loader.prediction_type}>${o === "" ? "from the model" : o}</option>`)}
      </select></label>
      <label>text encoder heads<input data-loader="text_encoder_heads" type="number" min="1" placeholder="from the model" .value=${this.loader.text_encoder_heads} @change=${(e: Event) => set("text_encoder_heads", (e.target as HTMLInputElement).value)} /></label>
      <label>UNet heads (one, or per level: 5,10,20,20)<input data-loader="unet_heads" placeholder="from the model" .value=${this.loader.unet_heads} @change=${(e: Event) => set("unet_heads", (e.target as HTMLInputElement).value.trim())} /></label>
    </fieldset>`;
  }

  private renderHotLoad() {
    const set = (k: keyof TrainTab["hot"], v: string | number) => {
      this.hot = { ...this.hot, [k]: v };
    };
    return html`<fieldset><legend>Job: the LoRA card in the WebUI, runtime</legend>
      <label>models/Lora subfolder<input data-hot="subfolder" .value=${this.hot.subfolder} @change=${(e: Event) => set("subfolder", (e.target as HTMLInputElement).value.trim())} /></label>
      <label>activation text<input data-hot="activation" placeholder=${this.dryRun?.activationText ?? "from the captions"} .value=${this.hot.activation} @change=${(e: Event) => set("activation", (e.target as HTMLInputElement).value)} /></label>
      <label>preferred weight<input data-hot="weight" type="number" step="0.05" .value=${String(this.hot.weight)} @change=${(e: Event) => set("weight", Number((e.target as HTMLInputElement).value))} /></label>
      <label>ONNX Runtime graph optimization (like --ort-opt)<select data-hot="ortOpt" @change=${(e: Event) => set("ortOpt", (e.target as HTMLSelectElement).value)}>
        ${["", "disabled", "basic", "extended", "all"].map((o) => html`<option .value=${o} ?selected=${o === this.hot.ortOpt}>${o === "" ? "trainer default (all)" : o}</option>`)}
      </select></label>
    </fieldset>`;
  }

  override render() {
    const s = this.schema;
    if (s === null) return html`<p class="muted">Loading the trainer's config schema…</p>`;
    const advanced = s.keys.filter((k) => !s.basic.includes(k) && k !== "clip_skip");
    return html`
      ${s.engineAvailable ? nothing : html`<div class="banner engine-missing">The training engine is not available yet in this build: you can fill in and validate a config with the trainer's own checks; Start is disabled.</div>`}
      <div class="row">
        <label class="row">Dataset
          <select aria-label="use a dataset" @change=${(e: Event) => this.useDataset((e.target as HTMLSelectElement).value)}>
            <option value="">(choose)</option>
            ${this.datasets.map((d) => html`<option .value=${d}>${d}</option>`)}
          </select>
        </label>
        Preset:
        ${Object.keys(PRESETS).map((name) => html`<button data-preset=${name} aria-pressed=${this.preset === name ? "true" : "false"} @click=${() => this.usePreset(name)}>${name}</button>`)}
      </div>
      <form @submit=${(e: Event) => e.preventDefault()}>${s.basic.map((k) => this.field(k))}</form>
      <details><summary>Advanced (${advanced.length} keys)</summary>${this.renderLoader()}<form>${advanced.map((k) => this.field(k))}</form></details>
      ${this.renderHotLoad()}
      ${this.renderPlan()}
      <div class="row" style="margin-top:8px">
        <button @click=${() => this.validate()}>Validate</button>
        <button @click=${() => this.plan()}>Plan</button>
        <button class="primary" ?disabled=${!s.engineAvailable} @click=${() => this.start()}>Start training</button>
      </div>
      ${this.result ? html`<pre class="result">${this.result}</pre>` : nothing}
    `;
  }
}
customElements.define("ls-train-tab", TrainTab);
